r"""Autoencoder anomaly scores measured against a reference sample, ROC curve and AUC.

An autoencoder trained on a reference sample reconstructs rows like it well and rows
unlike it badly (the reconstruction-error anomaly detection of, e.g., Farina, Nakai &
Shih, "Searching for New Physics with Deep Autoencoders", PRD 101 (2020) 075021,
arXiv:1808.08992). The score of row :math:`i` is

.. math::

    s_i = \frac{1}{C'}\sum_{c:\,\sigma_c > 0}\left(\frac{\hat x_{ic} - x_{ic}}{\sigma_c}\right)^2,

with :math:`\sigma_c` the standard deviation (``ddof=0``) of column :math:`c` in the
**reference** sample, so a test sample is scored on the reference's scale (normalising
by the test sample's own :math:`\sigma` would shrink the scores exactly when the test
sample is wider, i.e. anomalous).

With a truth flag, :func:`roc_curve` gives the true- and false-positive rates of the
cut :math:`s > t` at every distinct score :math:`t`, and :func:`roc_auc` the area under
it, computed as the Mann–Whitney statistic
:math:`\mathrm{AUC} = P(s_{\rm anomalous} > s_{\rm normal}) + \tfrac12 P(=)`
(Hanley & McNeil, Radiology 143 (1982) 29), equal to the trapezoidal area of the curve.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from baler_ext.errors import InputDataError


def reference_sigma(reference: np.ndarray) -> np.ndarray:
    """Per-column standard deviation (``ddof=0``) of the reference matrix."""
    return np.asarray(reference, dtype=np.float64).std(axis=0)


def anomaly_scores(original: np.ndarray, restored: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per-row score :math:`s_i` (module docstring) with the reference's ``sigma``.

    Parameters
    ----------
    original, restored
        ``(rows, columns)`` matrices in the columns' units.
    sigma
        Reference standard deviation per column; columns with ``sigma == 0`` are left out.

    Returns
    -------
    numpy.ndarray
        One score per row (``+inf`` where a residual is not finite).
    """
    keep = np.asarray(sigma) > 0
    if not keep.any():
        raise InputDataError("every column is constant in the reference: no anomaly score")
    r = (np.asarray(restored, float) - np.asarray(original, float))[:, keep] / sigma[keep]
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.mean(r**2, axis=1)
    return np.where(np.isfinite(s), s, np.inf)


def _check(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(truth).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise InputDataError(f"{s.size} scores for {y.size} truth flags; they must match")
    if y.all() or not y.any():
        raise InputDataError("the truth flag marks no row (or every row) as anomalous: no ROC")
    return s, y


def roc_curve(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates of ``score >= t`` for every distinct score ``t``.

    Returns
    -------
    fpr, tpr, thresholds
        Increasing rates starting at (0, 0) (threshold ``+inf``) and ending at (1, 1).
    """
    s, y = _check(scores, truth)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    return fpr, tpr, np.r_[np.inf, s[last_of_tie]]


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve, by the Mann–Whitney rank statistic (ties count ½)."""
    s, y = _check(scores, truth)
    ranks = rankdata(s)  # average ranks of ties
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
