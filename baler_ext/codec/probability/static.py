"""The ``static`` probability model: one histogram per stream and chunk.

The histogram is fitted on the stream itself and stored with it (see
:mod:`baler_ext.codec.entropy` for the range and zstd coders).
"""

from __future__ import annotations

import numpy as np

from baler_ext.codec.entropy import get_coder


def sections_under(sections: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The sections whose names start with ``prefix``, keyed by the rest of the name."""
    return {k[len(prefix) :]: v for k, v in sections.items() if k.startswith(prefix)}


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

    def encode_columns(self, codes: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
        """Each column ``j`` of the int64 matrix ``codes`` as the sections ``prefix/j/...``."""
        return {
            f"{prefix}/{j}/{key}": arr
            for j in range(codes.shape[1])
            for key, arr in self.encode(codes[:, j]).items()
        }

    def decode_columns(
        self, sections: dict[str, np.ndarray], prefix: str, n_cols: int, n: int
    ) -> np.ndarray:
        """Inverse of :meth:`encode_columns`: the (``n``, ``n_cols``) int64 matrix."""
        if n == 0 or n_cols == 0:
            return np.zeros((n, n_cols), np.int64)
        return np.stack(
            [self.decode(sections_under(sections, f"{prefix}/{j}/"), n) for j in range(n_cols)],
            axis=1,
        )

    @staticmethod
    def nbytes(arrays: dict[str, np.ndarray]) -> int:
        return sum(a.nbytes for a in arrays.values())
