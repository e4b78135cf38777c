"""``--mode info``: what each compressed file holds and what its sections cost.

For every ``output/compressed/*.baler`` it reports (on stdout) and writes
``<name>.info.json``: rows,
columns, raw float64 and float32 sizes of the compressed columns, compressed bytes by
section group (header, latent, prediction, residuals, lossless — compressed columns stored
exactly, e.g. a conditional model's conditions —, passthrough — the columns that are not
compressed —, decoder), the ratios (*payload* = everything but passthrough and decoder),
the bounds, the max error per column measured at compress time, how many chunks use the
latent and which derived columns are predicted by relations.

It reads only the containers' indexes, never the model: the decoder's size is in the
header (written by compress), so the command imports neither torch nor the analysis
libraries and answers at once.

Honest sizes (``honest``): the compressed columns' raw size at their *stored* dtype
(float32 columns are not flattered by a float64 reference), the input file on disk, and,
when the input is present, ROOT LZMA-9 of the same branches and NanoAOD-style mantissa
rounding + LZMA-9 at equal precision (:mod:`baler_ext.io.reference`). Also the bound each
column received and the pattern that gave it (``precision``), the values kept exactly
(sentinels) and the discrete columns stored losslessly.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from baler_ext.codec.container import ContainerReader, decode_errors
from baler_ext.config import Config
from baler_ext.console import report
from baler_ext.errors import ProjectError
from baler_ext.io.layout import GroupPlan
from baler_ext.precision import precision_from_header
from baler_ext.project import CONTAINER_SUFFIX, Project, atomic_path
from baler_ext.stages.groups import group_config, inner_containers, is_grouped

log = logging.getLogger(__name__)

#: section-name prefix -> group shown by ``info``
GROUPS: dict[str, str] = {
    "preamble+index+trailer": "header",
    "latent": "latent",
    "res": "residuals",
    "pred": "prediction",
    "lin": "prediction",
    "lrn": "learned",
    "ctx": "side_information",
    "passthrough": "passthrough",
    "counts": "passthrough",
    "lossless": "lossless",
    "decoder": "decoder",
    "exact": "exact",
}


#: per-column statistics measured at compress time (bounded mode)
STAT_KEYS = ("max_abs_error", "max_error_over_bound", "exceptions")


def group_of(section: str) -> str:
    """The group of a section name (``res/pt/bits`` -> ``residuals``)."""
    head = section.split("/")[0].split(":")[0]
    return GROUPS.get(head, "other")


def decoder_bytes(project: Project) -> int | None:
    """zstd size of the project's decoder weights, or None without a trained model.

    Only for containers written before compress stored ``decoder_bytes`` in the header;
    it loads the model (and torch).
    """
    if not (project.dir("model") / "model.json").is_file():
        return None
    from baler_ext.model_store import load_project_model, weights_bytes

    return weights_bytes(load_project_model(project))


def group_sizes(sizes: dict[str, int]) -> dict[str, int]:
    """Compressed bytes per section name -> bytes per group of :func:`group_of`."""
    by_group: dict[str, int] = {}
    for name, size in sizes.items():
        g = group_of(name)
        by_group[g] = by_group.get(g, 0) + size
    return by_group


def compute_ratios(by_group: dict[str, int], raw64: int, decoder: int | None) -> dict[str, float]:
    """The compression ratios of section sizes grouped by :func:`group_of`.

    *payload* is everything but the passthrough (columns that are not compressed) and
    the embedded decoder; every ratio is against ``raw64``, the raw float64 bytes of
    the compressed columns (``/ 2`` for float32).
    """
    total = sum(by_group.values())
    payload = total - by_group.get("passthrough", 0) - by_group.get("decoder", 0)
    ratios = {
        "payload_vs_float64": raw64 / max(payload, 1),
        "payload_vs_float32": raw64 / 2 / max(payload, 1),
        "file_vs_float64": raw64 / max(total, 1),
    }
    if decoder is not None:
        ratios["payload_with_decoder_vs_float64"] = raw64 / max(payload + decoder, 1)
    return ratios


def honest_sizes(
    header: dict[str, Any], sizes: dict[str, int], references: dict[str, int] | None
) -> dict[str, Any]:
    """Sizes and ratios against what the data really costs (see ``reference_sizes``).

    *columns* = the container's bytes for the compressed columns: payload plus the
    per-entry counts of a jagged collection (the counter a ROOT file stores too).
    """
    cols = header["columns"]
    dtypes = header.get("column_dtypes") or {}
    stored = header["rows"] * sum(np.dtype(dtypes.get(c, "float64")).itemsize for c in cols)
    by_group: dict[str, int] = {}
    for name, size in sizes.items():
        g = group_of(name)
        by_group[g] = by_group.get(g, 0) + size
    total = sum(by_group.values())
    payload = total - by_group.get("passthrough", 0) - by_group.get("decoder", 0)
    columns = payload + sum(v for k, v in sizes.items() if k.split("/")[0] == "counts")
    out: dict[str, Any] = {
        "stored_dtype_bytes": stored,
        "columns_bytes": columns,
        "ratios": {"columns_vs_stored_dtype": stored / max(columns, 1)},
    }
    source_bytes = (header.get("layout") or {}).get("source_bytes")
    if source_bytes:
        out["input_file_bytes"] = source_bytes
        out["ratios"]["file_vs_input_on_disk"] = source_bytes / max(total, 1)
    for key, ref in (references or {}).items():
        if key.endswith("_bytes") and key != "stored_dtype_bytes":
            out[key] = ref
            out["ratios"][f"columns_vs_{key[:-6]}"] = ref / max(columns, 1)
    return out


def describe(
    path: Path, decoder_beside: int | None = None, references: dict[str, int] | None = None
) -> dict[str, Any]:
    """The info of one container (see the module docstring); ``references`` are the
    input's reference sizes (:func:`baler_ext.io.reference.reference_sizes`);
    ``decoder_beside`` the decoder's size for a container whose header lacks it."""
    with ContainerReader(path) as reader, decode_errors(path):
        header = reader.header
        if is_grouped(header):
            return describe_groups(path, reader)
        reader.verify_decoder()
        sizes = reader.section_sizes()
        return _describe(path, header, sizes, decoder_beside, references)


