"""Quantised probability tables of the learned model: discretised logistics on a fixed grid.

The learned probability model (:mod:`baler_ext.codec.probability.learned`) gives each
code :math:`k` a location :math:`\\mu` and a scale index :math:`\\ell`; the code is then
entropy-coded with one of a fixed set of *tables*. A table is the discretised logistic
(PixelCNN++, Salimans et al. 2017)

.. math::

    P(n) \\propto F\\!\\left(\\frac{n - \\mu_r + \\tfrac12}{s_\\ell}\\right)
                 - F\\!\\left(\\frac{n - \\mu_r - \\tfrac12}{s_\\ell}\\right),
    \\qquad F(y) = \\frac{1}{1 + e^{-y}},\\quad s_\\ell = 2^{(\\ell - 16)/4},

over the symbols :math:`n \\in [-W, W]` plus one escape symbol, for every scale index
:math:`\\ell \\in [0, L)` and every sub-code offset :math:`\\mu_r = (f + \\tfrac12)/F`,
:math:`f \\in [0, F)`, as integer counts (each at least 1, summing to :math:`2^{16}`).

**Determinism.** Encoder and decoder must use bit-identical tables, or the range decoder
returns garbage. The tables (and the mixture weights, :func:`mixture_weights`) are
therefore computed with IEEE-754 basic operations only (``+ - * /`` and exact scaling by
powers of two, which are correctly rounded on every conforming machine), with an
exponential of our own (:func:`exp_basic`) instead of the platform's libm, and the result
is fingerprinted (:func:`table_digest`, :func:`mixture_digest`): the model stores the
digest, and a decoder whose tables differ refuses to decode instead of decoding garbage.
"""

from __future__ import annotations

import hashlib
from functools import cache

import numpy as np

#: scale ladder: s_l = 2 ** ((l - LADDER_ZERO) / 4) codes
LADDER_ZERO = 16
#: number of scale indices with a table (s up to 2 ** (15 / 4) = 13.5 codes); wider
#: distributions are coded as a high part with these tables and uniform low bits
N_SCALES = 32
#: sub-code resolution of the location
N_FRAC = 16
#: the table covers symbols [-WINDOW, WINDOW]; others are escaped
WINDOW = 128
#: total of each table's counts
TOTAL = 1 << 16
ESCAPE = 2 * WINDOW + 1
ALPHABET = 2 * WINDOW + 2

_LN2 = 0.6931471805599453


def exp_basic(x: np.ndarray) -> np.ndarray:
    """:math:`e^x` from correctly rounded basic operations only (bit-identical everywhere).

    Range reduction :math:`x = n \\ln 2 + r` with :math:`|r| \\le \\ln 2 / 2`, a degree-20
    Taylor polynomial of :math:`e^r` in Horner form (relative error < 1e-16), and an exact
    scaling by :math:`2^n` (``np.ldexp``). Inputs are clipped to [-700, 700].
    """
    x = np.clip(np.asarray(x, np.float64), -700.0, 700.0)
    n = np.floor(x / _LN2 + 0.5)
    r = x - n * _LN2
    acc = np.ones_like(r)
    for i in range(20, 0, -1):
        acc = acc * r / float(i) + 1.0
    return np.ldexp(acc, n.astype(np.int64))


def logistic_cdf(y: np.ndarray) -> np.ndarray:
    """:math:`1 / (1 + e^{-y})` via :func:`exp_basic`."""
    return 1.0 / (1.0 + exp_basic(-y))


