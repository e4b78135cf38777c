"""Variational autoencoders: the (β-)VAE and the conditional VAE."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from baler_ext.errors import ConfigError
from baler_ext.losses import gaussian_kl
from baler_ext.models.base import Autoencoder, mlp
from baler_ext.models.registry import register_model
from baler_ext.models.sae import DEFAULT_HIDDEN

LOGVAR_CLAMP = (-30.0, 20.0)


@dataclass
class VAEOptions:
    """Keys of ``[model] options``; each field's ``doc`` says what it sets."""

    beta: float = field(default=1.0, metadata={"doc": "beta, weight of the KL term (1: VAE)"})
    normalise_kl: bool = field(
        default=True,
        metadata={
            "doc": "divide the KL by n_features, matching per-element mean losses "
            "(mse, l1_mean); false for the textbook ELBO with mse_sum/l1_sum"
        },
    )


@register_model("vae")
class VariationalAE(Autoencoder):
    r"""β-variational autoencoder with a Gaussian posterior.

    The encoder (``n -> 200 -> 100 -> 50``) ends in two heads,
    :math:`\mu(x)` and :math:`\log\sigma^2(x)`; the decoder mirrors it. In
    training mode :meth:`forward` samples :math:`z = \mu + \sigma\odot\epsilon`,
    :math:`\epsilon\sim\mathcal N(0, I)` (the reparameterisation trick), and the
    loss is

    .. math::

        \mathcal L = c(x, \hat x) + \frac{\beta}{m}\,
        \mathrm{KL}\left(\mathcal N(\mu, \sigma^2)\,\Vert\,\mathcal N(0, I)\right),

    with :math:`m = n` when ``normalise_kl`` (so that the KL is on the scale of
    the per-element ``mse``) and :math:`m = 1` otherwise. :math:`\beta = 1` is the
    VAE of Kingma & Welling (arXiv:1312.6114); :math:`\beta \neq 1` the β-VAE of
    Higgins et al. (ICLR 2017). :meth:`encode` returns the posterior mean, the
    latent used for compression; in eval mode :meth:`forward` uses the mean too,
    so eval ``forward(x)["x_hat"] == decode(encode(x))``.

    Parameters
    ----------
    n_features, latent_dim, hidden, activation
        As for :class:`~baler_ext.models.sae.StackedAE`.
    options
        This model's :class:`Options` (``[model] options = {...}``); defaults when None.
    """

    Options = VAEOptions
    annealed_terms = frozenset({"kl"})

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        hidden: list[int] | None = None,
        activation: str = "leaky_relu",
        options: VAEOptions | None = None,
        n_inputs: int | None = None,
        n_outputs: int | None = None,
        n_condition: int = 0,
    ) -> None:
        super().__init__(n_features, latent_dim)
        self.options = options or VAEOptions()
        if self.options.beta < 0:
            raise ConfigError("vae: beta must be >= 0")
        hidden = list(hidden or DEFAULT_HIDDEN)
        n_in = n_features if n_inputs is None else n_inputs
        n_out = n_features if n_outputs is None else n_outputs
        self.encoder = mlp([n_in, *hidden], activation, final_activation=True)
        self.mu_head = nn.Linear(hidden[-1], latent_dim)
        self.logvar_head = nn.Linear(hidden[-1], latent_dim)
        self.decoder = mlp([latent_dim + n_condition, *reversed(hidden), n_out], activation)

    @property
    def annealed_weight(self) -> float:
        """β, the weight of the KL term that ``training.beta_schedule`` multiplies."""
        return self.options.beta

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of :math:`q(z|x)`."""
        h = self.encoder(x)
        return self.mu_head(h), self.logvar_head(h).clamp(*LOGVAR_CLAMP)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def _sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(x)
        z = self._sample(mu, logvar)
        return {"x_hat": self.decode(z), "z": mu, "z_sample": z, "mu": mu, "logvar": logvar}

    def regularisers(
        self, x: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        kl = gaussian_kl(out["mu"], out["logvar"])
        if self.options.normalise_kl:
            kl = kl / self.n_features
        return {"kl": self.options.beta * kl}


@dataclass
class CVAEOptions(VAEOptions):
    """Keys of ``[model] options``; each field's ``doc`` says what it sets."""

    conditions: list[str] = field(
        default_factory=lambda: ["pt"],
        metadata={"doc": "condition columns: seen by encoder and decoder, stored losslessly"},
    )
    wx: float = field(
        default=1.0,
        metadata={"doc": "weight of the reconstruction term of the non-condition columns"},
    )
    wy: float = field(
        default=0.0,
        metadata={
            "doc": "weight of the conditional term: the conditions reconstructed from "
            "the latent alone (0: the plain CVAE, no condition head)"
        },
    )


