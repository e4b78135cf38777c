"""Subtractive dither of the bounded quantiser: a pseudo-random offset per value.

A quantiser on a fixed grid restores values on that grid: the decompressed column takes
few distinct values (a *comb*), its errors are correlated with the value, and a cut such
as ``pt > 600`` moves whole grid cells at once. Subtractive dithering (Roberts 1962;
Schuchman 1964; Gray & Stockham, IEEE Trans. Inf. Theory 39 (1993) 805) adds a
pseudo-random offset :math:`u \\in [-\\tfrac12, \\tfrac12)` in units of the step before
rounding and adds it back after::

    k = rint(t - u),        t_hat = k + u,        |t - t_hat| <= 1/2

so the reconstruction error is uniform on :math:`[-\\tfrac12, \\tfrac12)` step,
independent of the value, and still within the bound. Encoder and decoder derive the same
:math:`u` from the position alone — the row inside its chunk and the column's index —
with the SplitMix64 finaliser (Steele, Lea & Flood, OOPSLA 2014) in unsigned 64-bit
integer arithmetic, so the offsets are bit-identical on every machine:
:math:`u = \\lfloor h / 2^{11} \\rfloor \\, 2^{-53} - \\tfrac12`, exact in float64.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = (np.uint64(s) for s in (11, 27, 30, 31))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 output function of the states ``x`` (uint64, wrapping arithmetic)."""
    z = np.array(x, dtype=np.uint64)  # a copy, updated in place below
    _mix(z)
    return z


def _mix(z: np.ndarray, t: np.ndarray | None = None, add: np.uint64 = _GOLDEN) -> None:
    """:func:`splitmix64` in place on the uint64 array ``z`` (``t``: a uint64 scratch
    array of its shape, allocated when not given; ``add``: the golden-ratio increment
    plus whatever the caller would have added to ``z`` first, modulo :math:`2^{64}`)."""
    with np.errstate(over="ignore"):
        z += add
        if t is None:
            t = np.empty_like(z)
        np.right_shift(z, _S30, out=t)
        z ^= t
        z *= _M1
        np.right_shift(z, _S27, out=t)
        z ^= t
        z *= _M2
        np.right_shift(z, _S31, out=t)
        z ^= t


def offsets(n_rows: int, column: int, seed: int = 0) -> np.ndarray:
    """Dither offsets :math:`u \\in [-\\tfrac12, \\tfrac12)` of rows ``0..n_rows-1`` of
    column ``column`` (float64, identical on every machine)."""
    z = np.arange(n_rows, dtype=np.uint64)
    t = np.empty_like(z)  # one scratch array for both rounds
    key = np.uint64((int(column) * 0x100000001B3 + int(seed) * 0x1F3) & (2**64 - 1))
    z ^= key
    _mix(z, t)
    # z + column, then the second round's z + golden ratio: one wrapping addition
    _mix(z, t, np.uint64((int(column) + int(_GOLDEN)) & (2**64 - 1)))
    z >>= _S11
    # into z's own memory: int64 (< 2**53: exact, and faster than from uint64) times
    # 2**-53 (exact) in one pass, each element read before its slot is written
    u = z.view(np.float64)
    np.multiply(z.view(np.int64), 2.0**-53, out=u)
    u -= 0.5
    return u
