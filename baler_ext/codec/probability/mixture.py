"""Exact coding of a code under a mixture of discretised logistics.

One discretised logistic (:mod:`~baler_ext.codec.probability.tables`) cannot represent a
skewed or multimodal conditional; a mixture of :math:`K` can (PixelCNN++, Salimans et
al., ICLR 2017):

.. math::

    P(h) = \\frac{\\sum_j w_j\\, T_{\\ell_j, f_j}(h - b_j)}{\\sum_j w_j \\cdot 2^{16}},

where :math:`T_{\\ell, f}` are the integer tables (each summing to :math:`2^{16}`),
:math:`b_j` the integer base and :math:`f_j` the sub-code fraction of component
:math:`j`'s location, and :math:`w_j` integer weights from
:func:`~baler_ext.codec.probability.tables.mixture_weights` (the component's logit in
eighths of a bit below the largest). Every count is an integer sum of integers, so the
encoder and the decoder build the same distribution on every machine; constriction
(R. Bamler) then quantises the same float64 quotients the same way.

**Windows, buckets, escapes.** As for one logistic, a wide mixture is split: with
:math:`s` from the widest component (of those not negligible) the high part :math:`h`
is mixture-coded and the :math:`s` low bits are uniform. The split is also widened
until the components that matter (weight at least 1/:data:`SIGNIFICANT` of the
heaviest's) lie within a quarter window of each other, and the mixture is evaluated
over a window of :data:`WINDOW` symbols centred between them; a symbol outside it is
escaped (its code stored verbatim), and the escape carries every component's mass
outside the window. To avoid building a 256-entry table per code, a symbol is coded in
two steps with the *same* product probability: its bucket of :data:`BUCKET` symbols
(16 buckets and the escape, from cumulative tables: :math:`O(K)` look-ups per edge), then
its offset within the bucket (:math:`O(K)` per entry of that bucket only).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

from baler_ext.codec.probability import escapes, tables

#: symbols of the mixture window (relative -WINDOW/2 .. WINDOW/2 - 1 to the base)
WINDOW = 256
#: symbols per bucket
BUCKET = 16
N_BUCKETS = WINDOW // BUCKET
#: the escape bucket's index
ESCAPE = N_BUCKETS
_HALF = WINDOW // 2
#: components lighter than 1/SIGNIFICANT of the heaviest do not set the low-bit split
SIGNIFICANT = 16
_EDGES = np.arange(N_BUCKETS + 1, dtype=np.int64) * BUCKET
_OFFSETS = np.arange(BUCKET, dtype=np.int64)


#: padding of the flat tables: a component more than this many symbols from the base has
#: no mass in the window (its delta is clipped to +-_PAD, which changes nothing)
_PAD = WINDOW + BUCKET


def _accumulator(k: int) -> type[np.unsignedinteger] | type[np.signedinteger]:
    """The integer type of the weighted counts of ``k`` components: uint32 when
    :math:`k \\cdot 2^{W} \\cdot 2^{16} < 2^{32}` (every count, product and sum is below it:
    exact, and half the memory traffic of int64), else int64."""
    return np.uint32 if k * (1 << tables.WEIGHT_BITS) * tables.TOTAL < (1 << 32) else np.int64


def _row_extreme(a: np.ndarray, fn: np.ufunc) -> np.ndarray:
    """``fn.reduce(a, axis=1)`` for a (n, K) array with few columns, one column at a time
    (a reduction along a short C-order axis is several times slower)."""
    out = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        fn(out, a[:, j], out=out)
    return out


@cache
def _run_view() -> tuple[np.ndarray, int]:
    """Every run of :data:`BUCKET` consecutive window counts of every table (zero-padded
    by :data:`_PAD` either side), as rows of a strided view: row ``t * stride + x`` holds
    symbols ``x - _PAD .. x - _PAD + 15`` of table ``t``."""
    t = tables.tables()[:, :, : tables.ALPHABET - 1].reshape(-1, tables.ALPHABET - 1)
    padded = np.zeros((len(t), t.shape[1] + 2 * _PAD), np.uint32)
    padded[:, _PAD : _PAD + t.shape[1]] = t
    stride = padded.shape[1]
    flat = padded.ravel()
    view = as_strided(flat, (flat.size - BUCKET, BUCKET), (flat.itemsize, flat.itemsize))
    view.setflags(write=False)
    return view, stride


@cache
def _edge_view() -> tuple[np.ndarray, int]:
    """The cumulative counts (0 before a table's window, its total after) at the 17
    bucket edges, as rows of a strided view: row ``t * stride + x`` holds the cumulative
    count of table ``t`` below symbols ``x - _PAD + 16 b``, ``b = 0..16``."""
    c = tables.cumulative()
    padded = np.empty((len(c), c.shape[1] - 1 + 2 * _PAD), np.uint32)
    padded[:, :_PAD] = 0
    padded[:, _PAD : _PAD + c.shape[1]] = c
    padded[:, _PAD + c.shape[1] :] = c[:, -1:]
    stride = padded.shape[1]
    flat = padded.ravel()
    span = N_BUCKETS * BUCKET
    view = as_strided(
        flat, (flat.size - span, N_BUCKETS + 1), (flat.itemsize, BUCKET * flat.itemsize)
    )
    view.setflags(write=False)
    return view, stride


@cache
def _family() -> object:
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


@dataclass
class MixPlan:
    """The integer description of each code's mixture (one row per code).

    ``table`` (n, K): flat table index :math:`\\ell_j N_{frac} + f_j`; ``delta`` (n, K):
    :math:`b_j - b`; ``weight`` (n, K); ``shift`` (n,): low bits; ``base`` (n,):
    :math:`b`, the window's centre (midway between the outermost components that matter).
    """

    table: np.ndarray
    delta: np.ndarray
    weight: np.ndarray
    shift: np.ndarray
    base: np.ndarray

    def __len__(self) -> int:
        return len(self.base)

    def rows(self, sel: np.ndarray) -> MixPlan:
        return MixPlan(
            self.table[sel], self.delta[sel], self.weight[sel], self.shift[sel], self.base[sel]
        )

    def totals(self) -> np.ndarray:
        """(n,) each row's total count :math:`2^{16} \\sum_j w_j` (the 16 buckets and the
        escape together)."""
        return _row_sum(self.weight) * tables.TOTAL

    def bucket_counts(self) -> np.ndarray:
        """(n, 17) integer counts of the 16 buckets and the escape (uint32 or int64, see
        :func:`_accumulator`)."""
        edges, stride = _edge_view()
        start = self.table * stride + (_PAD - self.delta)  # (n, K): where symbol 0 is
        acc = _accumulator(self.weight.shape[1])
        w = self.weight.astype(acc)
        at = np.zeros((len(self), N_BUCKETS + 1), acc)
        tmp = np.empty_like(at)
        for j in range(start.shape[1]):  # one component at a time: no (n, K, 17) temporary
            np.multiply(edges[start[:, j]], w[:, j, None], out=tmp)
            at += tmp
        out = np.empty((len(self), N_BUCKETS + 1), acc)
        np.subtract(at[:, 1:], at[:, :-1], out=out[:, :N_BUCKETS])
        # the escape: the weights' total minus the window's mass
        out[:, N_BUCKETS] = self.totals().astype(acc) - (at[:, -1] - at[:, 0])
        return out

    def offset_counts(self, bucket: np.ndarray) -> np.ndarray:
        """(n, 16) integer counts of the symbols in each row's (non-escape) ``bucket``."""
        runs, stride = _run_view()
        start = self.table * stride + (_PAD - self.delta) + (bucket * BUCKET)[:, None]
        acc = _accumulator(self.weight.shape[1])
        w = self.weight.astype(acc)
        out = np.zeros((len(self), BUCKET), acc)
        tmp = np.empty_like(out)
        for j in range(start.shape[1]):
            np.multiply(runs[start[:, j]], w[:, j, None], out=tmp)
            out += tmp
        return out

    def symbols(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window index (``-1`` when escaped), escape mask and low bits of codes ``ks``."""
        kh = ks + ((np.int64(1) << self.shift) >> 1)
        m = (kh >> self.shift) - self.base + _HALF
        escaped = (m < 0) | (m >= WINDOW)
        m[escaped] = -1
        return m, escaped, kh & ((np.int64(1) << self.shift) - 1)

    def codes(self, m: np.ndarray, low: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`symbols` for the non-escaped rows."""
        half = (np.int64(1) << self.shift) >> 1
        return ((m - _HALF + self.base) << self.shift) + low - half


def plan(mu: np.ndarray, ell: np.ndarray, weight: np.ndarray, p_bits: int) -> MixPlan:
    """The mixture plan of codes with component locations ``mu`` (fixed point,
    ``p_bits`` fraction bits), scale indices ``ell`` and integer weights, each (n, K)."""
    top = tables.N_SCALES - 1
    # the split follows the widest component of weight >= 1/16 of the heaviest's (a
    # negligible wide component must not coarsen the others; a wider light component is
    # coded with the widest table: a worse fit, still exact), and is wide enough that the
    # locations of those components span at most half the window
    heavy_enough = weight * SIGNIFICANT >= _row_extreme(weight, np.maximum)[:, None]
    widest = _row_extreme(np.where(heavy_enough, ell, 0), np.maximum)
    s = np.maximum(0, -((-(widest - top)) // 4))
    lo = _row_extreme(np.where(heavy_enough, mu, np.iinfo(np.int64).max), np.minimum)
    hi = _row_extreme(np.where(heavy_enough, mu, np.iinfo(np.int64).min), np.maximum)
    span = np.minimum((hi >> p_bits) - (lo >> p_bits), 1 << 52)
    # the smallest extra split with span >> s <= a quarter window: from the span's binary
    # exponent (exact for integers below 2^53), corrected by one step where needed
    quarter = _HALF // 2
    need = np.maximum(np.frexp(span.astype(np.float64))[1].astype(np.int64) - 7, 0)
    need = need + ((span >> need) > quarter)
    s = np.maximum(s, need)
    ell_eff = np.clip(ell - 4 * s[:, None], 0, top)
    mu_h = mu >> s[:, None]
    base_j = mu_h >> p_bits
    frac = (mu_h >> (p_bits - int(np.log2(tables.N_FRAC)))) & (tables.N_FRAC - 1)
    # the window is centred between the outermost components that matter
    base = ((lo >> s) >> p_bits) + ((((hi >> s) >> p_bits) - ((lo >> s) >> p_bits)) >> 1)
    delta = np.clip(base_j - base[:, None], -_PAD, _PAD)
    return MixPlan(ell_eff * tables.N_FRAC + frac, delta, weight, s, base)


def weights(logits: np.ndarray, q_bits: int) -> np.ndarray:
    """Integer weights (n, K) from the network's fixed-point logits (``q_bits`` fraction
    bits, units of an eighth of a bit)."""
    lam = logits >> q_bits
    gap = np.clip(_row_extreme(lam, np.maximum)[:, None] - lam, 0, tables.N_WEIGHTS - 1)
    return tables.mixture_weights()[gap]


def _row_sum(a: np.ndarray) -> np.ndarray:
    """Row sums of a (n, K) integer array with few columns (exact; see
    :func:`_row_extreme`)."""
    return _row_extreme(a, np.add)


def _probabilities(counts: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Row-normalised float64 probabilities ``counts / total`` of integer counts whose
    rows sum to ``total`` (correctly rounded: the same quotients on every machine)."""
    out = counts.astype(np.float64)
    out /= total.astype(np.float64)[:, None]
    return out


def _inside(p: MixPlan, inside: np.ndarray, bucket: np.ndarray) -> tuple[MixPlan, np.ndarray]:
    """The plan and buckets of the rows not escaped (no copies when none is)."""
    if inside.all():
        return p, bucket
    return p.rows(inside), bucket[inside]


def encode(enc: object, k: np.ndarray, p: MixPlan) -> np.ndarray:
    """Code the int64 codes ``k`` on the range encoder ``enc``; return the escaped codes."""
    import constriction

    m, escaped, low = p.symbols(k)
    bucket = np.where(escaped, ESCAPE, m // BUCKET)
    bc = p.bucket_counts()
    enc.encode(bucket.astype(np.int32), _family(), _probabilities(bc, p.totals()))  # type: ignore[attr-defined]
    inside = ~escaped
    if inside.any():
        sub, b_in = _inside(p, inside, bucket)
        enc.encode(  # type: ignore[attr-defined]
            (m[inside] % BUCKET).astype(np.int32),
            _family(),
            _probabilities(sub.offset_counts(b_in), bc[inside, b_in]),
        )
    for s in np.unique(p.shift[inside]):
        if s == 0:
            continue
        rows = inside & (p.shift == s)
        for off, width in tables.uniform_pieces(int(s)):
            enc.encode(  # type: ignore[attr-defined]
                ((low[rows] >> off) & ((1 << width) - 1)).astype(np.int32),
                constriction.stream.model.Uniform(1 << width),
            )
    return k[escaped]


def decode(dec: object, p: MixPlan) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``len(p)`` codes from the range decoder ``dec``. Returns the codes and the
    escape mask: the escaped entries are left 0 for the caller to fill (in the order
    :func:`encode` returned them)."""
    import constriction

    n = len(p)
    bc = p.bucket_counts()
    bucket = np.asarray(
        dec.decode(_family(), _probabilities(bc, p.totals())),  # type: ignore[attr-defined]
        np.int64,
    )
    escaped = bucket == ESCAPE
    inside = ~escaped
    m = np.zeros(n, np.int64)
    if inside.any():
        sub, b_in = _inside(p, inside, bucket)
        off = np.asarray(
            dec.decode(_family(), _probabilities(sub.offset_counts(b_in), bc[inside, b_in])),  # type: ignore[attr-defined]
            np.int64,
        )
        m[inside] = bucket[inside] * BUCKET + off
    low = np.zeros(n, np.int64)
    for s in np.unique(p.shift[inside]):
        if s == 0:
            continue
        rows = inside & (p.shift == s)
        for o, width in tables.uniform_pieces(int(s)):
            got = dec.decode(constriction.stream.model.Uniform(1 << width), int(rows.sum()))  # type: ignore[attr-defined]
            low[rows] |= np.asarray(got, np.int64) << o
    out = p.codes(m, low)
    out[escaped] = 0
    return out, escaped


def bits(k: np.ndarray, p: MixPlan) -> np.ndarray:
    """Ideal code length (bits) of each code under its mixture (escapes plus their
    :func:`~baler_ext.codec.probability.escapes.escape_bits`, low bits as their count),
    without coding."""
    m, escaped, _ = p.symbols(k)
    bc = p.bucket_counts()
    bucket = np.where(escaped, ESCAPE, m // BUCKET)
    rows = np.arange(len(k))
    out = np.log2(p.totals()) - np.log2(bc[rows, bucket]) + p.shift * ~escaped
    out[escaped] += escapes.escape_bits(k[escaped])
    inside = ~escaped
    if inside.any():
        oc = p.rows(inside).offset_counts(bucket[inside])
        pick = oc[np.arange(len(oc)), m[inside] % BUCKET]
        out[inside] += np.log2(bc[rows[inside], bucket[inside]]) - np.log2(pick)
    return out
