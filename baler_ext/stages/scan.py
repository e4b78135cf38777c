r"""``--mode scan``: train every combination of the ``[scan]`` grid and rank them.

Each combination is the project's config with the grid values applied, trained
as a sub-project under ``output/scan/<run-id>/`` (its model in
``output/scan/<run-id>/output/model/``). ``output/scan/scan.csv`` and
``scan.md`` list the runs ranked by ``scan.metric``, one metric in physical units
that does not depend on the run's own loss (:data:`METRICS`):

* ``rms_sigma`` (default): the mean over columns of the validation RMS error
  divided by the column's σ, computed in the columns' units after the inverse
  normalisation (:mod:`baler_ext.evaluation.scores`), lower is better;
* ``bounded_ratio``: the payload compression ratio of the run compressed in
  bounded mode (every value within its bound), higher is better;
* ``mass_shift``: :math:`|\Delta m|/\sigma` of the ``[analysis]`` fit after
  compression and decompression, lower is better.

The validation losses are listed too, but they hold each run's own loss
(``l1_sum`` is ~n times ``l1_mean``) and regularisers and are not comparable
across runs. The per-column ``rms_sigma_X`` follow. When ``[analysis]`` is
configured, each run is also compressed, decompressed and fitted, and the table
gains the fitted mass and width and their shifts in units of the combined
statistical error.
"""

from __future__ import annotations

import copy
import csv
import itertools
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baler_ext.config import Config, config_from_dict, to_dict, toml_value
from baler_ext.errors import BalerError, ConfigError
from baler_ext.evaluation.scores import mean_rms_sigma
from baler_ext.project import CONTAINER_SUFFIX, Project, atomic_path
from baler_ext.stages.group_plan import refuse_whole_file
from baler_ext.stages.train import TrainOutcome, train

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
    raw.pop("search", None)
    for key, value in overrides.items():
        node = raw
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"[scan] '{key}': '{part}' is not a table")
        node[last] = value
    raw = {
        k: {kk: vv for kk, vv in v.items() if vv is not None}
        for k, v in raw.items()
        if v is not None
    }
    where = f"{cfg.source or 'config'} {overrides}"
    return config_from_dict(raw, where, source=cfg.source)


def run_id(index: int, overrides: dict[str, Any]) -> str:
    """A folder name such as ``003_latent_dim=8_name=wae``."""
    parts = [f"{k.split('.')[-1]}={v}" for k, v in overrides.items()]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join([f"{index:03d}", *parts]))[:120]


@dataclass(frozen=True)
class Metric:
    """A ranking metric: its table column, direction and what it needs."""

    column: str
    higher_is_better: bool
    description: str
    needs_analysis: bool = False
    needs_bounded: bool = False


#: ``scan.metric`` / ``search.metric`` -> how it is read off a run's row
METRICS: dict[str, Metric] = {
    "rms_sigma": Metric(
        "val_rms_sigma",
        False,
        "validation RMS error / column σ, mean over columns (physical units)",
    ),
    "bounded_ratio": Metric(
        "bounded_ratio",
        True,
        "payload compression ratio vs float64 in bounded mode",
        needs_bounded=True,
    ),
    "mass_shift": Metric(
        "abs_mass_shift_sigma",
        False,
        "|Δm|/σ of the [analysis] fit after decompression",
        needs_analysis=True,
    ),
}


def check_metric(name: str, cfg: Config, where: str) -> Metric:
    """The metric ``name``; a ConfigError when ``cfg`` cannot provide it."""
    try:
        metric = METRICS[name]
    except KeyError:
        raise ConfigError(
            f"{where}: unknown metric '{name}'; valid: {', '.join(METRICS)}"
        ) from None
    if metric.needs_analysis and cfg.analysis is None:
        raise ConfigError(f"{where}: metric 'mass_shift' needs an [analysis] section")
    if metric.needs_bounded and cfg.compression.mode != "bounded":
        raise ConfigError(
            f"{where}: metric 'bounded_ratio' needs compression.mode = "
            '"bounded" (a ratio without a bound is not comparable)'
        )
    return metric


def evaluate_run(project: Project, cfg: Config, metric: Metric) -> dict[str, Any]:
    """Train one configuration and measure it: the row of the scan/search table.

    Returns the run's ``val_rms_sigma`` and per-column ``rms_sigma_X``, its losses,
    and, as the metric or ``[analysis]`` asks, ``bounded_ratio`` and the fitted
    mass and width with their shifts. Raises BalerError when training fails.
    """
    outcome: TrainOutcome = train(project, cfg)
    hist = outcome.result.history
    best = next((h for h in hist if h["epoch"] == outcome.result.best_epoch), hist[-1])
    scores = outcome.validation["columns"]
    row: dict[str, Any] = {
        "status": "ok",
        "val_rms_sigma": mean_rms_sigma(scores),
        "val_reconstruction": best.get("val_reconstruction", math.nan),
        "val_loss": outcome.result.best_val_loss,
        "best_epoch": outcome.result.best_epoch,
        "epochs": len(hist),
        "train_time_s": outcome.result.train_time_s,
    }
    row.update({f"rms_sigma_{c}": s["rms_sigma"] for c, s in scores.items()})
    if cfg.analysis is not None:
        row.update(mass_shift(project, cfg))
        if isinstance(row.get("mass_shift_sigma"), float):
            row["abs_mass_shift_sigma"] = abs(row["mass_shift_sigma"])
    elif metric.needs_bounded:
        from baler_ext.stages.compress import compress

        compress(project, cfg)
    if metric.needs_bounded:
        row["bounded_ratio"] = payload_ratio(project)
    return row


