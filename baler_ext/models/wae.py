"""Wasserstein autoencoders: WAE-MMD and the sliced-Wasserstein autoencoder."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from baler_ext.errors import ConfigError
from baler_ext.losses import IMQ_SCALES, mmd_imq, sliced_wasserstein
from baler_ext.models.registry import register_model
from baler_ext.models.sae import StackedAE

PRIORS = ("normal", "uniform")


def sample_prior(name: str, n: int, like: torch.Tensor, var: float = 1.0) -> torch.Tensor:
    r"""``n`` samples of the latent prior in ``like``'s width, dtype and device.

    ``normal``: :math:`\mathcal N(0, \sigma^2 I)`; ``uniform``: :math:`\mathcal U[-1, 1]^d`.
    Drawn from torch's global RNG, so a seeded run is reproducible.
    """
    d = like.shape[1]
    if name == "normal":
        return torch.randn(n, d, dtype=like.dtype, device=like.device) * var**0.5
    if name == "uniform":
        return torch.rand(n, d, dtype=like.dtype, device=like.device) * 2.0 - 1.0
    raise ConfigError(f"unknown prior '{name}'; valid priors: {', '.join(PRIORS)}")


def check_prior(model: str, name: str) -> None:
    """A ConfigError naming ``model`` when ``name`` is not a known prior."""
    if name not in PRIORS:
        raise ConfigError(f"{model}: prior '{name}' is not one of {', '.join(PRIORS)}")


@register_model("wae")
class WassersteinAE(StackedAE):
    r"""Wasserstein autoencoder with an MMD penalty (WAE-MMD).

    The deterministic stacked autoencoder of :class:`StackedAE` trained on

    .. math::

        \mathcal L = c(x, G(Q(x))) + \lambda\, \widehat{\mathrm{MMD}}^2_k(Q_Z, P_Z),
        \qquad P_Z = \mathcal N(0, \sigma^2 I),

    where :math:`k` is the inverse-multiquadratic kernel summed over several
    scales and the MMD is the unbiased estimate of :func:`baler_ext.losses.mmd_imq`,
    with one prior sample per encoded row. Tolstikhin, Bousquet, Gelly &
    Schölkopf, "Wasserstein Auto-Encoders", ICLR 2018 (arXiv:1711.01558), Alg. 2.
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

        weight: float = field(default=1.0, metadata={"doc": "lambda, weight of the MMD term"})
        prior_var: float = field(default=1.0, metadata={"doc": "variance of the N(0, s2 I) prior"})
        scales: list[float] = field(
            default_factory=lambda: list(IMQ_SCALES),
            metadata={"doc": "multipliers of the IMQ kernel width C = 2 d s2"},
        )

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
        if self.options.prior_var <= 0 or not self.options.scales:
            raise ConfigError("wae: prior_var must be > 0 and scales non-empty")

    def regularisers(
        self, x: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        z = out["z"]
        prior = sample_prior("normal", len(z), z, self.options.prior_var)
        return {
            "mmd": self.options.weight
            * mmd_imq(z, prior, self.options.prior_var, self.options.scales)
        }


@register_model("swae")
class SlicedWassersteinAE(StackedAE):
    r"""Sliced-Wasserstein autoencoder (SWAE).

    The deterministic stacked autoencoder of :class:`StackedAE` trained on

    .. math::

        \mathcal L = c(x, \psi(\phi(x))) + \lambda\, SW_p^p(q_Z, p_Z),

    with :math:`SW_p^p` estimated from ``n_projections`` random directions on the
    batch and as many prior samples (:func:`baler_ext.losses.sliced_wasserstein`,
    POT on torch tensors, differentiable, in the model's dtype and device).
    Kolouri, Pope, Martin & Rohde, "Sliced-Wasserstein Autoencoder: an
    embarrassingly simple generative model", ICLR 2019 (arXiv:1804.01947).

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

        weight: float = field(default=1.0, metadata={"doc": "lambda, weight of the SW term"})
        n_projections: int = field(default=50, metadata={"doc": "random projections per batch"})
        p: int = field(default=2, metadata={"doc": "order p of SW_p^p"})
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
        check_prior("swae", self.options.prior)
        if self.options.n_projections < 1 or self.options.p < 1:
            raise ConfigError("swae: n_projections and p must be >= 1")

    def regularisers(
        self, x: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        z = out["z"]
        prior = sample_prior(self.options.prior, len(z), z)
        sw = sliced_wasserstein(z, prior, self.options.n_projections, self.options.p)
        return {"sw": self.options.weight * sw}
