"""Benchmark of the bounded mode on the boosted-top jets (issue 4); not a timed test.

Trains on the first half of the rows of ``../shared/data/pythia_ttbar/ttbar_boosted_jets.parquet``,
compresses the other half at the operating points P1 and P2 with both entropy coders, the
latent policies and with/without relation predictors, decompresses, checks every bound, and
writes the tables of ``benchmarks/RESULTS_codec.md`` (text below its marker is kept).

Run: ``python benchmarks/bench_codec.py [--epochs 30] [--workdir /tmp/bench_codec]
[--reuse-model]`` (about 1 minute with ``--reuse-model``, plus ~4 minutes of training).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from baler_ext.codec.container import ContainerReader
from baler_ext.config import load_config, toml_value
from baler_ext.model_store import load_project_model, weights_bytes
from baler_ext.project import Project
from baler_ext.stages.compress import compress
from baler_ext.stages.decompress import decompress
from baler_ext.stages.train import train

log = logging.getLogger("bench_codec")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script
from benchmarks.common import DATA, FRACS, ROOT, operating_point  # noqa: E402, F401

MARKER = "<!-- hand-written below: kept when the script rewrites the tables above -->"


def write_project(work: Path, name: str, data: Path, epochs: int, compression: dict) -> Path:
    d = work / "projects" / name
    d.mkdir(parents=True, exist_ok=True)
    sections = {
        "data": {"input": [str(data)], "passthrough": [], "chunk_size": 100_000},
        "model": {"latent_dim": 8, "hidden": [64, 32]},
        "training": {
            "epochs": epochs,
            "batch_size": 512,
            "early_stopping_patience": 0,
            "device": "cpu",
        },
        "compression": compression,
    }
    lines = []
    for sec, table in sections.items():
        lines += [f"[{sec}]", *(f"{k} = {toml_value(v)}" for k, v in table.items()), ""]
    (d / "config.toml").write_text("\n".join(lines))
    return d / "config.toml"


def peak_rss_mb(work: Path, name: str) -> float:
    """Peak RSS (MB) of a fresh ``--mode compress`` process."""
    code = (
        "import resource, sys; from baler_ext.cli import main; "
        f"rc = main(['--projects-dir', {str(work / 'projects')!r}, '--project', {name!r}, "
        "'--mode', 'compress', '-q']); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_codec"))
    ap.add_argument(
        "--reuse-model",
        action="store_true",
        help="reuse <workdir>/projects/train's trained model instead of training",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(DATA)
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    n = table.num_rows
    train_path, test_path = work / "train_half.parquet", work / "test_half.parquet"
    pq.write_table(table.slice(0, n // 2), train_path)
    pq.write_table(table.slice(n // 2), test_path)
    test = pq.read_table(test_path)
    raw64 = test.num_rows * len(floats) * 8

    # train once, share the model between the runs
    model_dir = work / "projects" / "train" / "output" / "model"
    train_s = float("nan")
    if not (args.reuse_model and (model_dir / "model.json").is_file()):
        cfg_path = write_project(work, "train", train_path, args.epochs, {"mode": "bounded"})
        t0 = time.perf_counter()
        train(Project.locate("train", work / "projects"), load_config(cfg_path))
        train_s = time.perf_counter() - t0
    trained = load_project_model(Project.locate("train", work / "projects"))
    wbytes = weights_bytes(trained)

    runs = []
    # (point, scale, coder, latent bits, latent_policy, relations)
    grid = [
        ("P1", 1.0, "range", 6, "auto", "auto"),
        ("P2", 0.1, "range", 6, "auto", "auto"),
        ("P1", 1.0, "zstd", 6, "auto", "auto"),
        ("P2", 0.1, "zstd", 6, "auto", "auto"),
        ("P1", 1.0, "range", 6, "always", "auto"),
        ("P2", 0.1, "range", 6, "always", "auto"),
        ("P1", 1.0, "range", 4, "always", "auto"),
        ("P2", 0.1, "range", 4, "always", "auto"),
        ("P1", 1.0, "range", 6, "always", "none"),
        ("P2", 0.1, "range", 8, "always", "none"),
    ]
    for point, scale, coder, bits, policy, rel in grid:
        name = f"{point}_{coder}_{bits}_{policy}_{rel}"
        cfg_path = write_project(
            work,
            name,
            test_path,
            args.epochs,
            {
                "mode": "bounded",
                "bounds": operating_point(scale),
                "entropy_coder": coder,
                "latent_bits": bits,
                "latent_policy": policy,
                "relations": rel,
            },
        )
        proj = Project.locate(name, work / "projects")
        (proj.output / "model").mkdir(parents=True, exist_ok=True)
        for f in model_dir.iterdir():
            (proj.output / "model" / f.name).write_bytes(f.read_bytes())
        cfg = load_config(cfg_path)
        if not runs:  # warm-up: first-call imports and allocations are not throughput
            compress(proj, cfg)
            decompress(proj, cfg)
        t0, c0 = time.perf_counter(), time.process_time()
        (result,) = compress(proj, cfg)
        c_s, c_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        (out_path,) = decompress(proj, cfg)
        d_s, d_cpu = time.perf_counter() - t0, time.process_time() - c0
        with ContainerReader(result.path) as reader:
            sizes = reader.section_sizes()
        groups: dict[str, int] = {}
        for sec, size in sizes.items():
            g = sec.split("/")[0].split(":")[0]
            g = {"lin": "res", "pred": "res"}.get(g, g)  # predictor side info with residuals
            groups[g] = groups.get(g, 0) + size
        payload = result.total_bytes - groups.get("passthrough", 0)
        restored = pq.read_table(out_path)
        bounds = operating_point(scale)
        per_col = {}
        for c in floats:
            x = test.column(c).to_numpy().astype(np.float64)
            y = restored.column(c).to_numpy().astype(np.float64)
            ((kind, v),) = bounds.get(c, bounds["default"]).items()
            lim = v if kind == "abs" else v * np.abs(x)
            err = np.abs(x - y)
            ratio = np.where(lim > 0, err / np.where(lim > 0, lim, 1), 0.0)
            per_col[c] = {
                "max_err_over_bound": float(ratio.max()),
                "bound": {kind: v},
                "ok": bool(np.all(err <= lim)),
            }
        with ContainerReader(result.path) as reader:
            ms = reader.header["mode_settings"]
        runs.append(
            {
                "point": point,
                "coder": coder,
                "latent_bits": bits,
                "policy": policy,
                "relations": rel,
                "latent_chunks": ms.get("latent_chunks"),
                "n_relations": len(ms.get("relations", [])),
                "payload": payload,
                "total": result.total_bytes,
                "groups": groups,
                "ratio_payload": raw64 / payload,
                "ratio_with_decoder": raw64 / (payload + wbytes),
                "compress_MBps": raw64 / c_s / 1e6,
                "decompress_MBps": raw64 / d_s / 1e6,
                "compress_MBps_cpu": raw64 / c_cpu / 1e6,
                "decompress_MBps_cpu": raw64 / d_cpu / 1e6,
                "all_ok": all(v["ok"] for v in per_col.values()),
                "columns": per_col,
            }
        )
        log.info(
            "%s: %.2fx payload, %.2fx with decoder, compress %.1f MB/s, decompress %.1f "
            "MB/s, bounds met: %s",
            name,
            runs[-1]["ratio_payload"],
            runs[-1]["ratio_with_decoder"],
            runs[-1]["compress_MBps"],
            runs[-1]["decompress_MBps"],
            runs[-1]["all_ok"],
        )

    # peak memory: 1x vs the test half tiled 10x
    tiled = pa.concat_tables([test] * 10)
    tiled_path = work / "tiled.parquet"
    pq.write_table(tiled, tiled_path, row_group_size=100_000)
    mem = {}
    for label, path in (("1x", test_path), ("10x", tiled_path)):
        name = f"mem_{label}"
        write_project(
            work, name, path, args.epochs, {"mode": "bounded", "bounds": operating_point(1.0)}
        )
        proj = Project.locate(name, work / "projects")
        (proj.output / "model").mkdir(parents=True, exist_ok=True)
        for f in model_dir.iterdir():
            (proj.output / "model" / f.name).write_bytes(f.read_bytes())
        mem[label] = peak_rss_mb(work, name)
    summary = {
        "rows_compressed": test.num_rows,
        "float_columns": floats,
        "raw_float64": raw64,
        "train_seconds": train_s,
        "decoder_bytes": wbytes,
        "runs": runs,
        "peak_rss_mb": mem,
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    (work / "results.json").write_text(json.dumps(summary, indent=1))
    write_markdown(summary, ROOT / "benchmarks" / "RESULTS_codec.md")


def write_markdown(s: dict, path: Path) -> None:
    lines = [
        "# Bounded-mode benchmark (issue 4)",
        "",
        f"Data: `ttbar_boosted_jets.parquet`, model (sae, hidden [64, 32], latent 8) "
        f"trained on the first half ({s['train_seconds']:.0f} s; nan = model reused "
        "from an earlier run of this script), the other half "
        f"({s['rows_compressed']} rows, {len(s['float_columns'])} float64 columns, "
        f"{s['raw_float64'] / 1e6:.2f} MB raw float64) compressed. Ratios are versus the "
        "raw float64 bytes of the 17 float columns; *payload* = the whole file minus the "
        "lossless integer columns (header/index included); *with decoder* adds the "
        f"zstd-compressed decoder weights ({s['decoder_bytes']} bytes). MB/s are of raw "
        "float64 input, one process, stage wall time including Parquet I/O (after one "
        "untimed warm-up run), on a 2-core machine shared with other jobs; *per CPU-s* "
        "divides by the process CPU time of the stage instead (all threads), i.e. MB/s "
        "per busy core.",
        "",
        f"Machine load (`uptime`) at the end: {s.get('uptime', '?')}",
        "",
        "| point | coder | latent bits | latent policy (chunks with latent) | relations "
        "| payload ratio | with decoder | compress MB/s (per CPU-s) | "
        "decompress MB/s (per CPU-s) | every bound met | latent bytes | residual bytes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s["runs"]:
        lines.append(
            f"| {r['point']} | {r['coder']} | {r['latent_bits']} | "
            f"{r['policy']} ({r['latent_chunks']}) | {r['relations']} "
            f"({r['n_relations']}) | "
            f"{r['ratio_payload']:.2f}x | {r['ratio_with_decoder']:.2f}x | "
            f"{r['compress_MBps']:.1f} ({r['compress_MBps_cpu']:.1f}) | "
            f"{r['decompress_MBps']:.1f} ({r['decompress_MBps_cpu']:.1f}) | "
            f"{r['all_ok']} | "
            f"{r['groups'].get('latent', 0)} | {r['groups'].get('res', 0)} |"
        )
    lines += [
        "",
        "Max error / bound per column (range coder, default policies):",
        "",
        "| column | P1 bound | P1 max err/bound | P2 bound | P2 max err/bound |",
        "|---|---|---|---|---|",
    ]
    p1 = next(r for r in s["runs"] if r["point"] == "P1" and r["coder"] == "range")
    p2 = next(r for r in s["runs"] if r["point"] == "P2" and r["coder"] == "range")
    for c in s["float_columns"]:
        a, b = p1["columns"][c], p2["columns"][c]
        lines.append(
            f"| {c} | {a['bound']} | {a['max_err_over_bound']:.4f} | {b['bound']} | "
            f"{b['max_err_over_bound']:.4f} |"
        )
    lines += [
        "",
        f"Peak RSS of `--mode compress` (P1): {s['peak_rss_mb']['1x']:.0f} MB on the "
        f"half, {s['peak_rss_mb']['10x']:.0f} MB on the half tiled 10x.",
        "",
    ]
    # keep the hand-written analysis below the marker
    keep = path.read_text().split(MARKER, 1) if path.is_file() else []
    lines += [MARKER + (keep[1] if len(keep) == 2 else "\n")]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
