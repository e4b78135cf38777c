r"""Reconstruction losses, registered by name.

Each loss takes the input ``x`` and reconstruction ``x_hat`` of shape
``(batch, n)`` and returns a scalar tensor in their dtype and on their device.

torch is imported inside the functions, so that the config can check
``training.loss`` against :data:`RECONSTRUCTION_LOSSES` without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from baler_ext.registry import Registry

if TYPE_CHECKING:
    import torch

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
RECONSTRUCTION_LOSSES: Registry[LossFn] = Registry("loss")


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator registering a reconstruction loss under ``name``."""
    return RECONSTRUCTION_LOSSES.register(name)


@register_loss("mse")
def mse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error, :math:`\frac{1}{Bn}\sum_{b,i} (\hat x_{bi} - x_{bi})^2`.

    Baler's default reconstruction loss (Bengtsson et al., arXiv:2305.02283).

    Parameters
    ----------
    x
        Input rows, shape ``(B, n)``.
    x_hat
        Reconstructed rows, same shape, dtype and device.

    Returns
    -------
    torch.Tensor
        A scalar in the inputs' dtype, on their device.
    """
    import torch

    return torch.mean((x_hat - x) ** 2)


@register_loss("mse_sum")
def mse_sum(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    r"""Squared error summed over columns, averaged over the batch,
    :math:`\frac{1}{B}\sum_{b}\sum_i (\hat x_{bi} - x_{bi})^2`.

    The scale of the WAE paper's reconstruction cost (Tolstikhin et al., ICLR 2018).

    Parameters
    ----------
    x
        Input rows, shape ``(B, n)``.
    x_hat
        Reconstructed rows, same shape, dtype and device.

    Returns
    -------
    torch.Tensor
        A scalar in the inputs' dtype, on their device.
    """
    import torch

    return torch.mean(torch.sum((x_hat - x) ** 2, dim=1))


@register_loss("l1_mean")
def l1_mean(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    r"""Mean absolute error, :math:`\frac{1}{Bn}\sum_{b,i} |\hat x_{bi} - x_{bi}|`.

    Less sensitive than the MSE to the tails of a column (e.g. jet pT).

    Parameters
    ----------
    x
        Input rows, shape ``(B, n)``.
    x_hat
        Reconstructed rows, same shape, dtype and device.

    Returns
    -------
    torch.Tensor
        A scalar in the inputs' dtype, on their device.
    """
    import torch

    return torch.mean(torch.abs(x_hat - x))


@register_loss("l1_sum")
def l1_sum(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    r"""Absolute error summed over columns, averaged over the batch,
    :math:`\frac{1}{B}\sum_{b}\sum_i |\hat x_{bi} - x_{bi}|`.

    Parameters
    ----------
    x
        Input rows, shape ``(B, n)``.
    x_hat
        Reconstructed rows, same shape, dtype and device.

    Returns
    -------
    torch.Tensor
        A scalar in the inputs' dtype, on their device.
    """
    import torch

    return torch.mean(torch.sum(torch.abs(x_hat - x), dim=1))


def reconstruction_loss(name: str) -> LossFn:
    """The loss registered as ``name``; a ConfigError lists the valid names."""
    return RECONSTRUCTION_LOSSES.get(name)


# --- regularisers ------------------------------------------------------------------------

IMQ_SCALES: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def mmd_imq(
    z: torch.Tensor,
    z_prior: torch.Tensor,
    prior_var: float = 1.0,
    scales: tuple[float, ...] | list[float] = IMQ_SCALES,
) -> torch.Tensor:
    r"""Unbiased MMD² estimate with the inverse-multiquadratic kernel, over several scales.

    With :math:`k_C(a, b) = C / (C + \lVert a - b\rVert^2)` and
    :math:`C = 2 d \sigma^2 s` for each scale :math:`s` (:math:`d` the latent
    size, :math:`\sigma^2` the prior variance), and :math:`k = \sum_s k_{C_s}`,

    .. math::

        \widehat{\mathrm{MMD}}^2 = \frac{1}{n(n-1)}\sum_{i\neq j} k(z_i, z_j)
        + \frac{1}{n(n-1)}\sum_{i\neq j} k(\tilde z_i, \tilde z_j)
        - \frac{2}{n^2}\sum_{i,j} k(z_i, \tilde z_j),

    the U-statistic of Gretton et al. (JMLR 13, 2012) as used by the WAE-MMD of
    Tolstikhin et al., "Wasserstein Auto-Encoders", ICLR 2018 (arXiv:1711.01558),
    Algorithm 2.

    Parameters
    ----------
    z
        Encoded batch ``(n, d)``.
    z_prior
        Samples of the prior ``(n, d)``, same dtype and device.
    prior_var
        :math:`\sigma^2` of the prior.
    scales
        Multipliers :math:`s` of the base kernel width.

    Returns
    -------
    torch.Tensor
        Scalar in ``z``'s dtype and on its device (may be slightly negative: unbiased).
    """
    import torch

    n, d = z.shape
    if n < 2:
        return z.new_zeros(())
    zz = torch.cdist(z, z).pow(2)
    pp = torch.cdist(z_prior, z_prior).pow(2)
    zp = torch.cdist(z, z_prior).pow(2)
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    total = z.new_zeros(())
    for s in scales:
        c = 2.0 * d * prior_var * s
        k_zz = (c / (c + zz))[off].sum() / (n * (n - 1))
        k_pp = (c / (c + pp))[off].sum() / (n * (n - 1))
        k_zp = (c / (c + zp)).sum() * 2.0 / (n * n)
        total = total + k_zz + k_pp - k_zp
    return total


def sliced_wasserstein(
    z: torch.Tensor, z_prior: torch.Tensor, n_projections: int = 50, p: int = 2
) -> torch.Tensor:
    r"""The sliced Wasserstein distance to the p-th power, :math:`SW_p^p(q_z, p_z)`.

    .. math::

        SW_p^p(\mu, \nu) = \frac{1}{L}\sum_{l=1}^{L} W_p^p(\theta_l^\top\#\mu,
        \theta_l^\top\#\nu), \qquad \theta_l \sim \mathcal U(S^{d-1}),

    computed with POT's :func:`ot.sliced_wasserstein_distance` (Flamary et al.,
    JMLR 22, 2021) on the torch tensors themselves, so it stays differentiable,
    in ``z``'s dtype and on its device. POT returns :math:`SW_p`; it is raised to
    the power ``p`` here, the quantity of Kolouri et al., "Sliced-Wasserstein
    Autoencoder: an embarrassingly simple generative model", ICLR 2019
    (arXiv:1804.01947), Eq. 13. The projections are drawn from torch's RNG (so
    they follow ``torch.manual_seed``) in ``z``'s dtype and device.

    Parameters
    ----------
    z
        Encoded batch ``(n, d)``.
    z_prior
        Samples of the prior ``(n, d)``, same dtype and device.
    n_projections
        Number :math:`L` of random directions :math:`\theta_l`.
    p
        Order of the Wasserstein distance.

    Returns
    -------
    torch.Tensor
        :math:`SW_p^p`, a scalar in ``z``'s dtype and on its device.
    """
    import ot
    import torch

    d = z.shape[1]
    theta = torch.randn(d, n_projections, dtype=z.dtype, device=z.device)
    theta = theta / torch.linalg.vector_norm(theta, dim=0, keepdim=True)
    sw = ot.sliced_wasserstein_distance(z, z_prior, projections=theta, p=p)
    return sw**p


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""KL divergence of :math:`\mathcal N(\mu, \mathrm{diag}\,\sigma^2)` from
    :math:`\mathcal N(0, I)`, summed over latent dimensions, averaged over the batch:

    .. math::

        \frac{1}{B}\sum_b \frac{1}{2}\sum_j \left(\mu_{bj}^2 + \sigma_{bj}^2
        - \log\sigma_{bj}^2 - 1\right)

    (Kingma & Welling, "Auto-Encoding Variational Bayes", arXiv:1312.6114, App. B).

    Parameters
    ----------
    mu
        Posterior means ``(B, d)``.
    logvar
        Posterior log-variances :math:`\log\sigma^2`, same shape.

    Returns
    -------
    torch.Tensor
        A scalar in ``mu``'s dtype and on its device.
    """
    import torch

    return 0.5 * torch.mean(torch.sum(mu.pow(2) + logvar.exp() - logvar - 1.0, dim=1))


def activation_l1(activations: list[torch.Tensor]) -> torch.Tensor:
    r"""L1 activation sparsity, :math:`\sum_l \frac{1}{B h_l}\sum_{b,j} |a^{(l)}_{bj}|`.

    The sparse-autoencoder penalty (Ng, "Sparse autoencoder", CS294A notes
    2011, L1 form) that Baler's ``reg_param`` was meant to weight; the training
    loop multiplies it by ``training.activation_l1``.

    Parameters
    ----------
    activations
        Outputs :math:`a^{(l)}` of the hidden layers, each ``(B, h_l)``.

    Returns
    -------
    torch.Tensor
        A scalar in the activations' dtype and on their device.

    Raises
    ------
    ValueError
        When the model exposed no activation layer.
    """
    import torch

    if not activations:
        raise ValueError("activation_l1: the model exposed no activation layers")
    return sum(torch.mean(torch.abs(a)) for a in activations)  # type: ignore[return-value]
