"""Baler's stacked autoencoders of the CMS studies, with BatchNorm and dropout variants."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from baler_ext.errors import ConfigError
from baler_ext.models.base import ACTIVATIONS, Autoencoder, mlp
from baler_ext.models.registry import register_model

DEFAULT_HIDDEN = [200, 100, 50]
DEFAULT_DROPOUT = [0.5, 0.4, 0.3, 0.2]


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

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        hidden: list[int] | None = None,
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__(n_features, latent_dim)
        hidden = list(hidden or DEFAULT_HIDDEN)
        self.encoder = mlp([n_features, *hidden, latent_dim], activation)
        self.decoder = mlp([latent_dim, *reversed(hidden), n_features], activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def _stage(a: int, b: int, activation: str, batch_norm: bool, dropout: float) -> list[nn.Module]:
    """``Linear(a, b) -> activation [-> BatchNorm1d(b)] [-> Dropout(p)]``."""
    layers: list[nn.Module] = [nn.Linear(a, b), ACTIVATIONS[activation]()]
    if batch_norm:
        layers.append(nn.BatchNorm1d(b))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


class _RegularisedSAE(Autoencoder):
    r"""Stacked autoencoder with BatchNorm and/or dropout (Baler's ``AE_BN``,
    ``AE_Dropout``, ``AE_Dropout_BN``).

    Encoder, for hidden widths :math:`h_1, \dots, h_k` (default 200, 100, 50)::

        x -> [Linear(n, h1) -> act -> BN(h1) -> Dropout(p1)] -> ...
          -> [Linear(h_{k-1}, hk) -> act -> BN(hk) -> Dropout(pk)]
          -> Linear(hk, z) -> Dropout(p_{k+1})

    and the decoder mirrors it: the layer of width :math:`h_i` has the same
    dropout rate :math:`p_i` in the decoder as in the encoder, and the
    reconstruction ``Linear(h1, n)`` is linear with no dropout. The default
    rates are 0.5 / 0.4 / 0.3 / 0.2 (the widths 200 / 100 / 50 / z). BatchNorm
    (Ioffe & Szegedy 2015, arXiv:1502.03167) follows the activation at every
    hidden stage; dropout (Srivastava et al. 2014, JMLR 15:1929) is inverted
    dropout, the identity in eval mode.

    Unlike Baler, :meth:`forward` always runs the encoder (Baler's
    ``AE_Dropout_BN.forward`` decoded the raw input), and every layer is built
    in the configured dtype (Baler's float32 layers met float64 data).

    Parameters
    ----------
    n_features, latent_dim, hidden, activation
        As for :class:`StackedAE`.
    options
        :class:`Options`; only the dropout variants take options.
    """

    batch_norm: bool = False
    use_dropout: bool = False

    @dataclass
    class Options:
        dropout: list[float] = field(
            default_factory=lambda: list(DEFAULT_DROPOUT),
            metadata={
                "doc": "dropout rates per encoder width (hidden widths then z), "
                "mirrored in the decoder; one more than the hidden widths"
            },
        )

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        hidden: list[int] | None = None,
        activation: str = "leaky_relu",
        options: Options | None = None,
    ) -> None:
        super().__init__(n_features, latent_dim)
        hidden = list(hidden or DEFAULT_HIDDEN)
        rates = [0.0] * (len(hidden) + 1)
        if self.use_dropout:
            rates = list((options or self.Options()).dropout)
            if rates == DEFAULT_DROPOUT and len(hidden) != len(DEFAULT_HIDDEN):
                # default rates for non-default depths: 0.5, 0.4, 0.3 ... and 0.2 on z
                rates = [max(0.5 - 0.1 * i, 0.2) for i in range(len(hidden))] + [0.2]
            if len(rates) != len(hidden) + 1 or not all(0.0 <= p < 1.0 for p in rates):
                raise ConfigError(
                    f"model.options.dropout needs {len(hidden) + 1} rates in [0, 1) "
                    f"(one per hidden width and one for the latent), got {rates}"
                )
        self.dropout_rates = rates
        enc: list[nn.Module] = []
        widths = [n_features, *hidden]
        for i in range(len(hidden)):
            enc += _stage(widths[i], widths[i + 1], activation, self.batch_norm, rates[i])
        enc.append(nn.Linear(hidden[-1], latent_dim))
        if rates[-1] > 0:
            enc.append(nn.Dropout(rates[-1]))
        dec: list[nn.Module] = []
        back = [latent_dim, *reversed(hidden)]
        back_rates = list(reversed(rates[:-1]))
        for i in range(len(hidden)):
            dec += _stage(back[i], back[i + 1], activation, self.batch_norm, back_rates[i])
        dec.append(nn.Linear(hidden[0], n_features))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


@register_model("sae_bn")
class StackedAEBatchNorm(_RegularisedSAE):
    """Stacked autoencoder with BatchNorm after every hidden activation.

    See :class:`_RegularisedSAE` for the architecture and references.
    """

    batch_norm = True
    Options = None  # type: ignore[assignment]  # this variant takes no options

    def __init__(
        self,
        n_features: int,
        latent_dim: int,
        hidden: list[int] | None = None,
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__(n_features, latent_dim, hidden, activation, None)


@register_model("sae_dropout")
class StackedAEDropout(_RegularisedSAE):
    """Stacked autoencoder with dropout 0.5 / 0.4 / 0.3 / 0.2, mirrored in the decoder.

    See :class:`_RegularisedSAE` for the architecture and references.
    """

    use_dropout = True


@register_model("sae_dropout_bn")
class StackedAEDropoutBatchNorm(_RegularisedSAE):
    """Stacked autoencoder with BatchNorm and dropout at every hidden stage.

    See :class:`_RegularisedSAE` for the architecture and references.
    """

    batch_norm = True
    use_dropout = True
