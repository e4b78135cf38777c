"""The training loop: seeded split, Adam, early stopping, per-epoch history."""

from __future__ import annotations

import copy
import csv
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from baler_ext.config import TrainingConfig
from baler_ext.errors import ConfigError
from baler_ext.losses import reconstruction_loss
from baler_ext.models.base import Autoencoder

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that a run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``n`` rows into training and validation indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * validation_fraction))
    if n - n_val < 1:
        raise ConfigError(f"only {n} rows: too few to split off a validation set")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class TrainResult:
    """Outcome of :func:`fit`."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    train_time_s: float = 0.0


def _batch_terms(model: Autoencoder, x: torch.Tensor, loss_name: str) -> dict[str, torch.Tensor]:
    out = model(x)
    terms = {"reconstruction": reconstruction_loss(loss_name)(x, out["x_hat"])}
    terms.update(model.regularisers(x, out))
    terms["total"] = sum(terms.values())
    return terms


@torch.no_grad()
def evaluate_loss(model: Autoencoder, x: torch.Tensor, loss_name: str, batch_size: int) -> float:
    """Mean total loss over ``x`` in eval mode."""
    model.eval()
    total, n = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        total += float(_batch_terms(model, xb, loss_name)["total"]) * len(xb)
        n += len(xb)
    return total / max(n, 1)


def fit(model: Autoencoder, x_train: np.ndarray, x_val: np.ndarray, cfg: TrainingConfig,
        device: torch.device, history_path: Path | None = None) -> TrainResult:
    """Train ``model`` in place and restore its best-validation weights.

    Parameters
    ----------
    model
        The autoencoder, already in its dtype.
    x_train, x_val
        Normalised training and validation matrices.
    cfg
        The ``[training]`` section.
    device
        Where model, data and every loss term live.
    history_path
        Where to write ``history.csv`` (one row per epoch), if given.
    """
    dtype = next(model.parameters()).dtype
    model.to(device)
    xt = torch.as_tensor(x_train, dtype=dtype, device=device)
    xv = torch.as_tensor(x_val, dtype=dtype, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    result = TrainResult()
    best_state = copy.deepcopy(model.state_dict())
    stale = 0
    t_start = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc="train", unit="epoch", disable=None, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xt), generator=gen).to(device)
        sums: dict[str, float] = {}
        for start in range(0, len(xt), cfg.batch_size):
            xb = xt[perm[start : start + cfg.batch_size]]
            terms = _batch_terms(model, xb, cfg.loss)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(xb)
        val_loss = evaluate_loss(model, xv, cfg.loss, cfg.batch_size)
        row = {"epoch": epoch, "train_loss": sums.pop("total") / len(xt), "val_loss": val_loss}
        row.update({f"train_{k}": v / len(xt) for k, v in sums.items()})
        row["lr"] = opt.param_groups[0]["lr"]
        row["epoch_time_s"] = time.perf_counter() - t0
        result.history.append(row)
        bar.set_postfix(train=f"{row['train_loss']:.3g}", val=f"{val_loss:.3g}")
        log.debug("epoch %d: %s", epoch, row)
        if val_loss < result.best_val_loss - cfg.min_delta:
            result.best_val_loss, result.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
            stale = 0
        else:
            stale += 1
            if cfg.early_stopping_patience and stale >= cfg.early_stopping_patience:
                log.info("early stopping at epoch %d (best %d)", epoch, result.best_epoch)
                break
    bar.close()
    model.load_state_dict(best_state)
    result.train_time_s = time.perf_counter() - t_start
    if history_path is not None:
        write_history(result.history, history_path)
    return result


def write_history(history: list[dict[str, float]], path: Path) -> None:
    """Write the per-epoch history as CSV."""
    if not history:
        return
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
