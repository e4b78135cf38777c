"""The ``centre`` predictor: one constant per column (no model at all)."""

from __future__ import annotations

import numpy as np

from baler_ext.codec.predictors import ChunkState, Prediction, Predictor, register_predictor
from baler_ext.errors import ContainerError


def median_of_finite(x: np.ndarray) -> float:
    """The median of the finite values of ``x`` (0 when there are none)."""
    v = x[np.isfinite(x)]
    return float(np.median(v)) if v.size else 0.0


@register_predictor("centre")
class CentrePredictor(Predictor):
    """Predict every value of a column by one constant :math:`c`.

    The encoder stores :math:`c` (the chunk's median, or a fixed ``anchor`` such as the
    learned probability model's, so that the codes of every chunk lie on one grid).
    """

    name = "centre"

    def __init__(self, anchor: float | None = None) -> None:
        self.anchor = anchor

    def fit(self, column: str, x: np.ndarray, state: ChunkState) -> dict[str, np.ndarray]:
        c = self.anchor if self.anchor is not None else median_of_finite(x)
        return {"centre": np.array([c])}

    def predict(
        self, column: str, side: dict[str, np.ndarray], state: ChunkState, with_drift: bool = True
    ) -> Prediction:
        c = side.get("centre")
        if c is None or c.shape != (1,):
            raise ContainerError(
                f"the centre of column '{column}' is missing or malformed; the file is damaged"
            )
        return np.full(state.n_rows, float(c[0])), None
