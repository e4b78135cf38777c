"""Baler's CMS family: BatchNorm / dropout layout and the two Baler defects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from baler_ext.config import ModelConfig
from baler_ext.errors import ConfigError
from baler_ext.models import build_model


def layer_types(seq: nn.Sequential) -> list[str]:
    return [type(m).__name__ for m in seq]


def test_bn_order_is_linear_activation_batchnorm() -> None:
    model = build_model(ModelConfig(name="sae_bn", latent_dim=8), 17)
    assert layer_types(model.encoder) == ["Linear", "LeakyReLU", "BatchNorm1d"] * 3 + ["Linear"]
    assert [m.num_features for m in model.encoder if isinstance(m, nn.BatchNorm1d)] == [
        200,
        100,
        50,
    ]
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


@pytest.mark.parametrize("name", ["sae_dropout", "sae_dropout_bn"])
def test_dropout_rates_mirrored(name: str) -> None:
    model = build_model(ModelConfig(name=name, latent_dim=8), 17)
    enc = [m.p for m in model.encoder if isinstance(m, nn.Dropout)]
    dec = [m.p for m in model.decoder if isinstance(m, nn.Dropout)]
    assert enc == [0.5, 0.4, 0.3, 0.2]
    assert dec == [0.3, 0.4, 0.5]  # widths 50, 100, 200 as in the encoder; linear output
    has_bn = any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert has_bn == (name == "sae_dropout_bn")


def test_dropout_rates_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="needs 4 rates"):
        build_model(ModelConfig(name="sae_dropout", options={"dropout": [0.5]}), 17)
    model = build_model(ModelConfig(name="sae_dropout", options={"dropout": [0.1, 0, 0, 0]}), 17)
    assert [m.p for m in model.encoder if isinstance(m, nn.Dropout)] == [0.1]


@pytest.mark.parametrize("name", ["sae_dropout", "sae_dropout_bn"])
def test_forward_runs_the_encoder(name: str) -> None:
    """Baler defect 1: ``AE_Dropout_BN.forward`` decoded the raw input, skipping the encoder."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, latent_dim=8), 17)
    x = torch.randn(64, 17, dtype=torch.float64)
    model.train()
    model(x)["x_hat"].pow(2).mean().backward()
    first = next(m for m in model.encoder if isinstance(m, nn.Linear))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        before = model(x)["x_hat"].clone()
        first.weight.mul_(2.0)
        assert not torch.equal(before, model(x)["x_hat"])


@pytest.mark.parametrize("name", ["sae", "sae_bn", "sae_dropout", "sae_dropout_bn"])
def test_float64_data_meets_float64_weights(name: str) -> None:
    """Baler defect 2: float32 layers met float64 data ("mat1 and mat2 should have same dtype")."""
    model = build_model(ModelConfig(name=name, latent_dim=8), 17)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(32, 17)))  # numpy -> float64
    assert x.dtype == torch.float64
    model.train()
    assert model(x)["x_hat"].dtype == torch.float64
