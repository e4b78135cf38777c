"""Escaped codes coded inside the range-coded stream (format 1.3).

A code outside its table window is coded as the escape symbol; its value then follows in
the same stream, right after the symbols of its phase, as an Elias-gamma-like integer
code of its zigzag map :math:`z = 2k` for :math:`k \\ge 0`, :math:`z = -2k - 1` for
:math:`k < 0`:

.. math::

    n = \\lfloor \\log_2 z \\rfloor + 1 \\ (0 \\text{ for } z = 0), \\qquad
    \\text{cost}(k) = \\log_2 65 + \\max(n - 1, 0) \\ \\text{bits},

:math:`n` coded uniformly over :math:`0..64` and the :math:`n - 1` bits below the leading
one uniformly in pieces of at most 16 bits (Elias, IEEE Trans. Inf. Theory 21, 1975).
Everything is integer arithmetic, so the decoder rebuilds the same values on every
machine. Before 1.3 the escaped values were a separate ``esc`` section of verbatim
int64 (64 bits each, plus the section's frame and index entry); a code stream has a
handful of escapes, so the section cost more than the escapes themselves.
"""

from __future__ import annotations

import numpy as np

from baler_ext.codec.probability import tables

#: bit lengths 0..64 of the zigzagged value
LENGTHS = 65


def zigzag(k: np.ndarray) -> np.ndarray:
    """int64 -> uint64: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    k = np.asarray(k, np.int64)
    return (k.view(np.uint64) << np.uint64(1)) ^ (k >> np.int64(63)).view(np.uint64)


def unzigzag(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag`."""
    z = np.asarray(z, np.uint64)
    return ((z >> np.uint64(1)) ^ (np.uint64(0) - (z & np.uint64(1)))).view(np.int64)


def bit_lengths(z: np.ndarray) -> np.ndarray:
    """Bit length of each uint64 (0 for 0), exactly (a binary search on shifts)."""
    z = np.asarray(z, np.uint64).copy()
    n = np.zeros(z.shape, np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        big = z >= (np.uint64(1) << np.uint64(s))
        n[big] += s
        z[big] >>= np.uint64(s)
    return n + (z > 0)


def escape_bits(k: np.ndarray) -> np.ndarray:
    """The code length (bits) of each escaped code ``k``."""
    n = bit_lengths(zigzag(k))
    return np.log2(LENGTHS) + np.maximum(n - 1, 0)


def encode(enc: object, k: np.ndarray) -> None:
    """Code the escaped codes ``k`` on the range encoder ``enc`` (a queue)."""
    if k.size == 0:
        return
    import constriction

    z = zigzag(k)
    n = bit_lengths(z)
    enc.encode(n.astype(np.int32), constriction.stream.model.Uniform(LENGTHS))  # type: ignore[attr-defined]
    for length in np.unique(n):
        rows = z[n == length]
        for off, width in tables.uniform_pieces(int(length) - 1):  # below the leading one
            piece = (rows >> np.uint64(off)) & np.uint64((1 << width) - 1)
            enc.encode(piece.astype(np.int32), constriction.stream.model.Uniform(1 << width))  # type: ignore[attr-defined]


def decode(dec: object, count: int) -> np.ndarray:
    """Decode ``count`` escaped codes from the range decoder ``dec``."""
    if count == 0:
        return np.zeros(0, np.int64)
    import constriction

    n = np.asarray(
        dec.decode(constriction.stream.model.Uniform(LENGTHS), count),  # type: ignore[attr-defined]
        np.int64,
    )
    z = np.zeros(count, np.uint64)
    for length in np.unique(n):
        at = n == length
        if length == 0:
            continue
        rows = np.uint64(1) << np.uint64(length - 1)  # the leading one
        vals = np.full(int(at.sum()), rows, np.uint64)
        for off, width in tables.uniform_pieces(int(length) - 1):
            got = dec.decode(constriction.stream.model.Uniform(1 << width), vals.size)  # type: ignore[attr-defined]
            vals |= np.asarray(got, np.uint64) << np.uint64(off)
        z[at] = vals
    return unzigzag(z)
