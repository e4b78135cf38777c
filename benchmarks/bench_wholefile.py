"""Whole-file benchmark (issue 14): real files at NanoAOD precision, honest references.

Each file is compressed by ONE project with ``[data] columns = ["*"]`` (bounded mode,
``policy = "nanoaod"``): a whole-file project (``docs/FORMAT.md``, "Whole files"). Its
train stage gives every *structure group* (flat event-level branches; each jagged
collection with its counter; collections sharing a counter are one group,
:func:`baler_ext.io.layout.structure_groups`) with enough rows a model of its own; small
groups, groups with nothing varying and float columns holding NaN ride losslessly. Compress
writes one container per file; decompress restores the whole file with the input's
layout and compression, which is then checked against the input: same branches and
entries, every counter and integer branch identical, every float within the bound it
received (or equal to a value kept exactly).

References (same branches, written by uproot): the input file on disk; ROOT LZMA-9 of
all branches, lossless; NanoAOD-style mantissa rounding + LZMA-9 at equal precision
(each float rounded as coarsely as its bound allows, :mod:`baler_ext.io.reference`).

Run: ``python benchmarks/bench_wholefile.py [--epochs 20] [--workdir /tmp/bench_wholefile]``;
writes ``benchmarks/RESULTS_wholefile.md`` and ``benchmarks/results_wholefile.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script
from baler_ext.cli import main
from baler_ext.codec.container import ContainerReader
from baler_ext.config import DataConfig, toml_value
from baler_ext.io.formats import detect_format, get_format
from baler_ext.io.layout import SourceLayout
from baler_ext.io.reference import LZMA9, reduce_precision
from baler_ext.io.source import Source
from baler_ext.model_store import load_project_model, weights_bytes
from baler_ext.precision import explicit_bounds, resolve_precision
from baler_ext.project import Project
from baler_ext.stages.groups import group_project, inner_containers, is_grouped, read_plan

log = logging.getLogger("bench_wholefile")
ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BALER_EXT_SHARED_DATA", ROOT.parent / "shared" / "data"))

FILES = {
    "single_top": DATA / "cms_hep_tutorial" / "single_top.root",
    "nanoaod": DATA / "uproot_cases" / "nanoAOD_2015_CMS_Open_Data_ttbar.root",
    "rntuple": DATA / "pythia_ttbar" / "ttbar_boosted_events_rntuple.root",
}


def _any_cfg(path: Path) -> DataConfig:
    fmt = detect_format(path, "auto")
    reader = get_format(fmt).open(path, DataConfig(), set(), strict=False)
    first_float = next(b.name for b in reader.branches if b.is_float)
    return DataConfig(columns=[first_float])


def write_config(project_dir: Path, sections: dict[str, dict[str, Any]]) -> None:
    project_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for sec, table in sections.items():
        lines += [f"[{sec}]", *(f"{k} = {toml_value(v)}" for k, v in table.items()), ""]
    (project_dir / "config.toml").write_text("\n".join(lines))


def run_project(work: Path, path: Path, epochs: int, max_rows: int) -> dict[str, Any]:
    """Train, compress and decompress ``path`` whole with one project."""
    name = path.stem.replace(".", "_")
    write_config(
        work / name,
        {
            "data": {"input": [str(path)], "columns": ["*"]},
            "model": {"hidden": [64, 32]},
            "training": {
                "epochs": epochs,
                "max_rows": max_rows,
                "device": "cpu",
                "early_stopping_patience": 5,
            },
            "compression": {"mode": "bounded", "policy": "nanoaod"},
            "output": {"directory": str(work / name / "restored")},
        },
    )
    times = {}
    for mode in ("train", "compress", "decompress"):
        t0 = time.perf_counter()
        rc = main(["--projects-dir", str(work), "--project", name, "--mode", mode, "-q"])
        times[mode] = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"{name}: --mode {mode} failed ({rc})")
    project = Project(name, work / name)
    (container,) = (work / name / "output" / "compressed").glob("*.baler")
    restored = next((work / name / "restored").glob("*"))
    decided = read_plan(project)
    groups = []
    with ContainerReader(container) as reader:
        if not is_grouped(reader.header):  # one structure: a single-group project
            groups.append(
                {
                    "group": reader.header["layout"].get("collection") or "flat",
                    "columns": len(reader.header["columns"]),
                    "rows": reader.header["rows"],
                    "container_bytes": container.stat().st_size,
                    "decoder_bytes": weights_bytes(load_project_model(project)),
                    "header": reader.header,
                }
            )
    with ContainerReader(container) as reader, ExitStack() as stack:
        inner = stack.enter_context(inner_containers(reader)) if not groups else []
        sizes = reader.section_sizes()
        for g, r in inner:
            trained = load_project_model(group_project(project, g["name"]))
            groups.append(
                {
                    "group": g["name"],
                    "columns": len(g["columns"]),
                    "rows": g["rows"],
                    "container_bytes": sizes[g["section"]],
                    "decoder_bytes": weights_bytes(trained),
                    "header": r.header,
                }
            )
    return {
        "container": container,
        "container_bytes": container.stat().st_size,
        "decoder_bytes": sum(g["decoder_bytes"] for g in groups),
        "restored": restored,
        "groups": groups,
        "seconds": times,
        "lossless_groups": decided["lossless"],
        "nonfinite": decided["passthrough"],
    }


def write_all(
    fmt: str, path: Path, layout: SourceLayout, tree: str | None, columns: dict[str, Any]
) -> None:
    """Every branch of ``layout`` from ``columns`` through the format's own writer."""
    table = ak.to_arrow_table(
        ak.zip({b.name: columns[b.name] for b in layout.branches}, depth_limit=1),
        extensionarray=True,
    )
    writer = get_format(fmt).writer(path, layout, tree, None, chunks=1)
    writer.write(np.empty((len(table), 0)), table, None)
    writer.close()


