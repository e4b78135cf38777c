"""Per-column normalisation fitted on the training split only.

The fitted parameters are saved with the model and reused unchanged by compress
and decompress. (Baler recomputed min/max at compress time and decompressed with
the training values, which shifts every reconstructed value; not here.)

Constant columns (zero spread in the training split) are not given to the network:
their value is stored here and restored exactly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from baler_ext.errors import InputDataError

log = logging.getLogger(__name__)


@dataclass
class Normaliser:
    """Affine map ``z = (x - shift) / scale`` per column, plus constant columns.

    Attributes
    ----------
    columns
        All compressed columns, in order.
    method
        ``"standard"`` (shift = mean, scale = std) or ``"minmax"`` (shift = min,
        scale = max - min).
    shift, scale
        Per non-constant column, in the order of :attr:`active`.
    constants
        Column name -> the value it held in every training row.
    """

    columns: list[str]
    method: str
    shift: list[float]
    scale: list[float]
    constants: dict[str, float]

    @property
    def active(self) -> list[str]:
        """Columns the network sees (the non-constant ones)."""
        return [c for c in self.columns if c not in self.constants]

    @property
    def active_index(self) -> np.ndarray:
        return np.array(
            [i for i, c in enumerate(self.columns) if c not in self.constants], dtype=np.int64
        )

    @classmethod
    def fit(cls, values: np.ndarray, columns: list[str], method: str) -> Normaliser:
        """Fit on a ``(n_rows, n_columns)`` training matrix."""
        lo, hi = values.min(axis=0), values.max(axis=0)
        constants = {c: float(lo[i]) for i, c in enumerate(columns) if lo[i] == hi[i]}
        if constants:
            log.warning(
                "constant columns (stored as one value, not given to the network): %s",
                ", ".join(f"{c}={v:g}" for c, v in constants.items()),
            )
        idx = [i for i, c in enumerate(columns) if c not in constants]
        x = values[:, idx]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: reported below
            if method == "standard":
                shift, scale = x.mean(axis=0), x.std(axis=0)
            elif method == "minmax":
                shift, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
            else:
                raise ValueError(f"unknown normalisation {method!r}")
            bad = [
                columns[i]
                for i, s, k in zip(idx, shift, scale, strict=True)
                if not (np.isfinite(s) and np.isfinite(k) and k > 0)
            ]
        if bad:
            raise InputDataError(
                f"the {method} normalisation of {', '.join(bad)} overflows float64 (values "
                "near 1e300?); rescale those columns, exclude them (data.exclude) or list "
                "them in data.passthrough to store them losslessly"
            )
        return cls(list(columns), method, shift.tolist(), scale.tolist(), constants)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Full matrix -> normalised matrix of the active columns."""
        x = values[:, self.active_index]
        return (x - np.asarray(self.shift)) / np.asarray(self.scale)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Normalised active columns -> full matrix, constants filled in."""
        out = np.empty((z.shape[0], len(self.columns)), dtype=np.float64)
        out[:, self.active_index] = z * np.asarray(self.scale) + np.asarray(self.shift)
        for i, c in enumerate(self.columns):
            if c in self.constants:
                out[:, i] = self.constants[c]
        return out

    def varying_constants(self, values: np.ndarray) -> list[str]:
        """Constant-in-training columns that take other values in ``values``."""
        return [
            c
            for i, c in enumerate(self.columns)
            if c in self.constants and np.any(values[:, i] != self.constants[c])
        ]

    def to_dict(self) -> dict:
        return {
            "columns": self.columns,
            "method": self.method,
            "shift": self.shift,
            "scale": self.scale,
            "constants": self.constants,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Normaliser:
        return cls(d["columns"], d["method"], d["shift"], d["scale"], d["constants"])

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> Normaliser:
        return cls.from_dict(json.loads(path.read_text()))
