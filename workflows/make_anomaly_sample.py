"""Reference and corrupted test samples for ``--mode anomaly`` on the shared jets.

The jets table (``../shared/data/pythia_ttbar/ttbar_boosted_jets.parquet``) is split in
two halves by row order: the first half is the **reference** (``reference.parquet``), the
second the **test** (``test.parquet``). In the test half a seeded random 10 % of the rows
is corrupted and flagged in an added int8 column ``is_corrupted``:

    the (energy, mass) pairs of the corrupted rows are permuted among those rows.

Each corrupted jet keeps its own pt, eta, phi, px, py, pz and substructure but carries the
energy and mass of another corrupted jet, so :math:`E^2 = p^2 + m^2` and the mass–
substructure correlations break while **every column's distribution is unchanged** (a
per-column cut cannot find these rows; only correlations can). A few permuted rows may
land on themselves (about 1 of the corrupted rows): they are flagged but unchanged.

    python workflows/make_anomaly_sample.py --out workflows/output/anomaly_jets
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
JETS = ROOT.parent / "shared" / "data" / "pythia_ttbar" / "ttbar_boosted_jets.parquet"
SWAPPED = ("energy", "mass")

log = logging.getLogger("make_anomaly_sample")


def corrupt(table: pa.Table, fraction: float, seed: int) -> pa.Table:
    """``table`` with ``fraction`` of its rows corrupted (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = table.num_rows
    bad = np.sort(rng.choice(n, round(fraction * n), replace=False))
    perm = rng.permutation(bad)
    for name in SWAPPED:
        values = table.column(name).to_numpy().copy()
        values[bad] = values[perm]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    flag = np.zeros(n, np.int8)
    flag[bad] = 1
    log.info(
        "corrupted %d of %d rows (%d unchanged by the permutation)",
        len(bad),
        n,
        int(np.sum(bad == perm)),
    )
    return table.append_column("is_corrupted", pa.array(flag))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, default=JETS)
    ap.add_argument("--out", type=Path, default=ROOT / "workflows" / "output" / "anomaly_jets")
    ap.add_argument("--fraction", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    table = pq.read_table(args.input)
    half = table.num_rows // 2
    args.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.slice(0, half), args.out / "reference.parquet")
    pq.write_table(corrupt(table.slice(half), args.fraction, args.seed), args.out / "test.parquet")
    log.info("wrote %s and %s", args.out / "reference.parquet", args.out / "test.parquet")


if __name__ == "__main__":
    main()
