"""The training loop and the train stage: losses, init, schedule, clipping, resume, outputs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from baler_ext.cli import main
from baler_ext.config import ModelConfig, TrainingConfig
from baler_ext.errors import ConfigError
from baler_ext.losses import RECONSTRUCTION_LOSSES
from baler_ext.models import build_model
from baler_ext.training import CHECKPOINT, fit, init_weights, seed_everything

CPU = torch.device("cpu")
FAST = {"epochs": 4, "batch_size": 200, "max_rows": 2000, "early_stopping_patience": 0}


def data(n: int = 400, d: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n, 2))
    return np.column_stack([base @ rng.normal(size=(2, d)), rng.normal(size=(n, 0))])


def model(name: str = "sae", **kw) -> torch.nn.Module:
    seed_everything(0)
    return build_model(ModelConfig(name=name, latent_dim=2, hidden=[16, 8], **kw), 6)


def test_reconstruction_losses() -> None:
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 1.0], [0.0, 6.0]], dtype=torch.float64)
    expect = {"mse": 14 / 4, "mse_sum": 14 / 2, "l1_mean": 6 / 4, "l1_sum": 6 / 2}
    for name, value in expect.items():
        got = RECONSTRUCTION_LOSSES[name](x, y)
        assert got.dtype == torch.float64 and float(got) == pytest.approx(value)


def test_activation_sparsity_is_applied_and_logged() -> None:
    x = data()
    cfg = TrainingConfig(epochs=5, batch_size=50, learning_rate=1e-2, lr_patience=0)
    plain, sparse = model(), model()
    fit(plain, x[:300], x[300:], cfg, CPU)
    cfg.activation_l1 = 1.0
    hist = fit(sparse, x[:300], x[300:], cfg, CPU).history
    assert "train_activation_l1" in hist[0] and hist[0]["train_activation_l1"] > 0

    def mean_activation(m: torch.nn.Module) -> float:
        m.eval()
        acts = []
        hooks = [a.register_forward_hook(lambda _m, _i, o: acts.append(o.abs().mean()))
                 for a in m.sparsity_modules()]
        with torch.no_grad():
            m(torch.as_tensor(x))
        for h in hooks:
            h.remove()
        return float(sum(acts))

    assert len(sparse.sparsity_modules()) == 4  # 2 encoder + 2 decoder hidden activations
    assert mean_activation(sparse) < 0.7 * mean_activation(plain)


@pytest.mark.parametrize("scheme", ["he", "xavier", "orthogonal"])
def test_init_schemes(scheme: str) -> None:
    torch.manual_seed(0)
    m = build_model(ModelConfig(latent_dim=8, hidden=[200, 100, 50]), 17)
    init_weights(m, scheme)
    w = m.encoder[2].weight.detach()  # 200 -> 100
    assert all(float(lin.bias.detach().abs().sum()) == 0 for lin in m.modules()
               if isinstance(lin, torch.nn.Linear))
    if scheme == "orthogonal":
        assert torch.allclose(w @ w.T, torch.eye(100, dtype=w.dtype), atol=1e-10)
    elif scheme == "xavier":
        bound = (6 / 300) ** 0.5
        assert float(w.abs().max()) <= bound and float(w.std()) == pytest.approx(
            bound / 3**0.5, rel=0.05)
    else:
        assert float(w.std()) == pytest.approx((2 / (1 + 0.01**2) / 200) ** 0.5, rel=0.05)


def test_gradient_clipping_limits_the_update() -> None:
    x = data()
    moved = {}
    for clip in (0.0, 1e-12):
        m = model()
        start = [p.detach().clone() for p in m.parameters()]
        fit(m, x[:300], x[300:], TrainingConfig(epochs=1, batch_size=100, lr_patience=0,
                                                grad_clip=clip), CPU)
        moved[clip] = max(float((p.detach() - s).abs().max()) for p, s in zip(m.parameters(), start,
                                                                       strict=True))
    assert moved[0.0] > 1e-3 and moved[1e-12] < 1e-5


def test_plateau_schedule_and_early_stopping() -> None:
    x = data()
    cfg = TrainingConfig(epochs=20, batch_size=100, learning_rate=1e-6, lr_patience=1,
                         lr_factor=0.5, min_lr=1e-9, early_stopping_patience=4,
                         min_delta=1e-3)
    result = fit(model(), x[:300], x[300:], cfg, CPU)
    lrs = [h["lr"] for h in result.history]
    assert result.stopped_early and len(result.history) == 5 and result.best_epoch == 1
    assert lrs[0] == 1e-6 and lrs[-1] == pytest.approx(lrs[0] / 2)


def test_seeded_runs_are_identical() -> None:
    x = data()
    cfg = TrainingConfig(epochs=2, batch_size=64, lr_patience=0, seed=3)
    a, b = model("sae_dropout_bn"), model("sae_dropout_bn")
    torch.manual_seed(9)
    fit(a, x[:300], x[300:], cfg, CPU)
    torch.manual_seed(9)
    fit(b, x[:300], x[300:], cfg, CPU)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


def test_train_stage_writes_history_plot_checkpoint(jets_parquet, make_project) -> None:
    projects, name = make_project(jets_parquet, training=FAST,
                                  model={"name": "wae", "latent_dim": 4, "hidden": [16, 8]})
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "train",
                 "-q"]) == 0
    out = projects / name / "output" / "model"
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    for col in ("epoch", "train_loss", "val_loss", "train_reconstruction", "train_mmd",
                "val_reconstruction", "val_mmd", "lr", "epoch_time_s"):
        assert col in header
    assert (out / "loss.png").stat().st_size > 1000
    assert (out / CHECKPOINT).is_file()
    val = json.loads((out / "validation.json").read_text())
    assert set(val["columns"]) >= {"pt", "mass"} and val["columns"]["pt"]["rms_sigma"] > 0
    # σ-normalised, so columns near zero (eta, phi) stay O(1) instead of diverging
    assert all(c["rms_sigma"] < 10 for c in val["columns"].values()
               if c["rms_sigma"] == c["rms_sigma"])
    assert "rms_rel" not in val["columns"]["pt"]


def test_cvae_train_stage_saves_condition_metadata(jets_parquet, make_project) -> None:
    from baler_ext.model_store import load_model

    projects, name = make_project(jets_parquet, training={**FAST, "epochs": 1},
                                  model={"name": "cvae", "latent_dim": 4, "hidden": [16],
                                         "options": {"conditions": ["pt"]}})
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "train",
                 "-q"]) == 0
    trained = load_model(projects / name / "output" / "model")
    assert trained.meta["lossless_columns"] == ["pt"] and trained.model.latent_dim == 5


RUNNER = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import baler_ext.training as training
    from baler_ext.cli import main
    kill_after = int(sys.argv[1])
    real_save = training.save_checkpoint
    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    training.save_checkpoint = save_then_die
    main(sys.argv[2:])
""")


