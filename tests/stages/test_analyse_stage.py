"""The analyse stage end to end: fits before/after on files read from disk."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baler_ext.errors import ConfigError, FitError, ProjectError


@pytest.fixture
def peak_parquet(tmp_path):
    """A top-like mass peak on a falling background, with pt/eta columns."""
    rng = np.random.default_rng(11)
    n_sig, n_bkg = 6000, 3000
    mass = np.concatenate([rng.normal(173.0, 9.0, n_sig), 100 + rng.exponential(60.0, n_bkg)])
    pt = 400 + rng.exponential(80.0, mass.size)
    eta = rng.uniform(-2, 2, mass.size)
    path = tmp_path / "peak.parquet"
    pq.write_table(
        pa.table(
            {"mass": mass, "pt": pt, "eta": eta, "event": np.arange(mass.size, dtype=np.int32)}
        ),
        path,
    )
    return path


ANALYSIS = {
    "variable": "column",
    "column": "mass",
    "fit_range": [120.0, 230.0],
    "bins": 44,
    "peak": "gauss",
    "background": "exp",
}


def test_all_ends_with_the_fit_comparison(cli, make_project, peak_parquet):
    projects, name = make_project(
        peak_parquet, analysis=ANALYSIS, training={"epochs": 8, "max_rows": 9000}
    )
    assert cli(projects, name, "all") == 0
    out = projects / name / "output" / "analysis"
    report = json.loads((out / "analysis.json").read_text())
    before = report["before"]
    assert abs(before["mass"] - 173.0) < 3 * before["mass_err"] + 0.3
    assert before["width"] > 0 and report["after"]["width"] > 0
    assert (out / "analysis.png").stat().st_size > 1000
    assert "compression moved the top mass by" in (out / "analysis.md").read_text()


def test_lossless_restoration_gives_zero_shift(cli, make_project, peak_parquet):
    # mass passed through losslessly: the two fits must agree exactly
    projects, name = make_project(peak_parquet, analysis=ANALYSIS, data={"passthrough": ["mass"]})
    assert cli(projects, name, "all") == 0
    report = json.loads((projects / name / "output" / "analysis" / "analysis.json").read_text())
    assert report["before"]["mass"] == report["after"]["mass"]
    assert report["comparison"]["delta_mass"] == 0.0


def test_destroyed_peak_is_reported_as_a_failure(cli, make_project, peak_parquet, caplog):
    projects, name = make_project(peak_parquet, analysis=ANALYSIS, data={"passthrough": ["mass"]})
    assert cli(projects, name, "all") == 0
    restored = projects / name / "output" / "decompressed" / "peak.parquet"
    table = pq.read_table(restored)
    flat = np.full(table.num_rows, 500.0)  # every mass moved out of the fit range
    pq.write_table(table.set_column(0, "mass", pa.array(flat)), restored)
    with caplog.at_level(logging.ERROR):
        assert cli(projects, name, "analyse") == FitError.exit_code
    assert "fit of the decompressed sample failed" in caplog.text
    md = (projects / name / "output" / "analysis" / "analysis.md").read_text()
    assert "fit failed" in md


def test_analyse_needs_its_section_and_the_earlier_stages(cli, make_project, peak_parquet, caplog):
    projects, name = make_project(peak_parquet)
    with caplog.at_level(logging.ERROR):
        assert cli(projects, name, "analyse") == ConfigError.exit_code
    assert "no [analysis] section" in caplog.text
    projects, name = make_project(peak_parquet, name="q", analysis=ANALYSIS)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert cli(projects, name, "analyse") == ProjectError.exit_code
    assert "--mode compress' first" in caplog.text


def test_paired_errors_quality_and_tagger_end_to_end(cli, make_project, tmp_path):
    """Events of two jets, a tagger score and a truth flag: the full report, from disk."""
    rng = np.random.default_rng(5)
    n = 4000
    matched = rng.uniform(size=n) < 0.7
    mass = np.where(matched, rng.normal(173.0, 10.0, n), 120 + rng.exponential(50.0, n))
    tau2 = rng.uniform(0.1, 0.4, n)
    tau32 = np.where(matched, rng.beta(3, 5, n), rng.beta(5, 3, n))
    path = tmp_path / "jets.parquet"
    pq.write_table(
        pa.table(
            {
                "mass": mass,
                "tau2": tau2,
                "tau3": tau32 * tau2,
                "pt": 400 + rng.exponential(80.0, n),
                "event": np.repeat(np.arange(n // 2), 2).astype(np.int32),
                "matched": matched.astype(np.int32),
            }
        ),
        path,
    )
    analysis = {
        **ANALYSIS,
        "bootstrap_replicas": 40,
        "tagger_score": "tau3/tau2",
        "tagger_truth": "matched",
        "tagger_signal": "low",
    }
    projects, name = make_project(
        path,
        analysis=analysis,
        compression={"mode": "bounded", "bounds": {"default": {"rel": 1e-2}}},
        training={"epochs": 1},
    )
    for mode in ("train", "compress", "decompress", "analyse"):
        assert cli(projects, name, mode) == 0, mode
    out = projects / name / "output" / "analysis"
    report = json.loads((out / "analysis.json").read_text())
    comp = report["comparison"]
    assert comp["error_method"].startswith("paired bootstrap (40 replicas over events ('event')")
    quad = np.hypot(report["before"]["mass_err"], report["after"]["mass_err"])
    assert 0 < comp["delta_mass_err"] < 0.5 * quad  # same events: far below the quadrature sum
    assert comp["delta_mass_err"] == comp["shifts"]["mass"]["sigma_paired"]
    for key in ("auc", "signal_efficiency"):
        shift = comp["shifts"][key]
        assert shift["replicas"] == 40 and shift["sigma_paired"] >= 0
    assert 0.65 < comp["shifts"]["auc"]["before"] < 1.0
    for fit in ("before", "after"):
        assert report[fit]["quality"] in ("good", "poor", "failed")
        assert 0.0 <= report[fit]["p_value"] <= 1.0
    md = (out / "analysis.md").read_text()
    assert "## Shifts with paired errors" in md and "## Tagger check" in md
    assert "| p-value | EDM | at limit |" in md
