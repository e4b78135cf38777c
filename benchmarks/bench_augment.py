"""Symmetry augmentation of the rate model's training rows (``rate.augment``); not a test.

The setup of ``bench_learned.py`` (boosted-top jets, trained on the first half and
compressing the second, every bound checked on the decompressed file independently of the
codec; the package's default rate model): the same run with 0, 1 and 3 rotated/reflected
copies of the training events at P1, 0 and 1 at P2. The payload includes the header and
index (about 1 bit per jet here).

Run: ``python benchmarks/bench_augment.py [--workdir /tmp/bench_augment] [--copies 0 1 3]``
(about 4 minutes per copy count and operating point on 2 shared cores). Writes
``benchmarks/RESULTS_augment.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script
from benchmarks.bench_learned import jets_run, split_halves
from benchmarks.common import DATA, ROOT, operating_point

log = logging.getLogger("bench_augment")
RESULTS = ROOT / "benchmarks" / "RESULTS_augment.md"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_augment"))
    ap.add_argument("--copies", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--p2-copies", type=int, nargs="*", default=[0, 1])
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not DATA.is_file():
        sys.exit(f"needs the shared data ({DATA})")
    train, test = split_halves(args.workdir)
    work = args.workdir
    runs = []
    for point, scale, copies in (("P1", 1.0, args.copies), ("P2", 0.1, args.p2_copies)):
        for k in copies:
            label = f"{point} augment {k}"
            r = jets_run(
                work, label, train, test, operating_point(scale), ["--set", f"rate.augment={k}"]
            )
            runs.append((point, k, r))
    load = os.getloadavg()
    lines = [
        "# Symmetry augmentation of the learned model's training rows",
        "",
        "Written by `python benchmarks/bench_augment.py`. Boosted-top jets: trained on the "
        f"first half, compressing the second ({runs[0][2]['rows']} jets, 17 float64 "
        "columns); the package's default rate model with `rate.augment` copies of the "
        "training events turned about the beam axis by a random angle per event and "
        "reflected in z with probability 1/2. *Ratio*: float64 bytes of the 17 columns "
        "/ payload (the container less the lossless integer columns; header and index "
        "included). Training: the whole train stage (autoencoder and rate model), one "
        f"thread. Load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.",
        "",
        "| point | copies | payload ratio | bits/jet | Δ bits/jet vs 0 | every bound met "
        "| train s |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {p: r["bits_per_row"] for p, k, r in runs if k == 0}
    for point, k, r in runs:
        delta = r["bits_per_row"] - base[point] if point in base else float("nan")
        lines.append(
            f"| {point} | {k} | {r['ratio']:.2f}x | {r['bits_per_row']:.2f} | {delta:+.2f} "
            f"| {r['bounds_ok']} | {r['train_s']:.0f} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    log.info("wrote %s", RESULTS)


if __name__ == "__main__":
    main()
