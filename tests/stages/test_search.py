"""``--mode search``: optuna TPE over a scan-like space, resumable, ranked on a fair metric."""

from __future__ import annotations

import csv
import sqlite3
import sys

import pytest

from baler_ext.cli import main
from baler_ext.config import load_config
from baler_ext.errors import ConfigError
from baler_ext.stages.search import parse_space

pytest.importorskip("optuna", reason="optuna is in the test extra; pip install '.[test]'")

SPACE = {
    "training.learning_rate": {"low": 1e-3, "high": 3e-2, "log": True},
    "model.latent_dim": {"low": 1, "high": 4},
    "training.loss": ["mse", "l1_sum"],
}


def test_space_is_parsed_like_the_scan_grid(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[search]\ntrials = 3\n[search.space]\n"
        '"model.latent_dim" = {low = 2, high = 8}\n'
        "training.learning_rate = {low = 1e-4, high = 1e-2, log = true}\n"
        '"model.hidden" = [[16], [32, 16]]\n'
    )
    cfg = load_config(path)
    dims = {d.key: d for d in parse_space(cfg.search.space)}
    assert dims["model.latent_dim"].is_int and not dims["model.latent_dim"].log
    lr = dims["training.learning_rate"]
    assert lr.log and not lr.is_int and (lr.low, lr.high) == (1e-4, 1e-2)
    assert dims["model.hidden"].choices == ([16], [32, 16])
    for bad, match in [
        ({"x": [1]}, "section.key"),
        ({"a.b": []}, "empty"),
        ({"a.b": {"low": 2, "high": 1}}, "low < high"),
        ({"a.b": {"low": 0, "high": 1, "log": True}}, "low > 0"),
        ({"a.b": {"low": 0, "hi": 1}}, "list of choices"),
        ({}, "no \\[search"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_space(bad)


def test_search_ranks_trials_and_resumes_from_its_storage(flat_parquet, make_project) -> None:
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [8]},
        training={"epochs": 2, "max_rows": 1000},
        search={"trials": 4, "startup_trials": 2, "space": SPACE},
    )
    argv = ["--project", name, "--projects-dir", str(projects), "--mode", "search", "-q"]
    assert main(argv) == 0
    out = projects / name / "output" / "search"
    rows = list(csv.DictReader((out / "search.csv").open()))
    assert len(rows) == 4 and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    scores = [float(r["val_rms_sigma"]) for r in rows]
    assert scores == sorted(scores)  # ranked on the σ-normalised error, not the own loss
    assert {r["training.loss"] for r in rows} <= {"mse", "l1_sum"}
    assert all(1 <= int(r["model.latent_dim"]) <= 4 for r in rows)
    for r in rows:  # each trial is a trained sub-project
        assert (out / r["run"] / "output" / "model" / "weights.pt").is_file()
    assert (out / "history.png").stat().st_size > 1000
    assert (out / "importance.png").stat().st_size > 1000
    assert "| rank | run |" in (out / "search.md").read_text()
    # resumable: a rerun asking for 6 trials runs only the 2 missing ones
    assert main([*argv, "--set", "search.trials=6"]) == 0
    with sqlite3.connect(out / "search.db") as db:
        numbers = [n for (n,) in db.execute("select number from trials order by number")]
    assert numbers == list(range(6))
    assert len(list(csv.DictReader((out / "search.csv").open()))) == 6


def test_search_without_optuna_says_how_to_install(
    flat_parquet, make_project, monkeypatch, caplog
) -> None:
    projects, name = make_project(flat_parquet, search={"space": SPACE})
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    assert (
        main(["--project", name, "--projects-dir", str(projects), "--mode", "search"])
        == ConfigError.exit_code
    )
    assert "pip install 'baler_ext[search]'" in caplog.text
