"""``--mode evaluate``: metrics against a known perturbation, plots, errors and bounds."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baler_ext.errors import BoundViolationError, ConfigError, ProjectError
from baler_ext.stages.evaluate import (
    METRICS_NAME,
    PDF_NAME,
    header_bounds,
    header_max_errors,
    write_evaluation,
)

FLOAT_COLUMNS = ["pt", "eta", "phi", "mass", "px", "py", "frac"]  # the flat_parquet fixture's


def eval_dir(projects: Path, name: str) -> Path:
    return projects / name / "output" / "evaluation"


def expected_pngs(columns: list[str], latent: bool = True) -> list[str]:
    names = ["compression", "training_history", "correlation", "anomaly_scores"]
    if latent:
        names += ["latent_corner", "latent_pca"]
    for c in columns:
        names += [f"hist_{c}", f"residual_{c}"]
    return [f"{n}.png" for n in names]


def assert_plots(out: Path, columns: list[str]) -> None:
    for name in expected_pngs(columns):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 1000, name
    pdf = out / PDF_NAME
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf.stat().st_size > 10_000


def perturb(
    original: Path,
    target: Path,
    offsets: dict[str, float],
    sigmas: dict[str, float],
    seed: int = 3,
    outlier_row: int | None = None,
) -> pa.Table:
    """Write x + offset + N(0, sigma^2) per column into ``target``, in the original schema."""
    table = pq.read_table(original)
    rng = np.random.default_rng(seed)
    cols = {}
    for f in table.schema:
        arr = table.column(f.name).to_numpy()
        if f.name in offsets:
            new = arr.astype(np.float64) + offsets[f.name] + rng.normal(0, sigmas[f.name], len(arr))
            if outlier_row is not None:
                new[outlier_row] += 50 * sigmas[f.name]
            arr = new.astype(arr.dtype)
        cols[f.name] = pa.array(arr, type=f.type)
    out = pa.table(cols, schema=table.schema)
    pq.write_table(out, target)
    return out


def test_metrics_match_a_known_perturbation(cli, make_project, flat_parquet):
    projects, name = make_project(flat_parquet, evaluation={"plots": "all"})
    for mode in ("train", "compress", "decompress"):
        assert cli(projects, name, mode) == 0
    (restored,) = sorted((projects / name / "output" / "decompressed").glob("*.parquet"))
    orig = pq.read_table(flat_parquet).to_pandas()
    std = {c: float(orig[c].std()) for c in FLOAT_COLUMNS}
    offsets = {c: 0.02 * std[c] for c in FLOAT_COLUMNS}
    sigmas = {c: 0.05 * std[c] for c in FLOAT_COLUMNS}
    outlier = 17
    written = perturb(flat_parquet, restored, offsets, sigmas, outlier_row=outlier).to_pandas()

    assert cli(projects, name, "evaluate") == 0
    out = eval_dir(projects, name)
    metrics = json.loads((out / METRICS_NAME).read_text())
    assert metrics["n_rows"] == len(orig)
    assert metrics["columns"] == FLOAT_COLUMNS
    n = len(orig)
    for c in FLOAT_COLUMNS:
        m = metrics["per_column"][c]
        r = written[c].to_numpy(np.float64) - orig[c].to_numpy(np.float64)
        # exactly what numpy says about the two files ...
        assert m["mean"] == pytest.approx(r.mean(), rel=1e-9, abs=1e-12)
        assert m["rms"] == pytest.approx(np.sqrt(np.mean(r**2)), rel=1e-9)
        assert m["max_abs"] == pytest.approx(np.abs(r).max(), rel=1e-9)
        assert m["abs_q95"] == pytest.approx(np.quantile(np.abs(r), 0.95), rel=1e-9)
        # ... and statistically what was put in: mean = offset within 5 sigma/sqrt(n)
        # (the outlier adds 50 sigma / n), rms^2 = offset^2 + sigma^2 (+ the outlier's
        # ((offset + 50 sigma)^2 - offset^2) / n) within 10 %
        o, sg = offsets[c], sigmas[c]
        assert abs(m["mean"] - (o + 50 * sg / n)) < 5 * sg / np.sqrt(n), c
        expect_rms = np.sqrt(o**2 + sg**2 + ((o + 50 * sg) ** 2 - o**2) / n)
        assert m["rms"] == pytest.approx(expect_rms, rel=0.10), c
    # the row pushed by 50 sigma in every column is the most anomalous one
    top = metrics["top_anomalies"]
    assert len(top) == 10 and top[0]["row"] == outlier
    assert top[0]["original"]["pt"] == pytest.approx(orig["pt"].iloc[outlier])
    # compression breakdown, latent colour from the data (an integer flag), history
    comp = metrics["compression"]
    assert comp["raw_float64_bytes"] == n * len(FLOAT_COLUMNS) * 8
    assert comp["ratios"]["payload_vs_float64"] > 0
    assert comp["ratios"]["input_files_vs_containers"] > 0
    assert metrics["latent"]["colour_by"] == "matched"
    assert "bounds" not in metrics
    assert_plots(out, FLOAT_COLUMNS)


def test_evaluate_names_the_stage_to_run_first(cli, make_project, flat_parquet, caplog):
    projects, name = make_project(flat_parquet)
    assert cli(projects, name, "train") == 0
    with caplog.at_level(logging.ERROR):
        assert cli(projects, name, "evaluate") == ProjectError.exit_code
    assert "--mode compress" in caplog.text
    assert cli(projects, name, "compress") == 0
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert cli(projects, name, "evaluate") == ProjectError.exit_code
    assert "--mode decompress' first" in caplog.text
    assert not (eval_dir(projects, name) / METRICS_NAME).exists()


def test_all_runs_evaluate_and_colour_by_is_checked(cli, make_project, flat_parquet, caplog):
    projects, name = make_project(
        flat_parquet,
        data={"columns": ["pt", "mass"]},
        evaluation={"colour_by": "pt", "top_k": 3, "plots": "all"},
    )
    assert cli(projects, name, "all", "--set", "training.epochs=1") == 0
    metrics = json.loads((eval_dir(projects, name) / METRICS_NAME).read_text())
    assert metrics["latent"]["colour_by"] == "pt"
    assert len(metrics["top_anomalies"]) == 3
    with caplog.at_level(logging.ERROR):
        code = cli(projects, name, "evaluate", "--set", 'evaluation.colour_by="mas"')
    assert code == ConfigError.exit_code
    assert "did you mean 'mass'" in caplog.text


def test_bounded_mode_passes_and_a_broken_bound_fails(cli, make_project, flat_parquet):
    bounds = {"default": {"rel": 1e-3}, "eta": {"abs": 1e-3}}
    cols = ["pt", "eta", "mass"]
    projects, name = make_project(
        flat_parquet,
        data={"columns": cols},
        compression={"mode": "bounded", "bounds": bounds},
        evaluation={"plots": "all"},
    )
    for mode in ("train", "compress", "decompress", "evaluate"):
        assert cli(projects, name, mode) == 0, mode
    out = eval_dir(projects, name)
    metrics = json.loads((out / METRICS_NAME).read_text())
    for c in cols:
        m = metrics["per_column"][c]
        assert m["bound_kind"] == ("abs" if c == "eta" else "rel")
        assert m["bound_value"] == pytest.approx(1e-3)
        assert m["bound_use"] <= 1.0 and m["n_violations"] == 0
    assert metrics["bounds"]["max_bound_use"] <= 1.0
    assert set(metrics["compress_time_max_error"]) <= set(cols)

    # push one eta value 2e-3 away (twice its absolute bound): the stage fails loudly,
    # after writing the evidence
    (restored,) = sorted((projects / name / "output" / "decompressed").glob("*.parquet"))
    table = pq.read_table(restored)
    eta = table.column("eta").to_numpy().copy()
    eta[5] = pq.read_table(flat_parquet).column("eta").to_numpy()[5] + 2e-3
    table = table.set_column(table.schema.get_field_index("eta"), "eta", pa.array(eta))
    pq.write_table(table, restored)
    for f in out.iterdir():
        f.unlink()
    assert cli(projects, name, "evaluate") == BoundViolationError.exit_code
    metrics = json.loads((out / METRICS_NAME).read_text())
    assert metrics["per_column"]["eta"]["bound_use"] == pytest.approx(2.0, rel=1e-6)
    assert metrics["per_column"]["eta"]["n_violations"] == 1
    assert metrics["bounds"]["failing_columns"] == ["eta"]
    assert_plots(out, cols)


def test_write_evaluation_with_explicit_bounds(tmp_path):
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(10, 1, 500), "b": rng.uniform(1, 2, 500)})
    xh = x.copy()
    xh["a"] += rng.uniform(-0.01, 0.01, 500)
    xh["b"] *= 1 + rng.uniform(-1e-3, 1e-3, 500)
    ok = write_evaluation(
        x, xh, ["a", "b"], tmp_path / "ok", bounds={"a": ("abs", 0.01), "b": ("rel", 1e-3)}, top_k=2
    )
    assert ok.metrics["bounds"]["max_bound_use"] <= 1
    assert ok.metrics_path.is_file() and ok.pdf.is_file()
    xh.loc[3, "b"] = x.loc[3, "b"] * 1.01
    with pytest.raises(BoundViolationError, match="'b'"):
        write_evaluation(
            x, xh, ["a", "b"], tmp_path / "bad", bounds={"a": ("abs", 0.01), "b": ("rel", 1e-3)}
        )
    assert (tmp_path / "bad" / METRICS_NAME).is_file()
    assert (tmp_path / "bad" / PDF_NAME).stat().st_size > 0


def test_header_bounds_are_read_defensively():
    cols = ["pt", "eta"]
    settings = {
        "columns": {
            "pt": {"bound": {"rel": 1e-3}, "kind": "rel"},
            "eta": {"bound": {"abs": 0.01}, "kind": "abs"},
        },
        "stats": {"pt": {"max_abs_error": 0.1}, "eta": {"max_abs_error": 0.005}},
    }
    header = {"columns": cols, "mode": "bounded", "mode_settings": settings}
    assert header_bounds(header) == {"pt": ("rel", 1e-3), "eta": ("abs", 0.01)}
    assert header_max_errors(header) == {"pt": 0.1, "eta": 0.005}
    assert header_bounds({"columns": cols, "bounds": [["rel", 1e-2], ["abs", 1.0]]}) == {
        "pt": ("rel", 1e-2),
        "eta": ("abs", 1.0),
    }
    assert header_bounds({"columns": cols, "mode_settings": {"latent_dtype": "float32"}}) == {}


def test_jagged_root_collection(cli, make_project, shared_data):
    path = shared_data / "cms_hep_tutorial" / "single_top.root"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    projects, name = make_project(path, data={"columns": ["Jet_*"]}, evaluation={"plots": "all"})
    for mode in ("train", "compress", "decompress", "evaluate"):
        assert cli(projects, name, mode) == 0, mode
    out = eval_dir(projects, name)
    metrics = json.loads((out / METRICS_NAME).read_text())
    assert metrics["n_rows"] == 11139  # one row per jet
    cols = metrics["columns"]
    assert cols and all(c.startswith("Jet_") for c in cols)
    assert "entry" in metrics["top_anomalies"][0]
    assert_plots(out, cols)


def test_summary_plots_flag_a_comb_and_count_a_cut(cli, make_project, flat_parquet):
    """Default plots = "summary": a summary page, an overview and the flagged column's plots.

    The decompressed pt is replaced by pt rounded onto a 2 % logarithmic grid (what a
    bounded quantiser without dithering does at rel 1e-2): every value is within its
    bound, yet evaluate flags the comb and the moved cut.
    """
    bounds = {"default": {"abs": 1e-3}, "pt": {"rel": 1e-2}, "mass": {"rel": 1e-2}}
    cols = ["pt", "eta", "mass"]
    projects, name = make_project(
        flat_parquet,
        data={"columns": cols},
        compression={"mode": "bounded", "bounds": bounds},
        evaluation={"cuts": ["pt > 350", "abs(eta) < 1"]},
    )
    for mode in ("train", "compress", "decompress"):
        assert cli(projects, name, mode) == 0, mode
    (restored,) = sorted((projects / name / "output" / "decompressed").glob("*.parquet"))
    table = pq.read_table(restored)
    pt = pq.read_table(flat_parquet).column("pt").to_numpy()
    step = np.log1p(2e-2)
    comb = np.exp(np.round(np.log(pt) / step) * step)  # |comb - pt| <= 1 % of pt
    table = table.set_column(table.schema.get_field_index("pt"), "pt", pa.array(comb))
    pq.write_table(table, restored)

    assert cli(projects, name, "evaluate") == 0  # within bounds: no failure
    out = eval_dir(projects, name)
    metrics = json.loads((out / METRICS_NAME).read_text())
    pt_m = metrics["per_column"]["pt"]
    assert pt_m["comb"] and pt_m["comb_ratio"] > 10
    assert pt_m["distinct_fraction"] < 0.05 < 0.99 < pt_m["distinct_fraction_original"]
    assert not metrics["per_column"]["eta"]["comb"]
    flagged = metrics["flagged_columns"]
    assert "pt" in flagged and "eta" not in flagged
    cut = {c["cut"]: c for c in metrics["cuts"]}
    moved = cut["pt > 350"]
    assert moved["delta"] == moved["gained"] - moved["lost"]
    assert moved["n_decompressed"] - moved["n_original"] == moved["delta"]
    assert moved["sigma_paired"] == pytest.approx(np.sqrt(moved["lost"] + moved["gained"]))
    names = sorted(p.name for p in out.glob("*.png"))
    detail = [f"{kind}_{c}.png" for c in flagged for kind in ("hist", "residual")]
    assert names == sorted(
        ["compression.png", "overview.png", "summary.png", "training_history.png", *detail]
    )
    assert (out / PDF_NAME).read_bytes()[:5] == b"%PDF-"
