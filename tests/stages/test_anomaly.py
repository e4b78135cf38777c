"""``--mode anomaly``: reference-scaled reconstruction-error scores, ROC and AUC."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baler_ext.cli import main
from baler_ext.errors import ConfigError, InputDataError
from baler_ext.evaluation.anomaly import anomaly_scores, reference_sigma, roc_auc, roc_curve


def test_score_uses_the_reference_sigma_not_the_test_sigma() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1000, 3))
    sigma = reference_sigma(ref)
    x = rng.normal(size=(200, 3)) * 10.0  # a test sample ten times wider
    restored = x * 0.9  # residual 0.1 x: grows with the width
    s = anomaly_scores(x, restored, sigma)
    # on the reference scale the wide sample scores ~100x a reference-like one
    s_like = anomaly_scores(x / 10, restored / 10, sigma)
    assert np.median(s) == pytest.approx(100 * np.median(s_like), rel=1e-9)
    with np.errstate(divide="ignore"):  # the test's own σ would hide that
        own = anomaly_scores(x, restored, reference_sigma(x))
    assert np.median(own) < np.median(s) / 50
    assert np.isinf(anomaly_scores(np.array([[np.nan, 0, 0]]), np.zeros((1, 3)), sigma)[0])


def test_roc_and_auc_match_scikit_learn_including_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    truth = rng.random(500) < 0.2
    scores = np.round(rng.normal(size=500) + 1.0 * truth, 1)  # rounding makes ties
    assert roc_auc(scores, truth) == pytest.approx(metrics.roc_auc_score(truth, scores))
    fpr, tpr, thr = roc_curve(scores, truth)
    f2, t2, _ = metrics.roc_curve(truth, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    assert np.isinf(thr[0]) and np.all(np.diff(thr) < 0)  # one point per distinct score
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(scores, truth))
    assert roc_auc(np.r_[1.0, 2.0], np.r_[False, True]) == 1.0
    with pytest.raises(InputDataError, match="no row"):
        roc_auc(scores, np.zeros(500, bool))


def _write(path, values: np.ndarray, flag: np.ndarray) -> None:
    cols = {f"x{i}": values[:, i] for i in range(values.shape[1])}
    pq.write_table(pa.table({**cols, "is_corrupted": pa.array(flag.astype(np.int8))}), path)


def test_anomaly_mode_separates_corrupted_rows(tmp_path, make_project) -> None:
    rng = np.random.default_rng(2)
    mix = rng.normal(size=(2, 6))

    def sample(n: int) -> np.ndarray:
        return rng.normal(size=(n, 2)) @ mix  # rank-2 data in 6 columns

    ref, test = sample(3000), sample(1000)
    bad = np.zeros(1000, bool)
    bad[rng.choice(1000, 100, replace=False)] = True
    test[bad, 0] = test[rng.permutation(np.flatnonzero(bad)), 0]  # x0 swapped among them
    _write(tmp_path / "ref.parquet", ref, np.zeros(3000))
    _write(tmp_path / "test.parquet", test, bad)
    projects, name = make_project(
        tmp_path / "ref.parquet",
        model={"latent_dim": 2, "hidden": [32, 16]},
        training={"epochs": 15, "learning_rate": 3e-3},
        anomaly={"test": [str(tmp_path / "test.parquet")], "truth": "is_corrupted", "top_k": 5},
    )
    argv = ["--project", name, "--projects-dir", str(projects), "-q"]
    assert main([*argv, "--mode", "train"]) == 0
    assert main([*argv, "--mode", "anomaly"]) == 0
    out = projects / name / "output" / "anomaly"
    res = json.loads((out / "anomaly.json").read_text())
    assert res["reference"]["rows"] == 3000 and res["test"]["rows"] == 1000
    assert res["columns"] == [f"x{i}" for i in range(6)]  # the flag is not a model input
    assert res["truth"]["anomalous"] == 100 and res["truth"]["auc"] > 0.8
    top = res["top_k"]
    assert len(top) == 5 and all(t["truth"] for t in top)  # the worst rows are corrupted
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    for name_ in ("scores.png", "roc.png"):
        assert (out / name_).stat().st_size > 1000
    assert "AUC =" in (out / "anomaly.md").read_text()
    assert len((out / "top_k.csv").read_text().splitlines()) == 6


def test_anomaly_mode_needs_a_test_file(tmp_path, make_project, flat_parquet) -> None:
    projects, name = make_project(flat_parquet)
    from baler_ext.config import load_config
    from baler_ext.project import Project
    from baler_ext.stages.anomaly import anomaly

    cfg = load_config(projects / name / "config.toml")
    with pytest.raises(ConfigError, match=r"\[anomaly\] test"):
        anomaly(Project.locate(name, projects), cfg)
