"""Damaged or foreign compressed files: a clear error, exit code 5 and no output file."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baler_ext.codec import container
from baler_ext.codec.container import ContainerReader
from baler_ext.codec.digest import FEATURE as DIGEST_FEATURE
from baler_ext.config import toml_value
from baler_ext.errors import ContainerError


def write_config(project_dir: Path, sections: dict) -> None:
    project_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, table in sections.items():
        lines += [f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items()), ""]
    (project_dir / "config.toml").write_text("\n".join(lines))


def make(cli: Callable[..., int], root: Path, name: str, seed: int) -> Path:
    rng = np.random.default_rng(3)
    n = 1500
    data = root / "jets.parquet"
    if not data.exists():
        pq.write_table(
            pa.table(
                {
                    "event": pa.array(np.arange(n), pa.int32()),
                    "pt": rng.exponential(100, n) + 300,
                    "eta": rng.uniform(-2.4, 2.4, n),
                    "mass": rng.normal(172, 15, n),
                }
            ),
            data,
        )
    write_config(
        root / "projects" / name,
        {
            "data": {"input": [str(data)], "chunk_size": 500},
            "model": {"hidden": [8], "latent_dim": 2},
            "training": {"epochs": 1, "seed": seed, "early_stopping_patience": 0},
            "compression": {"mode": "bounded"},
        },
    )
    assert cli(root / "projects", name, "train") == 0
    assert cli(root / "projects", name, "compress") == 0
    return root / "projects"


@pytest.fixture(scope="module")
def built(cli, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    make(cli, root, "a", seed=1)
    make(cli, root, "b", seed=2)
    return root / "projects"


@pytest.fixture
def project(built: Path, tmp_path: Path) -> tuple[Path, Path]:
    projects = tmp_path / "projects"
    shutil.copytree(built, projects)
    return projects, projects / "a" / "output" / "compressed" / "jets.baler"


def decompress_fails(cli: Callable[..., int], projects: Path, caplog, message: str) -> None:
    assert cli(projects, "a", "decompress") == ContainerError.exit_code
    assert message in caplog.text
    out = projects / "a" / "output" / "decompressed"
    assert not out.exists() or not any(out.iterdir())


def test_intact_file_decompresses(cli, project):
    projects, _ = project
    assert cli(projects, "a", "decompress") == 0


@pytest.mark.parametrize("where", [0.05, 0.3, 0.6, 0.9, -30, -10])
def test_flipped_byte(cli, project, caplog, where):
    projects, path = project
    data = bytearray(path.read_bytes())
    pos = int(len(data) * where) if where > 0 else len(data) + where
    data[pos] ^= 0x10
    path.write_bytes(bytes(data))
    decompress_fails(cli, projects, caplog, "jets.baler")
    assert "damaged" in caplog.text or "truncated" in caplog.text


@pytest.mark.parametrize("keep", [0.5, 0.99, 10])
def test_truncated_file(cli, project, caplog, keep):
    projects, path = project
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    decompress_fails(cli, projects, caplog, "truncated")


def test_wrong_magic(cli, project, caplog):
    projects, path = project
    data = path.read_bytes()
    path.write_bytes(b"NOTBALER" + data[8:])
    decompress_fails(cli, projects, caplog, "not a baler_ext compressed file")


def test_format_from_the_future(cli, project, caplog):
    projects, path = project
    data = bytearray(path.read_bytes())
    data[8:10] = struct.pack("<H", 99)
    path.write_bytes(bytes(data))
    decompress_fails(cli, projects, caplog, "upgrade baler_ext")


def test_file_from_another_projects_model(cli, project, caplog):
    projects, path = project
    shutil.copy(projects / "b" / "output" / "compressed" / "jets.baler", path)
    decompress_fails(cli, projects, caplog, "compressed with model")


def test_the_digest_feature_is_listed_and_a_reader_without_it_refuses(
    cli, project, caplog, monkeypatch
):
    """Files digested with XXH3 list ``digest-xxh3``: a reader that only knows BLAKE2b
    digests asks for an upgrade instead of calling the file damaged."""
    projects, path = project
    with ContainerReader(path) as reader:
        assert DIGEST_FEATURE in reader.header["features"]
        assert all("xxh3" in m["digest"] for m in reader.header["chunks"])
    monkeypatch.setattr(container, "KNOWN_FEATURES", container.KNOWN_FEATURES - {DIGEST_FEATURE})
    decompress_fails(cli, projects, caplog, "upgrade baler_ext")
