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


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 output function of the states ``x`` (uint64, wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def offsets(n_rows: int, column: int, seed: int = 0) -> np.ndarray:
    """Dither offsets :math:`u \\in [-\\tfrac12, \\tfrac12)` of rows ``0..n_rows-1`` of
    column ``column`` (float64, identical on every machine)."""
    rows = np.arange(n_rows, dtype=np.uint64)
    key = np.uint64((int(column) * 0x100000001B3 + int(seed) * 0x1F3) & (2**64 - 1))
    with np.errstate(over="ignore"):
        h = splitmix64(splitmix64(rows ^ key) + np.uint64(int(column)))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5
