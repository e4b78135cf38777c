"""``--mode train``: fit the normaliser, train the model, save it with its history."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baler_ext.config import Config, to_dict
from baler_ext.devices import resolve_device
from baler_ext.errors import InputDataError
from baler_ext.evaluation.plots import LOSS_PLOT
from baler_ext.evaluation.scores import column_scores
from baler_ext.exact import detect_exact
from baler_ext.io.layout import GroupPlan
from baler_ext.io.source import open_sources
from baler_ext.model_store import TrainedModel, save_model
from baler_ext.models.base import Autoencoder, build_model
from baler_ext.normalise import Normaliser
from baler_ext.project import Project, atomic_path
from baler_ext.stages.group_plan import plan as plan_groups
from baler_ext.stages.groups import MIN_GROUP_ROWS, combined_hash, group_project, write_plan
from baler_ext.stages.rate import train_rate_model
from baler_ext.training import (
    CHECKPOINT,
    TrainResult,
    fit,
    init_distributed,
    init_weights,
    seed_everything,
    split_indices,
)

log = logging.getLogger(__name__)

VALIDATION_JSON = "validation.json"


@dataclass
class TrainOutcome:
    """What :func:`train` did."""

    result: TrainResult
    model_hash: str
    n_rows: int
    columns: list[str]
    validation: dict[str, Any] = field(default_factory=dict)


def load_training_matrix(cfg: Config) -> tuple[np.ndarray, list[str]]:
    """All compressed columns of every input (at most ``training.max_rows``, seeded)."""
    sources = open_sources(cfg)
    values = np.concatenate([s.read_values() for s in sources])
    columns = sources[0].columns
    if len(values) < 2:
        raise InputDataError(f"{len(values)} rows selected: too few to train on")
    if cfg.training.max_rows is not None and len(values) > cfg.training.max_rows:
        pick = np.random.default_rng(cfg.training.seed).choice(
            len(values), cfg.training.max_rows, replace=False
        )
        values = values[np.sort(pick)]
    return values, columns


@torch.no_grad()
def reconstruct(
    model: Autoencoder, normaliser: Normaliser, values: np.ndarray, batch_size: int = 8192
) -> np.ndarray:
    """``values`` (raw, all compressed columns) through the model in eval mode, raw units."""
    model.eval()
    p = next(model.parameters())
    x = normaliser.transform(values)
    parts = []
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[start : start + batch_size], dtype=p.dtype, device=p.device)
        parts.append(model(xb)["x_hat"].cpu().numpy())
    return normaliser.inverse(np.concatenate(parts) if parts else x[:0])


def zstd_bytes(arrays: list[np.ndarray]) -> int:
    """zstd (level 19) size of arrays: what shipping them beside the files costs."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=19)
    return sum(len(cctx.compress(np.ascontiguousarray(a).tobytes())) for a in arrays)


def write_loss_plot(history_csv: Path, out_dir: Path) -> Path | None:
    """``loss.png``: the loss columns of ``history.csv`` and the learning rate per epoch.

    Drawn by :func:`~baler_ext.evaluation.plots.plot_training_history` from the history
    itself (it leaves out wall-time columns such as ``epoch_time_s``), so that the
    evaluate stage can reuse the picture as its ``training_history.png``. None when the
    history has no epochs.
    """
    from baler_ext.evaluation.plots import plot_training_history

    with history_csv.open() as fh:
        if next(csv.DictReader(fh), None) is None:
            return None
    return plot_training_history(history_csv, out_dir, filename=LOSS_PLOT)


