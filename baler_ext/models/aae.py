"""Adversarial autoencoder."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from baler_ext.errors import ConfigError
from baler_ext.models.base import mlp
from baler_ext.models.registry import register_model
from baler_ext.models.sae import StackedAE
from baler_ext.models.wae import check_prior, sample_prior


@register_model("aae")
class AdversarialAE(StackedAE):
    r"""Adversarial autoencoder (AAE).

    The deterministic stacked autoencoder of :class:`StackedAE` plus a
    discriminator :math:`D` (an MLP on latent codes, a logit out) that tells
    prior samples :math:`\tilde z \sim p(z)` from codes :math:`z = q(x)`.
    Training alternates (Makhzani et al., "Adversarial Autoencoders",
    arXiv:1511.05644, Sec. 2):

    * autoencoder step, on reconstruction plus the generator term
      :math:`\lambda\,\mathrm{BCE}(D(q(x)), 1)` (the non-saturating form of
      :math:`-\lambda \log D(q(x))`), with the main optimiser;
    * ``d_steps`` discriminator steps on
      :math:`\mathrm{BCE}(D(\tilde z), 1) + \mathrm{BCE}(D(\mathrm{sg}[z]), 0)`,
      with the discriminator's own Adam optimiser (learning rate ``d_learning_rate``).

    The encoder is deterministic, so eval ``forward(x) == decode(encode(x))``.

    Parameters
    ----------
    n_features, latent_dim, hidden, activation
        As for :class:`~baler_ext.models.sae.StackedAE`.
    options
        This model's :class:`Options` (``[model] options = {...}``); defaults when None.
    """

    @dataclass
    class Options:
        """Keys of ``[model] options``; each field's ``doc`` says what it sets."""

        weight: float = field(default=1.0, metadata={"doc": "weight of the generator term"})
        d_hidden: list[int] = field(
            default_factory=lambda: [64, 64], metadata={"doc": "discriminator hidden widths"}
        )
        d_steps: int = field(default=1, metadata={"doc": "discriminator steps per AE step"})
        d_learning_rate: float = field(
            default=1e-4, metadata={"doc": "discriminator Adam learning rate"}
        )
        prior: str = field(default="normal", metadata={"doc": "normal | uniform ([-1, 1]^d)"})

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        hidden: list[int] | None = None,
        activation: str = "leaky_relu",
        options: Options | None = None,
    ) -> None:
        super().__init__(n_features, latent_dim, hidden, activation)
        self.options = options or self.Options()
        check_prior("aae", self.options.prior)
        if self.options.d_steps < 1 or self.options.d_learning_rate <= 0:
            raise ConfigError("aae: d_steps must be >= 1 and d_learning_rate > 0")
        self.discriminator: nn.Sequential = mlp([latent_dim, *self.options.d_hidden, 1], activation)
        self.auxiliary_steps = self.options.d_steps
        self.auxiliary_learning_rate = self.options.d_learning_rate

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def regularisers(
        self, x: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        logits = self.discriminator(out["z"])
        gen = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return {"adversarial": self.options.weight * gen}

    def auxiliary_loss(
        self, x: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        z = out["z"].detach()
        prior = sample_prior(self.options.prior, len(z), z)
        real = self.discriminator(prior)
        fake = self.discriminator(z)
        loss = F.binary_cross_entropy_with_logits(
            real, torch.ones_like(real)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        return {"discriminator": loss}
