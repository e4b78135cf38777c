"""Shared pytest fixtures.

Tests that read the real HEP files in ``../shared/data`` use the ``shared_data``
fixture, which skips with a clear reason when the folder is absent.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BALER_EXT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# caches (the LZMA-9 reference sizes of info) go to a folder of this test run, not ~/.cache
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="baler_ext_test_cache_")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small models run fastest single-threaded on a shared, busy 2-core CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(projects: Path, name: str, mode: str, *extra: str) -> int:
    """``baler_ext --projects-dir PROJECTS -p NAME -m MODE -q EXTRA...`` in this process;
    returns the exit code the command line would have."""
    from baler_ext.cli import main

    return main(["--projects-dir", str(projects), "--project", name, "--mode", mode, "-q", *extra])


@pytest.fixture(scope="session")
def cli() -> Callable[..., int]:
    """The CLI as a function: ``cli(projects, name, mode, *extra) -> exit code``."""
    return run_cli


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


def write_config(project_dir: Path, sections: dict) -> Path:
    """Write a config.toml with the given sections (others take their defaults)."""
    from baler_ext.config import toml_value

    project_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
        lines.append("")
    path = project_dir / "config.toml"
    path.write_text("\n".join(lines))
    return path


FAST_TRAINING = {"epochs": 2, "batch_size": 256, "max_rows": 3000, "early_stopping_patience": 0}
#: the learned probability model (bounded mode) trains briefly in tests
FAST_RATE = {"epochs": 3, "hidden": [16], "batch_size": 512}


@pytest.fixture
def make_project(tmp_path: Path):
    """Factory: ``make_project(input_path, data=..., training=...)`` -> (projects_dir, name).

    Projects made here use ``compression.mode = "latent"`` unless the test says otherwise
    (the default before ``bounded`` became the default): the stage tests written for it
    check the model's own reconstruction; tests of bounded mode set the mode.
    """

    def factory(input_path: Path | str, name: str = "p", **sections: dict) -> tuple[Path, str]:
        data = {"input": [str(input_path)], **sections.pop("data", {})}
        training = {**FAST_TRAINING, **sections.pop("training", {})}
        rate = {**FAST_RATE, **sections.pop("rate", {})}
        compression = {"mode": "latent", **sections.pop("compression", {})}
        write_config(
            tmp_path / "projects" / name,
            {
                "data": data,
                "training": training,
                "compression": compression,
                "rate": rate,
                **sections,
            },
        )
        return tmp_path / "projects", name

    return factory


@pytest.fixture
def flat_parquet(tmp_path: Path) -> Path:
    """A small flat jet-like Parquet table made here (runs without ../shared)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    n = 3000
    pt = rng.exponential(100.0, n) + 300.0
    eta = rng.uniform(-2.4, 2.4, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mass = np.abs(rng.normal(172.0, 15.0, n))
    table = pa.table(
        {
            "event": pa.array(np.arange(n) // 2, pa.int32()),
            "pt": pt,
            "eta": eta,
            "phi": phi,
            "mass": mass,
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "frac": pa.array(rng.uniform(0, 1, n).astype(np.float32)),
            "matched": pa.array(rng.integers(0, 2, n), pa.int32()),
        }
    )
    path = tmp_path / "jets.parquet"
    pq.write_table(table, path)
    return path
