"""Shared pytest fixtures.

Tests that read the real HEP files in ``../shared/data`` use the ``shared_data``
fixture, which skips with a clear reason when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BALER_EXT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared HEP data folder {SHARED_DATA} (absent on this machine)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def jets_parquet(shared_data: Path) -> Path:
    """The boosted-top jets table (78,238 rows, 22 columns)."""
    return shared_data / "pythia_ttbar" / "ttbar_boosted_jets.parquet"
