"""Throughput of the bounded codec against SZ3 and zstd (issues 13 and 11); not a test.

All 78,238 rows of ``../shared/data/pythia_ttbar/ttbar_boosted_jets.parquet`` (17 float64
columns, 10.6 MB) at the operating point P1, one thread, on two paths:

* **classical** (``probability_model = "static"``: centre, linear stack, relations,
  ``latent_policy = "auto"``) with an autoencoder trained for two epochs (it only has to
  exist: ``auto`` decides per chunk whether its latent pays, on a sample);
* **learned** (the rate-trained MADE with a mixture of four logistics, trained for eight
  epochs on the same rows: its speed, not its ratio, is measured here).

Figures are MB of float64 input per CPU-second (``time.process_time`` of this process,
one thread), the median of ``--repeat`` runs:

* **codec**: ``compress_source`` on chunks already read into memory (quantise, predict,
  entropy-code, write the container, digest the encoder's reconstruction) and
  ``decompress_file`` into a writer that discards the table (read the container, decode,
  check every chunk's digest) — the work SZ3 and zstd do below;
* **stage**: the same with the Parquet file read and written (what a user waits for, less
  the start-up of the command, ``bench_startup.py``).

The process is set up as the command sets up its own (``threads = 1``, and freed memory
kept in the heap for the next chunk, :mod:`baler_ext.heap`), for every method measured.

In the same run and on the same matrix: SZ3 (``pysz``, ABS mode per column, log-transformed
for relative bounds, tightened until every value is within its bound), the per-column
quantiser + zstd-19, and lossless zstd at levels 3 and 19. Speed is reported as ratios
against them (the machine is shared and noisy; a ratio measured in one run is what holds).

Run: ``python benchmarks/bench_throughput.py [--repeat 5] [--workdir /tmp/bench_throughput]``
(about 4 minutes). Writes ``benchmarks/RESULTS_throughput.md`` and
``benchmarks/results_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script
from benchmarks.common import DATA, ROOT, bounds_met, operating_point, read_table
from benchmarks.methods import get_method

log = logging.getLogger("bench_throughput")
RESULTS = ROOT / "benchmarks" / "RESULTS_throughput.md"
RESULTS_JSON = ROOT / "benchmarks" / "results_throughput.json"


def cpu_seconds(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median CPU seconds of ``fn()`` over ``repeat`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return statistics.median(times), out


class _Discard:
    """An output writer that keeps nothing (the codec figure excludes Parquet writing)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.rows = 0

    def write(self, values: np.ndarray, *args: object) -> None:
        self.rows += len(values)

    def close(self) -> None:
        pass


#: the two bounded paths measured: the classical one (the issue's target) and the learned
#: probability model (trained briefly here: its speed, not its ratio, is measured)
PATHS: dict[str, dict[str, dict]] = {
    "classical": {
        "compression": {"probability_model": "static"},
        "rate": {"enabled": False},
    },
    "learned": {
        "compression": {"probability_model": "learned"},
        "rate": {"epochs": 8, "mixture_start": "scratch", "order": "natural"},
    },
}


def baler_ext_runs(work: Path, path: str, repeat: int) -> tuple[dict[str, float], int, bool]:
    """CPU seconds of one bounded path (:data:`PATHS`), its payload (the container less the
    integer columns it carries losslessly, which the references do not code), bounds met."""
    from baler_ext.cli import main as cli
    from baler_ext.config import load_config
    from baler_ext.io.source import Source
    from baler_ext.model_store import load_project_model
    from baler_ext.project import Project
    from baler_ext.stages import decompress as dstage
    from baler_ext.stages.compress import compress, compress_source
    from baler_ext.stages.decompress import decompress, decompress_file
    from baler_ext.stages.info import group_sizes
    from benchmarks.common import write_project_config

    projects = work / "projects"
    write_project_config(
        projects / path,
        {
            "data": {"input": [str(DATA)], "columns": ["*"], "chunk_size": 100_000},
            "model": {"latent_dim": 8, "hidden": [64, 32]},
            "training": {"epochs": 2, "batch_size": 1024, "device": "cpu"},
            "compression": {
                "mode": "bounded",
                "bounds": operating_point(1.0),
                **PATHS[path]["compression"],
            },
            "rate": PATHS[path]["rate"],
            "execution": {"threads": 1},
        },
    )
    base = ["--projects-dir", str(projects), "--project", path, "-q"]
    if cli([*base, "--mode", "train"]) != 0:
        raise SystemExit("training the benchmark project failed")
    cfg = load_config(projects / path / "config.toml")
    project = Project(path, projects / path)
    trained = load_project_model(project)
    source = Source(DATA, cfg.data)
    chunks = list(source.chunks())
    source.chunks = lambda: iter(chunks)  # type: ignore[method-assign]
    container = work / f"{path}.baler"
    out: dict[str, float] = {}
    compress(project, cfg)  # warm-up: lazy imports, first-touch allocations
    out["codec_compress"], _ = cpu_seconds(
        lambda: compress_source(source, trained, cfg, container), repeat
    )
    real_writer = dstage.OutputWriter
    dstage.OutputWriter = _Discard  # type: ignore[assignment,misc]
    try:
        out["codec_decompress"], _ = cpu_seconds(
            lambda: decompress_file(container, trained, cfg, work / "discarded.parquet"),
            repeat,
        )
    finally:
        dstage.OutputWriter = real_writer  # type: ignore[misc]
    out["stage_compress"], files = cpu_seconds(lambda: compress(project, cfg), repeat)
    out["stage_decompress"], restored_paths = cpu_seconds(lambda: decompress(project, cfg), repeat)
    table = read_table(DATA)
    restored = read_table(restored_paths[0], table.names).values
    by_group = group_sizes(files[0].sizes)  # the payload: what the float columns cost
    payload = sum(by_group.values()) - by_group.get("passthrough", 0) - by_group.get("decoder", 0)
    return out, payload, bounds_met(table, restored, operating_point(1.0))


