"""The training loop: losses, init, schedule, clipping, seeding (the train stage: tests/stages/)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baler_ext.config import ModelConfig, TrainingConfig
from baler_ext.losses import RECONSTRUCTION_LOSSES
from baler_ext.models import build_model
from baler_ext.training import fit, init_weights, seed_everything

CPU = torch.device("cpu")


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
        hooks = [
            a.register_forward_hook(lambda _m, _i, o: acts.append(o.abs().mean()))
            for a in m.sparsity_modules()
        ]
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
    assert all(
        float(lin.bias.detach().abs().sum()) == 0
        for lin in m.modules()
        if isinstance(lin, torch.nn.Linear)
    )
    if scheme == "orthogonal":
        assert torch.allclose(w @ w.T, torch.eye(100, dtype=w.dtype), atol=1e-10)
    elif scheme == "xavier":
        bound = (6 / 300) ** 0.5
        assert float(w.abs().max()) <= bound and float(w.std()) == pytest.approx(
            bound / 3**0.5, rel=0.05
        )
    else:
        assert float(w.std()) == pytest.approx((2 / (1 + 0.01**2) / 200) ** 0.5, rel=0.05)


def test_gradient_clipping_limits_the_update() -> None:
    x = data()
    moved = {}
    for clip in (0.0, 1e-12):
        m = model()
        start = [p.detach().clone() for p in m.parameters()]
        fit(
            m,
            x[:300],
            x[300:],
            TrainingConfig(epochs=1, batch_size=100, lr_patience=0, grad_clip=clip),
            CPU,
        )
        moved[clip] = max(
            float((p.detach() - s).abs().max()) for p, s in zip(m.parameters(), start, strict=True)
        )
    assert moved[0.0] > 1e-3 and moved[1e-12] < 1e-5


def test_plateau_schedule_and_early_stopping() -> None:
    x = data()
    cfg = TrainingConfig(
        epochs=20,
        batch_size=100,
        learning_rate=1e-6,
        lr_patience=1,
        lr_factor=0.5,
        min_lr=1e-9,
        early_stopping_patience=4,
        min_delta=1e-3,
    )
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
