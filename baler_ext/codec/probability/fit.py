"""Training of the learned probability model (torch, float64): minimise the code length.

The loss is the ideal code length of the bounded codes in bits per row,

.. math::

    \\mathcal{L} = -\\frac{1}{N} \\sum_{r,i} \\log_2 \\left[
        F\\!\\left(\\frac{k_{r,i} - \\mu_{r,i} + \\tfrac12}{s_{r,i}}\\right)
      - F\\!\\left(\\frac{k_{r,i} - \\mu_{r,i} - \\tfrac12}{s_{r,i}}\\right)\\right],

a discretised logistic (Salimans et al., PixelCNN++, ICLR 2017) whose location
:math:`\\mu` and scale :math:`s = 2^{(\\ell - 16)/4}` come from a MADE (Germain et al.,
ICML 2015) — or a mixture of :math:`K` such logistics,
:math:`P(k) = \\sum_j \\pi_j P_j(k)`, :math:`\\pi = \\mathrm{softmax}(\\lambda \\ln 2 / 8)`
for integer logits :math:`\\lambda` in eighths of a bit (the coder's integer weights,
:func:`~baler_ext.codec.probability.tables.mixture_weights`, follow
:math:`2^{-\\Delta\\lambda/8}` to within their rounding).

Training is *quantisation-aware*: the forward pass rounds weights and biases
to multiples of :math:`2^{-Q}`, floors activations and the scale index exactly as
:class:`~baler_ext.codec.probability.intnet.IntMade` does (straight-through gradients,
Bengio et al. 2013), in float64, where all these numbers are exact — so the network
that is saved computes bit for bit what was trained.

The coding order is chosen here on the training codes (:func:`greedy_order`).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from torch import nn

from baler_ext.codec.probability import tables
from baler_ext.codec.probability.intnet import A_MAX, IntMade, Q, made_masks
from baler_ext.codec.probability.learned import MAX_SCALE, LearnedModel

log = logging.getLogger(__name__)


@dataclass
class RateFitResult:
    """The trained model and its per-epoch history (bits per row)."""

    model: LearnedModel
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def greedy_order(codes: np.ndarray, names: list[str]) -> list[int]:
    """A coding order chosen on training codes (forward greedy).

    Each step appends the column whose code is cheapest given the columns already chosen,
    the cost estimated by a Gaussian proxy: :math:`\\tfrac12 \\log_2` of the residual
    variance of a least-squares fit on the chosen columns and their squares (floored at
    a tenth of a code). Columns that the others predict well thus come late, after what
    predicts them.
    """
    x = codes.astype(np.float64)
    x = x[: min(len(x), 20000)]
    n, d = x.shape
    chosen: list[int] = []
    left = list(range(d))
    while left:
        if chosen:
            f = x[:, chosen]
            f = (f - f.mean(0)) / np.maximum(f.std(0), 1e-9)
            a = np.column_stack([np.ones(n), f, f * f])
        else:
            a = np.ones((n, 1))
        best, best_cost = left[0], math.inf
        for j in left:
            coef, *_ = np.linalg.lstsq(a, x[:, j], rcond=None)
            var = float(np.mean((x[:, j] - a @ coef) ** 2))
            cost = 0.5 * math.log2(max(var, 0.01))
            if cost < best_cost:
                best, best_cost = j, cost
        chosen.append(best)
        left.remove(best)
    log.info("coding order: %s", ", ".join(names[j] for j in chosen))
    return chosen


def feature_scaling(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer offset (median) and power-of-two exponent putting each column's code
    spread (robust std) near 256 feature units."""
    offset = np.median(codes, axis=0).astype(np.int64)
    q75, q25 = np.percentile(codes, [75, 25], axis=0)
    spread = np.maximum((q75 - q25) / 1.349, np.std(codes, axis=0) * 0.1)
    spread = np.maximum(spread, 0.25)
    exponent = np.clip(np.round(8 - np.log2(spread)), -24, 10).astype(np.int64)
    return offset, exponent


#: the cosine schedule's last learning rate, as a fraction of the first
COSINE_FLOOR = 0.02


def cost_cap(ell: torch.Tensor) -> torch.Tensor:
    """The most a code can cost the coder (bits) at scale index ``ell``: the tables' 16
    bits for the table symbol plus the :math:`s = \\max(0, \\lceil(\\ell - 31)/4\\rceil)`
    uniform low bits of a wide code (:func:`~baler_ext.codec.probability.learned._plan`).

    The loss is capped there, not at 16 bits: a loss floored at :math:`2^{-16}` gave
    the tail codes of the widest columns no gradient (P2 on the shared jets: pz, about
    13.7 bits of marginal entropy, cost 14.24 bits under the model and went to a static
    histogram), while a flat 48-bit cap let outliers of narrow columns dominate (P1 0.09
    bits per jet worse)."""
    s = torch.clamp(torch.ceil((ell.detach() - (tables.N_SCALES - 1)) / 4.0), min=0.0)
    return math.log2(tables.TOTAL) + s


