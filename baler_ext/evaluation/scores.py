r"""The two per-column error summaries used to compare runs, with distinct names.

For one column with original values :math:`x_i`, reconstructed :math:`\hat x_i` and
residuals :math:`r_i = \hat x_i - x_i`, :math:`i = 1..N`:

* ``rel_rms`` (relative RMS) :math:`= \mathrm{rms}(r) / \mathrm{rms}(x)`, with
  :math:`\mathrm{rms}(x) = \sqrt{\frac1N\sum_i x_i^2}`: the residual against the
  column's magnitude (the definition of :mod:`baler_ext.evaluation.metrics`). It
  is small for a column far from zero however wide its distribution is;
* ``rms_sigma`` (σ-normalised RMS) :math:`= \mathrm{rms}(r) / \sigma_x`, with
  :math:`\sigma_x` the column's standard deviation (``ddof=0``): the residual
  against the column's spread, 1 for a reconstruction that outputs the column
  mean. This one is comparable across columns, losses, normalisations and model
  families, and is what ``--mode scan`` and ``--mode search`` rank on by default.

Both are NaN where the denominator is 0 (an all-zero or a constant column). A
per-value ratio :math:`\sqrt{\langle (r_i/x_i)^2\rangle}` is deliberately absent:
it diverges on columns with values near zero (it reached :math:`1.5\times10^{14}`
on the jets' ``eta``); :func:`~baler_ext.evaluation.metrics.column_metrics` gives a
masked response for that question instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def rel_rms(original: np.ndarray, restored: np.ndarray) -> float:
    r""":math:`\mathrm{rms}(\hat x - x) / \mathrm{rms}(x)`; NaN for an all-zero column."""
    x = np.asarray(original, dtype=np.float64)
    rms_x = float(np.sqrt(np.mean(x**2)))
    rms_r = float(np.sqrt(np.mean((np.asarray(restored, dtype=np.float64) - x) ** 2)))
    return rms_r / rms_x if rms_x > 0 else math.nan


def rms_sigma(original: np.ndarray, restored: np.ndarray) -> float:
    r""":math:`\mathrm{rms}(\hat x - x) / \sigma_x`; NaN for a constant column."""
    x = np.asarray(original, dtype=np.float64)
    sigma = float(np.std(x))
    rms_r = float(np.sqrt(np.mean((np.asarray(restored, dtype=np.float64) - x) ** 2)))
    return rms_r / sigma if sigma > 0 else math.nan


def column_scores(
    original: np.ndarray, restored: np.ndarray, columns: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per column of two ``(rows, columns)`` matrices: ``rms``, ``rel_rms``, ``rms_sigma``.

    Parameters
    ----------
    original, restored
        Matrices of the same shape, in the columns' physical units.
    columns
        The column names, in order.

    Returns
    -------
    dict
        ``{column: {"rms": ..., "rel_rms": ..., "rms_sigma": ...}}``.
    """
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(columns):
        x, y = original[:, j], restored[:, j]
        out[name] = {
            "rms": float(np.sqrt(np.mean((y - x) ** 2))),
            "rel_rms": rel_rms(x, y),
            "rms_sigma": rms_sigma(x, y),
        }
    return out


def mean_rms_sigma(scores: dict[str, dict[str, float]]) -> float:
    r"""Mean ``rms_sigma`` over the columns where it is defined (non-constant ones).

    .. math:: \overline{\mathrm{rms}_\sigma} = \frac1{C'}\sum_{c:\,\sigma_c>0}
        \mathrm{rms}(r_c) / \sigma_c
    """
    values = [s["rms_sigma"] for s in scores.values() if math.isfinite(s["rms_sigma"])]
    return float(np.mean(values)) if values else math.nan
