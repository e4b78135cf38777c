"""Whole-file benchmark (issue 14): real files at NanoAOD precision, honest references.

For each file every branch is assigned to one *structure group* (flat event-level
branches; each jagged collection with its counter; collections sharing a counter are one
group, :func:`baler_ext.io.layout.structure_groups`). Each group with enough float values
is one project (bounded mode, ``policy = "nanoaod"``) whose container holds exactly that
group's branches; small groups ride losslessly in the flat group's container. The sum of
the containers is the compressed file. The groups' decompressed outputs are merged into
one file with the input's layout and compression, then checked against the input: same
branches and entries, every counter and integer branch identical, every float within the
bound it received (or equal to a value kept exactly).

References (same branches, written by uproot): the input file on disk; ROOT LZMA-9 of
all branches, lossless; NanoAOD-style mantissa rounding + LZMA-9 at equal precision
(each float rounded as coarsely as its bound allows, :mod:`baler_ext.io.reference`).

One project per group is how whole files are compressed today: a single container for
all groups (one model per group inside one project) is not built yet (see the README).

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
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script
from baler_ext.cli import main
from baler_ext.codec.container import ContainerReader
from baler_ext.config import DataConfig, toml_value
from baler_ext.io.formats import detect_format, get_format
from baler_ext.io.layout import SourceLayout, StructureGroup, structure_groups
from baler_ext.io.reference import LZMA9, reduce_precision
from baler_ext.io.source import Source
from baler_ext.model_store import load_project_model, weights_bytes
from baler_ext.precision import explicit_bounds, resolve_precision
from baler_ext.project import Project

log = logging.getLogger("bench_wholefile")
ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BALER_EXT_SHARED_DATA", ROOT.parent / "shared" / "data"))
#: a group needs this many float values per column to get a model of its own
MIN_ROWS = 100

FILES = {
    "single_top": DATA / "cms_hep_tutorial" / "single_top.root",
    "nanoaod": DATA / "uproot_cases" / "nanoAOD_2015_CMS_Open_Data_ttbar.root",
    "rntuple": DATA / "pythia_ttbar" / "ttbar_boosted_events_rntuple.root",
}


@dataclasses.dataclass
class Plan:
    """One project of a file: its group, the columns it compresses and what it drops."""

    name: str
    group: StructureGroup
    columns: list[str]
    exclude: list[str]
    hosted: list[str]
    #: float columns holding NaN or inf: carried losslessly
    nonfinite: list[str]


def plan(path: Path) -> tuple[Source, list[Plan]]:
    """The projects that together hold every branch of ``path`` exactly once."""
    source = Source(path, _any_cfg(path))
    groups = structure_groups(source.reader.branches)
    rows = {g.key: _rows(source, g) for g in groups}
    bad: dict[str, list[str]] = {}
    varying: dict[str, bool] = {}
    for g in groups:
        arrays = source.reader.read(g.floats) if g.floats else {}
        flat = {c: ak.to_numpy(ak.flatten(arrays[c], axis=None)) for c in g.floats}
        bad[g.key] = [c for c, v in flat.items() if not np.all(np.isfinite(v))]
        varying[g.key] = any(len(np.unique(v)) > 1 for c, v in flat.items() if c not in bad[g.key])
    big = [g for g in groups if varying[g.key] and rows[g.key] >= MIN_ROWS]
    small = [g for g in groups if g not in big]
    host = next((g for g in big if g.counter is None), big[0])
    every = [b.name for b in source.reader.branches]
    plans = []
    for g in big:
        mine = set(g.floats + g.others)
        if g is host:
            mine |= {n for s in small for n in s.floats + s.others}
        plans.append(
            Plan(
                g.key,
                g,
                [c for c in g.floats if c not in bad[g.key]],
                [n for n in every if n not in mine],
                [n for s in small for n in s.floats] if g is host else [],
                bad[g.key],
            )
        )
    return source, plans


def _any_cfg(path: Path) -> DataConfig:
    fmt = detect_format(path, "auto")
    reader = get_format(fmt).open(path, DataConfig(), set(), strict=False)
    first_float = next(b.name for b in reader.branches if b.is_float)
    return DataConfig(columns=[first_float])


def _rows(source: Source, g: StructureGroup) -> int:
    if g.counter is None or not g.floats:
        return source.num_entries
    tree = source.reader.read([g.floats[0]])
    return int(ak.sum(ak.num(tree[g.floats[0]], axis=1)))


def write_config(project_dir: Path, sections: dict[str, dict[str, Any]]) -> None:
    project_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for sec, table in sections.items():
        lines += [f"[{sec}]", *(f"{k} = {toml_value(v)}" for k, v in table.items()), ""]
    (project_dir / "config.toml").write_text("\n".join(lines))


def run_project(work: Path, path: Path, p: Plan, epochs: int, max_rows: int) -> dict[str, Any]:
    name = f"{path.stem}-{p.name}".replace(".", "_")
    write_config(
        work / name,
        {
            "data": {
                "input": [str(path)],
                "columns": p.columns,
                "exclude": p.exclude,
                "passthrough": p.nonfinite,
            },
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
    container = next((work / name / "output" / "compressed").glob("*.baler"))
    restored = next((work / name / "restored").glob("*"))
    with ContainerReader(container) as reader:
        header = reader.header
    decoder = weights_bytes(load_project_model(Project(name, work / name)))
    return {
        "name": name,
        "group": p.name,
        "columns": len(p.columns),
        "rows": header["rows"],
        "container": container,
        "container_bytes": container.stat().st_size,
        "decoder_bytes": decoder,
        "restored": restored,
        "header": header,
        "seconds": times,
        "hosted": p.hosted,
        "nonfinite": p.nonfinite,
    }


def merge(source: Source, runs: list[dict[str, Any]], out: Path) -> Path:
    """The groups' restored files as one file with the input's layout and compression."""
    layout: SourceLayout = dataclasses.replace(source.layout, compressed=[])
    columns: dict[str, Any] = {}
    for r in runs:
        reader = get_format(source.format).open(r["restored"], DataConfig(), set())
        names = [b.name for b in reader.branches]
        arrays = reader.read(names)
        columns.update({n: arrays[n] for n in names})
    write_all(source.format, out, layout, source.tree_name, columns)
    return out


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
    """Compare the merged output with the input branch by branch."""
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
    source, plans = plan(path)
    log.info("%s: %d branches in %d projects", path.name, len(source.reader.branches), len(plans))
    runs = [run_project(work, path, p, epochs, max_rows) for p in plans]
    merged = merge(source, runs, work / f"{path.stem}-merged{path.suffix}")
    result = {
        "file": str(path.relative_to(DATA)),
        "format": source.format,
        "entries": source.num_entries,
        "branches": len(source.reader.branches),
        "input_bytes": path.stat().st_size,
        "input_compression": source.reader.compression,
        "containers_bytes": sum(r["container_bytes"] for r in runs),
        "decoder_bytes": sum(r["decoder_bytes"] for r in runs),
        "merged_bytes": merged.stat().st_size,
        "groups": [
            {
                k: r[k]
                for k in (
                    "group",
                    "columns",
                    "rows",
                    "container_bytes",
                    "decoder_bytes",
                    "seconds",
                    "hosted",
                    "nonfinite",
                )
            }
            for r in runs
        ],
        "checks": check(source, merged, runs),
        "references": references(source, work),
    }
    return result


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Whole-file benchmark (issue 14)",
        "",
        "Generated by `python benchmarks/bench_wholefile.py`; see its docstring for the "
        'method. Bounded mode with `policy = "nanoaod"` (docs/precision.md); every '
        "branch of each file; sizes in bytes; *ratio* = reference / containers.",
        "",
        f"Machine: {meta['machine']}; load at the end: {meta['load']}; epochs "
        f"{meta['epochs']}, at most {meta['max_rows']} training rows per group.",
        "",
        "| file | input on disk | containers (+ decoder weights) | ROOT LZMA-9 lossless "
        "| mantissa rounding + LZMA-9 | ratio vs input | vs LZMA-9 | vs rounding+LZMA-9 "
        "| merged round trip |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        c, ref = r["containers_bytes"], r["references"]
        lines.append(
            f"| {key} ({r['entries']} entries, {r['branches']} branches, "
            f"{len(r['groups'])} projects) | {r['input_bytes']} | {c} (+{r['decoder_bytes']}) "
            f"| {ref['root_lzma9_bytes']} | {ref['rounded_lzma9_bytes']} "
            f"| {r['input_bytes'] / c:.2f}x | {ref['root_lzma9_bytes'] / c:.2f}x "
            f"| {ref['rounded_lzma9_bytes'] / c:.2f}x | {r['merged_bytes']} "
            f"({'≤' if r['merged_bytes'] <= r['input_bytes'] else '>'} input) |"
        )
    lines += [
        "",
        "Round-trip checks of the merged output against the input:",
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
        "Per project (group):",
        "",
        "| file | group | float columns | rows | container | decoder | train s | "
        "compress s | decompress s | small groups carried losslessly | NaN/inf columns "
        "carried losslessly |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        for g in r["groups"]:
            s = g["seconds"]
            lines.append(
                f"| {key} | {g['group']} | {g['columns']} | {g['rows']} | "
                f"{g['container_bytes']} | {g['decoder_bytes']} | {s['train']:.1f} | "
                f"{s['compress']:.1f} | {s['decompress']:.1f} | "
                f"{len(g['hosted'])} columns | {', '.join(g['nonfinite']) or 'none'} |"
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
