"""Vector-quantised variational autoencoder (VQ-VAE)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from baler_ext.errors import ConfigError
from baler_ext.models.base import Autoencoder, mlp
from baler_ext.models.registry import register_model
from baler_ext.models.sae import DEFAULT_HIDDEN

CODEBOOK_UPDATES = ("loss", "ema")


@register_model("vqvae")
class VQVAE(Autoencoder):
    r"""VQ-VAE for table rows (van den Oord, Vinyals & Kavukcuoglu, "Neural
    Discrete Representation Learning", NeurIPS 2017, arXiv:1711.00937).

    The encoder (``n -> 200 -> 100 -> 50 -> latent_dim``) output
    :math:`z_e` is cut into ``latent_dim / code_dim`` slots of ``code_dim``
    values; each slot is replaced by its nearest codebook vector
    :math:`e_k`, :math:`k = \arg\min_j \lVert z_e - e_j\rVert_2`, among
    ``codebook_size`` vectors. Gradients pass the quantiser straight through,
    :math:`z_q = z_e + \mathrm{sg}[e_k - z_e]`. The loss is

    .. math::

        \mathcal L = c(x, D(z_q)) + \lVert \mathrm{sg}[z_e] - e\rVert_2^2
        + \beta\,\lVert z_e - \mathrm{sg}[e]\rVert_2^2

    (both terms averaged per latent element), with the codebook term dropped
    when ``codebook_update = "ema"``: the codebook is then the exponential
    moving average of the vectors assigned to each code (paper App. A.1,
    decay :math:`\gamma`, Laplace-smoothed counts), updated in training-mode
    forward passes.

    API: :meth:`encode` returns the quantised latent :math:`z_q` (so the generic
    ``decode(encode(x))`` works and eval ``forward`` equals it);
    :meth:`encode_indices` returns the integer codes ``(batch, n_slots)``, int64. The
    codec stores the quantised latent like any other (it has no index path).

    Parameters
    ----------
    n_features, latent_dim, hidden, activation
        As for :class:`~baler_ext.models.sae.StackedAE`.
    options
        This model's :class:`Options` (``[model] options = {...}``); defaults when None.
    """

    codebook: torch.Tensor
    ema_count: torch.Tensor
    ema_sum: torch.Tensor

    @dataclass
    class Options:
        """Keys of ``[model] options``; each field's ``doc`` says what it sets."""

        codebook_size: int = field(default=512, metadata={"doc": "number K of codebook vectors"})
        code_dim: int = field(
            default=2,
            metadata={"doc": "dimension of a codebook vector; latent_dim must be a multiple of it"},
        )
        commitment: float = field(default=0.25, metadata={"doc": "commitment weight beta"})
        codebook_update: str = field(default="ema", metadata={"doc": "loss | ema"})
        ema_decay: float = field(default=0.99, metadata={"doc": "EMA decay gamma"})
        ema_epsilon: float = field(default=1e-5, metadata={"doc": "Laplace smoothing of counts"})

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        hidden: list[int] | None = None,
        activation: str = "leaky_relu",
        options: Options | None = None,
    ) -> None:
        super().__init__(n_features, latent_dim)
        o = self.options = options or self.Options()
        if o.code_dim < 1 or latent_dim % o.code_dim:
            raise ConfigError(
                f"vqvae: latent_dim {latent_dim} must be a multiple of code_dim {o.code_dim}"
            )
        if o.codebook_size < 2:
            raise ConfigError("vqvae: codebook_size must be >= 2")
        if o.codebook_update not in CODEBOOK_UPDATES:
            raise ConfigError(
                f"vqvae: codebook_update '{o.codebook_update}' is not one of "
                f"{', '.join(CODEBOOK_UPDATES)}"
            )
        if not 0.0 < o.ema_decay < 1.0:
            raise ConfigError("vqvae: ema_decay must be in (0, 1)")
        hidden = list(hidden or DEFAULT_HIDDEN)
        self.n_slots = latent_dim // o.code_dim
        self.encoder = mlp([n_features, *hidden, latent_dim], activation)
        self.decoder = mlp([latent_dim, *reversed(hidden), n_features], activation)
        init = torch.randn(o.codebook_size, o.code_dim)
        self.ema = o.codebook_update == "ema"
        if self.ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(o.codebook_size))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)

    def _slots(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], self.n_slots, self.options.code_dim)

    def _nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        flat = self._slots(z_e).reshape(-1, self.options.code_dim)
        d = (
            flat.pow(2).sum(1, keepdim=True)
            - 2.0 * flat @ self.codebook.T
            + self.codebook.pow(2).sum(1)[None, :]
        )
        return d.argmin(dim=1).reshape(z_e.shape[0], self.n_slots)

    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes ``(batch, n_slots)`` (int64) of the rows ``x``."""
        return self._nearest(self.encoder(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        idx = self.encode_indices(x)
        return self.codebook[idx].reshape(x.shape[0], self.latent_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def _ema_update(self, z_e: torch.Tensor, idx: torch.Tensor) -> None:
        o = self.options
        flat = self._slots(z_e).reshape(-1, o.code_dim)
        onehot = F.one_hot(idx.reshape(-1), o.codebook_size).to(flat.dtype)
        self.ema_count.mul_(o.ema_decay).add_(onehot.sum(0), alpha=1 - o.ema_decay)
        self.ema_sum.mul_(o.ema_decay).add_(onehot.T @ flat, alpha=1 - o.ema_decay)
        n = self.ema_count.sum()
        count = (self.ema_count + o.ema_epsilon) / (n + o.codebook_size * o.ema_epsilon) * n
        self.codebook.copy_(self.ema_sum / count[:, None])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z_e = self.encoder(x)
        idx = self._nearest(z_e)
        z_q = self.codebook[idx].reshape(x.shape[0], self.latent_dim)
        if self.training and self.ema:
            self._ema_update(z_e, idx)
        # straight-through estimator in training; exactly z_q in eval (a + (b - a) != b in floats)
        z_st = z_e + (z_q - z_e).detach() if self.training else z_q
        return {"x_hat": self.decode(z_st), "z": z_q, "z_e": z_e, "indices": idx}

    def regularisers(
        self, x: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        z_e, z_q = out["z_e"], out["z"]
        terms = {"commitment": self.options.commitment * F.mse_loss(z_e, z_q.detach())}
        if not self.ema:
            terms["codebook"] = F.mse_loss(z_q, z_e.detach())
        return terms
