"""The train stage's second step: the learned probability model of the bounded codes.

After the autoencoder, the train stage quantises the training rows exactly as the bounded
mode will (same bounds, grids, dither and relations, via
:meth:`~baler_ext.codec.modes.BoundedMode.learned_codes`), chooses the coding order,
and trains the rate model (:mod:`baler_ext.codec.probability.fit`) on the training
split, with early stopping on the validation split. ``rate_history.csv`` records the
bits per row of both splits per epoch.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from baler_ext.codec import events
from baler_ext.codec.modes import BoundedMode
from baler_ext.codec.probability import learned as lrn
from baler_ext.codec.residuals import resolve_bounds
from baler_ext.config import Config
from baler_ext.io.source import open_sources
from baler_ext.model_store import TrainedModel
from baler_ext.project import atomic_path

log = logging.getLogger(__name__)

RATE_HISTORY = "rate_history.csv"


def training_events(cfg: Config, n_rows: int) -> np.ndarray | None:
    """Event starts of the training matrix's rows (None when the rows have no events or
    the matrix was subsampled)."""
    if cfg.training.max_rows is not None and n_rows >= cfg.training.max_rows:
        return None
    parts = []
    source: str | None = ""
    for src in open_sources(cfg):
        for chunk in src.chunks():
            if source == "":
                source = events.source_of(chunk.counts, chunk.passthrough,
                                          cfg.compression.event_column)
            if source is None:
                return None
            parts.append(events.event_starts(source, chunk.counts, chunk.passthrough,
                                             len(chunk.values)))
    first = np.concatenate(parts) if parts else np.zeros(0, bool)
    return first if first.size == n_rows else None


def static_bits(codes: np.ndarray) -> float:
    """Empirical entropy (bits) of one code stream: what a static histogram costs."""
    if codes.size == 0:
        return 0.0
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def train_rate_model(cfg: Config, values: np.ndarray, train_idx: np.ndarray,
                     val_idx: np.ndarray, trained: TrainedModel, out_dir: Path
                     ) -> lrn.LearnedModel | None:
    """Train the learned probability model for ``cfg``'s bounds; None when there is
    nothing to learn (no independent column)."""
    from baler_ext.codec.probability.fit import feature_scaling, fit_rate_model, greedy_order

    rate = cfg.rate
    comp = cfg.compression
    mode = BoundedMode(trained, comp, cfg.training.device)
    mode.learned = None
    mode.configure({}, {c for c in trained.lossless_columns if c in mode.columns})
    rows = values[: rate.max_rows] if rate.max_rows else values
    mode.relations = None
    mode._setup_relations(rows)
    columns = [c for c in mode.independent()
               if mode.coders[mode.columns.index(c)].kind != "raw"]
    if not columns:
        log.info("no independent column to model: no learned probability model")
        return None
    bounds = {c: b.to_dict() for c, b in zip(mode.columns, resolve_bounds(comp.bounds,
                                                                          mode.columns),
                                            strict=True)}
    anchors = np.array([float(np.median(values[train_idx, mode.columns.index(c)]))
                        for c in columns])
    settings = {"bounds": bounds, "relations": [r.to_dict() for r in mode.relations or []],
                "order_method": rate.order}
    mode.learned = lrn.LearnedModel.untrained(columns, settings={**settings,
                                                                  "anchors": anchors.tolist()})
    codes, _, _ = mode.learned_codes(values)
    if rate.order == "greedy":
        order = greedy_order(codes[train_idx], columns)
        columns = [columns[j] for j in order]
        anchors = anchors[order]
        codes = codes[:, order]
    first = training_events(cfg, len(values)) if rate.event_context == "auto" else None
    event_context = first is not None
    latent = None
    zc = None
    if rate.side_information == "latent":
        z = mode.autoencoder.latent(values)
        z_tr = z[train_idx]
        lo = np.quantile(z_tr, 0.001, axis=0)
        hi = np.quantile(z_tr, 0.999, axis=0)
        step = np.where(hi > lo, (hi - lo) / ((1 << rate.latent_bits) - 1), 1.0)
        latent = {"dims": int(z.shape[1]), "bits": rate.latent_bits, "lo": lo.tolist(),
                  "step": step.tolist()}
        mode.learned.latent = latent
        zc = mode.latent_codes(values)
    offset, exponent = feature_scaling(codes[train_idx])
    probe = lrn.LearnedModel.untrained(columns, offset, exponent, event_context, latent)
    _, prev = lrn.event_phases(first, len(values))
    x = probe.inputs(len(values), prev, probe.column_features(codes), zc)
    ctx = x[:, : probe.net.n_ctx]
    z_bits = sum(static_bits(zc[val_idx, j]) for j in range(zc.shape[1])) if zc is not None \
        else 0.0
    stat = {c: static_bits(codes[val_idx, j]) / max(len(val_idx), 1)
            for j, c in enumerate(columns)}
    log.info("training the learned probability model on %d rows: %d columns, event context "
             "%s, latent side information %s", len(train_idx), len(columns),
             "on" if event_context else "off", "on" if latent else "off")
    result = fit_rate_model(
        codes[train_idx], columns, ctx[train_idx], (codes[val_idx], ctx[val_idx]),
        event_context=event_context, latent=latent, hidden=list(rate.hidden),
        epochs=rate.epochs, batch_size=rate.batch_size, learning_rate=rate.learning_rate,
        seed=cfg.training.seed, patience=rate.patience,
        settings={**settings, "anchors": anchors.tolist()})
    model = result.model
    learned_bits = lrn.code_bits(model, codes, first, zc)[val_idx].sum(axis=0)
    summary = {"val_static_bits_per_row": sum(stat.values()),
               "val_learned_bits_per_row": result.history[-1]["val_bits_per_row"]
               if result.history else float("nan"),
               "val_latent_bits_per_row": z_bits / max(len(val_idx), 1),
               "static_bits_per_column": stat, "train_seconds": result.seconds,
               "epochs": len(result.history),
               "learned_bits_per_column": dict(zip(columns, (learned_bits / max(
                   len(val_idx), 1)).tolist(), strict=True))}
    model.settings["summary"] = summary
    write_rate_history(out_dir / RATE_HISTORY, result.history)
    log.info("learned probability model: %.2f bits/row on validation (static histograms: "
             "%.2f) in %.1f s", summary["val_learned_bits_per_row"],
             summary["val_static_bits_per_row"], result.seconds)
    return model


def write_rate_history(path: Path, history: list[dict[str, float]]) -> None:
    """``rate_history.csv``: epoch, train and validation bits per row, learning rate."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["epoch", "train_bits_per_row",
                                                "val_bits_per_row", "lr"])
        writer.writeheader()
        writer.writerows(history)
