"""``--mode evaluate``: the original inputs against their decompressed files, as a user sees them.

Both sides are read from disk with :func:`~baler_ext.io.source.read_columns`: each
input file of ``data.input`` and the file ``--mode decompress`` wrote for it
(:func:`baler_ext.stages.decompress.output_path`), restricted to the columns the
container compressed (its header's ``columns``). The rows of all input files are
concatenated in input order into **one** evaluation, written to
``output/evaluation/``::

    metrics.json            per-column residual/response metrics, distinct fraction and
                            comb diagnostic (baler_ext.evaluation.diagnostics), the
                            evaluation.cuts with their paired errors, flagged columns,
                            correlations, anomaly summary and the top-k rows,
                            compression breakdown, per-file summaries, bounds
    evaluation.pdf          every plot below, one page each (one page size)
    summary.png             the per-column table, cuts, ratios and flags (plots = summary)
    overview.png            every column before/after on one page (plots = summary)
    compression.png         bytes per section group and the ratios (as --mode info)
    training_history.png    loss curves of output/model/history.csv (when present)
    correlation.png         correlation matrices before, after, difference (plots = all)
    anomaly_scores.png      distribution of the per-row score (plots = all)
    latent_corner.png       pairwise latent dimensions, coloured by evaluation.colour_by
    latent_pca.png          2-D PCA projection of the latent, same colours (plots = all)
    hist_<column>.png       before/after histogram with a paired ratio band
    residual_<column>.png   residual and response distributions

With ``evaluation.plots = "summary"`` (the default) the per-column histogram and
residual plots are drawn for the flagged columns only (a comb, a broken bound, or a
cut that moved by more than 2 paired σ); ``"all"`` draws them for every column,
plus the correlation, anomaly and latent plots.

The latent is recomputed by encoding the *original* values with the project's trained
model (the latent the compressor stores), on at most ``evaluation.latent_rows`` rows
drawn with ``training.seed``; it is skipped, with a warning, when a container was
made by another model than the current one.

In bounded mode the container header holds each column's error bound; the bound use
``max |error| / bound`` of every column is reported, and **after** metrics.json and
every plot are written, :class:`~baler_ext.errors.BoundViolationError` is raised if
any value breaks its bound (the evidence stays on disk). With several inputs each
file is also checked against its own container's bounds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baler_ext import console
from baler_ext.analysis.selection import cut_columns
from baler_ext.codec.container import ContainerReader, decode_errors
from baler_ext.config import Config
from baler_ext.devices import resolve_device
from baler_ext.errors import (
    BalerError,
    BoundViolationError,
    ConfigError,
    InputDataError,
    ProjectError,
)
from baler_ext.evaluation import (
    check_bounds,
    evaluate_tables,
    summary_table,
    to_json,
    top_anomalies,
    write_report,
)
from baler_ext.evaluation.diagnostics import add_diagnostics
from baler_ext.evaluation.plots import LOSS_PLOT, MAX_DISCRETE_COLORS
from baler_ext.io.layout import GroupPlan, SourceLayout
from baler_ext.io.source import detect_format, read_columns, resolve_inputs
from baler_ext.project import CONTAINER_SUFFIX, Project
from baler_ext.registry import suggest
from baler_ext.stages.groups import group_config, group_project, inner_containers, is_grouped
from baler_ext.stages.info import describe_groups

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"
PDF_NAME = "evaluation.pdf"
#: At most this many passthrough columns are read to choose the default colour column.
_MAX_COLOUR_CANDIDATES = 20

Bounds = dict[str, tuple[str, float]]


@dataclass
class FilePair:
    """One input file, its container and its decompressed file."""

    source: Path
    container: Path
    decompressed: Path
    header: dict[str, Any]
    #: the container's :func:`baler_ext.stages.info.describe` when known (a group's)
    info: dict[str, Any] | None = None

    @property
    def layout(self) -> SourceLayout:
        return SourceLayout.from_dict(self.header["layout"])

    @property
    def columns(self) -> list[str]:
        return list(self.header["columns"])


@dataclass
class EvaluationResult:
    """What ``--mode evaluate`` wrote, and its metrics.

    Attributes
    ----------
    out_dir
        ``output/evaluation``.
    metrics_path, pdf
        ``metrics.json`` and the multi-page PDF.
    pngs
        Every PNG written, in the order of the PDF pages.
    metrics
        The metrics as written to ``metrics.json`` (numpy arrays kept).
    summary
        The per-column text table logged on the terminal.
    """

    out_dir: Path
    metrics_path: Path
    pdf: Path
    pngs: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


# --------------------------------------------------------------------------- inputs


def find_pairs(project: Project, cfg: Config) -> list[FilePair]:
    """Match every input file with its container and decompressed file.

    Raises
    ------
    ProjectError
        A container or a decompressed file is missing: names the mode to run first.
    """
    from baler_ext.stages.decompress import output_path

    pairs = []
    for src in resolve_inputs(cfg):
        container = project.dir("compressed") / f"{src.stem}{CONTAINER_SUFFIX}"
        if not container.is_file():
            raise ProjectError(
                f"no compressed file {container} for input {src.name}; run "
                f"'baler_ext --project {project.name} --mode compress' first"
            )
        with ContainerReader(container) as reader, decode_errors(container):
            header = reader.header
            reader.verify_decoder()
            layout = SourceLayout.from_dict(header["layout"])
        out = output_path(project, cfg, layout, container)
        if not out.is_file():
            raise ProjectError(
                f"no decompressed file {out} for input {src.name}; run "
                f"'baler_ext --project {project.name} --mode decompress' first"
            )
        if out.stat().st_mtime < container.stat().st_mtime:
            log.warning(
                "%s is older than %s: it may be stale; rerun --mode decompress",
                out.name,
                container.name,
            )
        pairs.append(FilePair(src, container, out, header))
    columns = pairs[0].columns
    for p in pairs[1:]:
        if p.columns != columns:
            raise InputDataError(
                f"{p.container}: its columns differ from {pairs[0].container}'s; "
                "recompress the project with --mode compress"
            )
    return pairs


def _bound_tuple(spec: Any) -> tuple[str, float] | None:
    """``{"rel": 1e-3}``, ``("rel", 1e-3)`` or ``{"kind": "rel", "value": 1e-3}`` -> tuple."""
    if isinstance(spec, Mapping):
        if "kind" in spec and "value" in spec:
            spec = (spec["kind"], spec["value"])
        elif "bound" in spec:
            return _bound_tuple(spec["bound"])
        else:
            items = [(k, v) for k, v in spec.items() if k in ("abs", "rel")]
            if len(items) != 1:
                return None
            spec = items[0]
    if isinstance(spec, list | tuple) and len(spec) == 2 and spec[0] in ("abs", "rel"):
        try:
            return str(spec[0]), float(spec[1])
        except (TypeError, ValueError):
            return None
    return None


def _per_column_entries(node: Any, columns: Sequence[str]) -> dict[str, Any]:
    """A ``{column: x}`` mapping or a list aligned with ``columns`` -> ``{column: x}``."""
    if isinstance(node, Mapping):
        return {c: node[c] for c in columns if c in node}
    if isinstance(node, list) and len(node) == len(columns):
        return dict(zip(columns, node, strict=True))
    return {}


def header_bounds(header: Mapping[str, Any]) -> Bounds:
    """Per-column error bounds stored in a container header (bounded mode), else ``{}``.

    Read defensively: the bounds may sit in ``header["bounds"]`` or in the mode
    settings (``mode_settings["bounds"]``, or per column in
    ``mode_settings["columns"]`` as ``{"bound": {"rel": 1e-3}, ...}``), keyed by
    column name or aligned with ``header["columns"]``.
    """
    columns = list(header.get("columns", []))
    settings = header.get("mode_settings") or {}
    for node in (header.get("bounds"), settings.get("bounds"), settings.get("columns")):
        entries = _per_column_entries(node, columns)
        bounds = {c: b for c, spec in entries.items() if (b := _bound_tuple(spec)) is not None}
        if bounds:
            return bounds
    return {}


def header_max_errors(header: Mapping[str, Any]) -> dict[str, float]:
    """Max |error| per column measured at compress time, when the header records it."""
    columns = list(header.get("columns", []))
    settings = header.get("mode_settings") or {}
    keys = ("max_error", "max_errors", "max_abs_error", "max_err")
    for scope in (header, settings):
        for key in keys:
            entries = _per_column_entries(scope.get(key), columns)
            out = {c: float(v) for c, v in entries.items() if isinstance(v, int | float)}
            if out:
                return out
    found: dict[str, float] = {}
    for node in (settings.get("stats"), settings.get("columns")):
        for c, d in _per_column_entries(node, columns).items():
            if isinstance(d, Mapping):
                for key in keys:
                    if isinstance(d.get(key), int | float):
                        found.setdefault(c, float(d[key]))
                        break
    return found


def _read_tree(pair: FilePair, cfg: Config, decompressed: bool) -> tuple[Path, str, str | None]:
    layout = pair.layout
    if not decompressed:
        return pair.source, detect_format(pair.source, cfg.data.format, layout.tree), layout.tree
    tree = cfg.output.tree or layout.tree
    return pair.decompressed, detect_format(pair.decompressed, "auto", tree), tree


def colour_column(pair: FilePair, cfg: Config) -> str | None:
    """The column that colours the latent plots (``evaluation.colour_by`` or a default).

    The default is the first integer or boolean passthrough column with the same
    structure as the compressed columns (flat, or of the same collection, or a
    per-entry value of a jagged source) holding 2 to 10 distinct values; failing
    that, the first compressed column.

    Raises
    ------
    ConfigError
        ``colour_by`` is not a column of the input, or belongs to another collection.
    """
    layout = pair.layout
    names = [b.name for b in layout.branches]

    def compatible(name: str) -> bool:
        b = layout.branch(name)
        return not b.jagged or (layout.collection is not None and b.counter == layout.collection)

    wanted = cfg.evaluation.colour_by
    if wanted is not None:
        if wanted not in names:
            raise ConfigError(
                f"evaluation.colour_by = '{wanted}' is not a column of {pair.source.name} "
                f"(or it is excluded){suggest(wanted, names)}"
            )
        if not compatible(wanted):
            raise ConfigError(
                f"evaluation.colour_by = '{wanted}' belongs to another collection than the "
                "compressed columns; choose a per-entry or same-collection column"
            )
        return wanted
    candidates = [
        b.name
        for b in layout.branches
        if b.name not in layout.compressed
        and not b.is_float
        and compatible(b.name)
        and b.name != layout.collection
    ][:_MAX_COLOUR_CANDIDATES]
    if candidates:
        path, fmt, tree = _read_tree(pair, cfg, decompressed=False)
        try:
            df = read_columns(path, fmt, tree, candidates)
        except BalerError as exc:
            log.debug("cannot read colour candidates: %s", exc)
            df = pd.DataFrame()
        for c in candidates:
            if c in df and 2 <= df[c].nunique() <= MAX_DISCRETE_COLORS:
                return c
    return layout.compressed[0] if layout.compressed else None


def read_pair(
    pair: FilePair, cfg: Config, extra: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The compressed columns (plus ``extra`` from the input) of both sides, row-aligned.

    With ``data.nan_policy = "drop"`` the rows the compressor dropped (a non-finite
    compressed value) are dropped from the original too.

    Raises
    ------
    InputDataError
        The two files do not hold the same number of rows.
    """
    cols = pair.columns
    extra = [c for c in extra if c not in cols]
    path, fmt, tree = _read_tree(pair, cfg, decompressed=False)
    original = read_columns(path, fmt, tree, cols + extra)
    path, fmt, tree = _read_tree(pair, cfg, decompressed=True)
    reconstructed = read_columns(path, fmt, tree, cols)
    if len(original) != len(reconstructed) and cfg.data.nan_policy == "drop":
        finite = np.isfinite(original[cols].to_numpy(dtype=np.float64)).all(axis=1)
        original = original[finite].reset_index(drop=True)
    if len(original) != len(reconstructed):
        raise InputDataError(
            f"{pair.decompressed} has {len(reconstructed)} rows but {pair.source} has "
            f"{len(original)}: it was not decompressed from this input; rerun --mode compress "
            "and --mode decompress"
        )
    return original, reconstructed


