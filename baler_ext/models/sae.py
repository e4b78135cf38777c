"""Baler's stacked autoencoder of the CMS studies."""

from __future__ import annotations

import torch

from baler_ext.models.base import Autoencoder, mlp
from baler_ext.models.registry import register_model


@register_model("sae")
class StackedAE(Autoencoder):
    """Stacked fully connected autoencoder.

    ``n -> 200 -> 100 -> 50 -> z -> 50 -> 100 -> 200 -> n`` with LeakyReLU between
    layers and a linear latent and output: the architecture of Baler's CMS jet
    studies (Bengtsson et al., "Baler – machine learning based compression of
    scientific data", arXiv:2305.02283).

    Parameters
    ----------
    n_features
        Number of input columns ``n``.
    latent_dim
        Size of the latent ``z``.
    hidden
        Encoder widths; the decoder mirrors them.
    activation
        Name of the activation between layers.
    """

    def __init__(self, n_features: int, latent_dim: int, hidden: list[int] | None = None,
                 activation: str = "leaky_relu") -> None:
        super().__init__(n_features, latent_dim)
        hidden = list(hidden or [200, 100, 50])
        self.encoder = mlp([n_features, *hidden, latent_dim], activation)
        self.decoder = mlp([latent_dim, *reversed(hidden), n_features], activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