@pytest.mark.parametrize("name", ["sae_dropout_bn", "aae"])
def test_resume_after_kill_reaches_the_same_weights(name, jets_parquet, make_project,
                                                    tmp_path) -> None:
    """SIGKILL after epoch 2 of 4, then --resume: weights equal the uninterrupted run's
    exactly (tolerance 0: same seed, device and thread count)."""
    sections = {"training": {**FAST, "lr_patience": 1},
                "model": {"name": name, "latent_dim": 4, "hidden": [16, 8]}}
    projects, full = make_project(jets_parquet, name="full", **sections)
    make_project(jets_parquet, name="killed", **{k: dict(v) for k, v in sections.items()})
    common = ["--projects-dir", str(projects), "--mode", "train", "-q"]
    assert main(["--project", full, *common]) == 0
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), "2", "--project", "killed", *common],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    killed = projects / "killed" / "output" / "model"
    assert torch.load(killed / CHECKPOINT, weights_only=True)["epoch"] == 2
    assert not (killed / "weights.pt").exists()
    assert main(["--project", "killed", *common, "--resume"]) == 0
    a = torch.load(projects / full / "output" / "model" / "weights.pt", weights_only=True)
    b = torch.load(killed / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    hist = (killed / "history.csv").read_text().splitlines()
    assert len(hist) == 1 + 4


def test_resume_without_checkpoint_fails_cleanly(jets_parquet, make_project) -> None:
    projects, name = make_project(jets_parquet)
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "train", "-q",
                 "--resume"]) != 0
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "compress",
                 "-q", "--resume"]) != 0


@pytest.mark.parametrize("change", ["model.latent_dim=3", "training.seed=7",
                                    'data.normalisation="minmax"', "training.max_rows=1500"])
def test_resume_refuses_a_changed_run(flat_parquet, make_project, caplog, change) -> None:
    """A checkpoint is only valid for its model, data selection, normaliser and settings."""
    projects, name = make_project(flat_parquet, model={"latent_dim": 2, "hidden": [16, 8]})
    common = ["--project", name, "--projects-dir", str(projects), "--mode", "train", "-q"]
    assert main(common) == 0
    with caplog.at_level(logging.ERROR):
        assert main([*common, "--resume", "--set", change]) == ConfigError.exit_code
    assert "train without --resume" in caplog.text
    # more epochs is a legitimate resumption
    assert main([*common, "--resume", "--set", "training.epochs=3"]) == 0
