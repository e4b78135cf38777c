"""Benchmark of the bounded mode on the boosted-top jets (issue 4); not a timed test.

Trains on the first half of the rows of ``../shared/data/pythia_ttbar/ttbar_boosted_jets.parquet``,
compresses the other half at the operating points P1 and P2 with both entropy coders,
decompresses, checks every bound, and writes ``benchmarks/RESULTS_codec.md``.

Run: ``python benchmarks/bench_codec.py [--epochs 30] [--workdir /tmp/bench_codec]``.
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
from baler_ext.project import Project
from baler_ext.stages.compress import compress, load_project_model, weights_bytes
from baler_ext.stages.decompress import decompress
from baler_ext.stages.train import train

log = logging.getLogger("bench_codec")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pythia_ttbar" / "ttbar_boosted_jets.parquet"
FRACS = ["charged_frac", "photon_frac", "neutral_hadron_frac", "lead_pt_frac", "girth", "ptd",
         "tau1", "tau2", "tau3"]


def operating_point(scale: float) -> dict[str, dict[str, float]]:
    """P1 (scale 1) or P2 (scale 0.1) as a ``[compression] bounds`` table."""
    b: dict[str, dict[str, float]] = {"default": {"abs": 1e-3 * scale}}
    for c in ("pt", "mass", "energy"):
        b[c] = {"rel": 1e-2 * scale}
    for c in ("eta", "phi"):
        b[c] = {"abs": 1e-3 * scale}
    for c in ("px", "py", "pz"):
        b[c] = {"abs": 1.0 * scale}
    for c in FRACS:
        b[c] = {"abs": 1e-3 * scale}
    return b


def write_project(work: Path, name: str, data: Path, epochs: int, compression: dict) -> Path:
    d = work / "projects" / name
    d.mkdir(parents=True, exist_ok=True)
    sections = {
        "data": {"input": [str(data)], "passthrough": [], "chunk_size": 100_000},
        "model": {"latent_dim": 8, "hidden": [64, 32]},
        "training": {"epochs": epochs, "batch_size": 512, "early_stopping_patience": 0,
                     "device": "cpu"},
        "compression": compression,
    }
    lines = []
    for sec, table in sections.items():
        lines += [f"[{sec}]", *(f"{k} = {toml_value(v)}" for k, v in table.items()), ""]
    (d / "config.toml").write_text("\n".join(lines))
    return d / "config.toml"


def peak_rss_mb(work: Path, name: str) -> float:
    """Peak RSS (MB) of a fresh ``--mode compress`` process."""
    code = ("import resource, sys; from baler_ext.cli import main; "
            f"rc = main(['--projects-dir', {str(work / 'projects')!r}, '--project', {name!r}, "
            "'--mode', 'compress', '-q']); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_codec"))
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
    cfg_path = write_project(work, "train", train_path, args.epochs, {"mode": "bounded"})
    t0 = time.perf_counter()
    train(Project.locate("train", work / "projects"), load_config(cfg_path))
    train_s = time.perf_counter() - t0
    model_dir = work / "projects" / "train" / "output" / "model"
    trained = load_project_model(Project.locate("train", work / "projects"))
    wbytes = weights_bytes(trained)

    runs = []
    grid = [("P1", 1.0, "range", 8), ("P1", 1.0, "zstd", 8), ("P2", 0.1, "range", 8),
            ("P2", 0.1, "zstd", 8), ("P1", 1.0, "range", 6), ("P1", 1.0, "range", 10),
            ("P2", 0.1, "range", 10)]
    for point, scale, coder, bits in grid:
        name = f"{point}_{coder}_{bits}"
        cfg_path = write_project(work, name, test_path, args.epochs, {
            "mode": "bounded", "bounds": operating_point(scale), "entropy_coder": coder,
            "latent_bits": bits})
        proj = Project.locate(name, work / "projects")
        (proj.output / "model").mkdir(parents=True, exist_ok=True)
        for f in model_dir.iterdir():
            (proj.output / "model" / f.name).write_bytes(f.read_bytes())
        cfg = load_config(cfg_path)
        t0 = time.perf_counter()
        (result,) = compress(proj, cfg)
        c_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        (out_path,) = decompress(proj, cfg)
        d_s = time.perf_counter() - t0
        with ContainerReader(result.path) as reader:
            sizes = reader.section_sizes()
        groups: dict[str, int] = {}
        for sec, size in sizes.items():
            g = sec.split("/")[0].split(":")[0]
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
            per_col[c] = {"max_err_over_bound": float(ratio.max()), "bound": {kind: v},
                          "ok": bool(np.all(err <= lim))}
        runs.append({"point": point, "coder": coder, "latent_bits": bits, "payload": payload,
                     "total": result.total_bytes, "groups": groups,
                     "ratio_payload": raw64 / payload,
                     "ratio_with_decoder": raw64 / (payload + wbytes),
                     "compress_MBps": raw64 / c_s / 1e6, "decompress_MBps": raw64 / d_s / 1e6,
                     "all_ok": all(v["ok"] for v in per_col.values()), "columns": per_col})
        log.info("%s: %.2fx payload, %.2fx with decoder, compress %.1f MB/s, decompress %.1f "
                 "MB/s, bounds met: %s", name, runs[-1]["ratio_payload"],
                 runs[-1]["ratio_with_decoder"], runs[-1]["compress_MBps"],
                 runs[-1]["decompress_MBps"], runs[-1]["all_ok"])

    # peak memory: 1x vs the test half tiled 10x
    tiled = pa.concat_tables([test] * 10)
    tiled_path = work / "tiled.parquet"
    pq.write_table(tiled, tiled_path, row_group_size=100_000)
    mem = {}
    for label, path in (("1x", test_path), ("10x", tiled_path)):
        name = f"mem_{label}"
        write_project(work, name, path, args.epochs, {"mode": "bounded",
                                                      "bounds": operating_point(1.0)})
        proj = Project.locate(name, work / "projects")
        (proj.output / "model").mkdir(parents=True, exist_ok=True)
        for f in model_dir.iterdir():
            (proj.output / "model" / f.name).write_bytes(f.read_bytes())
        mem[label] = peak_rss_mb(work, name)
    summary = {"rows_compressed": test.num_rows, "float_columns": floats, "raw_float64": raw64,
               "train_seconds": train_s, "decoder_bytes": wbytes, "runs": runs,
               "peak_rss_mb": mem}
    (work / "results.json").write_text(json.dumps(summary, indent=1))
    write_markdown(summary, ROOT / "benchmarks" / "RESULTS_codec.md")


def write_markdown(s: dict, path: Path) -> None:
    lines = ["# Bounded-mode benchmark (issue 4)", "",
             f"Data: `ttbar_boosted_jets.parquet`, model (sae, hidden [64, 32], latent 8) "
             f"trained on the first half ({s['train_seconds']:.0f} s), the other half "
             f"({s['rows_compressed']} rows, {len(s['float_columns'])} float64 columns, "
             f"{s['raw_float64'] / 1e6:.2f} MB raw float64) compressed. Ratios are versus the "
             "raw float64 bytes of the 17 float columns; *payload* = the whole file minus the "
             "lossless integer columns (header/index included); *with decoder* adds the "
             f"zstd-compressed decoder weights ({s['decoder_bytes']} bytes). MB/s are of raw "
             "float64 input, one process, stage wall time including Parquet I/O, on a 2-core "
             "machine shared with other jobs.", "",
             "| point | coder | latent bits | payload ratio | with decoder | compress MB/s | "
             "decompress MB/s | every bound met | latent bytes | residual bytes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["runs"]:
        lines.append(f"| {r['point']} | {r['coder']} | {r['latent_bits']} | "
                     f"{r['ratio_payload']:.2f}x | {r['ratio_with_decoder']:.2f}x | "
                     f"{r['compress_MBps']:.1f} | {r['decompress_MBps']:.1f} | {r['all_ok']} | "
                     f"{r['groups'].get('latent', 0)} | {r['groups'].get('res', 0)} |")
    lines += ["", "Max error / bound per column (range coder, 8 latent bits):", "",
              "| column | P1 bound | P1 max err/bound | P2 bound | P2 max err/bound |",
              "|---|---|---|---|---|"]
    p1 = next(r for r in s["runs"] if r["point"] == "P1" and r["coder"] == "range")
    p2 = next(r for r in s["runs"] if r["point"] == "P2" and r["coder"] == "range")
    for c in s["float_columns"]:
        a, b = p1["columns"][c], p2["columns"][c]
        lines.append(f"| {c} | {a['bound']} | {a['max_err_over_bound']:.4f} | {b['bound']} | "
                     f"{b['max_err_over_bound']:.4f} |")
    lines += ["", f"Peak RSS of `--mode compress` (P1): {s['peak_rss_mb']['1x']:.0f} MB on the "
              f"half, {s['peak_rss_mb']['10x']:.0f} MB on the half tiled 10x.", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
