"""One benchmark job in a fresh process: ``python -m benchmarks.worker JOB.json``.

A fresh process per method makes the peak RSS (``ru_maxrss`` of this process, read at
the end) belong to that method alone: it counts the interpreter, the method's imports
(torch for the autoencoders), the table and the compress + decompress calls. The job
file says what to run; the result is written next to it as ``*.out.json`` (and the
decoded table as ``*.npy`` for method jobs).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np


def warm_imports(method: str) -> None:
    """Import what a method needs before the clock starts (imports are not compression)."""
    import importlib

    from benchmarks.methods import OPTIONAL

    mods = ["zstandard", *([OPTIONAL[method]] if method in OPTIONAL else [])]
    if method == "bitround_blosc2":
        mods.append("blosc2")
    if method.startswith("root_"):
        mods.append("uproot")
    for mod in mods:
        importlib.import_module(mod)


def run_job(job: dict) -> dict:
    from benchmarks import ae_methods
    from benchmarks.common import peak_rss_mb, read_table
    from benchmarks.methods import get_method

    kind = job["kind"]
    if kind == "train_balerext":
        out = ae_methods.train_balerext(
            Path(job["workdir"]),
            job["project"],
            Path(job["data"]),
            job["latent_dim"],
            job["epochs"],
            like_baler=job.get("like_baler", False),
        )
    elif kind == "train_baler":
        out = ae_methods.train_baler(
            Path(job["workdir"]),
            job["project"],
            Path(job["data"]),
            job["latent_dim"],
            job["epochs"],
        )
    elif kind == "method":
        table = read_table(Path(job["test_path"]))
        method = get_method(job["method"])(**job.get("params", {}))
        bounds = job.get("bounds")
        warm_imports(job["method"])
        if hasattr(method, "prepare"):
            method.prepare(table, bounds)
        t0 = time.perf_counter()
        blob = method.compress(table, bounds)
        c_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        restored = method.decompress(blob)
        d_s = time.perf_counter() - t0
        np.save(job["out_npy"], restored)
        out = {
            "bytes": len(blob),
            "compress_s": c_s,
            "decompress_s": d_s,
            "steps": getattr(method, "tightening_steps", None),
        }
    else:
        raise ValueError(f"unknown job kind {kind!r}")
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    path = Path(argv[0])
    job = json.loads(path.read_text())
    result = run_job(job)
    path.with_suffix(".out.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
