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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from baler_ext.codec import events
from baler_ext.codec.modes import BoundedMode
from baler_ext.codec.probability import learned as lrn
from baler_ext.codec.relations import Relation
from baler_ext.codec.residuals import resolve_bounds
from baler_ext.config import Config, RateConfig
from baler_ext.devices import resolve_device
from baler_ext.io.source import open_sources
from baler_ext.model_store import TrainedModel
from baler_ext.project import atomic_path
from baler_ext.stages.compress import column_plan

log = logging.getLogger(__name__)

RATE_HISTORY = "rate_history.csv"
#: epochs of each short fit when the coding order is searched
ORDER_TRIAL_EPOCHS = 5


def training_context(cfg: Config, n_rows: int) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Event starts and integer columns (one value per row) of the training matrix's rows,
    read chunk by chunk as compress will see them. Events are None when the rows have no
    event structure; both are empty when the matrix was subsampled (``training.max_rows``),
    since its rows are then no longer consecutive."""
    firsts: list[np.ndarray | None] = []
    ints: list[dict[str, np.ndarray]] = []
    source: str | None = ""
    total = 0
    for src in open_sources(cfg):
        for chunk in src.chunks():
            if source == "":
                source = events.source_of(
                    chunk.counts, chunk.passthrough, cfg.compression.event_column
                )
            n = len(chunk.values)
            total += n
            firsts.append(events.event_starts(source, chunk.counts, chunk.passthrough, n))
            ints.append(events.row_integers(chunk.counts, chunk.passthrough, n))
    if total != n_rows:
        log.info(
            "the training rows were subsampled (training.max_rows): no event or integer "
            "context for the learned probability model"
        )
        return None, {}
    first = (
        None
        if source is None or not firsts
        else np.concatenate([f for f in firsts if f is not None])
    )
    names = set.intersection(*(set(d) for d in ints)) if ints else set()
    integers = {c: np.concatenate([d[c] for d in ints]) for c in sorted(names)}
    if first is not None and first.size != n_rows:
        first = None
    return first, {c: v for c, v in integers.items() if v.size == n_rows}


def pick_aux(
    integers: dict[str, np.ndarray], event_column: str, max_distinct: int = 4096
) -> list[str]:
    """Integer columns worth using as context: not the event id, not constant, and with at
    most ``max_distinct`` values (counts, flags, indices rather than identifiers)."""
    out = []
    for name, v in integers.items():
        if name == event_column or v.size == 0:
            continue
        distinct = np.unique(v).size
        if 1 < distinct <= max_distinct:
            out.append(name)
    return out


def static_bits(codes: np.ndarray) -> float:
    """Empirical entropy (bits) of one code stream: what a static histogram costs."""
    if codes.size == 0:
        return 0.0
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def train_rate_model(
    cfg: Config,
    values: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    trained: TrainedModel,
    out_dir: Path,
) -> lrn.LearnedModel | None:
    """Train the learned probability model for ``cfg``'s bounds on the project's inputs
    (events and integer columns read as compress will see them); write
    ``rate_history.csv``. None when there is nothing to learn."""
    first, integers = training_context(cfg, len(values))
    sources = open_sources(cfg)
    column_dtypes = {c: sources[0].layout.branch(c).dtype for c in trained.normaliser.columns}
    plan = column_plan(
        cfg,
        trained.normaliser.columns,
        column_dtypes,
        trained.lossless_columns,
        trained.meta.get("exact_values") or {},
    )
    # the model is being trained: the mode only yields its codes (probability_model =
    # "learned" would demand the model that does not exist yet)
    mode = BoundedMode(
        trained, replace(plan.mode_cfg, probability_model="static"), cfg.training.device
    )
    model = fit_learned(
        mode,
        values,
        train_idx,
        val_idx,
        first,
        integers,
        cfg.rate,
        cfg.training.seed,
        resolve_device(cfg.training.device),
        plan.lossless,
        plan.sentinels,
    )
    if model is not None:
        write_rate_history(out_dir / RATE_HISTORY, model.settings.pop("history"))
    return model


def fit_learned(
    mode: BoundedMode,
    values: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    first: np.ndarray | None,
    integers: dict[str, np.ndarray],
    rate: RateConfig,
    seed: int,
    device: Any = "cpu",
    lossless: set[str] | None = None,
    exact: dict[str, np.ndarray] | None = None,
) -> lrn.LearnedModel | None:
    """Fit the learned model of ``mode`` (an unconfigured bounded mode) on ``values``.

    The training codes come from :meth:`BoundedMode.learned_codes`, so they are exactly
    what compress will code; ``first`` and ``integers`` are the rows' event starts and
    integer columns (the context). The history is left in ``settings["history"]``.
    """
    from baler_ext.codec.probability.fit import (
        RateFitResult,
        feature_scaling,
        fit_rate_model,
        greedy_order,
    )

    comp = mode.cfg
    if rate.max_rows is not None:  # the first rows: training time stays bounded
        train_idx = np.sort(train_idx)[: rate.max_rows]
        val_idx = np.sort(val_idx)[: max(1, rate.max_rows // 4)]
    mode.learned = None
    if lossless is None:
        lossless = {c for c in mode.trained.lossless_columns if c in mode.columns}
    mode.configure({}, lossless, exact=exact)
    rows = values[: rate.max_rows] if rate.max_rows else values
    mode.relations = None
    mode._setup_relations(rows)
    columns = [c for c in mode.independent() if mode.coders[mode.columns.index(c)].kind != "raw"]
    found: list[Relation] = list(mode.relations or [])
    derived = [
        r.target
        for r in found
        if mode.coders[mode.columns.index(r.target)].kind != "raw"
        and all(c in columns for c in r.inputs)
    ]
    mode.relations = [r for r in found if r.target in derived]
    if not columns:
        log.info("no independent column to model: no learned probability model")
        return None
    bounds = {
        c: b.to_dict()
        for c, b in zip(mode.columns, resolve_bounds(comp.bounds, mode.columns), strict=True)
    }
    anchors = np.array(
        [float(np.median(values[train_idx, mode.columns.index(c)])) for c in columns]
    )
    settings = {
        "bounds": bounds,
        "relations": [r.to_dict() for r in mode.relations or []],
        "order_method": rate.order,
        "dither": mode.dither,
        "augment": rate.augment,
    }
    n_ind = len(columns)
    columns = columns + derived
    settings["relations"] = [r.to_dict() for r in mode.relations]
    mode.learned = lrn.LearnedModel.untrained(
        columns, settings={**settings, "anchors": anchors.tolist()}
    )
    # with refit the validation rows are augmented too (the refit trains on them); the
    # fits that choose train on the training rows and their copies only
    refit = rate.refit and len(val_idx) > 0
    pool = np.union1d(train_idx, val_idx) if refit else train_idx
    values, first, integers, all_idx, origin = _augment(
        mode, found, values, first, integers, pool, rate, seed
    )
    train_idx = all_idx[~np.isin(origin[all_idx], val_idx)] if refit else all_idx
    codes, _, _ = mode.learned_codes(values)
    u = mode.learned_dither(len(values))
    if rate.event_context != "auto":
        first = None
    event_context = first is not None
    aux = None
    names = pick_aux(integers, comp.event_column) if rate.integer_context == "auto" else []
    aux_values = np.stack([integers[c] for c in names], axis=1) if names else None
    if aux_values is not None:
        off, ex = feature_scaling(aux_values[train_idx])
        aux = {"names": names, "offset": off.tolist(), "exponent": ex.tolist()}
    latent = None
    zc = None
    if rate.side_information == "latent":
        z = mode.autoencoder.latent(values)
        z_tr = z[train_idx]
        lo = np.quantile(z_tr, 0.001, axis=0)
        hi = np.quantile(z_tr, 0.999, axis=0)
        step = np.where(hi > lo, (hi - lo) / ((1 << rate.latent_bits) - 1), 1.0)
        latent = {
            "dims": int(z.shape[1]),
            "bits": rate.latent_bits,
            "lo": lo.tolist(),
            "step": step.tolist(),
        }
        mode.learned.latent = latent
        zc = mode.latent_codes(values)
    _, prev = lrn.event_phases(first, len(values))

    def fit(
        order: list[int],
        epochs: int,
        mixture: int = rate.mixture,
        start: lrn.LearnedModel | None = None,
        rows: np.ndarray = train_idx,
    ) -> RateFitResult:
        """Train with the independent columns in ``order`` (derived ones after) on
        ``rows`` (the training split; with the validation rows: a refit)."""
        full = [*order, *range(n_ind, len(columns))]
        cols = [columns[j] for j in full]
        k = codes[:, full]
        uk = None if u is None else u[:, full]
        offset, exponent = feature_scaling(k[rows])
        probe = lrn.LearnedModel.untrained(cols, offset, exponent, event_context, latent, aux=aux)
        ctx = probe.inputs(len(values), prev, probe.column_features(k, uk), zc, aux_values)[
            :, : probe.net.n_ctx
        ]
        return fit_rate_model(
            k[rows],
            cols,
            ctx[rows],
            (k[val_idx], ctx[val_idx]),
            event_context=event_context,
            latent=latent,
            hidden=list(rate.hidden),
            epochs=epochs,
            batch_size=rate.batch_size,
            learning_rate=rate.learning_rate,
            schedule=rate.schedule,
            seed=seed,
            patience=rate.patience,
            dither=None if uk is None else (uk[rows], uk[val_idx]),
            aux=aux,
            device=device,
            settings={**settings, "anchors": anchors[order].tolist()},
            mixture=mixture,
            mixed=None if rate.mixture_columns == "all" else n_ind,
            start=start,
            keep_last=rows is not train_idx,
        )

    natural = list(range(n_ind))
    candidates = {"natural": natural}
    if rate.order in ("greedy", "search"):
        candidates["greedy"] = greedy_order(codes[train_idx, :n_ind], columns[:n_ind])
    if rate.order == "search" and len(candidates["greedy"]) > 1:
        candidates["reverse_greedy"] = candidates["greedy"][::-1]
    if rate.order != "search":
        chosen = rate.order
    else:  # short fits of each candidate, the best on the validation split wins
        trial = {
            name: fit(order, min(rate.epochs, ORDER_TRIAL_EPOCHS)).history[-1]["val_bits_per_row"]
            for name, order in candidates.items()
        }
        chosen = min(trial, key=lambda n: trial[n])
        settings["order_trials"] = trial
        log.info(
            "coding order search (%d epochs each, validation bits/row): %s -> %s",
            ORDER_TRIAL_EPOCHS,
            ", ".join(f"{n} {v:.2f}" for n, v in trial.items()),
            chosen,
        )
    order = candidates[chosen]
    settings["order_method"] = f"{rate.order}: {chosen}"
    full = [*order, *range(n_ind, len(columns))]
    columns = [columns[j] for j in full]
    anchors = anchors[order]
    codes = codes[:, full]
    u = None if u is None else u[:, full]
    z_bits = sum(static_bits(zc[val_idx, j]) for j in range(zc.shape[1])) if zc is not None else 0.0
    stat = {c: static_bits(codes[val_idx, j]) / max(len(val_idx), 1) for j, c in enumerate(columns)}
    log.info(
        "training the learned probability model on %d rows: %d columns (%s), event "
        "context %s, latent side information %s, integer context %s",
        len(train_idx),
        len(columns),
        ", ".join(columns),
        "on" if event_context else "off",
        "on" if latent else "off",
        ", ".join(names) or "none",
    )
    if rate.mixture > 1 and rate.mixture_start != "scratch":
        # one logistic first and a mixture started from it ("single"), and with "both"
        # also a mixture trained from scratch; the best on the validation split is kept
        # (a mixture alone is harder to optimise: from scratch it lost to one logistic at
        # tight bounds, from the logistic it won there but less at looser ones)
        single = fit(natural, rate.epochs, 1)
        fits = {
            "one logistic": single,
            "mixture from one logistic": fit(natural, rate.epochs, rate.mixture, single.model),
        }
        if rate.mixture_start == "both":
            fits["mixture from scratch"] = fit(natural, rate.epochs)
        rates = {name: min(h["val_bits_per_row"] for h in r.history) for name, r in fits.items()}
        best_name = min(rates, key=lambda n: rates[n])
        settings["mixture_trials"] = {**rates, "chosen": best_name}
        log.info(
            "validation bits/row: %s -> %s",
            ", ".join(f"{n} {v:.2f}" for n, v in rates.items()),
            best_name,
        )
        result = fits[best_name]
        starts = {
            "one logistic": (1, None),
            "mixture from one logistic": (rate.mixture, single.model),
        }
        chosen_as = starts.get(best_name, (rate.mixture, None))
    else:
        result = fit(natural, rate.epochs)
        chosen_as = (rate.mixture, None)
    picked = result
    if refit and result.history:
        # the chosen fit's epochs (up to its best validation epoch), on every row
        best_epoch = min(result.history, key=lambda h: h["val_bits_per_row"])["epoch"]
        log.info(
            "refit on the %d training and validation rows (%d epochs)", len(all_idx), best_epoch
        )
        result = fit(natural, int(best_epoch), *chosen_as, rows=all_idx)
        settings["refit"] = {"rows": len(all_idx), "epochs": int(best_epoch)}
    model = result.model
    for key in ("mixture_trials", "refit"):
        if key in settings:
            model.settings[key] = settings[key]
    learned_bits = lrn.code_bits(model, codes, first, zc, u, aux_values)[val_idx].sum(axis=0)
    summary = {
        "val_static_bits_per_row": sum(stat.values()),
        # the chosen fit's best validation rate (a refit has seen the validation rows)
        "val_learned_bits_per_row": min(h["val_bits_per_row"] for h in picked.history)
        if picked.history
        else float("nan"),
        "val_latent_bits_per_row": z_bits / max(len(val_idx), 1),
        "static_bits_per_column": stat,
        "train_seconds": result.seconds + (picked.seconds if picked is not result else 0.0),
        "epochs": len(result.history),
        "learned_bits_per_column": dict(
            zip(columns, (learned_bits / max(len(val_idx), 1)).tolist(), strict=True)
        ),
    }
    model.settings["summary"] = summary
    model.settings["history"] = picked.history + (
        [{**h, "refit": 1} for h in result.history] if picked is not result else []
    )
    log.info(
        "learned probability model: %.2f bits/row on validation (static histograms: "
        "%.2f) in %.1f s",
        summary["val_learned_bits_per_row"],
        summary["val_static_bits_per_row"],
        result.seconds,
    )
    return model


def _augment(
    mode: BoundedMode,
    relations: list[Relation],
    values: np.ndarray,
    first: np.ndarray | None,
    integers: dict[str, np.ndarray],
    train_idx: np.ndarray,
    rate: RateConfig,
    seed: int,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The training matrix with ``rate.augment`` symmetry copies appended
    (:mod:`baler_ext.stages.augment`), its event starts and integer columns repeated,
    the training split extended to the copies (the validation split is unchanged) and
    each row's source row (its own index for the original rows)."""
    from baler_ext.stages.augment import augmented_copies, kinematics

    origin = np.arange(len(values))
    if rate.augment == 0:
        return values, first, integers, train_idx, origin
    kin = kinematics(relations, mode.columns)
    if not (kin.rotates or kin.reflects):
        log.info("rate.augment: no kinematic relation found, the training rows are not augmented")
        return values, first, integers, train_idx, origin
    # the copies need the rows up to the last training row only (a row's event context
    # is an earlier row), which bounds the work when rate.max_rows cut the training split
    n, k = len(values), rate.augment
    m = int(train_idx.max()) + 1 if len(train_idx) else 0
    head = values[:m]
    frozen = np.zeros(m, bool)
    for j in kin.indices():
        col = head[:, j]
        frozen |= ~np.isfinite(col)
        sentinels = mode.exact.get(mode.columns[j])  # the mode's exact values
        if sentinels is not None and len(sentinels):
            frozen |= np.isin(col, sentinels)
    head_first = None if first is None else np.asarray(first[:m], bool)
    copies = augmented_copies(head, head_first, kin, k, seed, frozen)
    log.info(
        "rate.augment: %d rotated/reflected copies of the %d rows the rate model trains on (%s)",
        k,
        len(train_idx),
        ", ".join(mode.columns[j] for j in kin.indices()),
    )
    if head_first is not None:
        head_first = head_first.copy()
        if m:
            head_first[0] = True  # a copy never continues the event before it
        first = np.concatenate([np.asarray(first, bool), *([head_first] * k)])
    return (
        np.concatenate([values, copies]),
        first,
        {name: np.concatenate([col, *([col[:m]] * k)]) for name, col in integers.items()},
        np.concatenate([train_idx, *(train_idx + n + i * m for i in range(k))]),
        np.concatenate([origin, *([origin[:m]] * k)]),
    )


def write_rate_history(path: Path, history: list[dict[str, float]]) -> None:
    """``rate_history.csv``: epoch, train and validation bits per row, learning rate, and
    ``refit`` (1 on the epochs of the refit on training and validation rows, whose
    validation rate is in-sample)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(
            fh,
            fieldnames=["epoch", "train_bits_per_row", "val_bits_per_row", "lr", "refit"],
            restval=0,
        )
        writer.writeheader()
        writer.writerows(history)
