"""GPU check (issue 11): CUDA float64 training and bit-exact decoding across CPU and GPU.

Runs on the example project's data (inside the repository, so it works on a machine that
has only the checkout):

1. trains the autoencoder and the learned probability model on ``cuda`` in float64, with
   the autoencoder's quantised latent as side information (so compress runs a network);
2. compresses on the GPU and on the CPU; decompresses each file on the CPU and on the
   GPU: the four decodes of the learned path must be **bit-identical** per file (the
   values depend on the codes, the grid and the dither only) and within every bound;
3. the classical path with the autoencoder as predictor (``probability_model =
   "static"``, ``latent_policy = "always"``): decoded on CPU and GPU, every value within
   its bound; the largest difference between the two decodes is printed (the prediction
   differs by floating-point drift, which the residual coder's margin absorbs, so those
   values need not be bit-identical);
4. prints compress/decompress throughput on each device.

Usage: ``python benchmarks/gpu_check.py [--devices cpu,cuda] [--workdir DIR]``;
``benchmarks/gpu_check.sh`` runs it as one short script. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "projects" / "example" / "data" / "ttbar_jets.parquet"
BOUNDS = {
    "default": {"abs": 1e-3},
    "pt": {"rel": 1e-2},
    "mass": {"rel": 1e-2},
    "energy": {"rel": 1e-2},
    "px": {"abs": 1.0},
    "py": {"abs": 1.0},
    "pz": {"abs": 1.0},
}


def run(work: Path, name: str, mode: str, *sets: str) -> float:
    from baler_ext.cli import main

    t0 = time.perf_counter()
    rc = main(
        ["--projects-dir", str(work / "projects"), "--project", name, "--mode", mode, "-q", *sets]
    )
    if rc:
        raise SystemExit(f"FAIL: {name} --mode {mode} exited {rc}")
    return time.perf_counter() - t0


def floats(path: Path) -> np.ndarray:
    t = pq.read_table(path)
    return np.column_stack(
        [
            t.column(f.name).to_numpy().astype(np.float64)
            for f in t.schema
            if pa.types.is_floating(f.type)
        ]
    )


def within(x: np.ndarray, y: np.ndarray, names: list[str]) -> bool:
    ok = True
    for j, c in enumerate(names):
        ((kind, b),) = BOUNDS.get(c, BOUNDS["default"]).items()
        lim = b if kind == "abs" else b * np.abs(x[:, j])
        ok &= bool(np.all(np.abs(x[:, j] - y[:, j]) <= lim))
    return ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument(
        "--workdir", type=Path, default=Path(os.environ.get("OUT", "/tmp")) / "gpu_check"
    )
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    import torch

    cpu, gpu = args.devices.split(",")
    if gpu == "cuda" and not torch.cuda.is_available():
        print("FAIL: no CUDA device")
        return 1
    if gpu == "cuda":
        print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    torch.set_num_threads(1)
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    from benchmarks.common import write_project_config

    names = [f.name for f in pq.read_table(DATA).schema if pa.types.is_floating(f.type)]
    x = floats(DATA)
    raw_mb = x.size * 8 / 1e6
    report: dict = {"rows": len(x), "devices": [cpu, gpu]}
    ok = True
    for label, compression, rate in (
        ("learned", {}, {"side_information": "latent", "epochs": args.epochs}),
        (
            "classical",
            {"probability_model": "static", "latent_policy": "always"},
            {"enabled": False},
        ),
    ):
        write_project_config(
            work / "projects" / label,
            {
                "data": {"input": [str(DATA)]},
                "model": {"latent_dim": 8, "hidden": [64, 32], "dtype": "float64"},
                "training": {"epochs": args.epochs, "device": gpu, "batch_size": 512},
                "compression": {"mode": "bounded", "bounds": BOUNDS, **compression},
                "rate": rate,
            },
        )
        t_train = run(work, label, "train")
        decodes = {}
        for enc in (cpu, gpu):
            t_c = run(work, label, "compress", "--set", f'training.device="{enc}"')
            src = work / "projects" / label / "output" / "compressed" / "ttbar_jets.baler"
            kept = src.with_name(f"by_{enc}.baler")
            shutil.copy(src, kept)
            for dec in (cpu, gpu):
                shutil.copy(kept, src)
                t_d = run(work, label, "decompress", "--set", f'training.device="{dec}"')
                y = floats(
                    work / "projects" / label / "output" / "decompressed" / "ttbar_jets.parquet"
                )
                decodes[(enc, dec)] = y
                good = within(x, y, names)
                ok &= good
                print(
                    f"{label}: compressed on {enc} ({raw_mb / t_c:.1f} MB/s), decompressed "
                    f"on {dec} ({raw_mb / t_d:.1f} MB/s): every bound met: {good}"
                )
                report[f"{label}_{enc}_{dec}"] = {
                    "compress_MBps": raw_mb / t_c,
                    "decompress_MBps": raw_mb / t_d,
                    "bounds_ok": good,
                }
        report[f"{label}_train_s"] = t_train
        for enc in (cpu, gpu):
            a, b = decodes[(enc, cpu)], decodes[(enc, gpu)]
            same = a.tobytes() == b.tobytes()
            diff = float(np.max(np.abs(a - b)))
            report[f"{label}_{enc}_identical"] = same
            print(
                f"{label}: file compressed on {enc}, decoded on {cpu} vs {gpu}: "
                f"bit-identical {same}, max |difference| {diff:.3g}"
            )
            if label == "learned":
                ok &= same
    print(json.dumps(report, indent=1))
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print("GPU CHECK", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
