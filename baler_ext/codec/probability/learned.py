"""The learned probability model of the bounded codes: a rate-trained integer MADE.

The bounded mode quantises each *independent* column on a fixed, dithered grid anchored at
a constant (the training median): the integer code :math:`k_{r,i}` of row :math:`r`,
column :math:`i` decides the value, and the bound never depends on this model. This
model only decides the *probabilities* with which the codes are entropy-coded, so its
rate is

.. math::

    R = -\\sum_{r,i} \\log_2 P\\big(k_{r,i} \\mid k_{r,<i},\\ \\text{context}_r\\big),

the rate term of a rate–distortion model whose distortion is fixed by the bounds (Ballé,
Laparra & Simoncelli, ICLR 2017; Ballé et al., ICLR 2018; DeepSqueeze, Ilkhechi et al.,
SIGMOD 2020). The conditional is a discretised logistic whose location and scale come
from an integer MADE (:mod:`baler_ext.codec.probability.intnet`) over the columns in
coding order; the context may hold the previous object of the same event and the
quantised latent of the project's autoencoder (side information whose own bits count in
the file, as in a hyperprior).

**Coding a stream** (:func:`encode_stream`). For each code the network gives a location
:math:`\\mu` (fixed point, :data:`P` fraction bits) and a scale index :math:`\\ell`.
Wide distributions are split: with :math:`s = \\max(0, \\lceil(\\ell - L + 1)/4\\rceil)`
the high part :math:`h = \\lfloor (k + 2^{s-1}) / 2^s \\rfloor` is coded with table
:math:`(\\ell - 4s, \\text{frac}(\\mu / 2^s))` of :mod:`~baler_ext.codec.probability.tables`
relative to :math:`\\lfloor \\mu / 2^s \\rfloor`, and the :math:`s` low bits with a
uniform model. Symbols are coded grouped by table (a stable sort of the table keys, which
the decoder recomputes), with constriction's range coder (R. Bamler); symbols outside
the table window are escaped and stored verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from baler_ext.codec.probability import escapes, tables
from baler_ext.codec.probability import mixture as mix
from baler_ext.codec.probability.intnet import F_MAX, Incremental, IntMade, Q
from baler_ext.errors import ContainerError

#: fraction bits of the fixed-point location
P = 16
#: largest scale index the coder accepts
MAX_SCALE = 4 * 40
#: most mixture components
MAX_MIXTURE = 8
_FRAC_SHIFT = P - int(np.log2(tables.N_FRAC))


def _shift(v: np.ndarray, bits: np.ndarray | int) -> np.ndarray:
    """``v * 2**bits`` for int64 ``v`` (floor for negative ``bits``)."""
    bits = np.broadcast_to(np.asarray(bits, np.int64), v.shape)
    return np.where(bits >= 0, v << np.maximum(bits, 0), v >> np.maximum(-bits, 0))


@dataclass
class LearnedModel:
    """What encoder and decoder share: the network and how codes become its inputs.

    Parameters
    ----------
    columns
        The coded columns in coding order.
    offset, exponent
        Per column: feature :math:`f = \\mathrm{clip}((k - o) 2^{e}, \\pm F_{max})`.
    net
        The integer MADE.
    event_context
        Whether the context holds the previous object of the same event.
    aux
        ``None``, or ``{"names", "offset", "exponent"}``: integer columns stored
        losslessly in the same file (multiplicities, flags, indices) that the decoder
        restores before the floats — free context, scaled like the codes.
    latent
        ``None``, or ``{"dims", "bits", "lo", "step"}``: the autoencoder's latent,
        quantised on a fixed grid, as side information.
    settings
        Training facts stored beside (bounds, anchors, relations, order method, rates).
    mixture
        :math:`K`, the logistics per code (1: one discretised logistic coded with the
        fixed tables; more: a mixture, :mod:`~baler_ext.codec.probability.mixture`).
    mixed
        With a mixture: how many leading columns (in coding order) use it; the others
        (the residuals of exact relations, unimodal and nearly free) use its first
        component alone, coded like one logistic. None: every column.
    """

    columns: list[str]
    offset: np.ndarray
    exponent: np.ndarray
    net: IntMade
    event_context: bool = False
    latent: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    aux: dict[str, Any] | None = None
    mixture: int = 1
    mixed: int | None = None

    def uses_mixture(self, i: int) -> bool:
        """Whether column ``i`` (coding order) is coded with the mixture."""
        return self.mixture > 1 and (self.mixed is None or i < self.mixed)

    @property
    def n_latent(self) -> int:
        return int(self.latent["dims"]) if self.latent else 0

    @property
    def aux_names(self) -> list[str]:
        return list(self.aux["names"]) if self.aux else []

    @staticmethod
    def n_outputs(mixture: int) -> int:
        """Network outputs per column: (location, scale), or K locations, K scales and
        K weight logits."""
        return 2 if mixture == 1 else 3 * mixture

    @staticmethod
    def n_context(n_cols: int, event_context: bool, n_latent: int, n_aux: int = 0) -> int:
        """Context inputs: previous object's columns and a flag, the latent, the
        auxiliary integer columns."""
        return (n_cols + 1 if event_context else 0) + n_latent + n_aux

    @classmethod
    def untrained(
        cls,
        columns: list[str],
        offset: np.ndarray | None = None,
        exponent: np.ndarray | None = None,
        event_context: bool = False,
        latent: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        aux: dict[str, Any] | None = None,
        mixture: int = 1,
        mixed: int | None = None,
    ) -> LearnedModel:
        """A model whose network outputs 0 (its shapes right): for computing features."""
        d = len(columns)
        n_ctx = cls.n_context(
            d, event_context, int(latent["dims"]) if latent else 0, len(aux["names"]) if aux else 0
        )
        n_out = cls.n_outputs(mixture)
        net = IntMade(
            n_ctx, d, [np.zeros((n_out * d, n_ctx + d))], [np.zeros(n_out * d)], [], n_out
        )
        zeros = np.zeros(d, np.int64)
        return cls(
            list(columns),
            zeros if offset is None else offset,
            zeros if exponent is None else exponent,
            net,
            event_context,
            latent,
            dict(settings or {}),
            aux,
            mixture,
            mixed,
        )

    # -- features ---------------------------------------------------------------------
    def column_features(self, codes: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Features of codes (rows, D) in coding order with their dither offsets ``u``
        (rows, D; None: no dither), float64 integers."""
        return (
            np.stack(
                [
                    _feature(self, codes[:, i], i, None if u is None else u[:, i])
                    for i in range(codes.shape[1])
                ],
                axis=1,
            )
            if codes.size
            else np.zeros(codes.shape)
        )

    def latent_features(self, zcodes: np.ndarray) -> np.ndarray:
        """Features of latent codes in [0, 2^bits): centred, scaled to about ±256."""
        bits = int(self.latent["bits"]) if self.latent else 8
        return ((zcodes.astype(np.int64) - (1 << (bits - 1))) << max(0, 9 - bits)).astype(
            np.float64
        )

    def aux_features(self, aux: np.ndarray) -> np.ndarray:
        """Features of the auxiliary integer columns (rows, A), scaled like the codes."""
        assert self.aux is not None
        t = aux.astype(np.int64) - np.asarray(self.aux["offset"], np.int64)
        f = np.floor(t.astype(np.float64) * 2.0 ** np.asarray(self.aux["exponent"], np.float64))
        return np.clip(f, -F_MAX, F_MAX)

    def inputs(
        self,
        n: int,
        prev: np.ndarray | None,
        prev_features: np.ndarray | None,
        zcodes: np.ndarray | None,
        aux: np.ndarray | None = None,
    ) -> np.ndarray:
        """The input matrix with its context filled and the column block zero."""
        d = len(self.columns)
        x = np.zeros((n, self.net.n_in))
        at = 0
        if self.event_context:
            if prev is not None and prev_features is not None:
                has = prev >= 0
                x[has, :d] = prev_features[prev[has]]
                x[has, d] = 256.0
            at = d + 1
        if self.latent:
            if zcodes is None:
                raise ContainerError(
                    "the chunk lacks the latent side information its model "
                    "needs; the file is damaged"
                )
            x[:, at : at + self.n_latent] = self.latent_features(zcodes)
            at += self.n_latent
        if self.aux:
            if aux is None or aux.shape != (n, len(self.aux["names"])):
                raise ContainerError(
                    f"the chunk lacks the columns {self.aux['names']} its "
                    "learned model takes as context; the file is damaged"
                )
            x[:, at : at + aux.shape[1]] = self.aux_features(aux)
        return x

    # -- network outputs -> coding parameters -------------------------------------------
    def params(
        self, i: int, loc: np.ndarray, scale: np.ndarray, u: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-point location (code units, :data:`P` fraction bits) and scale index of
        column ``i`` from the network's integer outputs.

        The network models the undithered position :math:`t` of a value in steps; with a
        dither offset :math:`u` the code is :math:`k = \\mathrm{rint}(t - u)`, so its
        location is :math:`\\mu - u` (``u`` rounded to :data:`P` fraction bits, exact).
        """
        e = int(self.exponent[i])
        mu = (int(self.offset[i]) << P) + _shift(loc, P - Q - e)
        if u is not None:
            mu = mu - np.rint(u * float(1 << P)).astype(np.int64)
        ell = np.clip((scale >> Q) - 4 * e, 0, MAX_SCALE)
        return mu, ell

    def outputs_used(self, i: int) -> tuple[int, ...]:
        """Which of column ``i``'s network outputs :meth:`coding` reads: all of a mixture,
        the first location and scale of a column coded with one logistic."""
        k = self.mixture
        if self.uses_mixture(i):
            return tuple(range(self.n_outputs(k)))
        return (0, 1 if k == 1 else k)

    def coding(
        self, i: int, outs: tuple[np.ndarray, ...], u: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray] | mix.MixPlan:
        """What codes column ``i`` from the network's outputs for it: ``(mu, ell)`` of one
        logistic, or the mixture's :class:`~baler_ext.codec.probability.mixture.MixPlan`
        (each component's location and scale as in :meth:`params`). Reads only the
        outputs :meth:`outputs_used` names."""
        k = self.mixture
        if not self.uses_mixture(i):
            loc, scale = self.outputs_used(i)
            return self.params(i, outs[loc], outs[scale], u)
        comp = [self.params(i, outs[j], outs[k + j], u) for j in range(k)]
        # (n, K) in column-major order: the per-row reductions over K are column passes
        mu = np.stack([c[0] for c in comp]).T
        ell = np.stack([c[1] for c in comp]).T
        w = mix.weights(np.stack(outs[2 * k : 3 * k]).T, Q)
        return mix.plan(mu, ell, w, P)

    def to_arrays(self) -> dict[str, np.ndarray]:
        d = {f"net/{k}": v for k, v in self.net.arrays().items()}
        d["offset"] = self.offset.astype(np.int64)
        d["exponent"] = self.exponent.astype(np.int64)
        return d

    def meta(self) -> dict[str, Any]:
        out = {
            "columns": self.columns,
            "event_context": self.event_context,
            "latent": self.latent,
            "aux": self.aux,
            "settings": self.settings,
            "tables": tables.table_digest(),
        }
        if self.mixture != 1:  # absent for one logistic: such models keep their hash
            out["mixture"] = self.mixture
            out["mixture_tables"] = tables.mixture_digest()
            if self.mixed is not None:
                out["mixed"] = self.mixed
        return out

    @classmethod
    def from_parts(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> LearnedModel:
        if meta.get("tables") != tables.table_digest():
            raise ContainerError(
                "this machine builds different probability tables than the "
                "one that trained the learned model; decoding would be wrong, "
                "so it is refused (report this platform as a bug)"
            )
        mixture = meta.get("mixture", 1)
        if not isinstance(mixture, int) or not 1 <= mixture <= MAX_MIXTURE:
            raise ContainerError(
                f"the learned probability model's mixture size {mixture!r} is not 1-{MAX_MIXTURE}"
            )
        if mixture != 1 and meta.get("mixture_tables") != tables.mixture_digest():
            raise ContainerError(
                "this machine builds different mixture weights than the one that "
                "trained the learned model; decoding would be wrong, so it is refused "
                "(report this platform as a bug)"
            )
        mixed = meta.get("mixed")
        if mixed is not None and (not isinstance(mixed, int) or mixed < 0):
            raise ContainerError(
                f"the learned probability model's mixed count {mixed!r} is invalid"
            )
        net = IntMade.from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("net/")})
        model = cls(
            list(meta["columns"]),
            np.asarray(arrays["offset"], np.int64),
            np.asarray(arrays["exponent"], np.int64),
            net,
            bool(meta.get("event_context")),
            meta.get("latent"),
            dict(meta.get("settings", {})),
            meta.get("aux"),
            mixture,
            mixed,
        )
        expected = cls.n_context(
            len(model.columns), model.event_context, model.n_latent, len(model.aux_names)
        )
        if (
            net.n_cols != len(model.columns)
            or net.n_ctx != expected
            or net.n_out != cls.n_outputs(mixture)
        ):
            raise ContainerError("the learned probability model does not match its columns")
        return model


# -- phases: objects of an event in order ---------------------------------------------
def event_phases(first: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of each row within its event and the previous row of the same event (-1).

    ``first`` marks the rows that start an event (None: every row is its own event).
    """
    if first is None or n == 0:
        return np.zeros(n, np.int64), np.full(n, -1, np.int64)
    first = np.asarray(first, bool).copy()
    first[0] = True
    starts = np.flatnonzero(first)
    start_of = starts[np.cumsum(first) - 1]
    pos = np.arange(n) - start_of
    prev = np.where(pos > 0, np.arange(n) - 1, -1)
    return pos.astype(np.int64), prev.astype(np.int64)


# -- stream coding ----------------------------------------------------------------------
@dataclass
class _Plan:
    order: np.ndarray  # rows in coding order (stable by table key)
    bounds: np.ndarray  # group starts in ``order`` (+ end)
    ell: np.ndarray  # per group: table scale index
    frac: np.ndarray  # per group: table fraction
    shift: np.ndarray  # per row (sorted): low bits
    base: np.ndarray  # per row (sorted): floor(mu / 2^s)

    def symbols(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Table symbols, escape mask and low bits of the codes ``ks`` (coding order):
        :math:`h = \\lfloor (k + 2^{s-1}) / 2^s \\rfloor`, symbol :math:`h - base + W`
        (the escape symbol outside the window), low bits :math:`(k + 2^{s-1}) \\bmod 2^s`."""
        kh = ks + ((np.int64(1) << self.shift) >> 1)
        sym = (kh >> self.shift) - self.base + tables.WINDOW
        escaped = (sym < 0) | (sym > 2 * tables.WINDOW)
        sym[escaped] = tables.ESCAPE
        return sym, escaped, kh & ((np.int64(1) << self.shift) - 1)


def _plan(mu: np.ndarray, ell: np.ndarray) -> _Plan:
    s = np.maximum(0, -((-(ell - (tables.N_SCALES - 1))) // 4))
    ell_eff = ell - 4 * s
    mu_h = mu >> s
    base = mu_h >> P
    frac = (mu_h >> _FRAC_SHIFT) & (tables.N_FRAC - 1)
    key = (s * tables.N_SCALES + ell_eff) * tables.N_FRAC + frac
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ks)) + 1, [len(ks)]]).astype(np.int64)
    g = starts[:-1]
    return _Plan(order, starts, ell_eff[order][g], frac[order][g], s[order], base[order])


class StreamEncoder:
    """One column's range-coded stream, filled phase by phase.

    Parameters
    ----------
    inline
        Code the escaped values in the stream after each phase (:mod:`.escapes`, format
        1.3) rather than in a separate ``esc`` section (1.2).
    """

    def __init__(self, inline: bool = True) -> None:
        import constriction

        self._cs = constriction
        self.enc = constriction.stream.queue.RangeEncoder()
        self.esc: list[np.ndarray] = []
        self.inline = inline

    def _escaped(self, values: np.ndarray) -> None:
        if self.inline:
            escapes.encode(self.enc, values)
        else:
            self.esc.append(values)

    def add(self, k: np.ndarray, mu: np.ndarray, ell: np.ndarray) -> None:
        """Code the int64 codes ``k`` with locations ``mu`` and scale indices ``ell``."""
        if k.size == 0:
            return
        plan = _plan(mu, ell)
        ks = k[plan.order]
        sym, escaped, low = plan.symbols(ks)
        for gi in range(len(plan.ell)):
            a, b = plan.bounds[gi], plan.bounds[gi + 1]
            self.enc.encode(
                sym[a:b].astype(np.int32), tables.categorical(int(plan.ell[gi]), int(plan.frac[gi]))
            )
        self._encode_low(low, plan.shift, escaped)
        self._escaped(ks[escaped])

    def add_mix(self, k: np.ndarray, plan: mix.MixPlan) -> None:
        """Code the int64 codes ``k`` under their mixtures (:mod:`.mixture`)."""
        if k.size:
            self._escaped(mix.encode(self.enc, k, plan))

    def put(self, k: np.ndarray, coding: tuple[np.ndarray, np.ndarray] | mix.MixPlan) -> None:
        """:meth:`add` or :meth:`add_mix`, as :meth:`LearnedModel.coding` decided."""
        if isinstance(coding, mix.MixPlan):
            self.add_mix(k, coding)
        else:
            self.add(k, *coding)

    def _encode_low(self, low: np.ndarray, shift: np.ndarray, escaped: np.ndarray) -> None:
        use = (shift > 0) & ~escaped
        for s in np.unique(shift[use]):
            rows = use & (shift == s)
            for off, width in tables.uniform_pieces(int(s)):
                self.enc.encode(
                    ((low[rows] >> off) & ((1 << width) - 1)).astype(np.int32),
                    self._cs.stream.model.Uniform(1 << width),
                )

    def finish(self) -> dict[str, np.ndarray]:
        esc = np.concatenate(self.esc) if self.esc else np.zeros(0, np.int64)
        out = {"bits": self.enc.get_compressed()}
        if esc.size:
            out["esc"] = esc.astype(np.int64)
        return out


class StreamDecoder:
    """The decoder of :class:`StreamEncoder`'s sections (``inline`` as there)."""

    def __init__(self, arrays: dict[str, np.ndarray], inline: bool = True) -> None:
        import constriction

        self._cs = constriction
        if "bits" not in arrays:
            raise ContainerError("a learned code stream has no bits; the file is damaged")
        if inline and "esc" in arrays:
            raise ContainerError(
                "a learned code stream has an escape section its format does not use; "
                "the file is damaged"
            )
        self.dec = constriction.stream.queue.RangeDecoder(arrays["bits"].astype(np.uint32))
        self.esc = np.asarray(arrays.get("esc", np.zeros(0, np.int64)), np.int64)
        self.esc_at = 0
        self.inline = inline

    def _escaped(self, count: int) -> np.ndarray:
        """The next ``count`` escaped values (from the stream, or the ``esc`` section)."""
        if self.inline:
            return escapes.decode(self.dec, count)
        if self.esc_at + count > self.esc.size:
            raise ContainerError(
                "a learned code stream's escapes do not match; the file is damaged"
            )
        self.esc_at += count
        return self.esc[self.esc_at - count : self.esc_at]

    def take(self, mu: np.ndarray, ell: np.ndarray) -> np.ndarray:
        """Decode as many codes as ``mu`` has entries."""
        try:
            return self._take(mu, ell)
        except (AssertionError, ValueError, RuntimeError, OverflowError) as exc:
            # constriction refuses bits that its model cannot have produced
            raise ContainerError(
                f"a learned code stream does not decode ({exc}); the file "
                "is damaged or its model differs"
            ) from None

    def take_mix(self, plan: mix.MixPlan) -> np.ndarray:
        """Decode as many codes as ``plan`` describes (mixtures)."""
        if len(plan) == 0:
            return np.zeros(0, np.int64)
        try:
            out, escaped = mix.decode(self.dec, plan)
            out[escaped] = self._escaped(int(escaped.sum()))
        except (AssertionError, ValueError, RuntimeError, OverflowError) as exc:
            raise ContainerError(
                f"a learned code stream does not decode ({exc}); the file "
                "is damaged or its model differs"
            ) from None
        return out

    def get(self, coding: tuple[np.ndarray, np.ndarray] | mix.MixPlan) -> np.ndarray:
        """:meth:`take` or :meth:`take_mix`, as :meth:`LearnedModel.coding` decided."""
        if isinstance(coding, mix.MixPlan):
            return self.take_mix(coding)
        return self.take(*coding)

    def _take(self, mu: np.ndarray, ell: np.ndarray) -> np.ndarray:
        n = mu.size
        if n == 0:
            return np.zeros(0, np.int64)
        plan = _plan(mu, ell)
        sym = np.empty(n, np.int64)
        for gi in range(len(plan.ell)):
            a, b = plan.bounds[gi], plan.bounds[gi + 1]
            sym[a:b] = self.dec.decode(
                tables.categorical(int(plan.ell[gi]), int(plan.frac[gi])), int(b - a)
            )
        escaped = sym == tables.ESCAPE
        low = np.zeros(n, np.int64)
        use = (plan.shift > 0) & ~escaped
        for s in np.unique(plan.shift[use]):
            rows = use & (plan.shift == s)
            for off, width in tables.uniform_pieces(int(s)):
                low[rows] |= (
                    self.dec.decode(
                        self._cs.stream.model.Uniform(1 << width), int(rows.sum())
                    ).astype(np.int64)
                    << off
                )
        half = (np.int64(1) << plan.shift) >> 1
        ks = ((sym - tables.WINDOW + plan.base) << plan.shift) + low - half
        ks[escaped] = self._escaped(int(escaped.sum()))
        out = np.empty(n, np.int64)
        out[plan.order] = ks
        return out

    def check_done(self) -> None:
        if self.esc_at != self.esc.size:
            raise ContainerError("a learned code stream has unused escapes; the file is damaged")


# -- whole chunks ---------------------------------------------------------------------------
def _rows(u: np.ndarray | None, rows: np.ndarray | slice) -> np.ndarray | None:
    return None if u is None else u[rows]


def _col(u: np.ndarray | None, i: int) -> np.ndarray | None:
    return None if u is None else u[:, i]


def _outputs_flat(
    model: LearnedModel,
    codes: np.ndarray,
    first: np.ndarray | None,
    zcodes: np.ndarray | None,
    u: np.ndarray | None,
    aux: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's phase and the network's outputs as one (rows, D * n_out) matrix."""
    n = codes.shape[0]
    pos, prev = event_phases(first if model.event_context else None, n)
    feats = model.column_features(codes, u)
    x = model.inputs(n, prev, feats, zcodes, aux)
    x[:, model.net.n_ctx :] = feats
    return pos, model.net.forward_flat(x)


def _outputs(
    model: LearnedModel,
    codes: np.ndarray,
    first: np.ndarray | None,
    zcodes: np.ndarray | None,
    u: np.ndarray | None,
    aux: np.ndarray | None,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Each row's phase and the network's ``n_out`` outputs, each (rows, D)."""
    pos, flat = _outputs_flat(model, codes, first, zcodes, u, aux)
    n_out = model.net.n_out
    return pos, tuple(flat[:, j::n_out] for j in range(n_out))


def _phases(pos: np.ndarray) -> list[np.ndarray | slice]:
    """The rows of each phase (all rows, as a slice, when every object is the first)."""
    n_phases = int(pos.max()) + 1 if pos.size else 0
    if n_phases == 1:
        return [slice(None)]
    return [np.flatnonzero(pos == phase) for phase in range(n_phases)]


def _column_outputs(flat: np.ndarray, n_out: int, i: int) -> tuple[np.ndarray, ...]:
    """Column ``i``'s outputs from :meth:`IntMade.forward_flat`'s matrix (views)."""
    return tuple(flat[:, n_out * i + j] for j in range(n_out))


def encode_codes(
    model: LearnedModel,
    codes: np.ndarray,
    first: np.ndarray | None,
    zcodes: np.ndarray | None,
    u: np.ndarray | None = None,
    aux: np.ndarray | None = None,
    inline_escapes: bool = True,
) -> list[dict[str, np.ndarray]]:
    """Code the (rows, D) codes (coding order) with their dither offsets ``u`` (rows, D);
    one section dict per column. Rows are coded phase by phase (the i-th object of every
    event in phase i), so the decoder knows each row's previous object. Escaped values
    go into the streams (``inline_escapes``, format 1.3) or an ``esc`` section each."""
    d = codes.shape[1]
    pos, flat = _outputs_flat(model, codes, first, zcodes, u, aux)
    encoders = [StreamEncoder(inline_escapes) for _ in range(d)]
    n_out = model.net.n_out
    for rows in _phases(pos):
        # one gather of the phase's rows, then views per column
        sub, u_rows, k_rows = flat[rows], _rows(u, rows), codes[rows]
        for i in range(d):
            coding = model.coding(i, _column_outputs(sub, n_out, i), _col(u_rows, i))
            encoders[i].put(k_rows[:, i], coding)
    return [e.finish() for e in encoders]


def decode_codes(
    model: LearnedModel,
    streams: list[dict[str, np.ndarray]],
    n: int,
    first: np.ndarray | None,
    zcodes: np.ndarray | None,
    known: dict[int, np.ndarray] | None = None,
    u: np.ndarray | None = None,
    aux: np.ndarray | None = None,
    inline_escapes: bool = True,
) -> np.ndarray:
    """Inverse of :func:`encode_codes`. ``known`` holds columns (by position) coded
    elsewhere (their stream is not read; their codes still feed the context)."""
    d = len(model.columns)
    known = known or {}
    pos, prev = event_phases(first if model.event_context else None, n)
    codes = np.zeros((n, d), np.int64)
    for i, k in known.items():
        codes[:, i] = k
    feats = np.zeros((n, d))
    decoders = {i: StreamDecoder(streams[i], inline_escapes) for i in range(d) if i not in known}
    for rows in _phases(pos):
        prev_rows = prev[rows]
        x = model.inputs(
            len(prev_rows),
            prev_rows,
            feats,
            None if zcodes is None else zcodes[rows],
            None if aux is None else aux[rows],
        )
        x = np.asfortranarray(x)
        inc = Incremental(model.net, x)
        u_rows = _rows(u, rows)
        for i in range(d):
            # every step computes the hidden units of degree i, known column or not
            outs = inc.outputs(i, model.outputs_used(i) if i in decoders else ())
            if i in decoders:
                codes[rows, i] = decoders[i].get(model.coding(i, outs, _col(u_rows, i)))
            x[:, model.net.n_ctx + i] = _feature(model, codes[rows, i], i, _col(u_rows, i))
        feats[rows] = x[:, model.net.n_ctx :]
    for dec in decoders.values():
        dec.check_done()
    return codes


def _feature(model: LearnedModel, k: np.ndarray, i: int, u: np.ndarray | None = None) -> np.ndarray:
    """:math:`f = \\mathrm{clip}(\\lfloor (k - o + u) 2^{e} \\rfloor, \\pm F_{max})`:
    the dithered position in steps, relative and scaled (exact float64 operations)."""
    t = (k.astype(np.int64) - int(model.offset[i])).astype(np.float64)
    if u is not None:
        t = t + u
    f = np.floor(t * 2.0 ** int(model.exponent[i]))
    return np.clip(f, -F_MAX, F_MAX)


def code_bits(
    model: LearnedModel,
    codes: np.ndarray,
    first: np.ndarray | None,
    zcodes: np.ndarray | None,
    u: np.ndarray | None = None,
    aux: np.ndarray | None = None,
) -> np.ndarray:
    """Ideal code length (bits) of each code under the tables, (rows, D), without coding
    (escapes counted as :func:`~baler_ext.codec.probability.escapes.escape_bits`, split
    low bits as their count)."""
    n, d = codes.shape
    _, outs = _outputs(model, codes, first, zcodes, u, aux)
    t = tables.tables()
    out = np.zeros((n, d))
    for i in range(d):
        coding = model.coding(i, tuple(o[:, i] for o in outs), _col(u, i))
        if isinstance(coding, mix.MixPlan):
            out[:, i] = mix.bits(codes[:, i], coding)
            continue
        plan = _plan(*coding)
        sym, esc, _ = plan.symbols(codes[plan.order, i])
        group = np.repeat(np.arange(len(plan.ell)), np.diff(plan.bounds))
        cnt = t[plan.ell[group], plan.frac[group], sym]
        bits = np.log2(tables.TOTAL) - np.log2(cnt) + plan.shift * ~esc
        bits[esc] += escapes.escape_bits(codes[plan.order, i][esc])
        out[plan.order, i] = bits
    return out