# --------------------------------------------------------------------------- latent, sizes


def compute_latent(
    project: Project, cfg: Config, pairs: Sequence[FilePair], values: np.ndarray
) -> tuple[np.ndarray | None, str]:
    """Encode ``values`` (original, full matrix) with the project's model.

    Returns ``(latent, note)``; ``latent`` is None (and ``note`` says why) when
    a container was written by another model than the current one.
    """
    from baler_ext.codec.modes import run_batched
    from baler_ext.model_store import load_project_model

    trained = load_project_model(project)
    stale = [p.container.name for p in pairs if p.header["model"]["hash"] != trained.hash]
    if stale:
        note = (
            f"{', '.join(stale)} compressed with another model than the current one; "
            "latent plots skipped (rerun --mode compress)"
        )
        log.warning("%s", note)
        return None, note
    device = resolve_device(cfg.training.device)
    model = trained.model.to(device).eval()
    dtype = next(model.parameters()).dtype
    z = run_batched(model.encode, trained.normaliser.transform(values), dtype, device)
    return z, f"encoded {len(values)} original rows with model {trained.hash[:12]}"


def compression_breakdown(project: Project, pairs: Sequence[FilePair]) -> dict[str, Any]:
    """Container bytes per section group and compression ratios, as ``--mode info`` counts them.

    Each container is described by :func:`baler_ext.stages.info.describe`; bytes are
    summed over the containers and the ratios recomputed from the sums with the same
    definitions (for one input they are exactly ``--mode info``'s numbers). Added here:
    ``input_files_vs_containers``, the input files' sizes on disk over the containers'.
    """
    from baler_ext.stages.info import compute_ratios, decoder_bytes, describe

    infos = [p.info if p.info is not None else describe(p.container) for p in pairs]
    sizes: dict[str, int] = {}
    for d in infos:
        for group, n in d["bytes_by_section"].items():
            sizes[group] = sizes.get(group, 0) + int(n)
    raw64 = sum(int(d["raw_float64_bytes"]) for d in infos)
    total = sum(int(d["compressed_bytes"]) for d in infos)
    embedded = any(d["decoder_embedded"] for d in infos)
    # what decoding needs besides the files, as each header records it (the learned model,
    # or the autoencoder's decoder); containers older than that field: the project's model
    recorded = [d["decoder_bytes"] for d in infos if d["decoder_bytes"] is not None]
    decoder = (
        sizes.get("decoder")
        if embedded
        else (max(recorded) if recorded else decoder_bytes(project))
    )
    input_bytes = sum(p.source.stat().st_size for p in pairs)
    ratios = compute_ratios(sizes, raw64, decoder)
    ratios["input_files_vs_containers"] = input_bytes / max(total, 1)
    return {
        "sizes": sizes,
        "ratios": ratios,
        "rows": sum(int(d["rows"]) for d in infos),
        "n_columns": len(pairs[0].columns),
        "raw_float64_bytes": raw64,
        "raw_float32_bytes": raw64 // 2,
        "payload_bytes": round(raw64 / ratios["payload_vs_float64"]),
        "compressed_bytes": total,
        "decoder_bytes": decoder,
        "decoder_embedded": embedded,
        "input_bytes": input_bytes,
        "definitions": {
            "payload": "container bytes without passthrough columns and an embedded decoder",
            "float64 / float32": "rows x compressed columns x 8 / 4 bytes",
            "decoder": "zstd-compressed decoder weights (embedded, or needed beside the file)",
            "file": "the whole container on disk",
            "input_files_vs_containers": "input file sizes on disk / container sizes on disk "
            "(passthrough columns included on both sides)",
        },
    }


