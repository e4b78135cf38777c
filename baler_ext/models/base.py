"""The interface every autoencoder implements, and how models are built from config."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from baler_ext.config import ModelConfig
from baler_ext.errors import ConfigError
from baler_ext.models.registry import model_class, parse_options

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}
ACTIVATION_TYPES: tuple[type, ...] = (nn.LeakyReLU, nn.ReLU, nn.ELU, nn.Tanh, nn.SiLU)

DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}


class Autoencoder(nn.Module):
    """Base class of every model.

    Subclasses implement :meth:`encode` and :meth:`decode`. :meth:`forward`
    returns a dict of named tensors (at least ``x_hat`` and ``z``), and
    :meth:`regularisers` returns the model's extra loss terms, already weighted,
    which the training loop adds to the reconstruction loss and logs by name.

    Models with a second player (the adversarial autoencoder's discriminator)
    expose its parameters through :meth:`auxiliary_parameters` and its loss
    through :meth:`auxiliary_loss`; the training loop gives them their own Adam
    optimiser and takes :attr:`auxiliary_steps` steps of it per main step.
    """

    registry_name: str = ""
    #: names of :meth:`regularisers` terms that a β schedule multiplies (the VAE's KL)
    annealed_terms: frozenset[str] = frozenset()

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

    def reconstruction_terms(
        self,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        out: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Named reconstruction terms: ``{"reconstruction": loss(x, x_hat)}`` by default.

        Models that reconstruct parts of the row differently (the conditional VAE's
        weighted ``reconstruction`` and ``conditional`` terms) override this.
        """
        return {"reconstruction": loss(x, out["x_hat"])}

    @property
    def annealed_weight(self) -> float | None:
        """Target weight β of the :attr:`annealed_terms` (None when there are none)."""
        return None

    # --- a second optimised player (e.g. the AAE discriminator) --------------------------

    auxiliary_steps: int = 1
    auxiliary_learning_rate: float | None = None

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by their own optimiser on :meth:`auxiliary_loss` (none here)."""
        return []

    def main_parameters(self) -> list[nn.Parameter]:
        """Parameters trained on the reconstruction loss plus :meth:`regularisers`."""
        aux = {id(p) for p in self.auxiliary_parameters()}
        return [p for p in self.parameters() if id(p) not in aux]

    def auxiliary_loss(
        self, x: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Named terms whose sum the auxiliary optimiser minimises (none here)."""
        return {}

    # --- what the codec must know -------------------------------------------------------

    @property
    def lossless_columns(self) -> list[str]:
        """Names of input columns the codec must store losslessly (none by default)."""
        return []

    @property
    def lossless_latent_dims(self) -> list[int]:
        """Latent positions that carry :attr:`lossless_columns` verbatim (none by default)."""
        return []

    def sparsity_modules(self) -> list[nn.Module]:
        """Activation layers whose outputs the optional L1 activation penalty acts on.

        The activations of ``self.encoder`` and ``self.decoder`` (all of the
        model's activations when it has neither).
        """
        parts = [
            m
            for m in (getattr(self, "encoder", None), getattr(self, "decoder", None))
            if isinstance(m, nn.Module)
        ]
        roots = parts or [self]
        return [m for root in roots for m in root.modules() if isinstance(m, ACTIVATION_TYPES)]


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


def build_model(
    cfg: ModelConfig, n_features: int, columns: Sequence[str] | None = None
) -> Autoencoder:
    """Instantiate the configured model in the configured dtype (on the CPU).

    Parameters
    ----------
    cfg
        The ``[model]`` section.
    n_features
        Number of columns the network sees.
    columns
        Their names, in order; needed by models that treat named columns apart
        (the conditional VAE's conditions).
    """
    cls = model_class(cfg.name)
    options = parse_options(cls, cfg.options)
    kwargs: dict[str, Any] = {"hidden": list(cfg.hidden), "activation": cfg.activation}
    if options is not None:
        kwargs["options"] = options
    if getattr(cls, "needs_columns", False):
        if columns is None:
            raise ConfigError(f"model '{cfg.name}' needs the column names to be built")
        if len(columns) != n_features:
            raise ConfigError(f"{len(columns)} column names for {n_features} features")
        kwargs["columns"] = list(columns)
    model = cls(n_features, latent_size(cfg, n_features), **kwargs)
    return model.to(DTYPES[cfg.dtype])