def payload_ratio(project: Project) -> float:
    """Payload compression ratio vs float64 over the project's compressed files."""
    from baler_ext.stages.info import compute_ratios, describe

    sizes: dict[str, int] = {}
    raw64 = 0
    for path in sorted(project.dir("compressed").glob(f"*{CONTAINER_SUFFIX}")):
        d = describe(path)
        raw64 += d["raw_float64_bytes"]
        for group, n in d["bytes_by_section"].items():
            sizes[group] = sizes.get(group, 0) + n
    return compute_ratios(sizes, raw64, None)["payload_vs_float64"]


def rank_rows(rows: list[dict[str, Any]], metric: Metric) -> None:
    """Sort ``rows`` in place, best first by ``metric`` (failed or unmeasured runs last),
    and number them in ``rank``."""

    def key(r: dict[str, Any]) -> tuple[bool, float]:
        v = r.get(metric.column)
        if r.get("status") != "ok" or not isinstance(v, float) or math.isnan(v):
            return True, math.inf
        return False, -v if metric.higher_is_better else v

    rows.sort(key=key)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if not key(row)[0] else ""


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
        raise ConfigError(
            'no [scan] grid in the config; add e.g. [scan] "model.latent_dim" = [4, 8]'
        )
    refuse_whole_file(cfg, "scan")
    metric = check_metric(cfg.scan.metric, cfg, "scan.metric")
    combos = combinations(cfg.scan.grid)
    out_dir = project.output / SCAN_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    for i, overrides in enumerate(combos):
        rid = run_id(i, overrides)
        row: dict[str, Any] = {
            "run": rid,
            **{k: v if isinstance(v, str) else toml_value(v) for k, v in overrides.items()},
        }
        log.info("scan %d/%d: %s", i + 1, len(combos), overrides)
        sub_project = Project(f"{project.name}/{SCAN_DIR}/{rid}", out_dir / rid)
        try:
            row.update(evaluate_run(sub_project, run_config(cfg, overrides), metric))
        except BalerError as exc:
            log.warning("scan run %s failed: %s", rid, exc)
            row["status"] = f"failed: {exc}"
        columns += [k for k in row if k.startswith("rms_sigma_") and k not in columns]
        rows.append(row)
    rank_rows(rows, metric)
    names = table_names(list(cfg.scan.grid), columns, metric, cfg.analysis is not None)
    write_tables(rows, names, out_dir, "scan", metric)
    return rows


def table_names(params: list[str], columns: list[str], metric: Metric, analysis: bool) -> list[str]:
    """Column order of the scan/search tables: rank, run, parameters, metric first."""
    shift = ["mass", "mass_shift_sigma", "width", "width_shift_sigma", "chi2_ndf", "fit_quality"]
    lead = ["rank", "run", *params, metric.column]
    rest = [
        "val_rms_sigma",
        "bounded_ratio",
        "val_reconstruction",
        "val_loss",
        "best_epoch",
        "epochs",
        "train_time_s",
        *columns,
        *(shift if analysis else []),
        "status",
    ]
    return lead + [
        n for n in rest if n not in lead and (n != "bounded_ratio" or metric.needs_bounded)
    ]


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
    return {
        "mass": result.after.mass,
        "mass_shift_sigma": c.mass_shift_sigma,
        "width": result.after.width,
        "width_shift_sigma": c.width_shift_sigma,
        "chi2_ndf": result.after.chi2_ndf,
        "fit_quality": result.after.quality,
    }


def write_tables(
    rows: list[dict[str, Any]], names: list[str], out_dir: Path, stem: str, metric: Metric
) -> None:
    """``<stem>.csv`` (all fields) and ``<stem>.md`` (a Markdown table) in ``out_dir``."""
    with atomic_path(out_dir / f"{stem}.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_fmt(r.get(n, "")) for n in names) + " |" for r in rows]
    order = "highest" if metric.higher_is_better else "lowest"
    text = (
        f"# {stem.capitalize()}, ranked by {metric.column} ({order} first)\n\n"
        f"{metric.column}: {metric.description}.\n"
        "rms_sigma_X: RMS of (reconstructed - original) / σ of column X on the validation "
        "split, in the column's units. val_reconstruction and val_loss are each run's own "
        "loss, not comparable across losses or models. fit_quality: good, poor (chi2 "
        "p-value below analysis.min_p_value) or failed (invalid, at a limit, or a "
        "collapsed peak); *_shift_sigma: shift in units of its paired-bootstrap error.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    with atomic_path(out_dir / f"{stem}.md") as tmp:
        tmp.write_text(text)