# --------------------------------------------------------------------------- report


def write_evaluation(
    original: pd.DataFrame,
    reconstructed: pd.DataFrame,
    columns: Sequence[str],
    out_dir: Path,
    *,
    bounds: Bounds | None = None,
    latent: np.ndarray | None = None,
    latent_color: np.ndarray | None = None,
    latent_color_label: str = "",
    compression: Mapping[str, Any] | None = None,
    history_csv: Path | None = None,
    top_k: int = 10,
    extra: Mapping[str, Any] | None = None,
    extra_bound_checks: Sequence[Mapping[str, Any]] = (),
    cuts: Sequence[str] = (),
    plots: str = "summary",
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate two row-aligned tables, write metrics.json, PNGs and the PDF, then check bounds.

    Parameters
    ----------
    original, reconstructed
        Row-aligned tables holding every name in ``columns``.
    columns
        The compressed columns to evaluate.
    out_dir
        Output folder (created; earlier PNGs in it are removed).
    bounds
        ``{column: ("abs" | "rel", value)}`` error bounds, checked last.
    latent, latent_color, latent_color_label
        Latent rows to plot and the values colouring them.
    compression
        :func:`compression_breakdown` result (plotted and stored).
    history_csv
        Training history to plot, if the file exists.
    top_k
        Number of most anomalous rows listed.
    extra
        More top-level entries for metrics.json.
    extra_bound_checks
        Further :func:`evaluate_tables` results (e.g. per file) checked for bound violations.
    cuts
        Cut expressions whose pass counts are compared (paired errors).
    plots
        ``"summary"`` or ``"all"`` (see :func:`baler_ext.evaluation.plots.write_report`).
    progress
        Show a progress bar while plotting.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    BoundViolationError
        After everything is written, when a value breaks its bound.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in [*out_dir.glob("*.png"), out_dir / PDF_NAME]:
        old.unlink(missing_ok=True)
    metrics = evaluate_tables(original, reconstructed, columns, bounds or None)
    cols = metrics["columns"]
    flagged = add_diagnostics(metrics, original, reconstructed, bounds, cuts)
    anomalies = top_anomalies(
        original, reconstructed, metrics["anomaly_scores"], top_k, columns=cols
    )
    for extra_col in ("file", "entry"):
        if extra_col in original:
            for a in anomalies:
                a[extra_col] = original[extra_col].iloc[a["row"]]
                if isinstance(a[extra_col], np.generic):
                    a[extra_col] = a[extra_col].item()
    metrics["top_anomalies"] = anomalies
    if compression is not None:
        metrics["compression"] = dict(compression)
    metrics.update(extra or {})
    metrics_path = to_json(metrics, out_dir / METRICS_NAME)

    report = write_report(
        original,
        reconstructed,
        cols,
        out_dir,
        metrics=metrics,
        latent=latent,
        latent_color=latent_color,
        latent_color_label=latent_color_label,
        sizes=compression["sizes"] if compression is not None else None,
        ratios=compression["ratios"] if compression is not None else None,
        history_csv=history_csv,
        history_png=history_csv.with_name(f"{LOSS_PLOT}.png") if history_csv is not None else None,
        pdf_name=PDF_NAME,
        plots=plots,
        flagged=flagged,
        progress=progress,
    )
    pngs: list[Path] = report["pngs"]
    pdf: Path = report["pdf"]

    summary = summary_table(metrics)
    console.report(f"evaluation of {metrics['n_rows']} rows x {len(cols)} columns:\n{summary}")
    if anomalies:
        log.info(
            "most anomalous row: #%d, score %.4g (all %d in %s)",
            anomalies[0]["row"],
            anomalies[0]["score"],
            len(anomalies),
            metrics_path.name,
        )
    if compression is not None:
        log.info(
            "compression: %s", ", ".join(f"{k} = {v:.3g}" for k, v in compression["ratios"].items())
        )
    log.info("wrote %s, %s and %d plots to %s", metrics_path.name, pdf.name, len(pngs), out_dir)
    result = EvaluationResult(out_dir, metrics_path, pdf, pngs, metrics, summary)
    for other in extra_bound_checks:
        check_bounds(other)
    if "bounds" in metrics:
        check_bounds(metrics)
    return result


def _file_summary(
    pair: FilePair, metrics: Mapping[str, Any] | None, bounds: Bounds
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input": str(pair.source),
        "container": str(pair.container),
        "decompressed": str(pair.decompressed),
        "rows": int(pair.header["rows"]),
        "mode": pair.header.get("mode"),
        "bounds": {c: list(b) for c, b in bounds.items()},
        "compress_max_error": header_max_errors(pair.header),
    }
    if metrics is not None:
        keep = ("mean", "rms", "max_abs", "bound_use", "n_violations")
        out["per_column"] = {
            c: {k: m[k] for k in keep if k in m} for c, m in metrics["per_column"].items()
        }
        if "bounds" in metrics:
            out["bound_summary"] = metrics["bounds"]
    return out


def evaluate(project: Project, cfg: Config) -> EvaluationResult:
    """Compare every input with its decompressed file; write ``output/evaluation/``.

    Raises
    ------
    ProjectError
        An earlier stage's output is missing (names the command to run first).
    BoundViolationError
        In bounded mode, a value breaks its bound (raised after everything is written).
    """
    pairs = find_pairs(project, cfg)
    if any(is_grouped(p.header) for p in pairs):
        return evaluate_groups(project, cfg, pairs)
    return _evaluate(project, cfg, pairs)


def evaluate_groups(project: Project, cfg: Config, pairs: list[FilePair]) -> EvaluationResult:
    """A whole-file project: each structure group evaluated as a project of its own
    (its columns, bounds and model) into ``output/evaluation/groups/<group>/``.

    Raises
    ------
    BoundViolationError
        After every group is written, when a value of one breaks its bound.
    """
    names = [g["name"] for g in pairs[0].header.get("groups", [])]
    per_pair: list[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = []
    for p in pairs:
        if not is_grouped(p.header) or [g["name"] for g in p.header["groups"]] != names:
            raise InputDataError(
                f"{p.container}: its structure groups differ from {pairs[0].container}'s; "
                "recompress the project with --mode compress"
            )
        with ContainerReader(p.container) as reader, decode_errors(p.container):
            infos = {d["group"]: d for d in describe_groups(p.container, reader)["groups"]}
            with inner_containers(reader) as inner:
                per_pair.append({g["name"]: (r.header, infos[g["name"]]) for g, r in inner})
    results: dict[str, EvaluationResult] = {}
    violation: BoundViolationError | None = None
    for name in names:
        entry = pairs[0].header["groups"][names.index(name)]
        gcfg = group_config(cfg, GroupPlan(name, list(entry["columns"]), list(entry["branches"])))
        gpairs = [
            FilePair(p.source, p.container, p.decompressed, *per_pair[i][name])
            for i, p in enumerate(pairs)
        ]
        console.report(f"group {name}:")
        try:
            results[name] = _evaluate(group_project(project, name), gcfg, gpairs)
        except BoundViolationError as exc:
            violation = violation or exc
    if violation is not None:
        raise violation
    first = results[names[0]]
    return EvaluationResult(
        project.dir("evaluation"),
        first.metrics_path,
        first.pdf,
        [png for r in results.values() for png in r.pngs],
        {"groups": {name: r.metrics for name, r in results.items()}},
        "\n".join(f"group {name}:\n{r.summary}" for name, r in results.items()),
    )


def _evaluate(project: Project, cfg: Config, pairs: list[FilePair]) -> EvaluationResult:
    columns = pairs[0].columns
    plots = cfg.evaluation.plots
    # the latent plots (coloured) are drawn with plots = "all"; a set colour_by is checked always
    colour = (
        colour_column(pairs[0], cfg)
        if plots == "all" or cfg.evaluation.colour_by is not None
        else None
    )
    extra_cols = [colour] if colour is not None and colour not in columns else []
    for cut in cfg.evaluation.cuts:
        extra_cols += [c for c in sorted(cut_columns(cut)) if c not in columns + extra_cols]

    originals, reconstructions = [], []
    for i, pair in enumerate(pairs):
        o, r = read_pair(pair, cfg, extra_cols)
        if len(pairs) > 1:
            o.insert(0, "file", i)
        originals.append(o)
        reconstructions.append(r)
    original = pd.concat(originals, ignore_index=True)
    reconstructed = pd.concat(reconstructions, ignore_index=True)

    file_bounds = [header_bounds(p.header) for p in pairs]
    bounds = file_bounds[0] if all(b == file_bounds[0] for b in file_bounds) else {}
    if any(file_bounds) and not bounds:
        log.warning(
            "the containers hold different error bounds; each file is checked against "
            "its own, the combined table against none"
        )
    per_file: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for pair, o, r, b in zip(pairs, originals, reconstructions, file_bounds, strict=True):
        m = None
        if len(pairs) > 1:
            m = evaluate_tables(o, r, columns, b or None)
            if b and not bounds:  # equal bounds: the combined table's check covers them
                checks.append(m)
        per_file.append(_file_summary(pair, m, b))

    latent = latent_color = None
    idx = np.empty(0, dtype=np.int64)
    latent_note = "latent plots only with evaluation.plots = 'all'"
    if plots == "all" or cfg.evaluation.latent_probing:
        idx = np.sort(
            np.random.default_rng(cfg.training.seed).choice(
                len(original), size=min(cfg.evaluation.latent_rows, len(original)), replace=False
            )
        )
        latent, latent_note = compute_latent(
            project, cfg, pairs, original[columns].to_numpy(np.float64)[idx]
        )
        latent_color = original[colour].to_numpy(np.float64)[idx] if colour is not None else None
    if cfg.evaluation.latent_probing and latent is not None:  # traversal, samples, t-SNE
        from baler_ext.evaluation.probing import write_probing_plots
        from baler_ext.model_store import load_project_model

        write_probing_plots(
            load_project_model(project),
            original[columns].to_numpy(np.float64)[idx],
            project.dir("evaluation") / "probing",
            color=latent_color,
            color_label=colour or "",
            seed=cfg.training.seed,
            tsne_rows=cfg.evaluation.tsne_rows,
        )

    compress_max = header_max_errors(pairs[0].header) if len(pairs) == 1 else {}
    extra = {
        "files": per_file,
        "latent": {"rows": len(idx), "colour_by": colour, "note": latent_note},
        "compress_time_max_error": compress_max,
    }
    result = write_evaluation(
        original,
        reconstructed,
        columns,
        project.dir("evaluation"),
        bounds=bounds,
        latent=latent,
        latent_color=latent_color,
        latent_color_label=colour or "",
        compression=compression_breakdown(project, pairs),
        history_csv=project.dir("model") / "history.csv",
        top_k=cfg.evaluation.top_k,
        extra=extra,
        extra_bound_checks=checks,
        cuts=cfg.evaluation.cuts,
        plots=plots,
    )
    return result
