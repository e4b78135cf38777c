"""The ``linear`` predictor: least squares on the columns decoded before it."""

from __future__ import annotations

import numpy as np

from baler_ext.codec.predictors import ChunkState, Prediction, Predictor, register_predictor
from baler_ext.errors import ContainerError

#: the linear predictor is fitted only with this many rows per coefficient
MIN_ROWS_PER_FEATURE = 8
#: rows used to fit the linear predictor of a column (evenly spaced)
FIT_ROWS = 8192
#: ridge strength of that fit, relative to the mean diagonal of the Gram matrix
RIDGE = 1e-6


@register_predictor("linear")
class LinearPredictor(Predictor):
    """:math:`p = A\\beta` with :math:`A = [1, f_j, f_j^2]` over the previously decoded
    columns :math:`j`, :math:`f_j = \\hat x_j / M_j` (:math:`M_j` the column's
    magnitude); :math:`\\beta` is a ridge least-squares fit on the chunk, stored as side
    information (``lin/<column>`` in the container).

    Drift: any summation order errs by at most :math:`J u \\sum_j|\\beta_j A_j|`, and a
    drift :math:`\\delta A` of the features adds :math:`\\sum_j |\\beta_j| \\delta A_j`;
    the bound is :math:`d = 2 \\sum_j |\\beta_j| \\delta A_j + 10^{-15} J \\sum_j
    |\\beta_j A_j|`.
    """

    name = "linear"

    def __init__(self, scales: dict[str, float]) -> None:
        self.scales = scales

    @staticmethod
    def usable(n_rows: int, n_previous: int) -> bool:
        """Whether a chunk has enough rows to fit on ``n_previous`` columns."""
        return n_previous > 0 and n_rows >= MIN_ROWS_PER_FEATURE * (1 + 2 * n_previous)

    def _features(
        self, state: ChunkState, with_drift: bool, rows: slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray | None]:
        previous = state.order
        n = len(state.decoded[previous[0]][rows])
        cols, dcols = [np.ones(n)], [np.zeros(n)]
        with np.errstate(all="ignore"):
            for c in previous:
                scale = self.scales[c]
                v = state.decoded[c][rows]
                usable = np.isfinite(v) & (np.abs(v) < 1e300)
                f = np.where(usable, v, 0.0) / scale
                cols += [f, f * f]
                if with_drift:
                    df = np.where(usable, state.drift[c][rows], 0.0) / scale
                    dcols += [df, (2 * np.abs(f) + df) * df]
        return np.column_stack(cols), (np.column_stack(dcols) if with_drift else None)

    def fit(self, column: str, x: np.ndarray, state: ChunkState) -> dict[str, np.ndarray]:
        rows = slice(None, None, max(1, len(x) // FIT_ROWS))
        a, _ = self._features(state, False, rows)
        x = x[rows]
        ok = np.isfinite(x) & (np.abs(x) < 1e300)
        beta = np.zeros(a.shape[1])
        if ok.sum() >= a.shape[1]:
            # ridge normal equations: small coefficients keep the drift bound small when
            # features are (nearly) collinear
            a, x = a[ok], x[ok]
            # einsum, not BLAS: multi-threaded BLAS on tiny products is slow under load
            gram = np.einsum("ij,ik->jk", a, a)
            gram[np.diag_indices_from(gram)] += RIDGE * (np.trace(gram) / len(gram) + 1e-300)
            with np.errstate(all="ignore"):
                try:
                    sol = np.linalg.solve(gram, np.einsum("ij,i->j", a, x))
                except np.linalg.LinAlgError:
                    sol = beta
            if np.all(np.isfinite(sol)):
                beta = sol
        return {"beta": beta}

    def predict(
        self, column: str, side: dict[str, np.ndarray], state: ChunkState, with_drift: bool = True
    ) -> Prediction:
        beta = side["beta"]
        a, da = self._features(state, with_drift)
        if beta.shape != (a.shape[1],):
            raise ContainerError(
                "a linear predictor has the wrong number of coefficients; the file is damaged"
            )
        with np.errstate(all="ignore"):
            p = np.einsum("ij,j->i", a, beta)
            if da is None:
                return p, None
            d = 2 * np.einsum("ij,j->i", da, np.abs(beta)) + 1e-15 * a.shape[1] * np.einsum(
                "ij,j->i", np.abs(a), np.abs(beta)
            )
        return p, d
