r"""Tagger check: the ROC of a score against a truth flag, before and after compression.

A second physics check besides the mass fit: a jet tagger built from compressed
columns (e.g. the N-subjettiness ratio :math:`\tau_{32} = \tau_3/\tau_2` for
hadronic tops, J. Thaler and K. Van Tilburg, JHEP 03 (2011) 015) must separate
signal (``analysis.tagger_truth`` non-zero) from background equally well after
compression. Two numbers summarise the ROC curve:

* the area under it, :math:`\mathrm{AUC} = P(s_\mathrm{sig} > s_\mathrm{bkg}) +
  \tfrac12 P(s_\mathrm{sig} = s_\mathrm{bkg})` (Mann–Whitney form, ties counted
  half: quantisation produces ties);
* the signal efficiency :math:`\varepsilon_s` at the working point where the
  background efficiency is :math:`\varepsilon_b = 1/R`, with
  :math:`R` = ``analysis.tagger_background_rejection`` (linear interpolation
  between ROC points).

Scores are oriented so that larger means more signal-like (``tagger_signal =
"low"`` negates them). Both are computed with per-row weights, so that the paired
bootstrap of :mod:`baler_ext.analysis.bootstrap` can evaluate them on every
replica (one ``bincount`` per class over the distinct score values).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from baler_ext.analysis.bootstrap import PairedSample, PairedStatistic, Values
from baler_ext.analysis.selection import evaluate_expression, selection_mask
from baler_ext.analysis.spec import AnalysisSpec
from baler_ext.errors import ConfigError, FitError

log = logging.getLogger(__name__)


def tagger_arrays(
    data: pd.DataFrame, spec: AnalysisSpec, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Oriented score, truth flag and event key of every selected row with a finite score.

    Raises
    ------
    ConfigError
        The score or truth column is missing, or the truth flag is not numeric.
    """
    keys = np.asarray(keys)
    if spec.selection:
        mask = selection_mask(data, spec.selection)
        data, keys = data.loc[mask], keys[mask]
    score = evaluate_expression(spec.tagger_score, data)
    if spec.tagger_truth not in data:
        raise ConfigError(
            f"analysis.tagger_truth = '{spec.tagger_truth}' is not a column of the table"
        )
    try:
        truth = data[spec.tagger_truth].to_numpy(dtype=np.float64) != 0
    except (TypeError, ValueError):
        raise ConfigError(
            f"analysis.tagger_truth = '{spec.tagger_truth}' is not a numeric flag"
        ) from None
    if spec.tagger_signal == "low":
        score = -score
    finite = np.isfinite(score)
    return score[finite], truth[finite], keys[finite]


class _Roc:
    """A score sample prepared for weighted ROC summaries (distinct values computed once)."""

    def __init__(self, score: np.ndarray, truth: np.ndarray) -> None:
        values, inverse = np.unique(score, return_inverse=True)
        self.n_values = values.size
        self.sig = inverse[truth]
        self.bkg = inverse[~truth]
        self.truth = truth

    def summary(self, weights: np.ndarray, eff_b: float) -> tuple[float, float]:
        """(AUC, signal efficiency at background efficiency ``eff_b``) with per-row weights."""
        s = np.bincount(self.sig, weights=weights[self.truth], minlength=self.n_values)[::-1]
        b = np.bincount(self.bkg, weights=weights[~self.truth], minlength=self.n_values)[::-1]
        s_tot, b_tot = float(s.sum()), float(b.sum())
        if s_tot <= 0 or b_tot <= 0:
            return math.nan, math.nan
        cum_s = np.cumsum(s)
        auc = float(np.sum(b * (cum_s - 0.5 * s)) / (s_tot * b_tot))
        eff_s_curve = np.r_[0.0, cum_s / s_tot]
        eff_b_curve = np.r_[0.0, np.cumsum(b) / b_tot]
        # the ROC is monotone; on flat stretches of eff_b take the highest eff_s
        keep = np.r_[eff_b_curve[1:] != eff_b_curve[:-1], True]
        return auc, float(np.interp(eff_b, eff_b_curve[keep], eff_s_curve[keep]))


class TaggerShifts(PairedStatistic):
    """AUC and signal efficiency at fixed background rejection, on both samples.

    Parameters
    ----------
    before, after
        Oriented scores (``values``) and event indices (``groups``) of both samples.
    truth_before, truth_after
        The truth flag of every value (identical when the flag is stored losslessly).
    background_rejection
        :math:`R`; the working point is :math:`\\varepsilon_b = 1/R`.
    """

    names = ("auc", "signal_efficiency")

    def __init__(
        self,
        before: PairedSample,
        after: PairedSample,
        truth_before: np.ndarray,
        truth_after: np.ndarray,
        background_rejection: float,
    ) -> None:
        for label, truth in (("original", truth_before), ("decompressed", truth_after)):
            n_sig = int(np.count_nonzero(truth))
            if n_sig == 0 or n_sig == truth.size:
                raise FitError(
                    f"tagger check: the {label} sample has no "
                    f"{'signal' if n_sig == 0 else 'background'} rows; check "
                    "analysis.tagger_truth and the selection"
                )
        self.eff_b = 1.0 / background_rejection
        self.rocs = (
            _Roc(before.values, np.asarray(truth_before, bool)),
            _Roc(after.values, np.asarray(truth_after, bool)),
        )
        self.groups = (before.groups, after.groups)
        self.n_background = int(np.count_nonzero(~np.asarray(truth_before, bool)))
        self.n_signal = int(np.count_nonzero(truth_before))

    def _values(self, i: int, weights: np.ndarray) -> Values:
        auc, eff = self.rocs[i].summary(weights, self.eff_b)
        return {"auc": auc, "signal_efficiency": eff}

    def nominal(self) -> tuple[Values, Values]:
        return (
            self._values(0, np.ones(self.groups[0].size)),
            self._values(1, np.ones(self.groups[1].size)),
        )

    def stat_errors(self) -> Values:
        return {"auc": math.nan, "signal_efficiency": math.nan}  # the bootstrap spread

    def replica(self, counts: np.ndarray) -> tuple[Values, Values] | None:
        before = self._values(0, counts[self.groups[0]].astype(np.float64))
        after = self._values(1, counts[self.groups[1]].astype(np.float64))
        if not all(math.isfinite(v) for v in (*before.values(), *after.values())):
            return None
        return before, after


def tagger_verdict(auc: dict[str, float], eff: dict[str, float], spec: AnalysisSpec) -> str:
    """One line for the tagger check from the ``auc`` and ``signal_efficiency`` shifts.

    Each is given as the dict of a :class:`~baler_ext.analysis.bootstrap.PairedShift`.
    """

    def part(sh: dict[str, float]) -> str:
        sp = sh.get("sigma_paired")
        err = f" ± {sp:.4f}" if isinstance(sp, float) and math.isfinite(sp) else ""
        ns = sh.get("n_sigma_paired")
        sig = f" ({ns:.1f}σ paired)" if isinstance(ns, float) and math.isfinite(ns) else ""
        return f"{sh['before']:.4f} → {sh['after']:.4f} (Δ {sh['delta']:+.4f}{err}){sig}"

    side = "low" if spec.tagger_signal == "low" else "high"
    return (
        f"tagger {spec.tagger_score} ({side} = signal) vs {spec.tagger_truth}: AUC "
        f"{part(auc)}; signal efficiency at background rejection "
        f"{spec.tagger_background_rejection:g}: {part(eff)}"
    )
