"""``--mode train``: fit the normaliser on the training split and train the model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from baler_ext.config import Config, to_dict
from baler_ext.errors import InputDataError
from baler_ext.io.source import open_sources
from baler_ext.model_store import save_model
from baler_ext.models.base import build_model
from baler_ext.normalise import Normaliser
from baler_ext.project import Project
from baler_ext.training import TrainResult, fit, resolve_device, seed_everything, split_indices

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """What :func:`train` did."""

    result: TrainResult
    model_hash: str
    n_rows: int
    columns: list[str]


def load_training_matrix(cfg: Config) -> tuple[np.ndarray, list[str]]:
    """All compressed columns of every input (at most ``training.max_rows``, seeded)."""
    sources = open_sources(cfg)
    values = np.concatenate([s.read_values() for s in sources])
    columns = sources[0].columns
    if len(values) < 2:
        raise InputDataError(f"{len(values)} rows selected: too few to train on")
    if cfg.training.max_rows is not None and len(values) > cfg.training.max_rows:
        pick = np.random.default_rng(cfg.training.seed).choice(
            len(values), cfg.training.max_rows, replace=False)
        values = values[np.sort(pick)]
    return values, columns


def train(project: Project, cfg: Config) -> TrainOutcome:
    """Train the configured model on the project's inputs and save it."""
    seed_everything(cfg.training.seed)
    device = resolve_device(cfg.training.device)
    values, columns = load_training_matrix(cfg)
    train_idx, val_idx = split_indices(len(values), cfg.training.validation_fraction,
                                       cfg.training.seed)
    normaliser = Normaliser.fit(values[train_idx], columns, cfg.data.normalisation)
    n_active = len(normaliser.active)
    if n_active == 0:
        raise InputDataError("every selected column is constant: nothing for a model to learn")
    x = normaliser.transform(values)
    model = build_model(cfg.model, n_active)
    log.info("training %s on %d rows x %d columns (latent %d) on %s, %s",
             cfg.model.name, len(train_idx), n_active, model.latent_dim, device, cfg.model.dtype)
    out_dir = project.dir("model")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = fit(model, x[train_idx], x[val_idx], cfg.training, device,
                 history_path=out_dir / "history.csv")
    digest = save_model(out_dir, model.cpu(), cfg.model, normaliser, extra={
        "columns": columns, "train_rows": len(train_idx), "val_rows": len(val_idx),
        "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
        "train_time_s": result.train_time_s, "config": to_dict(cfg),
    })
    log.info("trained in %.1f s: best validation loss %.4g at epoch %d; model %s",
             result.train_time_s, result.best_val_loss, result.best_epoch, digest[:12])
    return TrainOutcome(result, digest, len(values), columns)
