"""Latent probing: traversal, prior and PCA samples, t-SNE — what the arrays and plots hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baler_ext.cli import main
from baler_ext.config import ModelConfig, TrainingConfig
from baler_ext.model_store import TrainedModel
from baler_ext.models import build_model
from baler_ext.normalise import Normaliser
from baler_ext.training import fit, seed_everything

pytest.importorskip("sklearn", reason="t-SNE needs scikit-learn (the probing/test extras)")

from baler_ext.evaluation.probing import write_probing_plots

COLUMNS = ["pt", "eta", "phi", "mass", "px"]


def two_clusters(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Rank-2 rows in two well-separated clusters; returns (values, cluster label)."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, n)
    base = rng.normal(size=(n, 2)) * 0.3 + 4.0 * label[:, None]
    return base @ rng.normal(size=(2, len(COLUMNS))) + 100.0, label


def trained(
    name: str = "sae", latent: int = 2, **options
) -> tuple[TrainedModel, np.ndarray, np.ndarray]:
    values, label = two_clusters()
    seed_everything(0)
    kw = {"columns": COLUMNS} if name == "cvae" else {}
    model = build_model(
        ModelConfig(name=name, latent_dim=latent, hidden=[16], options=options), len(COLUMNS), **kw
    )
    norm = Normaliser.fit(values, COLUMNS, "standard")
    x = norm.transform(values)
    fit(
        model,
        x[:500],
        x[500:],
        TrainingConfig(epochs=3, batch_size=100, lr_patience=0),
        torch.device("cpu"),
    )
    return TrainedModel(model, norm, {"hash": "test"}), values, label


def test_traversal_shows_which_dimension_the_decoder_uses(tmp_path) -> None:
    tm, values, label = trained()
    with torch.no_grad():  # make the decoder blind to latent dimension 1
        tm.model.decoder[0].weight[:, 1] = 0.0
    res = write_probing_plots(
        tm,
        values,
        tmp_path,
        color=label.astype(float),
        color_label="cluster",
        n_steps=5,
        n_samples=400,
        tsne_rows=100,
    )
    assert res.traversal.shape == (2, 5, len(COLUMNS)) and res.traversal_grid.shape == (2, 5)
    assert np.all(np.diff(res.traversal_grid, axis=1) > 0)  # each sweep increases z_j
    assert np.ptp(res.traversal[0], axis=0).max() > 1e-3  # dimension 0 moves the output
    assert np.ptp(res.traversal[1], axis=0).max() == 0.0  # dimension 1 is ignored
    for name in ("traversal", "prior_samples", "pca_samples", "tsne"):
        assert res.paths[name].stat().st_size > 5000


def test_prior_and_pca_samples_and_tsne_content(tmp_path) -> None:
    tm, values, label = trained(latent=3)
    res = write_probing_plots(
        tm, values, tmp_path, color=label.astype(float), n_samples=3000, tsne_rows=200, seed=1
    )
    with torch.no_grad():
        z = tm.model.encode(torch.as_tensor(tm.normaliser.transform(values))).numpy()
    # not a VAE: the prior is the Gaussian fitted to the encoded rows
    assert res.prior_kind == "fitted"
    np.testing.assert_allclose(
        res.prior_latent.mean(axis=0), z.mean(axis=0), atol=0.1 * z.std(axis=0).max()
    )
    # PCA samples span exactly the 2 leading directions of the 3-D latent
    sv = np.linalg.svd(res.pca_latent - res.pca_latent.mean(axis=0), compute_uv=False)
    assert sv[2] < 1e-8 * sv[0] and sv[1] > 1e-3 * sv[0]
    assert res.pca_decoded.shape == (3000, len(COLUMNS))
    # t-SNE keeps the two clusters apart: each point's nearest neighbour is in its cluster
    emb, lab = res.tsne, label[res.tsne_index]
    assert emb.shape == (200, 2) and np.isfinite(emb).all() and len(set(res.tsne_index)) == 200
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1) + np.diag(np.full(200, np.inf))
    assert np.mean(lab[d.argmin(axis=1)] == lab) > 0.95


def test_vae_prior_is_standard_normal_and_cvae_conditions_come_from_data(tmp_path) -> None:
    tm, values, _ = trained("vae")
    res = write_probing_plots(tm, values, tmp_path, n_samples=4000, tsne_rows=100)
    assert res.prior_kind == "model"
    assert np.abs(res.prior_latent.mean(axis=0)).max() < 0.1
    assert np.abs(res.prior_latent.std(axis=0) - 1).max() < 0.1
    tm, values, _ = trained("cvae", conditions=["pt"])
    res = write_probing_plots(tm, values, tmp_path, n_samples=500, tsne_rows=100)
    assert res.traversal.shape[0] == 2  # the condition entry is not traversed
    assert np.isin(res.prior_latent[:, 2], tm.normaliser.transform(values)[:, 0]).all()
    # decoded conditions are the data's own pt values, restored exactly
    assert np.isin(np.round(res.prior_decoded[:, 0], 6), np.round(values[:, 0], 6)).all()


def test_evaluate_writes_probing_plots_when_asked(make_project, flat_parquet) -> None:
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [8], "latent_dim": 3},
        evaluation={"latent_probing": True, "tsne_rows": 100},
    )
    assert main(["--projects-dir", str(projects), "--project", name, "--mode", "all", "-q"]) == 0
    probing = projects / name / "output" / "evaluation" / "probing"
    assert sorted(p.name for p in probing.glob("*.png")) == [
        "pca_samples.png",
        "prior_samples.png",
        "traversal.png",
        "tsne.png",
    ]
