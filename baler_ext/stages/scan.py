"""``--mode scan``: train every combination of the ``[scan]`` grid and rank them.

Each combination is the project's config with the grid values applied, trained
as a sub-project under ``output/scan/<run-id>/`` (its model in
``output/scan/<run-id>/output/model/``). ``output/scan/scan.csv`` and
``scan.md`` list the runs ranked by validation reconstruction loss (the total
validation loss is listed too, but it holds each model's own regularisers and
is not comparable across model families), with the per-column RMS relative
error on the validation split. When ``[analysis]`` is configured, each run is also compressed,
decompressed and fitted, and the table gains the fitted mass and width and their
shifts in units of the combined statistical error.
"""

from __future__ import annotations

import copy
import csv
import itertools
import logging
import math
import re
from pathlib import Path
from typing import Any

from baler_ext.config import Config, config_from_dict, to_dict, toml_value
from baler_ext.errors import BalerError, ConfigError
from baler_ext.project import Project, atomic_path
from baler_ext.stages.train import train

log = logging.getLogger(__name__)

SCAN_DIR = "scan"


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid, as ``{"section.key": value}`` dicts, in grid order."""
    for key, values in grid.items():
        if len(key.split(".")) < 2:
            raise ConfigError(f"[scan] key {key!r} must be section.key, e.g. model.latent_dim")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[scan] '{key}' must be a non-empty list of values")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def run_config(cfg: Config, overrides: dict[str, Any]) -> Config:
    """``cfg`` with ``{"section.key": value}`` applied, validated anew."""
    raw = copy.deepcopy(to_dict(cfg))
    raw.pop("scan", None)
    for key, value in overrides.items():
        node = raw
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"[scan] '{key}': '{part}' is not a table")
        node[last] = value
    raw = {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in raw.items()
           if v is not None}
    where = f"{cfg.source or 'config'} [scan] {overrides}"
    return config_from_dict(raw, where, source=cfg.source)


def run_id(index: int, overrides: dict[str, Any]) -> str:
    """A folder name such as ``003_latent_dim=8_name=wae``."""
    parts = [f"{k.split('.')[-1]}={v}" for k, v in overrides.items()]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join([f"{index:03d}", *parts]))[:120]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def scan(project: Project, cfg: Config) -> list[dict[str, Any]]:
    """Train each combination of ``[scan]`` and write the ranked table.

    Returns
    -------
    list of dict
        One row per run, ranked best first (failed runs last, with their error).
    """
    if cfg.scan is None or not cfg.scan.grid:
        raise ConfigError('no [scan] grid in the config; add e.g. [scan] "model.latent_dim" = '
                          "[4, 8]")
    combos = combinations(cfg.scan.grid)
    out_dir = project.output / SCAN_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    for i, overrides in enumerate(combos):
        rid = run_id(i, overrides)
        row: dict[str, Any] = {"run": rid, **{k: v if isinstance(v, str) else toml_value(v)
                                              for k, v in overrides.items()}}
        log.info("scan %d/%d: %s", i + 1, len(combos), overrides)
        sub_project = Project(f"{project.name}/{SCAN_DIR}/{rid}", out_dir / rid)
        try:
            sub_cfg = run_config(cfg, overrides)
            outcome = train(sub_project, sub_cfg)
        except BalerError as exc:
            log.warning("scan run %s failed: %s", rid, exc)
            row["status"] = f"failed: {exc}"
            rows.append(row)
            continue
        hist = outcome.result.history
        best = next((h for h in hist if h["epoch"] == outcome.result.best_epoch), hist[-1])
        row.update({
            "status": "ok", "val_reconstruction": best.get("val_reconstruction", math.nan),
            "val_loss": outcome.result.best_val_loss, "best_epoch": outcome.result.best_epoch,
            "epochs": len(hist), "train_time_s": outcome.result.train_time_s,
        })
        if sub_cfg.analysis is not None:
            row.update(mass_shift(sub_project, sub_cfg))
        for col, err in outcome.validation["columns"].items():
            row[f"rms_rel_{col}"] = err["rms_rel"]
            if col not in columns:
                columns.append(col)
        rows.append(row)
    rows.sort(key=lambda r: (r["status"] != "ok", r.get("val_reconstruction", math.inf)))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if row["status"] == "ok" else ""
    shift = ["mass", "mass_shift_sigma", "width", "width_shift_sigma", "chi2_ndf", "fit_quality"]
    names = ["rank", "run", *cfg.scan.grid, "val_reconstruction", "val_loss", "best_epoch",
             "epochs", "train_time_s", *(f"rms_rel_{c}" for c in columns),
             *(shift if cfg.analysis is not None else []), "status"]
    write_tables(rows, names, out_dir)
    return rows


def mass_shift(project: Project, cfg: Config) -> dict[str, Any]:
    """Compress, decompress and fit one scan run; its mass/width and shifts in σ."""
    from baler_ext.stages.analyse import analyse
    from baler_ext.stages.compress import compress
    from baler_ext.stages.decompress import decompress

    try:
        compress(project, cfg)
        decompress(project, cfg)
        result = analyse(project, cfg)
    except BalerError as exc:  # a failed fit is a result of the run, not a crash of the scan
        log.warning("scan run %s: analysis failed: %s", project.name, exc)
        return {"mass": "fit failed", "width": "fit failed", "fit_quality": "failed"}
    c = result.comparison
    return {"mass": result.after.mass, "mass_shift_sigma": c.mass_shift_sigma,
            "width": result.after.width, "width_shift_sigma": c.width_shift_sigma,
            "chi2_ndf": result.after.chi2_ndf, "fit_quality": result.after.quality}


def write_tables(rows: list[dict[str, Any]], names: list[str], out_dir: Path) -> None:
    """``scan.csv`` (all fields) and ``scan.md`` (a Markdown table) in ``out_dir``."""
    with atomic_path(out_dir / "scan.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_fmt(r.get(n, "")) for n in names) + " |" for r in rows]
    text = ("# Scan, ranked by validation reconstruction loss\n\n"
            "rms_rel_X: RMS of (decompressed - original) / original of column X on the "
            "validation split. fit_quality: good, poor (chi2 p-value below "
            "analysis.min_p_value) or failed (invalid, at a limit, or a collapsed peak); "
            "*_shift_sigma: shift in units of its paired-bootstrap error.\n\n"
            + "\n".join(lines) + "\n")
    with atomic_path(out_dir / "scan.md") as tmp:
        tmp.write_text(text)