class _StraightThrough(torch.autograd.Function):
    """Round (or floor) in the forward pass, the identity's gradient in the backward pass
    (the straight-through estimator, Bengio, Léonard & Courville 2013)."""

    @staticmethod
    def forward(ctx, x, floor):
        return torch.floor(x) if floor else torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(x, False)


def ste_floor(x: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(x, True)


def hidden_degrees(units: int, n_cols: int) -> np.ndarray:
    """Degrees 0..D-1 spread evenly over a layer's units (sorted)."""
    return (np.arange(units) * n_cols // units).astype(np.int64)


class QuantMade(nn.Module):
    """The float64 twin of :class:`IntMade` used for quantisation-aware training."""

    def __init__(self, n_ctx: int, n_cols: int, hidden: list[int], n_out: int = 2) -> None:
        super().__init__()
        self.n_ctx, self.n_cols, self.n_out = n_ctx, n_cols, n_out
        self.degrees = [hidden_degrees(h, n_cols) for h in hidden]
        masks = made_masks(n_ctx, n_cols, self.degrees, n_out)
        sizes = [n_ctx + n_cols, *hidden, n_out * n_cols]
        self.layers = nn.ModuleList(
            nn.Linear(a, b, dtype=torch.float64) for a, b in itertools.pairwise(sizes)
        )
        for i, m in enumerate(masks):
            self.register_buffer(f"mask{i}", torch.as_tensor(m))
        with torch.no_grad():  # start near the marginal (the output bias, set by the caller)
            self.linear(-1).weight.mul_(0.01)

    def linear(self, i: int) -> nn.Linear:
        """The ``i``-th linear layer (``self.layers`` holds only :class:`nn.Linear`)."""
        return cast(nn.Linear, self.layers[i])

    def quantised(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lin = self.linear(i)
        scale = float(1 << Q)
        w = ste_round(lin.weight * scale) / scale * getattr(self, f"mask{i}")
        b = ste_round(lin.bias * scale) / scale
        return w, b

    def grouped(self, x: torch.Tensor) -> torch.Tensor:
        """All outputs as one (rows, D, n_out) view: ``[:, i, j]`` is output ``j`` of
        column ``i`` (the output layer's units are column-major, ``n_out * i + j``). A
        view rather than ``n_out`` strided slices, so that the backward pass scatters
        one gradient instead of ``n_out`` zero-filled ones."""
        a = x
        for i in range(len(self.layers) - 1):
            w, b = self.quantised(i)
            a = torch.clamp(ste_floor(torch.addmm(b, a, w.T)), 0.0, float(A_MAX))
        w, b = self.quantised(len(self.layers) - 1)
        return torch.addmm(b, a, w.T).view(len(x), self.n_cols, self.n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The ``n_out`` outputs of every column, each (rows, D)."""
        out = self.grouped(x)
        return tuple(out[:, :, j] for j in range(self.n_out))

    def to_int(self) -> IntMade:
        scale = float(1 << Q)
        weights, biases = [], []
        with torch.no_grad():
            for i in range(len(self.layers)):
                lin = self.linear(i)
                mask = getattr(self, f"mask{i}").numpy()
                weights.append(np.rint(lin.weight.numpy() * scale) * mask)
                biases.append(np.rint(lin.bias.numpy() * scale))
        return IntMade(self.n_ctx, self.n_cols, weights, biases, self.degrees, self.n_out)


def _log_prob(k: torch.Tensor, mu: torch.Tensor, ell: torch.Tensor) -> torch.Tensor:
    """:math:`\\ln P(k)` of the discretised logistic (location ``mu``, scale index ``ell``).

    With :math:`a = (k - \\mu + \\tfrac12)/s` and :math:`b = a - 1/s`,
    :math:`P(k) = \\sigma(a) - \\sigma(b) = \\sigma(a)\\,\\sigma(-b)\\,(1 - e^{-1/s})`
    exactly, so :math:`\\ln P = \\ln\\sigma(a) + \\ln\\sigma(-b) + \\ln(-\\mathrm{expm1}(-1/s))`:
    stable in both tails and at small :math:`s`, and the last term depends on the
    scale alone.
    """
    inv = torch.pow(2.0, (tables.LADDER_ZERO - ell) / 4.0)  # 1/s
    plus = (k - mu + 0.5) * inv
    logsig = torch.nn.functional.logsigmoid
    return logsig(plus) + logsig(inv - plus) + torch.log(-torch.expm1(-inv))


def _warm_start(net: QuantMade, single: IntMade, mixture: int, std: np.ndarray) -> None:
    """Copy a one-logistic integer network into the mixture network ``net`` (in place):
    hidden layers as they are; per column, every component's location and scale rows
    from the logistic's (the components after the first shifted by a fraction of the
    feature spread and widened, so that they separate), logits 0 for the first and
    -48 (a weight of 2^-6) for the others."""
    scale = float(1 << Q)
    n_out, d = net.n_out, net.n_cols
    for i in range(len(net.layers) - 1):
        net.linear(i).weight.copy_(torch.as_tensor(single.weights[i] / scale))
        net.linear(i).bias.copy_(torch.as_tensor(single.biases[i] / scale))
    w_out, b_out = single.weights[-1] / scale, single.biases[-1] / scale
    last = net.linear(-1)
    last.weight.zero_()
    for i in range(d):
        for j in range(mixture):
            shift = 0.0 if j == 0 else 0.5 * std[i] * (1 if j % 2 else -1) * ((j + 1) // 2)
            loc, scl, lam = n_out * i + j, n_out * i + mixture + j, n_out * i + 2 * mixture + j
            last.weight[loc] = torch.as_tensor(w_out[2 * i])
            last.bias[loc] = float(b_out[2 * i]) + shift
            last.weight[scl] = torch.as_tensor(w_out[2 * i + 1])
            last.bias[scl] = float(b_out[2 * i + 1]) + (0.0 if j == 0 else 4.0)
            last.bias[lam] = 0.0 if j == 0 else -48.0


def logistic_bits(k: torch.Tensor, mu: torch.Tensor, ell: torch.Tensor) -> torch.Tensor:
    """:math:`-\\log_2 P(k)` under the discretised logistic (location ``mu``, scale index
    ``ell``), capped at :func:`cost_cap`."""
    floor = -cost_cap(ell) * math.log(2.0)
    return -torch.maximum(_log_prob(k, mu, ell), floor) / math.log(2.0)


def mixture_bits(
    k: torch.Tensor, mu: torch.Tensor, ell: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """:math:`-\\log_2 \\sum_j \\pi_j P_j(k)` for components along the last axis of
    ``mu``, ``ell`` and the integer logits ``lam`` (eighths of a bit), floored like
    :func:`logistic_bits`."""
    z = lam * (math.log(2.0) / 8.0)  # ln pi_j = z_j - logsumexp(z): one pass fewer
    lp = torch.logsumexp(z + _log_prob(k.unsqueeze(-1), mu, ell), dim=-1) - torch.logsumexp(
        z, dim=-1
    )
    floor = -cost_cap(ell.max(dim=-1).values) * math.log(2.0)  # the widest sets the split
    return -torch.maximum(lp, floor) / math.log(2.0)


def fit_rate_model(
    codes: np.ndarray,
    names: list[str],
    context: np.ndarray,
    val: tuple[np.ndarray, np.ndarray],
    *,
    event_context: bool,
    latent: dict | None,
    hidden: list[int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    dither: tuple[np.ndarray, np.ndarray] | None = None,
    settings: dict | None = None,
    patience: int = 8,
    aux: dict | None = None,
    device: str | torch.device = "cpu",
    mixture: int = 1,
    mixed: int | None = None,
    start: LearnedModel | None = None,
    schedule: str = "cosine",
    keep_last: bool = False,
) -> RateFitResult:
    """Train the learned probability model on the training codes.

    Parameters
    ----------
    codes
        (rows, D) int64 training codes of the columns in ``names`` (coding order).
    context
        (rows, C) context features (see :meth:`LearnedModel.inputs`).
    val
        Validation ``(codes, context)``.
    dither
        The dither offsets of the training and validation codes (None: no dither). The
        loss then scores :math:`k + u` against the network's :math:`\\mu`, which is
        :math:`k` against :math:`\\mu - u` (see :meth:`LearnedModel.params`).
    mixture
        Logistics per code (1: one; more: a mixture, initialised with its locations
        spread over the column's feature spread).
    mixed
        With a mixture, how many leading columns use it (None: all); the others are
        trained and coded with its first component alone.
    start
        A trained one-logistic model of the same columns, context and hidden layers: the
        mixture starts from it (component 0 = its logistic, the others near it with
        weight 2^-6 each), so it begins at that model's rate and refines it.
    schedule
        ``"cosine"``: the learning rate falls from ``learning_rate`` to
        ``COSINE_FLOOR`` of it along half a cosine over ``epochs`` (Loshchilov & Hutter,
        SGDR, ICLR 2017); ``"plateau"``: halved after two epochs without a better
        validation rate. Early stopping (``patience``) applies to both.
    keep_last
        Keep the network of the last epoch and train all ``epochs`` (a refit whose
        ``val`` rows are part of ``codes``: their rate is no longer a validation);
        otherwise the one with the best validation rate.
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    offset, exponent = feature_scaling(codes)
    d = codes.shape[1]
    n_ctx = context.shape[1]
    skeleton = LearnedModel.untrained(
        list(names), offset, exponent, event_context, latent, settings, aux, mixture, mixed
    )
    if skeleton.net.n_ctx != n_ctx:
        raise ValueError(f"{n_ctx} context features given, the model takes {skeleton.net.n_ctx}")
    u_tr, u_va = dither if dither is not None else (None, None)
    xs = [
        np.column_stack([context, skeleton.column_features(codes, u_tr)]),
        np.column_stack([val[1], skeleton.column_features(val[0], u_va)]),
    ]
    n_out = skeleton.net.n_out
    net = QuantMade(n_ctx, d, hidden, n_out).to(device)
    # start at the marginal: location = offset, scale index from the feature spread; a
    # mixture's components spread over +-1 feature standard deviation, equal weights
    with torch.no_grad():
        feat = xs[0][:, n_ctx:]
        std = np.maximum(feat.std(axis=0), 0.5)
        ell0 = tables.LADDER_ZERO + 4 * np.log2(0.55 * std)
        bias = net.linear(-1).bias
        med = np.median(feat, axis=0)
        for j in range(mixture):
            spread = (2.0 * j / (mixture - 1) - 1.0) if mixture > 1 else 0.0
            bias[j::n_out] = torch.as_tensor(med + spread * std, device=device)
            bias[mixture + j :: n_out] = torch.as_tensor(ell0, device=device)
            if mixture > 1:
                bias[2 * mixture + j :: n_out] = 0.0
        if start is not None:
            _warm_start(net, start.net, mixture, std)
    e_t = torch.as_tensor(exponent, dtype=torch.float64, device=device)
    o_t = torch.as_tensor(offset, dtype=torch.float64, device=device)

    step_t = torch.pow(2.0, -e_t)

    def bits(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        out = net.grouped(x)
        if mixture == 1:
            loc, scale = out[:, :, 0], out[:, :, 1]
            mu = o_t + loc * step_t
            ell = torch.clamp(ste_floor(scale) - 4 * e_t, 0.0, float(MAX_SCALE))
            return logistic_bits(k, mu, ell).sum(dim=1)
        m = d if mixed is None else mixed
        loc = out[:, :, :mixture]
        scale = out[:, :, mixture : 2 * mixture]
        lam = ste_floor(out[:, :, 2 * mixture :])
        mu = o_t[:, None] + loc * step_t[:, None]
        ell = torch.clamp(ste_floor(scale) - 4 * e_t[:, None], 0.0, float(MAX_SCALE))
        total = mixture_bits(k[:, :m], mu[:, :m], ell[:, :m], lam[:, :m]).sum(dim=1)
        if m < d:  # the first component alone
            total = total + logistic_bits(k[:, m:], mu[:, m:, 0], ell[:, m:, 0]).sum(dim=1)
        return total

    x_tr, x_va = (torch.as_tensor(a, device=device) for a in xs)
    # the undithered positions: P(k | mu - u) = P(k + u | mu)
    k_tr = torch.as_tensor(
        codes + (0.0 if u_tr is None else u_tr), dtype=torch.float64, device=device
    )
    k_va = torch.as_tensor(
        val[0] + (0.0 if u_va is None else u_va), dtype=torch.float64, device=device
    )
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate, foreach=True)
    sched: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    if schedule == "cosine":  # Loshchilov & Hutter 2017 (SGDR), one cycle without restarts
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(epochs, 1), eta_min=learning_rate * COSINE_FLOOR
        )
    elif schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}: cosine or plateau")
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    best, best_state, bad = math.inf, None, 0
    for epoch in range(1, epochs + 1):
        net.train()
        perm = torch.randperm(len(x_tr), generator=gen).to(device)
        total = 0.0
        for at in range(0, len(perm), batch_size):
            idx = perm[at : at + batch_size]
            loss = bits(x_tr[idx], k_tr[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            v = float(bits(x_va, k_va).mean()) if len(x_va) else float("nan")
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(v)
        else:
            sched.step()
        history.append(
            {
                "epoch": epoch,
                "train_bits_per_row": total / max(len(x_tr), 1),
                "val_bits_per_row": v,
                "lr": opt.param_groups[0]["lr"],
            }
        )
        log.info(
            "rate model epoch %d: %.2f bits/row train, %.2f validation",
            epoch,
            history[-1]["train_bits_per_row"],
            v,
        )
        if v < best - 1e-3:
            best, bad = v, 0
            best_state = {k: t.clone() for k, t in net.state_dict().items()}
        else:
            bad += 1
            if patience and bad >= patience and not keep_last:
                break
    if best_state is not None and not keep_last:
        net.load_state_dict(best_state)
    skeleton.net = net.cpu().to_int()
    return RateFitResult(skeleton, history, time.perf_counter() - t0)