def describe_groups(
    path: Path,
    reader: ContainerReader,
    references: dict[str, dict[str, int] | None] | None = None,
) -> dict[str, Any]:
    """The info of a whole-file container (open in ``reader``): the whole file's sizes
    and, under ``groups``, each group's inner container described as a container of its
    own; ``references`` are each group's reference sizes by group name."""
    header = reader.header
    sizes = reader.section_sizes()
    groups = []
    with inner_containers(reader) as inner:
        for g, r in inner:
            d = _describe(
                path,
                r.header,
                r.section_sizes(),
                None,
                (references or {}).get(g["name"]),
            )
            # the input on disk is the whole file's: compared with the whole container only
            d["honest"].pop("input_file_bytes", None)
            d["honest"]["ratios"].pop("file_vs_input_on_disk", None)
            groups.append({"group": g["name"], "section_bytes": sizes[g["section"]], **d})
    total = reader.file_size
    layout = header.get("layout") or {}
    honest: dict[str, Any] = {"ratios": {}}
    if layout.get("source_bytes"):
        honest["input_file_bytes"] = layout["source_bytes"]
        honest["ratios"]["file_vs_input_on_disk"] = layout["source_bytes"] / max(total, 1)
    raw64 = sum(g["raw_float64_bytes"] for g in groups)
    # the groups' sections summed, the outer container's own bytes counted as header
    by_section: dict[str, int] = {}
    for g in groups:
        for k, v in g["bytes_by_section"].items():
            by_section[k] = by_section.get(k, 0) + v
    by_section["header"] = (
        by_section.get("header", 0) + total - sum(g["compressed_bytes"] for g in groups)
    )
    decoder = sum(g["decoder_bytes"] or 0 for g in groups)
    return {
        "file": str(path),
        "mode": header["mode"],
        "rows": header["rows"],
        "entries": header["entries"],
        "columns": header["columns"],
        "branches": [b["name"] for b in layout.get("branches", [])],
        "raw_float64_bytes": raw64,
        "raw_float32_bytes": raw64 // 2,
        "compressed_bytes": total,
        "bytes_by_group": {g["group"]: g["section_bytes"] for g in groups},
        "bytes_by_section": by_section,
        "container_bytes": total - sum(g["section_bytes"] for g in groups),
        "decoder_bytes": decoder,
        "decoder_embedded": any(g["decoder_embedded"] for g in groups),
        "ratios": compute_ratios(by_section, raw64, decoder),
        "honest": honest,
        "groups": groups,
    }