def train(project: Project, cfg: Config, resume: bool = False) -> TrainOutcome:
    """Train the configured model on the project's inputs and save it.

    Parameters
    ----------
    project
        The project; the model goes to ``output/model/``.
    cfg
        The validated config.
    resume
        Continue an interrupted run from ``output/model/checkpoint.pt``.

    Started by ``torchrun --nproc_per_node N -m baler_ext ... --mode train``, every
    process joins the process group (gloo on CPU, nccl on CUDA) and trains its shard
    with DistributedDataParallel; rank 0 alone writes the model, history and checkpoints
    (see :func:`baler_ext.training.fit` and ``docs/distributed.md``).
    """
    groups = plan_groups(cfg, lossless=(), passthrough=[])
    if groups is not None:
        groups = trainable_groups(project, cfg, groups)
    dist_ctx, device = init_distributed(resolve_device(cfg.training.device))
    try:
        if groups is None:
            return _train(project, cfg, resume, dist_ctx, device)
        return _train_groups(project, groups, resume, dist_ctx, device)
    finally:
        if dist_ctx is not None:
            import torch.distributed as dist

            dist.destroy_process_group()


def trainable_groups(
    project: Project, cfg: Config, groups: list[tuple[GroupPlan, Config]]
) -> list[tuple[GroupPlan, Config]]:
    """The groups of a whole-file project a model can be trained on, planned again
    without the others (recorded for compress, :func:`~baler_ext.stages.groups.write_plan`):

    - a float column holding NaN or inf is carried losslessly (``nan_policy`` cannot drop
      rows of one group only);
    - a group with fewer rows than :data:`~baler_ext.stages.groups.MIN_GROUP_ROWS`, or
      nothing but constant columns, is carried losslessly in the first group's container.
    """
    small: list[str] = []
    nonfinite: list[str] = []
    for gplan, gcfg in groups:
        values = np.concatenate([s.read_values(check_finite=False) for s in open_sources(gcfg)])
        finite = np.isfinite(values).all(axis=0)
        bad = [c for c, ok in zip(gplan.columns, finite, strict=True) if not ok]
        good = values[:, finite]
        varying = bool(len(good)) and bool(np.any(good.max(axis=0) > good.min(axis=0)))
        if bad:
            log.info("group %s: carried losslessly (NaN or inf): %s", gplan.name, ", ".join(bad))
            nonfinite += bad
        if len(values) < MIN_GROUP_ROWS or not varying:
            log.info(
                "group %s: %d rows%s; too little to train a model on, carried losslessly",
                gplan.name,
                len(values),
                "" if varying else ", nothing varying",
            )
            small.append(gplan.name)
    if small or nonfinite:
        again = plan_groups(cfg, lossless=small, passthrough=nonfinite)
        if again is None:
            raise InputDataError(
                "carried losslessly, the groups or columns above leave one structure group "
                "to compress; select it in data.columns and list the columns holding NaN "
                f"in data.passthrough ({', '.join(nonfinite) or 'none'})"
            )
        groups = again
    write_plan(project, [g.name for g, _ in groups], small, nonfinite)
    return groups


def _train_groups(
    project: Project,
    groups: list[tuple[GroupPlan, Config]],
    resume: bool,
    dist_ctx: Any,
    device: torch.device,
) -> TrainOutcome:
    """A whole-file project: one model per structure group, each trained on its group's
    rows into ``output/model/groups/<group>/`` (:mod:`baler_ext.stages.groups`)."""
    outcomes = []
    for plan, gcfg in groups:
        log.info(
            "group %s: %d columns (%s)",
            plan.name,
            len(plan.columns),
            ", ".join(plan.columns[:4]) + ("..." if len(plan.columns) > 4 else ""),
        )
        outcomes.append(
            (plan.name, _train(group_project(project, plan.name), gcfg, resume, dist_ctx, device))
        )
    last = outcomes[-1][1]
    return TrainOutcome(
        last.result,
        combined_hash([(name, o.model_hash) for name, o in outcomes]),
        sum(o.n_rows for _, o in outcomes),
        [c for _, o in outcomes for c in o.columns],
        {name: o.validation for name, o in outcomes},
    )


#: training keys that may change between a run and its resumption
RESUMABLE_KEYS = frozenset(
    {"epochs", "early_stopping_patience", "min_delta", "checkpoint", "device"}
)


