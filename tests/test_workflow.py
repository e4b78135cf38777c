"""Workflows: several configurations of one dataset -> one comparison table."""

from __future__ import annotations

import csv
import logging

import pytest

from baler_ext.cli import main
from baler_ext.config import toml_value
from baler_ext.errors import ConfigError
from baler_ext.workflow import load_workflow


def write_workflow(tmp_path, base, runs, extra=""):
    lines = [f'base = "{base}"', 'output = "out"', 'rms_columns = ["pt", "mass"]', extra]
    for label, overrides in runs:
        lines += [
            "[[run]]",
            f'label = "{label}"',
            "set = {" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in overrides.items()) + "}",
        ]
    path = tmp_path / "wf.toml"
    path.write_text("\n".join(lines))
    return path


def test_compare_two_configurations(make_project, flat_parquet, tmp_path):
    projects, name = make_project(
        flat_parquet,
        analysis={
            "column": "mass",
            "fit_range": [120.0, 230.0],
            "bins": 30,
            "peak": "gauss",
            "background": "poly0",
        },
    )
    wf = write_workflow(
        tmp_path,
        projects / name / "config.toml",
        [
            ("lossless_mass", {"data.passthrough": ["mass"]}),
            ("sae_z2", {"model.latent_dim": 2, "training.epochs": 3}),
        ],
    )
    assert main(["--workflow", str(wf), "-q"]) == 0
    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["label"] for r in rows] == ["lossless_mass", "sae_z2"]
    lossless = rows[0]
    assert float(lossless["rel_rms_mass"]) == 0.0
    assert float(lossless["mass"]) == float(lossless["mass_before"])
    assert float(rows[1]["rel_rms_pt"]) > 0
    for r in rows:
        assert float(r["ratio_payload"]) > float(r["ratio_with_decoder"]) > 0
    md = (out / "comparison.md").read_text()
    assert "| original |" in md and "| sae_z2 |" in md
    assert (out / "comparison.png").stat().st_size > 1000
    assert (out / "sae_z2" / "config.toml").is_file()


def test_bad_workflow_files(tmp_path, caplog):
    path = tmp_path / "wf.toml"
    path.write_text('base = "x.toml"\nruns = []\n')
    with pytest.raises(ConfigError, match="did you mean 'run'"):
        load_workflow(path)
    path.write_text('base = "x.toml"\n[[run]]\nlabel = "a b"\n')
    with pytest.raises(ConfigError, match="must be letters"):
        load_workflow(path)
    with caplog.at_level(logging.ERROR):
        assert main(["--workflow", str(tmp_path / "absent.toml"), "-q"]) == ConfigError.exit_code
    assert "does not exist" in caplog.text


def test_command_line_overrides_reach_every_run(make_project, flat_parquet, tmp_path):
    import tomllib

    projects, name = make_project(flat_parquet, training={"epochs": 3})
    wf = write_workflow(
        tmp_path,
        projects / name / "config.toml",
        [
            ("a", {"model.latent_dim": 2, "training.epochs": 2}),
            ("b", {"model.latent_dim": 3}),
        ],
    )
    assert (
        main(
            [
                "--workflow",
                str(wf),
                "--set",
                "training.epochs=1",
                "--device",
                "cpu",
                "--set",
                "model.hidden=[8]",
                "-q",
            ]
        )
        == 0
    )
    for label in ("a", "b"):
        cfg = tomllib.loads((tmp_path / "out" / label / "config.toml").read_text())
        assert cfg["training"]["epochs"] == 1  # --set wins over the run's own set
        assert cfg["training"]["device"] == "cpu" and cfg["model"]["hidden"] == [8]
        history = tmp_path / "out" / label / "output" / "model" / "history.csv"
        assert len(history.read_text().splitlines()) == 2  # header + the one epoch
    assert (
        main(["--workflow", str(wf), "--set", "training.epochz=1", "-q"]) == ConfigError.exit_code
    )