@register_model("cvae")
class ConditionalVAE(VariationalAE):
    r"""Conditional VAE: encoder and decoder both see the condition columns :math:`c`.

    The input row is split into the condition columns :math:`c` (``conditions``,
    e.g. ``pt``) and the rest :math:`y`. The encoder models :math:`q(z|y, c)` (it
    reads the whole row), the decoder :math:`p(y|z, c)` (it reads :math:`[z, c]`);
    Sohn, Lee & Yan, "Learning Structured Output Representation using Deep
    Conditional Generative Models", NeurIPS 2015. The loss is "reconstruction +
    conditional loss + KL",

    .. math::

        \mathcal L = w_x\, \ell(y, \hat y(z, c)) + w_y\, \ell(c, \hat c(z))
        + \frac{\beta}{m}\,\mathrm{KL}\left(q(z|y, c)\,\Vert\,\mathcal N(0, I)\right),

    with :math:`\ell` the configured ``training.loss`` (averaged over the columns
    of each part for the ``*_mean`` losses, summed for the ``*_sum`` ones) and
    :math:`m = \dim y` when ``normalise_kl``. The conditional term reconstructs
    the conditions from the latent sample *alone* through a small head
    :math:`\hat c(z)` (``latent -> hidden[-1] -> len(conditions)``): the decoder's
    own input contains :math:`c`, so asking it for :math:`c` would be the
    identity. :math:`w_y > 0` thus asks the latent to carry the conditions (the
    ``wx * x_loss + wy * y_loss`` weighting of the CVAE studies this reproduces);
    :math:`w_y = 0` (the default) is Sohn et al.'s CVAE, and the head is then not
    built at all, so it takes no part in training or in the saved model. Only the
    decoder's :math:`\hat y` enters compression; the conditions are restored
    exactly.

    The latent of :meth:`encode` is ``[mu(y, c), c]`` (``latent_dim`` means plus
    the conditions verbatim), so the generic ``decode(encode(x))`` works and
    :meth:`decode` puts :math:`c` back in its columns exactly. The codec must
    store the last ``len(conditions)`` latent entries
    (:attr:`lossless_latent_dims`, the columns :attr:`lossless_columns`)
    losslessly. ``model.latent_dim`` counts both parts.

    Parameters
    ----------
    n_features, latent_dim, hidden, activation
        As for :class:`~baler_ext.models.sae.StackedAE`.
    options
        This model's :class:`Options` (``[model] options = {...}``); defaults when None.
    columns
        Names of the ``n_features`` input columns (to find the conditions).
    """

    Options = CVAEOptions
    needs_columns = True
    options: CVAEOptions
    cond_index: torch.Tensor
    rest_index: torch.Tensor

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        hidden: list[int] | None = None,
        activation: str = "leaky_relu",
        options: CVAEOptions | None = None,
        columns: list[str] | None = None,
    ) -> None:
        options = options or CVAEOptions()
        columns = list(columns) if columns is not None else [f"x{i}" for i in range(n_features)]
        missing = [c for c in options.conditions if c not in columns]
        if (
            not options.conditions
            or missing
            or len(set(options.conditions)) < len(options.conditions)
        ):
            raise ConfigError(
                f"cvae: conditions {options.conditions} must be distinct names among the "
                f"compressed non-constant columns {columns}"
            )
        if len(options.conditions) >= n_features:
            raise ConfigError("cvae: at least one column must remain besides the conditions")
        if options.wx < 0 or options.wy < 0:
            raise ConfigError(f"cvae: wx and wy must be >= 0, got wx={options.wx}, wy={options.wy}")
        n_c = len(options.conditions)
        super().__init__(
            n_features,
            latent_dim,
            hidden,
            activation,
            options,
            n_inputs=n_features,
            n_outputs=n_features - n_c,
            n_condition=n_c,
        )
        self.columns = columns
        self.n_latent_mean = latent_dim
        self.latent_dim = latent_dim + n_c
        cond = [columns.index(c) for c in options.conditions]
        rest = [i for i in range(n_features) if i not in cond]
        self.register_buffer("cond_index", torch.tensor(cond, dtype=torch.long), persistent=False)
        self.register_buffer("rest_index", torch.tensor(rest, dtype=torch.long), persistent=False)
        hidden_last = (list(hidden) if hidden else DEFAULT_HIDDEN)[-1]
        self.condition_head = (
            mlp([latent_dim, hidden_last, n_c], activation) if options.wy > 0 else None
        )

    @property
    def lossless_columns(self) -> list[str]:
        return list(self.options.conditions)

    @property
    def lossless_latent_dims(self) -> list[int]:
        return list(range(self.n_latent_mean, self.latent_dim))

    def _assemble(self, y_hat: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x_hat = y_hat.new_empty(len(y_hat), self.n_features)
        x_hat[:, self.rest_index] = y_hat
        x_hat[:, self.cond_index] = c
        return x_hat

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        mu = self.posterior(x)[0]
        return torch.cat([mu, x[:, self.cond_index]], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        c = z[:, self.n_latent_mean :]
        return self._assemble(self.decoder(z), c)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(x)
        c = x[:, self.cond_index]
        z_post = self._sample(mu, logvar)
        z = torch.cat([z_post, c], dim=1)
        out = {
            "x_hat": self._assemble(self.decoder(z), c),
            "z": torch.cat([mu, c], dim=1),
            "z_sample": z,
            "mu": mu,
            "logvar": logvar,
        }
        if self.condition_head is not None:
            out["c_hat"] = self.condition_head(z_post)
        return out

    def reconstruction_terms(
        self,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        out: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        r"""``reconstruction`` :math:`= w_x\,\ell(y, \hat y)` and, when :math:`w_y > 0`,
        ``conditional`` :math:`= w_y\,\ell(c, \hat c(z))`."""
        terms = {
            "reconstruction": self.options.wx
            * loss(x[:, self.rest_index], out["x_hat"][:, self.rest_index])
        }
        if self.condition_head is not None:
            terms["conditional"] = self.options.wy * loss(x[:, self.cond_index], out["c_hat"])
        return terms

    def regularisers(
        self, x: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        kl = gaussian_kl(out["mu"], out["logvar"])
        if self.options.normalise_kl:
            kl = kl / (self.n_features - len(self.options.conditions))
        return {"kl": self.options.beta * kl}