def run_fingerprint(cfg: Config, normaliser: Normaliser) -> str:
    """SHA-256 of what a checkpoint is only valid for: the data selection, the fitted
    normaliser, the model and the training settings (bar :data:`RESUMABLE_KEYS`)."""
    training = {
        k: v for k, v in dataclasses.asdict(cfg.training).items() if k not in RESUMABLE_KEYS
    }
    blob = json.dumps(
        {
            "data": dataclasses.asdict(cfg.data),
            "model": dataclasses.asdict(cfg.model),
            "training": training,
            "normaliser": normaliser.to_dict(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _train(
    project: Project, cfg: Config, resume: bool, dist_ctx: Any, device: torch.device
) -> TrainOutcome:
    seed_everything(cfg.training.seed)
    values, columns = load_training_matrix(cfg)
    train_idx, val_idx = split_indices(
        len(values), cfg.training.validation_fraction, cfg.training.seed
    )
    normaliser = Normaliser.fit(values[train_idx], columns, cfg.data.normalisation)
    n_active = len(normaliser.active)
    if n_active == 0:
        raise InputDataError("every selected column is constant: nothing for a model to learn")
    x = normaliser.transform(values)
    model = build_model(cfg.model, n_active, columns=normaliser.active)
    init_weights(model, cfg.training.init)
    log.info(
        "training %s on %d rows x %d columns (latent %d) on %s, %s",
        cfg.model.name,
        len(train_idx),
        n_active,
        model.latent_dim,
        device,
        cfg.model.dtype,
    )
    out_dir = project.dir("model")
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / CHECKPOINT if cfg.training.checkpoint or resume else None
    result = fit(
        model,
        x[train_idx],
        x[val_idx],
        cfg.training,
        device,
        history_path=out_dir / "history.csv",
        checkpoint_path=checkpoint,
        resume=resume,
        dist_ctx=dist_ctx,
        fingerprint=run_fingerprint(cfg, normaliser),
    )
    if dist_ctx is not None and not dist_ctx.is_main:  # rank 0 writes the model
        return TrainOutcome(result, "", len(values), columns)
    restored = reconstruct(model, normaliser, values[val_idx])
    validation = {
        "rows": len(val_idx),
        "best_val_loss": result.best_val_loss,
        "columns": column_scores(values[val_idx], restored, columns),
    }
    with atomic_path(out_dir / VALIDATION_JSON) as tmp:
        tmp.write_text(json.dumps(validation, indent=1))
    try:
        write_loss_plot(out_dir / "history.csv", out_dir)
    except (ImportError, InputDataError) as exc:
        log.warning("no loss plot: %s", exc)
    learned = None
    model = model.cpu()
    exact_values = detect_exact(values[train_idx], columns)
    if cfg.compression.mode == "bounded" and cfg.rate.enabled:
        learned = train_rate_model(
            cfg,
            values,
            train_idx,
            val_idx,
            TrainedModel(
                model,
                normaliser,
                {
                    "hash": "",
                    "exact_values": exact_values,
                    "lossless_columns": model.lossless_columns,
                },
            ),
            out_dir,
        )
    digest = save_model(
        out_dir,
        model,
        cfg.model,
        normaliser,
        learned=learned,
        extra={
            "columns": columns,
            "train_rows": len(train_idx),
            "val_rows": len(val_idx),
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "train_time_s": result.train_time_s,
            "config": to_dict(cfg),
            "lossless_columns": model.lossless_columns,
            "lossless_latent_dims": model.lossless_latent_dims,
            # what a decoder needs besides a file: the autoencoder's decoder (latent mode and
            # the classical path with a latent) and the learned probability model (learned path)
            "decoder_bytes": zstd_bytes(
                [
                    v.detach().cpu().numpy()
                    for k, v in model.state_dict().items()
                    if not k.startswith("encoder")
                ]
            ),
            "rate_model_bytes": zstd_bytes(list(learned.to_arrays().values())) if learned else 0,
            "exact_values": exact_values,
        },
    )
    log.info(
        "trained in %.1f s: best validation loss %.4g at epoch %d; model %s",
        result.train_time_s,
        result.best_val_loss,
        result.best_epoch,
        digest[:12],
    )
    return TrainOutcome(result, digest, len(values), columns, validation)
