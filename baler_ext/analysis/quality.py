"""Fit-quality gates: is a peak fit good enough for its numbers to mean something?

Every fit made by :func:`~baler_ext.analysis.fit.fit_peak` is graded by :func:`assess`:

``failed``
    * the minimum is not valid (MIGRAD or HESSE), or the covariance is inaccurate;
    * the estimated distance to minimum exceeds :data:`MAX_EDM`;
    * a shape parameter (not a yield) is within half an error of a MINUIT limit —
      its HESSE error is then meaningless;
    * the peak **collapsed**: its FWHM is at most :data:`MIN_FWHM_BINS` bin widths,
      i.e. the "peak" is one or two spiky bins (a comb or a spike), not a resolved
      resonance. Such a fit has a tiny HESSE error and would otherwise look like a
      precise measurement.

``poor``
    The fit converged but the model does not describe the data: the p-value of the
    Baker–Cousins deviance, :math:`p = P(\\chi^2_{ndf} \\ge \\chi^2_\\lambda)`, is below
    ``min_p_value`` (``analysis.min_p_value``, default :math:`10^{-3}`). A shift
    measured with a poor reference model mixes the compression effect with the
    misfit; :func:`suggest_shapes` tries every registered peak × background on the
    same histogram and names the combination that fits best.

``good``
    Otherwise.

A yield at zero (e.g. a background yield on a pure-signal sample) is a physical
boundary and is only noted, not failed.

Reference: S. Baker and R. D. Cousins, Nucl. Instrum. Meth. 221 (1984) 437.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from baler_ext.errors import FitError

if TYPE_CHECKING:
    from baler_ext.analysis.fit import FitResult
    from baler_ext.analysis.spec import AnalysisSpec

log = logging.getLogger(__name__)

#: Grades, best first.
QUALITIES: tuple[str, ...] = ("good", "poor", "failed")
#: A fit whose estimated distance to minimum is larger than this is failed.
MAX_EDM = 1e-2
#: A peak whose FWHM is at most this many bin widths has collapsed (failed).
MIN_FWHM_BINS = 2.0
#: Yield parameters (a yield at zero is a physical boundary, not a failure).
_YIELDS = ("n_sig", "n_bkg")


def fwhm(result: FitResult) -> float:
    """The fitted peak's full width at half maximum (from ``result.widths``)."""
    if "fwhm" in result.widths:
        return float(result.widths["fwhm"][0])
    if "sigma" in result.widths:  # crystal ball: the Gaussian core
        from baler_ext.analysis.shapes import FWHM_PER_SIGMA

        return FWHM_PER_SIGMA * float(result.widths["sigma"][0])
    return float(result.width)


def assess(result: FitResult, min_p_value: float = 1e-3) -> tuple[str, list[str]]:
    """Grade a fit ``"good"``, ``"poor"`` or ``"failed"`` and say why.

    Parameters
    ----------
    result
        A finished fit.
    min_p_value
        Below this p-value the fit is ``"poor"``.

    Returns
    -------
    quality, notes
        The grade and one short note per reason (empty for a good fit).
    """
    failed: list[str] = []
    notes: list[str] = []
    if not result.valid:
        failed.append("minimum or covariance not valid")
    if math.isfinite(result.edm) and result.edm > MAX_EDM:
        failed.append(f"EDM {result.edm:.2g} > {MAX_EDM:g}")
    shape_limits = [p for p in result.at_limit if p not in _YIELDS]
    if shape_limits:
        failed.append(f"at a limit: {', '.join(shape_limits)}")
    yield_limits = [p for p in result.at_limit if p in _YIELDS]
    if yield_limits:
        notes.append(f"yield at zero: {', '.join(yield_limits)}")
    bin_width = (result.fit_range[1] - result.fit_range[0]) / max(len(result.counts), 1)
    width = fwhm(result)
    if width <= MIN_FWHM_BINS * bin_width:
        failed.append(
            f"peak collapsed: FWHM {width:.3g} {result.unit} ≤ {MIN_FWHM_BINS:g} bins "
            f"({MIN_FWHM_BINS * bin_width:.3g} {result.unit})"
        )
    if failed:
        return "failed", failed + notes
    if math.isfinite(result.p_value) and result.p_value < min_p_value:
        return "poor", [
            f"χ²/ndf = {result.chi2:.1f}/{result.ndf} = {result.chi2_ndf:.2f}, "
            f"p = {result.p_value:.2g} < {min_p_value:g}",
            *notes,
        ]
    return "good", notes


@dataclass(frozen=True)
class ShapeSuggestion:
    """The best-fitting alternative shapes found by :func:`suggest_shapes`."""

    peak: str
    background: str
    chi2_ndf: float
    p_value: float
    quality: str

    def text(self) -> str:
        """``peak = 'crystal_ball', background = 'poly2' (χ²/ndf 1.08, p = 0.3)``."""
        return (
            f"peak = '{self.peak}', background = '{self.background}' "
            f"(χ²/ndf {self.chi2_ndf:.2f}, p = {self.p_value:.2g})"
        )


def suggest_shapes(values: np.ndarray, spec: AnalysisSpec) -> ShapeSuggestion | None:
    """Fit every registered peak × background to ``values`` and return the best other one.

    The best is the one with the highest p-value among those not ``failed``; ties
    (p-values that underflow to 0) are broken by the lower χ²/ndf. None when no
    other combination fits better than ``spec``'s own.

    Parameters
    ----------
    values
        The fitted variable of the reference (original) sample.
    spec
        The analysis spec; its range and bins are kept.
    """
    from baler_ext.analysis.fit import fit_peak
    from baler_ext.analysis.shapes import background_names, peak_names

    found: list[ShapeSuggestion] = []
    own: ShapeSuggestion | None = None
    quiet = logging.getLogger("baler_ext.analysis.fit")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for peak in peak_names():
            for background in background_names():
                trial = replace(spec, peak=peak, background=background, minos=False)
                try:
                    fit = fit_peak(values, trial)
                except FitError:
                    continue
                s = ShapeSuggestion(peak, background, fit.chi2_ndf, fit.p_value, fit.quality)
                if (peak, background) == (spec.peak, spec.background):
                    own = s
                elif fit.quality != "failed":
                    found.append(s)
    finally:
        quiet.setLevel(level)
    if not found:
        return None
    best = max(found, key=lambda s: (s.p_value, -s.chi2_ndf))
    if own is not None and (best.p_value, -best.chi2_ndf) <= (own.p_value, -own.chi2_ndf):
        return None
    log.info("best-fitting shapes for the reference sample: %s", best.text())
    return best