def format_groups_info(d: dict[str, Any]) -> str:
    """The report of a whole-file container's :func:`describe_groups` as text lines."""
    name = Path(d["file"]).name
    lines = [
        f"{name}: whole file in {len(d['groups'])} structure groups; {d['entries']} entries, "
        f"{len(d['branches'])} branches, {len(d['columns'])} compressed columns; "
        f"compressed {d['compressed_bytes']} B"
    ]
    lines += [
        f"  group {g['group']:<12} {len(g['columns']):3d} columns, {g['rows']:9d} rows "
        f"{g['section_bytes']:10d} B"
        for g in d["groups"]
    ]
    lines += [f"  {k:<12} {size:10d} B" for k, size in sorted(d["bytes_by_section"].items())]
    lines += [f"  ratio {k:<34} {v:.2f}x" for k, v in d["ratios"].items()]
    lines += [f"  ratio {k:<34} {v:.2f}x" for k, v in d["honest"]["ratios"].items()]
    for g in d["groups"]:
        lines.append(f"group {g['group']}:")
        lines += ["  " + line for line in format_info(g).splitlines()]
    return "\n".join(lines)


#: sections of a column that are not its code stream
_EXTRAS = ("/sign", "/exc_idx", "/exc_gap", "/exc_val")


def stream_kinds(
    cols: list[str], settings: dict[str, Any], sizes: dict[str, int]
) -> dict[str, str]:
    """Per bounded column with a code stream: ``"learned"`` when the learned model coded
    it, else ``"static"``. In 1.3 files the learned streams share one section
    (``lrn/bits``), so a modelled column is learned unless its codes were stored
    statically (``res/<col>/`` coder arrays; a column learned in some chunks and static
    in others shows as static)."""
    learned = settings.get("learned")
    order = learned.get("order") if isinstance(learned, dict) else None
    order = set(order) if isinstance(order, list) and "lrn/bits" in sizes else set()
    out = {}
    for c in cols:
        own = [k for k in sizes if k.startswith((f"res/{c}/", f"lrn/{c}/"))]
        static = any(k.startswith(f"res/{c}/") and not k.endswith(_EXTRAS) for k in own)
        if any(k.startswith(f"lrn/{c}/") for k in own) or (c in order and not static):
            out[c] = "learned"
        elif own:
            out[c] = "static"
    return out


