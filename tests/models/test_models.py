"""Every registered model: shapes, dtype, learning on real rows, save/load, eval equivalence."""

from __future__ import annotations

import pytest
import torch

from baler_ext.config import ModelConfig, TrainingConfig
from baler_ext.model_store import load_model, save_model
from baler_ext.models import MODEL_REGISTRY, build_model
from baler_ext.normalise import Normaliser
from baler_ext.training import evaluate_terms, fit, init_weights, seed_everything

MODELS = sorted(MODEL_REGISTRY)
N_FEATURES = 17
COLUMNS = ["pt", *(f"c{i}" for i in range(N_FEATURES - 1))]
SMALL = [32, 16]


def make(
    name: str, dtype: str = "float64", hidden: list[int] | None = None, latent: int = 8, **options
) -> torch.nn.Module:
    seed_everything(0)
    cfg = ModelConfig(
        name=name, latent_dim=latent, dtype=dtype, hidden=hidden or SMALL, options=options
    )
    model = build_model(cfg, N_FEATURES, columns=COLUMNS)
    init_weights(model, "he")
    return model


def test_every_family_is_registered() -> None:
    assert set(MODELS) == {
        "sae",
        "sae_bn",
        "sae_dropout",
        "sae_dropout_bn",
        "wae",
        "swae",
        "aae",
        "vae",
        "cvae",
        "vqvae",
    }


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shapes_and_dtype_end_to_end(name: str, dtype: str) -> None:
    model = make(name, dtype)
    torch_dtype = getattr(torch, dtype)
    assert all(p.dtype == torch_dtype for p in model.parameters())
    assert all(b.dtype == torch_dtype for b in model.buffers() if b.is_floating_point())
    x = torch.randn(64, N_FEATURES, dtype=torch_dtype)
    model.train()
    out = model(x)
    assert out["x_hat"].shape == x.shape and out["x_hat"].dtype == torch_dtype
    assert out["z"].shape == (64, model.latent_dim)
    for term in model.regularisers(x, out).values():
        assert term.dtype == torch_dtype and term.shape == () and torch.isfinite(term)
    for term in model.auxiliary_loss(x, out).values():
        assert term.dtype == torch_dtype
    model.eval()
    z = model.encode(x)
    assert z.shape == (64, model.latent_dim) and z.dtype == torch_dtype
    assert model.decode(z).shape == x.shape


@pytest.mark.parametrize("name", MODELS)
def test_eval_forward_equals_decode_of_encode(name: str) -> None:
    model = make(name)
    x = torch.randn(128, N_FEATURES, dtype=torch.float64)
    model.train()
    model(x)  # move BatchNorm running statistics / EMA codebook away from their init
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)["x_hat"], model.decode(model.encode(x)))
        assert torch.equal(model(x)["x_hat"], model(x)["x_hat"])  # deterministic in eval


@pytest.mark.parametrize("name", MODELS)
def test_loss_falls_on_real_jets(name: str, jets_matrix) -> None:
    x, cols = jets_matrix
    seed_everything(1)
    cfg = ModelConfig(name=name, latent_dim=8, hidden=SMALL)
    model = build_model(cfg, x.shape[1], columns=cols)
    init_weights(model, "he")
    tcfg = TrainingConfig(
        epochs=3,
        batch_size=128,
        learning_rate=3e-3,
        seed=1,
        lr_patience=0,
        early_stopping_patience=0,
    )
    xv = torch.as_tensor(x[1600:])
    before = evaluate_terms(model, xv, tcfg)
    result = fit(model, x[:1600], x[1600:], tcfg, torch.device("cpu"))
    after = evaluate_terms(model, xv, tcfg)
    assert len(result.history) == 3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert after["reconstruction"] < 0.8 * before["reconstruction"]
    assert all(p.dtype == torch.float64 for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_save_load_reproduces_outputs_exactly(name: str, tmp_path, jets_matrix) -> None:
    x, cols = jets_matrix
    x = x[:600]
    cfg = ModelConfig(name=name, latent_dim=8, hidden=SMALL)
    seed_everything(2)
    model = build_model(cfg, x.shape[1], columns=cols)
    fit(
        model,
        x[:500],
        x[500:],
        TrainingConfig(epochs=1, batch_size=100, lr_patience=0),
        torch.device("cpu"),
    )
    norm = Normaliser.fit(x, cols, "standard")
    save_model(tmp_path, model, cfg, norm)
    loaded = load_model(tmp_path).model
    assert type(loaded) is type(model) and loaded.latent_dim == model.latent_dim
    model.eval()
    xt = torch.as_tensor(x)
    with torch.no_grad():
        assert torch.equal(model(xt)["x_hat"], loaded(xt)["x_hat"])
        assert torch.equal(model.encode(xt), loaded.encode(xt))


def test_hidden_widths_and_activation_are_configurable() -> None:
    for name in MODELS:
        model = build_model(
            ModelConfig(name=name, latent_dim=4, hidden=[24, 12], activation="elu"),
            N_FEATURES,
            columns=COLUMNS,
        )
        widths = [m.out_features for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
        assert widths[:2] == [24, 12], name
        assert any(isinstance(m, torch.nn.ELU) for m in model.encoder.modules())
        assert not any(isinstance(m, torch.nn.LeakyReLU) for m in model.encoder.modules())


def test_default_architecture_is_balers() -> None:
    model = build_model(ModelConfig(name="sae", latent_dim=8), N_FEATURES)
    enc = [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)]
    dec = [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert enc == [200, 100, 50, 8] and dec == [50, 100, 200, N_FEATURES]
