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
#: the cache key of the last fit's Gram matrix (see :func:`_gram`)
_GRAM = "linear/gram"


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
        self, state: ChunkState, with_drift: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The design matrix over ``state.order`` (and its drift), grown incrementally:
        each decoded column's two features are computed once per chunk, not once per
        later column (the columns are F-ordered, so every prefix is a cheap view)."""
        feats = state.cache.get(self.name)
        if feats is None or (with_drift and feats.da is None):
            feats = state.cache[self.name] = _Features(state.n_rows, with_drift)
        for c in state.order[feats.n_columns :]:
            feats.append(state.decoded[c], state.drift[c], self.scales[c])
        m = 1 + 2 * feats.n_columns
        a = feats.a[:, :m]
        da = feats.da[:, :m] if with_drift and feats.da is not None else None
        return a, da

    @staticmethod
    def _abs_features(state: ChunkState) -> np.ndarray:
        """:math:`|A|` of :meth:`_features` (kept beside it by the encoder)."""
        feats = state.cache[LinearPredictor.name]
        assert feats.absa is not None
        return feats.absa[:, : 1 + 2 * feats.n_columns]

    def fit(self, column: str, x: np.ndarray, state: ChunkState) -> dict[str, np.ndarray]:
        step = max(1, len(x) // FIT_ROWS)
        # with the drift features: the encoder's predict (the only caller after a fit)
        # needs them next, from the same cache
        m = self._features(state, True)[0].shape[1]
        a = state.cache[self.name].fit_rows(step, m)  # the rows [::step], C-ordered
        x = x[::step]
        ok = np.isfinite(x) & (np.abs(x) < 1e300)
        beta = np.zeros(a.shape[1])
        if ok.sum() >= a.shape[1]:
            # ridge normal equations: small coefficients keep the drift bound small when
            # features are (nearly) collinear
            # the same C-ordered copies as a[ok], x[ok]; the copy is cheaper than the gather
            a, x = (
                (np.ascontiguousarray(a), np.ascontiguousarray(x)) if ok.all() else (a[ok], x[ok])
            )
            gram = _gram(state, a, ok, step)
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
            b = np.abs(beta)
            # 2 * einsum(da, b) + 1e-15 * m * einsum(|a|, b), in place
            d = np.einsum("ij,j->i", da, b)
            d *= 2
            rnd = np.einsum("ij,j->i", self._abs_features(state), b)
            rnd *= 1e-15 * a.shape[1]
            d += rnd
        return p, d


def _gram(state: ChunkState, a: np.ndarray, ok: np.ndarray, step: int) -> np.ndarray:
    """``np.einsum("ij,ik->jk", a, a)`` bit for bit (a new array), reusing the previous
    fit's Gram matrix of the chunk when it was taken over the same rows.

    einsum accumulates every entry over the rows in order, :math:`G_{jk} = (\\dots((0 +
    a_{0j} a_{0k}) + a_{1j} a_{1k}) + \\dots)`, and so does it for the rows of the new
    columns, ``np.einsum("ik,ij->kj", a[:, k:], a)`` (with the long axis inner, some ten
    times faster than the whole matrix); the features only ever gain columns, so the
    previous fit's Gram matrix is the leading block of this one, and :math:`a_{ij} a_{ik} =
    a_{ik} a_{ij}` makes it exactly symmetric (``tests/codec/test_fast_paths.py``).
    einsum, not BLAS: BLAS sums in another order, and multi-threaded BLAS on tiny products
    is slow under load.
    """
    m = a.shape[1]
    cached = state.cache.get(_GRAM)
    if (
        cached is None
        or cached[0] != step
        or cached[2].shape[0] > m
        or not np.array_equal(cached[1], ok)
    ):
        gram = np.einsum("ij,ik->jk", a, a)
    else:
        k = cached[2].shape[0]
        gram = np.empty((m, m))
        gram[:k, :k] = cached[2]
        new = np.einsum("ik,ij->kj", a[:, k:], a)
        gram[k:, :] = new
        gram[:k, k:] = new[:, :k].T
    state.cache[_GRAM] = (step, ok, gram.copy())
    return gram


class _Features:
    """The linear predictor's features :math:`[1, f_j, f_j^2]` (and their drift bounds
    :math:`[0, \\delta f_j, (2|f_j| + \\delta f_j)\\delta f_j]`) of the columns decoded so
    far, in a column-major buffer that doubles when full."""

    def __init__(self, n_rows: int, with_drift: bool, capacity: int = 33) -> None:
        self.n_columns = 0
        self.a = np.empty((n_rows, capacity), order="F")
        self.a[:, 0] = 1.0
        self.da: np.ndarray | None = None
        self.absa: np.ndarray | None = None
        #: (step, C-ordered copy of a[::step], its filled columns): see fit_rows
        self._fit: tuple[int, np.ndarray, int] | None = None
        if with_drift:
            self.da = np.empty((n_rows, capacity), order="F")
            self.da[:, 0] = 0.0
            self.absa = np.empty((n_rows, capacity), order="F")
            self.absa[:, 0] = 1.0

    def _grow(self) -> None:
        cap = 2 * self.a.shape[1]
        self.a = _widened(self.a, cap)
        if self.da is not None and self.absa is not None:
            self.da = _widened(self.da, cap)
            self.absa = _widened(self.absa, cap)

    def append(self, v: np.ndarray, drift: np.ndarray, scale: float) -> None:
        j = 1 + 2 * self.n_columns
        if j + 2 > self.a.shape[1]:
            self._grow()
        with np.errstate(all="ignore"):
            usable = np.abs(v) < 1e300  # False for inf and NaN
            every = bool(usable.all())
            f = self.a[:, j]
            np.divide(v if every else np.where(usable, v, 0.0), scale, out=f)
            np.multiply(f, f, out=self.a[:, j + 1])
            if self.da is not None and self.absa is not None:
                af = self.absa[:, j]
                np.abs(f, out=af)
                self.absa[:, j + 1] = self.a[:, j + 1]
                df = self.da[:, j]
                np.divide(drift if every else np.where(usable, drift, 0.0), scale, out=df)
                ddf = self.da[:, j + 1]  # (2|f| + df) df, in place
                np.multiply(af, 2.0, out=ddf)
                ddf += df
                ddf *= df
        self.n_columns += 1

    def fit_rows(self, step: int, m: int) -> np.ndarray:
        """``a[::step, :m]`` as a view of a C-ordered copy, kept and grown with the
        columns: the fit's row subset gathers whole rows, not strided cells of every
        column."""
        rows = self._fit
        if rows is None or rows[0] != step:
            n = len(range(0, self.a.shape[0], step))
            rows = self._fit = (step, np.empty((n, self.a.shape[1])), 0)
        _, buf, filled = rows
        if buf.shape[1] < m:
            wider = np.empty((buf.shape[0], self.a.shape[1]))
            wider[:, :filled] = buf[:, :filled]
            buf = wider
        if filled < m:
            buf[:, filled:m] = self.a[::step, filled:m]
        self._fit = (step, buf, max(filled, m))
        return buf[:, :m]


def _widened(a: np.ndarray, columns: int) -> np.ndarray:
    out = np.empty((a.shape[0], columns), order="F")
    out[:, : a.shape[1]] = a
    return out