def check(source: Source, merged: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare the restored file with the input branch by branch (``runs``: the groups,
    each with its inner container's header)."""
    bounds: dict[str, dict[str, float]] = {}
    exact: dict[str, list[float]] = {}
    for r in runs:
        bounds.update({c: p["bound"] for c, p in r["header"].get("precision", {}).items()})
        exact.update(r["header"].get("exact_values", {}))
        exact.update(r["header"].get("exact_in_mode", {}))
    names = [b.name for b in source.reader.branches]
    a = source.reader.read(names)
    reader = get_format(source.format).open(merged, DataConfig(), set())
    b = reader.read(names)
    out = {
        "branches_equal": [bb.name for bb in reader.branches] == names,
        "entries_equal": len(a) == len(b),
        "identical_ints": 0,
        "int_mismatch": [],
        "floats_within_bound": 0,
        "float_violations": [],
        "max_err_over_bound": 0.0,
        "dtype_changes": [],
    }
    types = {bb.name: bb.dtype for bb in reader.branches}
    for info in source.reader.branches:
        n = info.name
        if types.get(n) != info.dtype:
            out["dtype_changes"].append(f"{n}: {info.dtype} -> {types.get(n)}")
        x, y = a[n], b[n]
        if info.jagged:
            if not ak.all(ak.num(x, axis=1) == ak.num(y, axis=1)):
                out["int_mismatch"].append(n + " (counts)")
                continue
            x, y = ak.flatten(x, axis=1), ak.flatten(y, axis=1)
        x, y = ak.to_numpy(x), ak.to_numpy(y)
        if n not in bounds:
            if np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                out["identical_ints"] += 1
            else:
                out["int_mismatch"].append(n)
            continue
        ((kind, v),) = bounds[n].items()
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        limit = v if kind == "abs" else v * np.abs(x64)
        err = np.abs(y64 - x64)
        ok = err <= limit * (1 + 1e-9)
        if n in exact:
            ok |= np.isin(x64, exact[n]) & (x64 == y64)
            sentinel_kept = bool(np.all(y64[np.isin(x64, exact[n])] == x64[np.isin(x64, exact[n])]))
            if not sentinel_kept:
                out["float_violations"].append(n + " (sentinel changed)")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(limit > 0, err / limit, np.where(err > 0, np.inf, 0.0))
        if len(ratio):
            out["max_err_over_bound"] = max(out["max_err_over_bound"], float(np.max(ratio)))
        if ok.all():
            out["floats_within_bound"] += 1
        else:
            out["float_violations"].append(f"{n} ({int((~ok).sum())} values)")
    return out


def references(source: Source, work: Path) -> dict[str, int]:
    """ROOT LZMA-9 of every branch, lossless and after rounding at equal precision."""
    layout = dataclasses.replace(source.layout, compressed=[], compression=LZMA9, source_bytes=None)
    names = [b.name for b in source.reader.branches]
    floats = [b.name for b in source.reader.branches if b.is_float]
    bounds = explicit_bounds(resolve_precision("nanoaod", {}, floats))
    arrays = source.reader.read(names)
    columns = {n: arrays[n] for n in names}
    rounded = dict(columns)
    for b in source.reader.branches:
        if b.is_float and b.name in bounds:
            arr = columns[b.name]
            flat = ak.to_numpy(ak.flatten(arr, axis=1)) if b.jagged else ak.to_numpy(arr)
            low = reduce_precision(flat, bounds[b.name]).astype(np.dtype(b.dtype))
            rounded[b.name] = ak.unflatten(low, ak.num(arr, axis=1)) if b.jagged else low
    out = {}
    for key, cols in (("root_lzma9", columns), ("rounded_lzma9", rounded)):
        path = work / f"{source.path.stem}-{key}.root"
        write_all(source.format, path, layout, source.tree_name, cols)  # RNTuple stays RNTuple
        out[f"{key}_bytes"] = path.stat().st_size
    return out


def bench_file(key: str, path: Path, work: Path, epochs: int, max_rows: int) -> dict[str, Any]:
    source = Source(path, _any_cfg(path))
    log.info("%s: %d branches in one whole-file project", path.name, len(source.reader.branches))
    run = run_project(work, path, epochs, max_rows)
    restored = run["restored"]
    result = {
        "file": str(path.relative_to(DATA)),
        "format": source.format,
        "entries": source.num_entries,
        "branches": len(source.reader.branches),
        "input_bytes": path.stat().st_size,
        "input_compression": source.reader.compression,
        "container_bytes": run["container_bytes"],
        "decoder_bytes": run["decoder_bytes"],
        "restored_bytes": restored.stat().st_size,
        "seconds": run["seconds"],
        "lossless_groups": run["lossless_groups"],
        "nonfinite": run["nonfinite"],
        "groups": [{k: v for k, v in g.items() if k != "header"} for g in run["groups"]],
        "checks": check(source, restored, run["groups"]),
        "references": references(source, work),
    }
    return result


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Whole-file benchmark (issue 14)",
        "",
        "Generated by `python benchmarks/bench_wholefile.py`; see its docstring for the "
        'method. One whole-file project per file, bounded mode with `policy = "nanoaod"` '
        "(docs/precision.md); every branch of each file in one container; sizes in bytes; "
        "*ratio* = reference / container.",
        "",
        f"Machine: {meta['machine']}; load at the end: {meta['load']}; epochs "
        f"{meta['epochs']}, at most {meta['max_rows']} training rows per group.",
        "",
        "| file | input on disk | container (+ decoder weights) | ROOT LZMA-9 lossless "
        "| mantissa rounding + LZMA-9 | ratio vs input | vs LZMA-9 | vs rounding+LZMA-9 "
        "| decompressed file |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        c, ref = r["container_bytes"], r["references"]
        lines.append(
            f"| {key} ({r['entries']} entries, {r['branches']} branches, "
            f"{len(r['groups'])} groups with a model) | {r['input_bytes']} "
            f"| {c} (+{r['decoder_bytes']}) "
            f"| {ref['root_lzma9_bytes']} | {ref['rounded_lzma9_bytes']} "
            f"| {r['input_bytes'] / c:.2f}x | {ref['root_lzma9_bytes'] / c:.2f}x "
            f"| {ref['rounded_lzma9_bytes'] / c:.2f}x | {r['restored_bytes']} "
            f"({'≤' if r['restored_bytes'] <= r['input_bytes'] else '>'} input) |"
        )
    lines += [
        "",
        "Round-trip checks of the decompressed file against the input:",
        "",
        "| file | branches and entries equal | identical integer/counter branches | "
        "floats within bound | max error / bound | violations | dtype changes |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        ch = r["checks"]
        lines.append(
            f"| {key} | {ch['branches_equal'] and ch['entries_equal']} | "
            f"{ch['identical_ints']} (mismatch: {', '.join(ch['int_mismatch']) or 'none'}) | "
            f"{ch['floats_within_bound']} | {ch['max_err_over_bound']:.4f} | "
            f"{', '.join(ch['float_violations']) or 'none'} | "
            f"{'; '.join(ch['dtype_changes']) or 'none'} |"
        )
    lines += [
        "",
        "Per file (train, compress, decompress in seconds) and per group with a model:",
        "",
        "| file | seconds | groups carried losslessly | NaN/inf columns carried losslessly |",
        "|---|---|---|---|",
    ]
    for key, r in results.items():
        s = r["seconds"]
        lines.append(
            f"| {key} | {s['train']:.1f} / {s['compress']:.1f} / {s['decompress']:.1f} | "
            f"{', '.join(r['lossless_groups']) or 'none'} | {', '.join(r['nonfinite']) or 'none'} |"
        )
    lines += [
        "",
        "| file | group | float columns | rows | inner container | decoder |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        for g in r["groups"]:
            lines.append(
                f"| {key} | {g['group']} | {g['columns']} | {g['rows']} | "
                f"{g['container_bytes']} | {g['decoder_bytes']} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-rows", type=int, default=20000)
    p.add_argument("--files", default=",".join(FILES))
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_wholefile"))
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks")
    return p.parse_args(argv)


def main_bench(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    if not DATA.is_dir():
        log.error("needs the shared data folder %s", DATA)
        return 1
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    results = {
        k: bench_file(k, FILES[k], args.workdir, args.epochs, args.max_rows)
        for k in args.files.split(",")
    }
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), "
        f"Python {platform.python_version()}",
        "load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "epochs": args.epochs,
        "max_rows": args.max_rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "RESULTS_wholefile.md").write_text(markdown(results, meta))
    (args.out_dir / "results_wholefile.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1, default=str)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main_bench())
