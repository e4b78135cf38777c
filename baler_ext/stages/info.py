"""``--mode info``: what each compressed file holds and what its sections cost.

For every ``output/compressed/*.baler`` it logs and writes ``<name>.info.json``: rows,
columns, raw float64 and float32 sizes of the compressed columns, compressed bytes by
section group (header, latent, prediction, residuals, lossless — compressed columns stored
exactly, e.g. a conditional model's conditions —, passthrough — the columns that are not
compressed —, decoder), the ratios (*payload* = everything but passthrough and decoder),
the bounds, the max error per column measured at compress time, how many chunks use the
latent and which derived columns are predicted by relations.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from baler_ext.codec.container import ContainerReader, decode_errors
from baler_ext.config import Config
from baler_ext.errors import ProjectError
from baler_ext.project import CONTAINER_SUFFIX, Project, atomic_path

log = logging.getLogger(__name__)

#: section-name prefix -> group shown by ``info``
GROUPS: dict[str, str] = {"preamble+index+trailer": "header", "latent": "latent",
                          "res": "residuals", "pred": "prediction", "passthrough": "passthrough",
                          "counts": "passthrough", "lossless": "lossless",
                          "decoder": "decoder"}


#: per-column statistics measured at compress time (bounded mode)
STAT_KEYS = ("max_abs_error", "max_error_over_bound", "exceptions")


def group_of(section: str) -> str:
    """The group of a section name (``res/pt/bits`` -> ``residuals``)."""
    head = section.split("/")[0].split(":")[0]
    return GROUPS.get(head, "other")


def decoder_bytes(project: Project) -> int | None:
    """zstd size of the project's decoder weights, or None without a trained model."""
    if not (project.dir("model") / "model.json").is_file():
        return None
    from baler_ext.stages.compress import load_project_model, weights_bytes

    return weights_bytes(load_project_model(project))


def compute_ratios(by_group: dict[str, int], raw64: int,
                   decoder: int | None) -> dict[str, float]:
    """The compression ratios of section sizes grouped by :func:`group_of`.

    *payload* is everything but the passthrough (columns that are not compressed) and
    the embedded decoder; every ratio is against ``raw64``, the raw float64 bytes of
    the compressed columns (``/ 2`` for float32).
    """
    total = sum(by_group.values())
    payload = total - by_group.get("passthrough", 0) - by_group.get("decoder", 0)
    ratios = {"payload_vs_float64": raw64 / max(payload, 1),
              "payload_vs_float32": raw64 / 2 / max(payload, 1),
              "file_vs_float64": raw64 / max(total, 1)}
    if decoder is not None:
        ratios["payload_with_decoder_vs_float64"] = raw64 / max(payload + decoder, 1)
    return ratios


def describe(path: Path, decoder_beside: int | None = None) -> dict[str, Any]:
    """The info of one container (see the module docstring)."""
    with ContainerReader(path) as reader, decode_errors(path):
        header = reader.header
        reader.verify_decoder()
        sizes = reader.section_sizes()
        return _describe(path, header, sizes, decoder_beside)


def _describe(path: Path, header: dict[str, Any], sizes: dict[str, int],
              decoder_beside: int | None) -> dict[str, Any]:
    by_group: dict[str, int] = {}
    for name, size in sizes.items():
        g = group_of(name)
        by_group[g] = by_group.get(g, 0) + size
    cols = header["columns"]
    raw64 = header["rows"] * len(cols) * 8
    total = sum(by_group.values())
    decoder = by_group.get("decoder") or decoder_beside
    settings = header.get("mode_settings", {})
    ratios = compute_ratios(by_group, raw64, decoder)
    return {
        "file": str(path), "mode": header["mode"], "rows": header["rows"],
        "entries": header["entries"], "columns": cols, "column_dtypes":
        header.get("column_dtypes"), "model": header["model"],
        "raw_float64_bytes": raw64, "raw_float32_bytes": raw64 // 2,
        "compressed_bytes": total, "bytes_by_section": by_group,
        "decoder_bytes": decoder, "decoder_embedded": bool(header.get("decoder_embedded")),
        "ratios": ratios,
        "bounds": {c: s["bound"] for c, s in settings.get("columns", {}).items()},
        # typed here: a crafted header must fail as a damaged file, not in the log calls
        "measured_at_compress": {str(c): {k: float(st[k]) for k in STAT_KEYS[:2]}
                                 | {"exceptions": int(st["exceptions"])}
                                 for c, st in settings.get("stats", {}).items()},
        "chunks": [c["rows"] for c in header.get("chunks", [])],
        "latent_chunks": (int(settings["latent_chunks"])
                          if settings.get("latent_chunks") is not None else None),
        "relations": [r | {"target": str(r["target"]), "inputs": [str(c) for c in r["inputs"]],
                           "kind": str(r["kind"])} for r in settings.get("relations", [])],
    }


def info(project: Project, cfg: Config) -> list[dict[str, Any]]:
    """Describe every container of the project; write ``<name>.info.json`` beside each."""
    containers = sorted(project.dir("compressed").glob(f"*{CONTAINER_SUFFIX}"))
    if not containers:
        raise ProjectError(f"no compressed files in {project.dir('compressed')}; run "
                           f"'baler_ext --project {project.name} --mode compress' first")
    beside = decoder_bytes(project)
    out = []
    for path in containers:
        d = describe(path, beside)
        with atomic_path(path.with_suffix(".info.json")) as tmp:
            tmp.write_text(json.dumps(d, indent=1))
        log.info("%s: %s mode, %d rows x %d columns; raw %d B float64, %d B float32; "
                 "compressed %d B", path.name, d["mode"], d["rows"], len(d["columns"]),
                 d["raw_float64_bytes"], d["raw_float32_bytes"], d["compressed_bytes"])
        for g, size in sorted(d["bytes_by_section"].items()):
            log.info("  %-12s %10d B", g, size)
        for k, v in d["ratios"].items():
            log.info("  ratio %-34s %.2fx", k, v)
        if d["latent_chunks"] is not None:
            log.info("  latent used in %d of %d chunks", d["latent_chunks"], len(d["chunks"]))
        for rel in d["relations"]:
            log.info("  %s predicted from %s (%s)", rel["target"], ", ".join(rel["inputs"]),
                     rel["kind"])
        for c, st in d["measured_at_compress"].items():
            log.info("  %-22s bound %-16s max error %.3g (%.3f of the bound), %d exceptions", c,
                     d["bounds"].get(c), st["max_abs_error"], st["max_error_over_bound"],
                     st["exceptions"])
        out.append(d)
    return out
