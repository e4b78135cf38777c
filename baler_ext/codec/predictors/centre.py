"""The ``centre`` predictor: one constant per column (no model at all)."""

from __future__ import annotations

import numpy as np

from baler_ext.codec.predictors import ChunkState, Prediction, Predictor, register_predictor
from baler_ext.errors import ContainerError


def median_of_finite(x: np.ndarray) -> float:
    """The median of the finite values of ``x`` (0 when there are none).

    The bits of ``np.median`` of those values, from one in-place partition: the upper
    middle value is the ``n // 2``-th smallest, the lower one (``n`` even) the largest
    value before it, and their mean is ``(lo + hi) / 2`` as in ``np.median``. Only
    :math:`\\pm 0` compare equal with different bits, so a zero median (whose sign
    depends on which zero the selection lands on) is left to ``np.median`` itself.
    """
    x = np.asarray(x)
    finite = np.isfinite(x)
    if x.dtype != np.float64:
        v = x[finite]
        return float(np.median(v)) if v.size else 0.0
    v = x[finite] if not finite.all() else np.array(x, order="C")  # a copy to partition
    n = v.size
    if not n:
        return 0.0
    h = n // 2
    v.partition(h)
    hi = v[h]
    with np.errstate(over="ignore"):
        med = hi if n % 2 else (v[:h].max() + hi) / 2
    if med == 0:
        return float(np.median(x[finite]))
    return float(med)


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