def _describe(
    path: Path,
    header: dict[str, Any],
    sizes: dict[str, int],
    decoder_beside: int | None,
    references: dict[str, int] | None = None,
) -> dict[str, Any]:
    by_group = group_sizes(sizes)
    cols = header["columns"]
    raw64 = header["rows"] * len(cols) * 8
    total = sum(by_group.values())
    decoder = by_group.get("decoder") or header.get("decoder_bytes") or decoder_beside
    settings = header.get("mode_settings", {})
    ratios = compute_ratios(by_group, raw64, decoder)
    return {
        "file": str(path),
        "mode": header["mode"],
        "rows": header["rows"],
        "entries": header["entries"],
        "columns": cols,
        "column_dtypes": header.get("column_dtypes"),
        "model": header["model"],
        "raw_float64_bytes": raw64,
        "raw_float32_bytes": raw64 // 2,
        "compressed_bytes": total,
        "bytes_by_section": by_group,
        "decoder_bytes": decoder,
        "decoder_embedded": bool(header.get("decoder_embedded")),
        "ratios": ratios,
        "bounds": {c: s["bound"] for c, s in settings.get("columns", {}).items()},
        # typed here: a crafted header must fail as a damaged file, not in the log calls
        "measured_at_compress": {
            str(c): {k: float(st[k]) for k in STAT_KEYS[:2]} | {"exceptions": int(st["exceptions"])}
            for c, st in settings.get("stats", {}).items()
        },
        "chunks": [c["rows"] for c in header.get("chunks", [])],
        "latent_chunks": (
            int(settings["latent_chunks"]) if settings.get("latent_chunks") is not None else None
        ),
        "relations": [
            r
            | {
                "target": str(r["target"]),
                "inputs": [str(c) for c in r["inputs"]],
                "kind": str(r["kind"]),
            }
            for r in settings.get("relations", [])
        ],
        "learned": settings.get("learned"),
        "dither": bool(settings.get("dither", False)),
        "streams": stream_kinds(cols, settings, sizes),
        "precision": precision_from_header(header.get("precision", {})),
        "exact_values": {**header.get("exact_values", {}), **header.get("exact_in_mode", {})},
        "discrete_columns": header.get("discrete_columns", []),
        "honest": honest_sizes(header, sizes, references),
    }


def format_info(d: dict[str, Any]) -> str:
    """The report of one container's :func:`describe` as text lines."""
    name = Path(d["file"]).name
    lines = [
        f"{name}: {d['mode']} mode, {d['rows']} rows x {len(d['columns'])} columns; "
        f"raw {d['raw_float64_bytes']} B float64, {d['raw_float32_bytes']} B float32; "
        f"compressed {d['compressed_bytes']} B"
    ]
    lines += [f"  {g:<12} {size:10d} B" for g, size in sorted(d["bytes_by_section"].items())]
    lines += [f"  ratio {k:<34} {v:.2f}x" for k, v in d["ratios"].items()]
    if d["latent_chunks"] is not None:
        lines.append(f"  latent used in {d['latent_chunks']} of {len(d['chunks'])} chunks")
    if d.get("learned"):
        lr = d["learned"]
        lines.append(
            f"  learned probability model in {lr['chunks']} of {len(d['chunks'])} "
            f"chunks; coding order: {', '.join(lr['order'])}"
            + ("; context: previous object of the event" if lr["event_context"] else "")
        )
        static = [c for c, kind in d.get("streams", {}).items() if kind == "static"]
        if static:
            lines.append(f"  coded with static histograms: {', '.join(static)}")
    lines += [
        f"  {rel['target']} predicted from {', '.join(rel['inputs'])} ({rel['kind']})"
        for rel in d["relations"]
    ]
    honest = d.get("honest")
    if honest:
        stored = ", ".join(sorted(set((d["column_dtypes"] or {}).values()))) or "float64"
        lines.append(
            f"  stored as {stored}: {honest['stored_dtype_bytes']} B; the container "
            f"holds them in {honest['columns_bytes']} B"
        )
        lines += [f"  ratio {k:<34} {v:.2f}x" for k, v in honest["ratios"].items()]
    lines += [
        f"  {c:<22} bound {p['bound']!s:<28} from {p['pattern']} ({p['origin']})"
        for c, p in d.get("precision", {}).items()
    ]
    lines += [
        f"  {c:<22} kept exactly: {', '.join(f'{v:g}' for v in vals)}"
        for c, vals in d.get("exact_values", {}).items()
    ]
    if d.get("discrete_columns"):
        lines.append(f"  discrete columns stored losslessly: {', '.join(d['discrete_columns'])}")
    lines += [
        f"  {c:<22} bound {d['bounds'].get(c)!s:<16} max error "
        f"{st['max_abs_error']:.3g} ({st['max_error_over_bound']:.3f} of the bound), "
        f"{st['exceptions']} exceptions"
        for c, st in d["measured_at_compress"].items()
    ]
    return "\n".join(lines)