def reference_runs(repeat: int) -> dict[str, dict[str, float]]:
    """SZ3, quantiser + zstd and lossless zstd on the same matrix, same run."""
    table = read_table(DATA)
    bounds = operating_point(1.0)
    raw = table.values.tobytes()
    out: dict[str, dict[str, float]] = {}
    for name in ("sz3", "quantise_zstd", "zstd19_f64"):
        method = get_method(name)()
        tc, blob = cpu_seconds(lambda m=method: m.compress(table, bounds), repeat)
        td, back = cpu_seconds(lambda m=method, b=blob: m.decompress(b), repeat)
        ok = (
            bool(bounds_met(table, back, bounds))
            if method.bounded
            else bool(np.array_equal(back, table.values))
        )
        out[name] = {"compress_s": tc, "decompress_s": td, "bytes": len(blob), "exact_or_met": ok}
    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    tc, blob = cpu_seconds(lambda: cctx.compress(raw), repeat)
    td, _ = cpu_seconds(lambda: dctx.decompress(blob), repeat)
    out["zstd3_f64"] = {
        "compress_s": tc,
        "decompress_s": td,
        "bytes": len(blob),
        "exact_or_met": True,
    }
    return out


LABELS = {
    "sz3": "SZ3 (ABS per column, log for rel; tightened until met)",
    "quantise_zstd": "per-column quantiser + zstd-19",
    "zstd19_f64": "zstd-19, lossless float64",
    "zstd3_f64": "zstd-3, lossless float64",
}


def write_results(
    ours: dict[str, tuple[dict[str, float], int, bool]], refs: dict, raw_mb: float, load: str
) -> None:
    def rate(s: float) -> float:
        return raw_mb / s

    lines = [
        "# Codec throughput (issue 13)",
        "",
        "Written by `python benchmarks/bench_throughput.py`. All 78,238 shared jets "
        f"(17 float64 columns, {raw_mb:.2f} MB), operating point P1, one thread; MB of "
        "float64 input per CPU-second (median of the repeats). Load average at the start: "
        f"{load}. The learned path's model is trained for 8 epochs on the same rows (its "
        "speed is measured here, its ratio in `RESULTS_learned.md`).",
        "",
        "| method | compress MB/CPU-s | decompress MB/CPU-s | bytes (baler_ext: payload) "
        "| ratio vs float64 | bounds met / exact |",
        "|---|---|---|---|---|---|",
    ]
    for path, (t, size, met) in ours.items():
        ok = "yes" if met else "NO"
        lines += [
            f"| **baler_ext {path} bounded, codec** | **{rate(t['codec_compress']):.1f}** "
            f"| **{rate(t['codec_decompress']):.1f}** | {size:,} | "
            f"{raw_mb * 1e6 / size:.2f}× | {ok} |",
            f"| baler_ext {path} bounded, stage (Parquet read/written) "
            f"| {rate(t['stage_compress']):.1f} | {rate(t['stage_decompress']):.1f} "
            f"| {size:,} | {raw_mb * 1e6 / size:.2f}× | {ok} |",
        ]
    for name, r in refs.items():
        lines.append(
            f"| {LABELS[name]} | {rate(r['compress_s']):.1f} | {rate(r['decompress_s']):.1f} "
            f"| {r['bytes']:,} | {raw_mb * 1e6 / r['bytes']:.2f}× "
            f"| {'yes' if r['exact_or_met'] else 'NO'} |"
        )
    lines += [
        "",
        "Speed of each baler_ext codec relative to each reference in this run "
        "(> 1: baler_ext is faster; compress / decompress):",
        "",
        "| against | " + " | ".join(ours) + " |",
        "|---|" + "---|" * len(ours),
    ]
    for name, r in refs.items():
        cells = [
            f"{r['compress_s'] / t['codec_compress']:.2f} / "
            f"{r['decompress_s'] / t['codec_decompress']:.2f}"
            for t, _, _ in ours.values()
        ]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    lines.append("")
    RESULTS.write_text("\n".join(lines))
    RESULTS_JSON.write_text(
        json.dumps(
            {
                "baler_ext": {
                    p: {"cpu_s": t, "payload_bytes": size, "bounds_met": met}
                    for p, (t, size, met) in ours.items()
                },
                "references": refs,
                "raw_mb": raw_mb,
                "load": load,
            },
            indent=1,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_throughput"))
    ap.add_argument("--paths", default="classical,learned", help="bounded paths to measure")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if not DATA.is_file():
        raise SystemExit(f"{DATA} is missing: this benchmark needs ../shared/data")
    import torch

    from baler_ext import heap

    torch.set_num_threads(1)
    heap.keep_freed_memory()  # as the CLI does before a stage (the train call below would too)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    args.workdir.mkdir(parents=True, exist_ok=True)
    ours = {p: baler_ext_runs(args.workdir, p, args.repeat) for p in args.paths.split(",")}
    refs = reference_runs(args.repeat)
    raw_mb = read_table(DATA).raw_float64 / 1e6
    write_results(ours, refs, raw_mb, load)
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
