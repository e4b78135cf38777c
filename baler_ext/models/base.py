"""The interface every autoencoder implements, and how models are built from config."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from baler_ext.config import ModelConfig
from baler_ext.models.registry import model_class, parse_options

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}

DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}


class Autoencoder(nn.Module):
    """Base class of every model.

    Subclasses implement :meth:`encode` and :meth:`decode`. :meth:`forward`
    returns a dict of named tensors (at least ``x_hat`` and ``z``), and
    :meth:`regularisers` returns the model's extra loss terms, already weighted,
    which the training loop adds to the reconstruction loss and logs by name.
    """

    registry_name: str = ""

    def __init__(self, n_features: int, latent_dim: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, n_features)`` to the latent ``(batch, latent_dim)``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map the latent back to ``(batch, n_features)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encode(x)
        return {"x_hat": self.decode(z), "z": z}

    def regularisers(
        self, x: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Named, weighted extra loss terms (none for a plain autoencoder)."""
        return {}


def mlp(widths: list[int], activation: str, final_activation: bool = False) -> nn.Sequential:
    """Linear layers ``widths[0] -> ... -> widths[-1]`` with activations between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or final_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def latent_size(cfg: ModelConfig, n_features: int) -> int:
    """``latent_dim`` if set, else ``ceil(n_features / compression_ratio)``."""
    if cfg.latent_dim is not None:
        return cfg.latent_dim
    return max(1, math.ceil(n_features / cfg.compression_ratio))


def build_model(cfg: ModelConfig, n_features: int) -> Autoencoder:
    """Instantiate the configured model in the configured dtype (on the CPU)."""
    cls = model_class(cfg.name)
    options = parse_options(cls, cfg.options)
    kwargs: dict[str, Any] = {"hidden": list(cfg.hidden), "activation": cfg.activation}
    if options is not None:
        kwargs["options"] = options
    model = cls(n_features, latent_size(cfg, n_features), **kwargs)
    return model.to(DTYPES[cfg.dtype])
