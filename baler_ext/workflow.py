"""Workflows: one dataset, several model configurations, one comparison table.

A workflow file (TOML) names a base project config and a list of runs, each a
set of overrides of that config::

    base = "../projects/example/config.toml"   # relative to the workflow file
    output = "output/compare_models"          # relative to the workflow file
    rms_columns = ["pt", "mass"]

    [[run]]
    label = "sae"
    set = { "model.name" = "sae" }

Each run becomes a project folder ``<output>/<label>/`` holding its resolved
``config.toml`` (inputs made absolute) and the usual ``output/`` tree; every
stage runs there (train, compress, decompress, and analyse when the base config
has ``[analysis]``). The table ``comparison.md`` / ``comparison.csv`` and the plot
``comparison.png`` are written to ``<output>/``.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from baler_ext.config import apply_overrides, config_from_dict, toml_value
from baler_ext.errors import BalerError, ConfigError
from baler_ext.project import Project, atomic_path
from baler_ext.registry import suggest

log = logging.getLogger(__name__)

WORKFLOW_KEYS = ("base", "output", "rms_columns", "run")
RUN_KEYS = ("label", "set")


@dataclass
class RunSpec:
    """One configuration of a workflow: a label and ``section.key`` overrides."""

    label: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workflow:
    """A parsed workflow file."""

    path: Path
    base: Path
    output: Path
    rms_columns: list[str]
    runs: list[RunSpec]


def load_workflow(path: Path) -> Workflow:
    """Read and validate a workflow file; errors name the file and the key."""
    if not path.is_file():
        raise ConfigError(f"workflow file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for key in raw:
        if key not in WORKFLOW_KEYS:
            raise ConfigError(
                f"{path}: unknown key '{key}'{suggest(key, WORKFLOW_KEYS)}; "
                f"valid keys: {', '.join(WORKFLOW_KEYS)}"
            )
    if "base" not in raw or not raw.get("run"):
        raise ConfigError(f"{path}: needs 'base' (a project config) and at least one [[run]]")
    runs = []
    for i, item in enumerate(raw["run"]):
        for key in item:
            if key not in RUN_KEYS:
                raise ConfigError(
                    f"{path}: run {i + 1}: unknown key '{key}'"
                    f"{suggest(key, RUN_KEYS)}; valid keys: label, set"
                )
        label = str(item.get("label", f"run{i + 1}"))
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", label):
            raise ConfigError(f"{path}: run label {label!r} must be letters, digits, _ . + -")
        runs.append(RunSpec(label, dict(item.get("set", {}))))
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: run labels must be unique, got {labels}")
    folder = path.resolve().parent
    return Workflow(
        path,
        (folder / raw["base"]).resolve(),
        (folder / raw.get("output", f"output/{path.stem}")).resolve(),
        list(raw.get("rms_columns", ["pt", "mass"])),
        runs,
    )


def _absolute_inputs(raw: dict[str, Any], base_dir: Path) -> None:
    data = raw.setdefault("data", {})
    inputs = data.get("input", ["data/*.parquet"])
    inputs = [inputs] if isinstance(inputs, str) else inputs
    data["input"] = [str(p if Path(p).is_absolute() else (base_dir / p)) for p in inputs]


def prepare_run(wf: Workflow, run: RunSpec, overrides: Sequence[str] = ()) -> Project:
    """Write the run's resolved config into ``<output>/<label>/config.toml``.

    The run's own ``set`` is applied to the base config first, then ``overrides``
    (the command line's ``--set`` and ``--device``), which thus win.
    """
    raw = tomllib.loads(wf.base.read_text(encoding="utf-8"))
    apply_overrides(raw, [f"{k}={toml_value(v)}" for k, v in run.overrides.items()])
    apply_overrides(raw, overrides)
    _absolute_inputs(raw, wf.base.parent)
    config_from_dict(raw, f"{wf.path} (run {run.label})")  # validate before writing
    project = Project.locate(run.label, wf.output)
    project.root.mkdir(parents=True, exist_ok=True)
    lines = []
    for section, table in raw.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    with atomic_path(project.config_path) as tmp:
        tmp.write_text("\n".join(lines))
    return project


def _rms(project: Project, cfg: Any, columns: list[str]) -> dict[str, float]:
    """Relative RMS error per column, ``rel_rms`` = rms(x̂ − x) / rms(x), over every input
    (:func:`baler_ext.evaluation.scores.rel_rms`)."""
    from baler_ext.evaluation.scores import rel_rms
    from baler_ext.io.source import read_columns
    from baler_ext.stages.analyse import sample_pairs

    out: dict[str, float] = {}
    for src, restored in sample_pairs(project, cfg):
        a = read_columns(src, cfg.data.format, cfg.data.tree, columns)
        b = read_columns(restored, "auto", cfg.output.tree or cfg.data.tree, columns)
        for c in columns:
            out[c] = rel_rms(a[c].to_numpy(float), b[c].to_numpy(float))
    return out


def run_one(wf: Workflow, run: RunSpec, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run every stage of one configuration (``overrides`` from the command line applied
    last) and collect its row of the table."""
    from baler_ext.config import load_config
    from baler_ext.stages.pipeline import run_all

    project = prepare_run(wf, run, overrides)
    cfg = load_config(project.config_path)
    row: dict[str, Any] = {
        "label": run.label,
        "model": cfg.model.name,
        "mode": cfg.compression.mode,
    }
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    try:
        run_all(project, cfg, results)
    except BalerError as exc:  # keep the stages that finished: a failed fit is a result
        row["error"] = str(exc)
        log.error("run %s failed: %s", run.label, exc)
        if "decompress" not in results:
            return row
    row["wall_s"] = time.perf_counter() - t0
    train = results.get("train")
    if train is not None:
        row["train_s"] = train.result.train_time_s
        row["val_loss"] = train.result.best_val_loss
    files = results.get("compress", [])
    if files:  # the same definitions as --mode info (payload: without lossless columns)
        from baler_ext.stages.info import compute_ratios, decoder_bytes, describe

        decoder = decoder_bytes(project)
        sizes: dict[str, int] = {}
        for info in (describe(f.path, decoder) for f in files):
            for group, n in info["bytes_by_section"].items():
                sizes[group] = sizes.get(group, 0) + n
        ratios = compute_ratios(sizes, sum(f.raw_float64_bytes for f in files), decoder)
        row["ratio_payload"] = ratios["payload_vs_float64"]
        row["ratio_with_decoder"] = ratios.get("payload_with_decoder_vs_float64")
    try:
        row.update({f"rel_rms_{c}": v for c, v in _rms(project, cfg, wf.rms_columns).items()})
    except BalerError as exc:
        row["error"] = str(exc)
    analysis = results.get("analyse")
    if analysis is not None:
        a, b, c = analysis.before, analysis.after, analysis.comparison
        row.update(
            {
                "mass_before": a.mass,
                "mass_before_err": a.mass_err,
                "mass": b.mass,
                "mass_err": b.mass_err,
                "width": b.width,
                "width_err": b.width_err,
                "mass_shift_sigma": c.mass_shift_sigma,
                "width_shift_sigma": c.width_shift_sigma,
                "width_before": a.width,
                "width_before_err": a.width_err,
                "chi2_ndf_before": a.chi2_ndf,
                "fit_quality_before": a.quality,
                "chi2_ndf": b.chi2_ndf,
                "fit_quality": b.quality,
                "fit_notes": "; ".join(b.quality_notes),
                "shift_error": c.error_method,
            }
        )
    return row


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.{digits}f}"
    return str(v)