def _build() -> np.ndarray:
    # 2 ** (q / 4) from the four fractional roots (literals) and an exact power of two,
    # not from pow(), which is a libm call
    roots = np.array([1.0, 1.189207115002721, 1.4142135623730951, 1.681792830507429])
    idx = np.arange(N_SCALES) - LADDER_ZERO
    scales = np.ldexp(roots[idx % 4], idx // 4)
    frac = (np.arange(N_FRAC, dtype=np.float64) + 0.5) / N_FRAC
    n = np.arange(-WINDOW, WINDOW + 1, dtype=np.float64)
    out = np.empty((N_SCALES, N_FRAC, ALPHABET), np.int64)
    for li, s in enumerate(scales):
        for fi, mu in enumerate(frac):
            upper = logistic_cdf((n - mu + 0.5) / s)
            lower = logistic_cdf((n - mu - 0.5) / s)
            p = np.maximum(upper - lower, 0.0)
            tail = lower[0] + (1.0 - upper[-1])
            probs = np.concatenate([p, [tail]])
            # every symbol at least 1 count, the rest shared in proportion (floor), the
            # remainder to the most probable symbol: deterministic integer rounding
            free = TOTAL - ALPHABET
            counts = 1 + np.floor(probs / probs.sum() * free).astype(np.int64)
            counts[int(np.argmax(probs))] += TOTAL - int(counts.sum())
            out[li, fi] = counts
    return out


@cache
def tables() -> np.ndarray:
    """The counts, shape ``(N_SCALES, N_FRAC, ALPHABET)``, built once per process."""
    t = _build()
    t.setflags(write=False)
    return t


def table_digest() -> str:
    """SHA-256 of the tables and their layout constants (stored with the learned model)."""
    h = hashlib.sha256()
    h.update(np.array([LADDER_ZERO, N_SCALES, N_FRAC, WINDOW, TOTAL], np.int64).tobytes())
    h.update(tables().astype("<i8").tobytes())
    return h.hexdigest()


#: widest piece of uniformly coded low bits (constriction's ``Uniform`` takes up to 2^16 here)
UNIFORM_PIECE = 16


def uniform_pieces(width: int) -> list[tuple[int, int]]:
    """(offset, width) of the pieces, from the lowest bit, in which ``width`` uniform low
    bits are coded (:data:`UNIFORM_PIECE` bits at most each; none for ``width <= 0``)."""
    return [
        (off, min(UNIFORM_PIECE, width - off)) for off in range(0, max(width, 0), UNIFORM_PIECE)
    ]


@cache
def categorical(scale: int, frac: int) -> object:
    """constriction's categorical model of one table (cached; probabilities are
    ``counts / TOTAL``, exact in float64, and constriction quantises them deterministically)."""
    import constriction

    return constriction.stream.model.Categorical(
        tables()[scale, frac].astype(np.float64) / TOTAL, perfect=False
    )


#: mixture weights: a component whose weight logit is ``i`` eighths of a bit below the
#: largest gets ``MIX_WEIGHTS[i]`` = max(1, floor(2^12 * 2^(-i/8))) counts
WEIGHT_BITS = 12
N_WEIGHTS = 128


def _build_weights() -> np.ndarray:
    # 2 ** (-r / 8) for r = 0..7 as literals, then exact powers of two (no pow())
    inv_roots = np.array(
        [
            1.0,
            0.9170040432046712,
            0.8408964152537145,
            0.7711054127039704,
            0.7071067811865476,
            0.6484197773255048,
            0.5946035575013605,
            0.5452538663326288,
        ]
    )
    i = np.arange(N_WEIGHTS)
    w = np.floor(np.ldexp(inv_roots[i % 8], WEIGHT_BITS - i // 8)).astype(np.int64)
    return np.maximum(w, 1)


@cache
def mixture_weights() -> np.ndarray:
    """The integer weight of a mixture component by its logit's distance below the
    largest (eighths of a bit), shape ``(N_WEIGHTS,)``."""
    w = _build_weights()
    w.setflags(write=False)
    return w


@cache
def cumulative() -> np.ndarray:
    """Cumulative counts of the window symbols: ``C[l, f, x]`` = sum of the counts of
    symbols ``0 .. x-1`` (the escape excluded), shape ``(N_SCALES * N_FRAC, ALPHABET)``."""
    t = tables()[:, :, : ALPHABET - 1].reshape(N_SCALES * N_FRAC, ALPHABET - 1)
    c = np.zeros((N_SCALES * N_FRAC, ALPHABET), np.int64)
    np.cumsum(t, axis=1, out=c[:, 1:])
    c.setflags(write=False)
    return c


def mixture_digest() -> str:
    """SHA-256 of the tables, their layout and the mixture weights (stored with a
    mixture model)."""
    h = hashlib.sha256()
    h.update(table_digest().encode())
    h.update(np.array([WEIGHT_BITS, N_WEIGHTS], np.int64).tobytes())
    h.update(mixture_weights().astype("<i8").tobytes())
    return h.hexdigest()
