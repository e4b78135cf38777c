"""The embedded example project: its data is what the README promises, and its config runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from baler_ext.cli import main
from baler_ext.config import load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "projects" / "example"


def test_example_data_is_a_generated_jet_sample():
    path = EXAMPLE / "data" / "ttbar_jets.parquet"
    assert path.stat().st_size <= 5 * 1024**2
    pf = pq.ParquetFile(path)
    assert pf.metadata.num_rows >= 20_000
    names = pf.schema_arrow.names
    for col in ("pt", "eta", "phi", "mass", "energy", "tau1", "tau2", "tau3", "top_matched"):
        assert col in names
    meta = json.loads(pf.schema_arrow.metadata[b"baler_ext.generator"])
    assert meta["seed"] == 2026


def test_example_config_runs_every_stage(tmp_path):
    project = tmp_path / "projects" / "example"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("output"))
    cfg = load_config(project / "config.toml")
    assert cfg.analysis is not None and cfg.compression.mode == "bounded"
    args = [
        "--projects-dir",
        str(tmp_path / "projects"),
        "--project",
        "example",
        "--mode",
        "all",
        "-q",
        "--set",
        "training.epochs=1",
        "--set",
        "training.max_rows=2000",
    ]
    assert main(args) == 0
    out = project / "output"
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    # bounded at P1 (1 % on mass): the peak must not move by a sizeable fraction of the
    # measurement's statistical error (the smearing by the bound is measurable with the paired
    # error, which is far smaller than the statistical one: same events in both samples)
    comparison = analysis["comparison"]
    assert abs(comparison["mass_shift_stat"]) < 0.5
    # the width does broaden: a uniform error of ±1 % adds (0.01 m)^2 / 3 in quadrature,
    # comparable to the width's statistical error on 20k jets; it must stay of that order
    assert abs(comparison["width_shift_stat"]) < 2.0
    mass = comparison["shifts"]["mass"]
    assert mass["sigma_paired"] < 0.5 * mass["sigma_stat"]
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["bounds"]["n_violations"] == 0
