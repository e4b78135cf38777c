"""Fit-quality gates: poor fits are named, collapsed peaks and parameters at limits fail."""

from __future__ import annotations

import dataclasses

import numpy as np

from baler_ext.analysis import AnalysisSpec, compare_fits, fit_peak
from baler_ext.analysis.quality import assess, suggest_shapes

LO, HI = 120.0, 230.0


def flat(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(LO, HI, n)


def test_good_fit_is_good() -> None:
    rng = np.random.default_rng(1)
    fit = fit_peak(np.r_[rng.normal(173.0, 10.0, 4000), flat(rng, 3000)], AnalysisSpec())
    assert fit.quality == "good", fit.quality_notes
    assert 0.001 < fit.p_value <= 1.0
    assert fit.at_limit == []


def test_collapsed_peak_fails() -> None:
    """A spike (all signal in one bin, as a quantisation comb makes) is not a measurement."""
    rng = np.random.default_rng(2)
    values = np.r_[175.0 + rng.normal(0.0, 0.8, 3000), flat(rng, 3000)]
    fit = fit_peak(values, AnalysisSpec())
    assert fit.quality == "failed"
    assert any("collapsed" in n for n in fit.quality_notes)
    # the HESSE error alone would have made it look precise
    assert fit.width_err < 0.05 * fit.width


def test_poor_fit_named_in_verdict_with_a_better_shape() -> None:
    """A Breit-Wigner peak fitted with a Gaussian: converges, but p ≈ 0 -> poor."""
    rng = np.random.default_rng(3)
    bw = 173.0 + 6.0 * rng.standard_cauchy(120_000)
    values = np.r_[bw[(bw > LO) & (bw < HI)][:60_000], flat(rng, 20_000)]
    spec = AnalysisSpec(peak="gauss", background="poly1")
    fit = fit_peak(values, spec)
    assert fit.valid and fit.quality == "poor"
    assert fit.p_value < spec.min_p_value
    found = suggest_shapes(values, spec)
    assert found is not None
    assert found.peak in ("breit_wigner", "voigt") and found.p_value > fit.p_value
    verdict = compare_fits(fit, fit, suggestion=found.text()).verdict()
    assert "reference fit is poor" in verdict and f"peak = '{found.peak}'" in verdict


def test_shape_parameter_at_limit_fails_but_zero_yield_does_not() -> None:
    rng = np.random.default_rng(4)
    fit = fit_peak(np.r_[rng.normal(173.0, 10.0, 4000), flat(rng, 3000)], AnalysisSpec())
    at_shape = dataclasses.replace(fit, at_limit=["slope"])
    quality, notes = assess(at_shape)
    assert quality == "failed" and "slope" in notes[0]
    at_yield = dataclasses.replace(fit, at_limit=["n_bkg"])
    quality, notes = assess(at_yield)
    assert quality == "good" and "yield at zero" in notes[0]


def test_large_edm_and_invalid_fail() -> None:
    rng = np.random.default_rng(5)
    fit = fit_peak(np.r_[rng.normal(173.0, 10.0, 4000), flat(rng, 3000)], AnalysisSpec())
    assert assess(dataclasses.replace(fit, edm=0.5))[0] == "failed"
    assert assess(dataclasses.replace(fit, valid=False))[0] == "failed"
