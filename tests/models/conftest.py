"""Fixtures of the model tests: 2,000 real jet rows, normalised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

N_ROWS = 2000


@pytest.fixture(scope="session")
def jets_matrix(jets_parquet: Path) -> tuple[np.ndarray, list[str]]:
    """The first 2,000 rows of the 17 float64 columns, standardised."""
    import pyarrow.parquet as pq

    table = pq.read_table(jets_parquet)
    cols = [f.name for f in table.schema if str(f.type) == "double"]
    x = np.column_stack([table.column(c).to_numpy()[:N_ROWS] for c in cols])
    return (x - x.mean(0)) / x.std(0), cols
