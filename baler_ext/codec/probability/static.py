"""The ``static`` probability model: one histogram per stream and chunk.

The histogram is fitted on the stream itself and stored with it (see
:mod:`baler_ext.codec.entropy` for the range and zstd coders).
"""

from __future__ import annotations

import numpy as np

from baler_ext.codec.entropy import get_coder


class StaticModel:
    """Code streams independently with the entropy coder ``coder``."""

    name = "static"

    def __init__(self, coder: str) -> None:
        self.coder = get_coder(coder)

    def encode(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """One int64 stream -> named arrays."""
        return self.coder.encode(codes)

    def decode(self, arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Named arrays -> the int64 stream of length ``n``."""
        return self.coder.decode(arrays, n)

    @staticmethod
    def nbytes(arrays: dict[str, np.ndarray]) -> int:
        return sum(a.nbytes for a in arrays.values())
