"""compare_fits verdict and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from baler_ext.analysis import (
    AnalysisSpec,
    Comparison,
    FitResult,
    compare_fits,
    fit_peak,
    write_report,
)


def synthetic(mass: float, mass_err: float, width: float, width_err: float) -> FitResult:
    edges = np.linspace(120.0, 230.0, 56).tolist()
    return FitResult(
        peak="gauss",
        background="poly1",
        fit_range=[120.0, 230.0],
        unit="GeV",
        mass=mass,
        mass_err=mass_err,
        width=width,
        width_err=width_err,
        width_name="sigma",
        widths={"sigma": [width, width_err]},
        yields={"signal": 1000.0, "background": 500.0},
        yield_errors={"signal": 40.0, "background": 30.0},
        chi2=52.0,
        ndf=50,
        chi2_pearson=51.0,
        valid=True,
        edm=1e-6,
        n_entries=1500,
        sum_weights=1500.0,
        parameters={},
        edges=edges,
        counts=[0.0] * 55,
        variances=[0.0] * 55,
    )


def test_verdict_format() -> None:
    before = synthetic(172.50, 0.12, 8.00, 0.14)
    after = synthetic(172.42, 0.12, 8.05, 0.14)
    comparison = compare_fits(before, after)
    assert comparison.verdict() == (
        "compression moved the top mass by \u22120.08 \u00b1 0.17 GeV (0.5\u03c3 quadrature, "
        "0.67 \u03c3_stat) and the width by +0.05 \u00b1 0.20 GeV (0.3\u03c3 quadrature, "
        "0.36 \u03c3_stat)"
    )
    assert comparison.delta_mass == pytest.approx(-0.08)
    assert comparison.delta_mass_err == pytest.approx(np.hypot(0.12, 0.12))
    assert comparison.mass_shift_sigma == pytest.approx(0.08 / np.hypot(0.12, 0.12))
    assert comparison.both_valid


def test_verdict_precision_follows_error_and_quantity() -> None:
    comparison = compare_fits(
        synthetic(80.0, 1.2, 10.0, 2.0), synthetic(83.1, 1.2, 9.0, 2.0), quantity="W mass"
    )
    assert comparison.verdict() == (
        "compression moved the W mass by +3.1 \u00b1 1.7 GeV (1.8\u03c3 quadrature, "
        "2.58 \u03c3_stat) and the width by \u22121.0 \u00b1 2.8 GeV (0.4\u03c3 quadrature, "
        "0.50 \u03c3_stat)"
    )


def test_mismatched_widths_refused() -> None:
    other = synthetic(172.0, 0.1, 8.0, 0.1)
    other.width_name = "Gamma"
    with pytest.raises(ValueError, match="same peak shape"):
        compare_fits(synthetic(172.0, 0.1, 8.0, 0.1), other)


def test_write_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    spec = AnalysisSpec(background="exp")
    values = np.r_[rng.normal(173.0, 8.0, 3000), 120.0 + rng.exponential(50.0, 4000)]
    before = fit_peak(values, spec)
    # a "decompressed" copy: smeared and slightly shifted
    after = fit_peak(values * 1.002 + rng.normal(0.0, 1.0, values.size), spec)
    comparison = compare_fits(before, after, quantity=spec.quantity)
    paths = write_report(tmp_path / "analysis", before, after, comparison, spec, extra={"a": 1})
    assert set(paths) == {"json", "markdown", "plot"}
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    data = json.loads(paths["json"].read_text("utf-8"))
    assert FitResult.from_dict(data["before"]) == before
    assert FitResult.from_dict(data["after"]) == after
    assert data["verdict"] == comparison.verdict()
    assert data["spec"] == spec.to_dict()
    assert data["extra"] == {"a": 1}
    fields = {k: v for k, v in data["comparison"].items() if k not in ("verdict", "quality")}
    assert Comparison(**fields) == comparison

    md = paths["markdown"].read_text("utf-8")
    assert "| sample | mass ± err [GeV] | width (σ) ± err [GeV] | χ²/ndf |" in md
    assert "| original |" in md and "| decompressed |" in md
    assert comparison.verdict() in md


def test_write_report_without_plot(tmp_path: Path) -> None:
    before = synthetic(172.50, 0.12, 8.00, 0.14)
    comparison = compare_fits(before, before)
    paths = write_report(tmp_path, before, before, comparison, AnalysisSpec(), plot=False)
    assert "plot" not in paths
    assert "(0.0σ quadrature, 0.00 σ_stat)" in comparison.verdict()