#: inputs whose compressed columns are bigger than this (at their stored dtype) get no
#: LZMA-9 references in ``info`` (LZMA-9 writes a few MB/s; measured once per input and
#: bounds, then cached); the benchmark measures bigger ones
REFERENCE_MAX_BYTES = 256 * 2**20


def input_references(
    container: Path, cfg: Config, header: dict[str, Any] | None = None
) -> dict[str, int] | None:
    """Reference sizes of the input a container came from, when that input is present
    and its compressed columns are at most :data:`REFERENCE_MAX_BYTES` (``header``: the
    container's, when it is open already)."""
    from baler_ext.errors import BalerError
    from baler_ext.io.reference import cached_reference_sizes
    from baler_ext.io.source import Source, resolve_inputs

    if header is None:
        with ContainerReader(container) as reader:
            header = reader.header
    name = (header.get("layout") or {}).get("file_name")
    dtypes = header.get("column_dtypes") or {}
    stored = header["rows"] * sum(
        np.dtype(dtypes.get(c, "float64")).itemsize for c in header["columns"]
    )
    if stored > REFERENCE_MAX_BYTES:
        log.info(
            "%s: %d B of compressed columns; no LZMA-9 references above %d B (run "
            "benchmarks/bench_wholefile.py for them)",
            container.name,
            stored,
            REFERENCE_MAX_BYTES,
        )
        return None
    try:
        matches = [p for p in resolve_inputs(cfg) if p.name == name]
    except BalerError:
        matches = []
    if not matches:
        log.info("%s: input %s not found; no reference sizes", container.name, name)
        return None
    bounds = {c: p["bound"] for c, p in header.get("precision", {}).items()}
    settings = header.get("mode_settings", {}).get("columns", {})
    for c in header["columns"]:
        bounds.setdefault(c, settings.get(c, {}).get("bound") or {"rel": 1e-3})
    return cached_reference_sizes(Source(matches[0], cfg.data), bounds)


def group_references(
    path: Path, reader: ContainerReader, cfg: Config
) -> dict[str, dict[str, int] | None]:
    """Each group's reference sizes (:func:`input_references` with the group's config)."""
    out: dict[str, dict[str, int] | None] = {}
    with inner_containers(reader) as inner:
        for g, r in inner:
            plan = GroupPlan(g["name"], list(g["columns"]), list(g["branches"]))
            out[g["name"]] = input_references(r.path, group_config(cfg, plan), r.header)
    return out


def info(project: Project, cfg: Config) -> list[dict[str, Any]]:
    """Describe every container of the project on stdout; write ``<name>.info.json``
    beside each."""
    containers = sorted(project.dir("compressed").glob(f"*{CONTAINER_SUFFIX}"))
    if not containers:
        raise ProjectError(
            f"no compressed files in {project.dir('compressed')}; run "
            f"'baler_ext --project {project.name} --mode compress' first"
        )
    beside: list[int | None] = []  # loaded once, only for containers that lack the size
    out = []
    for path in containers:
        with ContainerReader(path) as reader, decode_errors(path):
            grouped = is_grouped(reader.header)
            if grouped:
                d = describe_groups(path, reader, group_references(path, reader, cfg))
        if grouped:
            with atomic_path(path.with_suffix(".info.json")) as tmp:
                tmp.write_text(json.dumps(d, indent=1))
            report(format_groups_info(d))
            out.append(d)
            continue
        references = input_references(path, cfg)
        d = describe(path, None, references)
        if d["decoder_bytes"] is None:
            if not beside:
                beside.append(decoder_bytes(project))
            d = describe(path, beside[0], references)
        with atomic_path(path.with_suffix(".info.json")) as tmp:
            tmp.write_text(json.dumps(d, indent=1))
        report(format_info(d))
        out.append(d)
    return out