def write_tables(wf: Workflow, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """Write ``comparison.csv``, ``comparison.md`` and ``comparison.png``."""
    wf.output.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    csv_path = wf.output / "comparison.csv"
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    head = ["run", "model", "mode", "ratio (payload)", "ratio (+decoder)"]
    head += [f"rel. RMS {c}" for c in wf.rms_columns]
    head += ["mass [GeV]", "width [GeV]", "χ²/ndf", "fit", "Δmass/σ", "Δwidth/σ", "train [s]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = next((r for r in rows if "mass_before" in r), None)
    if ref is not None:
        lines.append(
            f"| original | — | — | 1 | 1 | {' | '.join('0' for _ in wf.rms_columns)} | "
            f"{ref['mass_before']:.2f} ± {ref['mass_before_err']:.2f} | "
            f"{ref['width_before']:.2f} ± {ref['width_before_err']:.2f} | "
            f"{_fmt(ref.get('chi2_ndf_before'), 2)} | {ref.get('fit_quality_before')} "
            "| 0 | 0 | — |"
        )
    for r in rows:
        mass = (
            f"{r['mass']:.2f} ± {r['mass_err']:.2f}"
            if "mass" in r
            else "fit failed"
            if "error" in r
            else "—"
        )
        width = f"{r['width']:.2f} ± {r['width_err']:.2f}" if "width" in r else mass
        cells = [
            r["label"],
            r["model"],
            r["mode"],
            _fmt(r.get("ratio_payload"), 2),
            _fmt(r.get("ratio_with_decoder"), 2),
        ]
        cells += [_fmt(r.get(f"rel_rms_{c}")) for c in wf.rms_columns]
        quality = r.get("fit_quality", "failed" if "error" in r else "—")
        cells += [
            mass,
            width,
            _fmt(r.get("chi2_ndf"), 2),
            quality,
            _fmt(r.get("mass_shift_sigma"), 1),
            _fmt(r.get("width_shift_sigma"), 1),
            _fmt(r.get("train_s"), 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    md_path = wf.output / "comparison.md"
    legend = (
        "\n\nfit: quality of the decompressed sample's fit (good; poor: p-value below "
        "analysis.min_p_value; failed: invalid, parameter at a limit, or the peak collapsed "
        "to a couple of bins, so its numbers are not a measurement). Δ/σ: shift in units "
        "of its paired-bootstrap error.\n"
    )
    with atomic_path(md_path) as tmp:
        tmp.write_text(
            f"# {wf.path.stem}\n\nbase config: `{wf.base}`\n\n" + "\n".join(lines) + legend
        )
    png_path = wf.output / "comparison.png"
    _plot(rows, png_path)
    return {"csv": csv_path, "markdown": md_path, "plot": png_path}


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    from baler_ext.plotting import hep_figure, save_png

    fitted = [r for r in rows if "mass" in r]
    with hep_figure(figsize=(11, 0.5 * max(len(rows), 3) + 2)) as fig:
        axes = fig.subplots(1, 2, sharey=True)
        for ax, key, title in (
            (axes[0], "mass", "fitted mass [GeV]"),
            (axes[1], "width", "fitted width [GeV]"),
        ):
            y = np.arange(len(fitted))
            ax.errorbar(
                [r[key] for r in fitted],
                y,
                xerr=[r[f"{key}_err"] for r in fitted],
                fmt="o",
                color="#d62728",
                label="decompressed",
            )
            if fitted:
                ref, err = fitted[0][f"{key}_before"], fitted[0][f"{key}_before_err"]
                ax.axvspan(ref - err, ref + err, color="0.8", label="original ± 1σ")
                ax.axvline(ref, color="black", lw=1)
            ax.set_yticks(y, labels=[r["label"] for r in fitted])
            ax.set_xlabel(title)
        axes[0].legend(loc="best", fontsize=9)
        save_png(fig, path.parent, path.stem)


def run_workflow(path: Path, overrides: Sequence[str] = ()) -> dict[str, Path]:
    """Run every configuration of a workflow and write the comparison table.

    ``overrides`` (``section.key=value`` items, the command line's ``--set`` and
    ``--device``) apply to every run, after the run's own ``set``.
    """
    wf = load_workflow(path)
    rows = []
    for run in wf.runs:
        log.info("workflow %s: run %s (%s)", wf.path.name, run.label, run.overrides)
        rows.append(run_one(wf, run, overrides))
    paths = write_tables(wf, rows)
    log.info("comparison written to %s", paths["markdown"])
    return paths
