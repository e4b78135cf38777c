r"""Reconstruction losses, registered by name.

Each loss takes the input ``x`` and reconstruction ``x_hat`` of shape
``(batch, n)`` and returns a scalar tensor in their dtype and on their device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from baler_ext.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RECONSTRUCTION_LOSSES: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator registering a reconstruction loss under ``name``."""

    def decorator(fn: LossFn) -> LossFn:
        RECONSTRUCTION_LOSSES[name] = fn
        return fn

    return decorator


@register_loss("mse")
def mse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error, :math:`\frac{1}{Bn}\sum_{b,i} (\hat x_{bi} - x_{bi})^2`."""
    return torch.mean((x_hat - x) ** 2)


@register_loss("mse_sum")
def mse_sum(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    r"""Squared error summed over columns, averaged over the batch,
    :math:`\frac{1}{B}\sum_{b}\sum_i (\hat x_{bi} - x_{bi})^2`."""
    return torch.mean(torch.sum((x_hat - x) ** 2, dim=1))


@register_loss("l1_mean")
def l1_mean(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    r"""Mean absolute error, :math:`\frac{1}{Bn}\sum_{b,i} |\hat x_{bi} - x_{bi}|`."""
    return torch.mean(torch.abs(x_hat - x))


@register_loss("l1_sum")
def l1_sum(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    r"""Absolute error summed over columns, averaged over the batch,
    :math:`\frac{1}{B}\sum_{b}\sum_i |\hat x_{bi} - x_{bi}|`."""
    return torch.mean(torch.sum(torch.abs(x_hat - x), dim=1))


def reconstruction_loss(name: str) -> LossFn:
    """The loss registered as ``name``; a ConfigError lists the valid names."""
    try:
        return RECONSTRUCTION_LOSSES[name]
    except KeyError:
        raise ConfigError(
            f"unknown loss '{name}'; valid losses: {', '.join(RECONSTRUCTION_LOSSES)}"
        ) from None
