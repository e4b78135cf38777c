"""Throughput of ``--mode compress`` / ``decompress``: local versus dask with 1 and 2 workers.

Splits the shared boosted-top events file (40,000 events, jagged jets) into N ROOT files,
trains a small model once, then times compress and decompress of all files with the
local executor and with a 2-worker and a 1-worker ``LocalCluster`` (single-threaded
workers). Cluster start-up is timed apart from the work (the cluster is started first
and addressed like a remote scheduler). Throughput counts the float64 bytes of the
compressed columns (rows x columns x 8) per wall-clock second. Every dask run is checked
to produce byte-identical containers to the local run.

    python benchmarks/bench_dask.py [--files 8] [--out benchmarks/RESULTS_dask.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
SHARED = Path(os.environ.get("BALER_EXT_SHARED_DATA", REPO.parent / "shared" / "data"))
SRC = SHARED / "pythia_ttbar" / "ttbar_boosted_events.root"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--events", type=int, default=40000, help="events in all files together")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS_dask.md")
    args = ap.parse_args()

    import torch
    from distributed import Client, LocalCluster
    from test_executors import split_root

    from baler_ext.config import load_config
    from baler_ext.project import Project
    from baler_ext.stages.compress import compress
    from baler_ext.stages.decompress import decompress
    from baler_ext.stages.train import train

    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    try:
        per = args.events // args.files
        split_root(SRC, tmp / "data", args.files, per)
        root = tmp / "p"
        root.mkdir()
        (root / "config.toml").write_text(
            f'[data]\ninput = ["{tmp / "data" / "*.root"}"]\n'
            "[training]\nepochs = 2\nbatch_size = 512\nmax_rows = 20000\n"
            "early_stopping_patience = 0\n"
        )
        project = Project("p", root)
        train(project, load_config(project.config_path))

        def run(label: str, extra: list[str]) -> dict:
            shutil.rmtree(project.dir("compressed"), ignore_errors=True)
            shutil.rmtree(project.dir("decompressed"), ignore_errors=True)
            cfg = load_config(project.config_path, extra)
            t0 = time.perf_counter()
            compress(project, cfg)  # cold: dask workers import torch and load the model
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            files = compress(project, cfg)  # warm: the steady state of a long job
            t1 = time.perf_counter()
            decompress(project, cfg)
            t2 = time.perf_counter()
            raw = sum(f.raw_float64_bytes for f in files)
            blobs = {p.name: p.read_bytes() for p in project.dir("compressed").glob("*.baler")}
            return {
                "label": label,
                "raw": raw,
                "cold_s": cold,
                "compress_s": t1 - t0,
                "decompress_s": t2 - t1,
                "blobs": blobs,
            }

        results = [run(f"local (1 process, torch threads: {torch.get_num_threads()})", [])]
        for n in (1, 2):
            t0 = time.perf_counter()
            with (
                LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
                ) as lc,
                Client(lc),
            ):
                startup = time.perf_counter() - t0
                r = run(
                    f"dask LocalCluster, {n} worker{'s' if n > 1 else ''}",
                    ['execution.executor="dask"', f'execution.scheduler="{lc.scheduler_address}"'],
                )
            r["startup_s"] = startup
            r["identical"] = r["blobs"] == results[0]["blobs"]
            results.append(r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mb = results[0]["raw"] / 1e6
    lines = [
        "# compress / decompress throughput: local versus dask",
        "",
        f"`python benchmarks/bench_dask.py --files {args.files} --events {args.events}` on "
        f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs while "
        f"measured), torch {torch.__version__}, default compression settings.",
        f"Input: {args.files} ROOT files split from `ttbar_boosted_events.root`, "
        f"{per} events each; {mb:.1f} MB of float64 in the compressed columns.",
        "MB/s = float64 bytes of the compressed columns / wall-clock seconds, model "
        "loading included, dask cluster start-up excluded (listed apart).",
        "",
        "| run | first compress s (cold workers) | compress s | compress MB/s | decompress s |"
        " decompress MB/s | cluster start s | containers identical to local |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['cold_s']:.2f} | {r['compress_s']:.2f} | "
            f"{mb / r['compress_s']:.2f} | "
            f"{r['decompress_s']:.2f} | {mb / r['decompress_s']:.2f} | "
            f"{r.get('startup_s', 0):.1f} | {r.get('identical', '(reference)')} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text + "\n<!-- comment below written by hand -->\n")


if __name__ == "__main__":
    main()
