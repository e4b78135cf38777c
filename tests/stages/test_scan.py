"""``--mode scan``: a grid of configs trained and ranked."""

from __future__ import annotations

import csv
import math

import pytest

from baler_ext.cli import main
from baler_ext.config import load_config
from baler_ext.errors import ConfigError
from baler_ext.stages.scan import METRICS, check_metric, combinations, rank_rows


def test_grid_combinations_and_validation() -> None:
    combos = combinations({"model.latent_dim": [2, 4], "model.name": ["sae", "wae"]})
    assert combos == [
        {"model.latent_dim": 2, "model.name": "sae"},
        {"model.latent_dim": 2, "model.name": "wae"},
        {"model.latent_dim": 4, "model.name": "sae"},
        {"model.latent_dim": 4, "model.name": "wae"},
    ]
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
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "scan", "-q"]) == 0
    out = projects / name / "output" / "scan"
    rows = list(csv.DictReader((out / "scan.csv").open()))
    assert len(rows) == 4
    ok = [r for r in rows if r["status"] == "ok"]
    # vqvae with latent 1 cannot split into code_dim 2 slots: reported, not fatal
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(ok) == 3 and len(failed) == 1 and "multiple of code_dim" in failed[0]["status"]
    scores = [float(r["val_rms_sigma"]) for r in ok]
    assert scores == sorted(scores) and [r["rank"] for r in ok] == ["1", "2", "3"]
    for r in ok:  # the ranked value is the mean of the per-column σ-normalised errors
        per_column = [float(v) for k, v in r.items() if k.startswith("rms_sigma_") and v]
        assert float(r["val_rms_sigma"]) == pytest.approx(sum(per_column) / len(per_column))
        assert 0 < float(r["rms_sigma_pt"]) < 2 and 0 < float(r["rms_sigma_eta"]) < 2
    best = {r["model.latent_dim"] for r in ok[:1]}
    assert best == {"6"}  # more latent dimensions reconstruct better
    for r in ok:
        assert (out / r["run"] / "output" / "model" / "weights.pt").is_file()
    assert "| rank | run |" in (out / "scan.md").read_text()


def test_scan_without_grid_is_an_error(jets_parquet, make_project) -> None:
    projects, name = make_project(jets_parquet)
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "scan", "-q"]) != 0


def test_scan_reports_the_mass_shift_when_analysis_is_configured(
    flat_parquet, make_project
) -> None:
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [16, 8]},
        analysis={
            "column": "mass",
            "fit_range": [120.0, 230.0],
            "bins": 30,
            "peak": "gauss",
            "background": "poly0",
        },
        scan={"data.passthrough": [["mass"], ["frac"]]},
    )
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "scan", "-q"]) == 0
    rows = list(csv.DictReader((projects / name / "output" / "scan" / "scan.csv").open()))
    by_pass = {r["data.passthrough"]: r for r in rows}
    lossless = by_pass['["mass"]']
    assert float(lossless["mass_shift_sigma"]) == 0.0  # mass stored losslessly: no shift
    # the generated peak: N(172, 15) on 3000 rows, so the fitted mean is 172 +- ~0.3
    assert abs(float(lossless["mass"]) - 172.0) < 2.0 and lossless["fit_quality"] == "good"
    other = by_pass['["frac"]']
    # mass goes through the 2-epoch autoencoder: the fit must still succeed ("fit failed"
    # would not parse as a number) and report a non-zero, finite shift
    shift = float(other["mass_shift_sigma"])
    assert math.isfinite(shift) and shift != 0.0 and float(other["mass"]) > 0


def test_ranking_follows_the_configured_metric_not_the_loss() -> None:
    rows = [
        # an l1_sum run: its own loss is ~n times larger, its σ-normalised error smaller
        {
            "run": "l1_sum",
            "status": "ok",
            "val_loss": 5.0,
            "val_rms_sigma": 0.2,
            "bounded_ratio": 3.0,
        },
        {"run": "mse", "status": "ok", "val_loss": 0.1, "val_rms_sigma": 0.3, "bounded_ratio": 4.0},
        {"run": "broken", "status": "failed: x"},
        {"run": "nan", "status": "ok", "val_loss": 0.1, "val_rms_sigma": float("nan")},
    ]
    rank_rows(rows, METRICS["rms_sigma"])
    assert [r["run"] for r in rows][:2] == ["l1_sum", "mse"]
    assert [r["rank"] for r in rows] == [1, 2, "", ""]
    rank_rows(rows, METRICS["bounded_ratio"])  # a ratio: the higher the better
    assert [r["run"] for r in rows][:2] == ["mse", "l1_sum"]


def test_metrics_that_the_config_cannot_provide_fail_clearly(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[scan]\nmetric = "mass_shift"\n"model.latent_dim" = [2]\n')
    cfg = load_config(path)
    assert cfg.scan.metric == "mass_shift" and cfg.scan.grid == {"model.latent_dim": [2]}
    with pytest.raises(ConfigError, match=r"needs an \[analysis\]"):
        check_metric("mass_shift", cfg, "scan.metric")
    check_metric("bounded_ratio", cfg, "scan.metric")  # bounded is the default mode
    path.write_text('[compression]\nmode = "latent"\n[scan]\n"model.latent_dim" = [2]\n')
    with pytest.raises(ConfigError, match="bounded"):
        check_metric("bounded_ratio", load_config(path), "scan.metric")
    path.write_text('[scan]\nmetric = "val_loss"\n')
    with pytest.raises(ConfigError, match="not one of"):
        load_config(path)
