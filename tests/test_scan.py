"""``--mode scan``: a grid of configs trained and ranked."""

from __future__ import annotations

import csv

import pytest

from baler_ext.cli import main
from baler_ext.config import load_config
from baler_ext.errors import ConfigError
from baler_ext.stages.scan import combinations


def test_grid_combinations_and_validation() -> None:
    combos = combinations({"model.latent_dim": [2, 4], "model.name": ["sae", "wae"]})
    assert combos == [{"model.latent_dim": 2, "model.name": "sae"},
                      {"model.latent_dim": 2, "model.name": "wae"},
                      {"model.latent_dim": 4, "model.name": "sae"},
                      {"model.latent_dim": 4, "model.name": "wae"}]
    with pytest.raises(ConfigError, match=r"section\.key"):
        combinations({"latent_dim": [2]})
    with pytest.raises(ConfigError, match="non-empty"):
        combinations({"model.latent_dim": []})


def test_scan_section_parses_dotted_keys(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[scan]\n"model.latent_dim" = [2, 4]\n')
    assert load_config(path).scan.grid == {"model.latent_dim": [2, 4]}


def test_scan_trains_each_combination_and_ranks(jets_parquet, make_project) -> None:
    projects, name = make_project(
        jets_parquet,
        training={"epochs": 2, "max_rows": 1500, "batch_size": 250},
        model={"hidden": [16, 8]},
        scan={"model.latent_dim": [1, 6], "model.name": ["sae", "vqvae"]},
    )
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "scan",
                 "-q"]) == 0
    out = projects / name / "output" / "scan"
    rows = list(csv.DictReader((out / "scan.csv").open()))
    assert len(rows) == 4
    ok = [r for r in rows if r["status"] == "ok"]
    # vqvae with latent 1 cannot split into code_dim 2 slots: reported, not fatal
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(ok) == 3 and len(failed) == 1 and "multiple of code_dim" in failed[0]["status"]
    losses = [float(r["val_reconstruction"]) for r in ok]
    assert losses == sorted(losses) and [r["rank"] for r in ok] == ["1", "2", "3"]
    assert all(float(r["rms_rel_pt"]) > 0 and float(r["rms_rel_mass"]) > 0 for r in ok)
    best = {r["model.latent_dim"] for r in ok[:1]}
    assert best == {"6"}  # more latent dimensions reconstruct better
    for r in ok:
        assert (out / r["run"] / "output" / "model" / "weights.pt").is_file()
    assert "| rank | run |" in (out / "scan.md").read_text()


def test_scan_without_grid_is_an_error(jets_parquet, make_project) -> None:
    projects, name = make_project(jets_parquet)
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "scan",
                 "-q"]) != 0


def test_scan_reports_the_mass_shift_when_analysis_is_configured(flat_parquet,
                                                                  make_project) -> None:
    projects, name = make_project(
        flat_parquet, model={"hidden": [16, 8]},
        analysis={"column": "mass", "fit_range": [120.0, 230.0], "bins": 30,
                  "peak": "gauss", "background": "poly0"},
        scan={"data.passthrough": [["mass"], ["frac"]]},
    )
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "scan",
                 "-q"]) == 0
    rows = list(csv.DictReader((projects / name / "output" / "scan" / "scan.csv").open()))
    by_pass = {r["data.passthrough"]: r for r in rows}
    lossless = by_pass['["mass"]']
    assert float(lossless["mass_shift_sigma"]) == 0.0  # mass stored losslessly: no shift
    other = by_pass['["frac"]']
    assert other["mass"] == "fit failed" or float(other["mass"]) > 0
