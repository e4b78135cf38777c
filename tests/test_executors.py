"""compress/decompress on a dask LocalCluster: identity with the local run, a killed
worker, a failed file and ``--resume`` (issue 8)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from distributed import WorkerPlugin

pytest.importorskip("distributed")

from baler_ext.codec.container import ContainerReader
from baler_ext.config import load_config
from baler_ext.errors import ExecutionError
from baler_ext.project import Project
from baler_ext.stages.compress import compress
from baler_ext.stages.decompress import decompress
from baler_ext.stages.train import train

N_FILES, PER_FILE = 4, 2000


def split_root(src: Path, out: Path, n: int, per: int) -> list[Path]:
    """``n`` ROOT files of ``per`` events each, copies of the first events of ``src``."""
    import awkward as ak
    import uproot

    out.mkdir(parents=True, exist_ok=True)
    tree = uproot.open(src)["Events"]
    paths = []
    for i in range(n):
        a = tree.arrays(entry_start=i * per, entry_stop=(i + 1) * per)
        data = {
            "event": a["event"],
            "Jet": ak.zip({f[4:]: a[f] for f in a.fields if f.startswith("Jet_")}),
        }
        path = out / f"part{i}.root"
        with uproot.recreate(path) as f:
            t = f.mktree(
                "Events",
                {k: v.type.content for k, v in data.items()},
                counter_name=lambda c: f"n{c}",
                field_name=lambda o, i: f"{o}_{i}",
            )
            t.extend(data)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory, shared_data) -> Path:
    """A project over 4 split files with a 2-epoch model; returns its folder."""
    base = tmp_path_factory.mktemp("dask")
    split_root(
        shared_data / "pythia_ttbar" / "ttbar_boosted_events.root", base / "data", N_FILES, PER_FILE
    )
    root = base / "projects" / "ref"
    root.mkdir(parents=True)
    (root / "config.toml").write_text(
        f'[data]\ninput = ["{base / "data" / "*.root"}"]\nchunk_size = 700\n'
        "[training]\nepochs = 2\nbatch_size = 256\nmax_rows = 3000\n"
        "early_stopping_patience = 0\n"
    )
    project = Project("ref", root)
    cfg = load_config(project.config_path)
    train(project, cfg)
    compress(project, cfg)  # the local reference run
    decompress(project, cfg)
    return root


@pytest.fixture(scope="module")
def cluster():
    """One 2-worker LocalCluster shared by the tests (addressed like a remote scheduler)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as lc,
        Client(lc) as client,
    ):
        yield lc.scheduler_address, client


def fresh_project(trained_project: Path, tmp_path: Path, name: str) -> Project:
    """A copy of the reference project with its model but no compressed files."""
    root = tmp_path / name
    shutil.copytree(
        trained_project, root, ignore=shutil.ignore_patterns("compressed", "decompressed")
    )
    return Project(name, root)


def dask_cfg(project: Project, address: str, *extra: str):
    return load_config(
        project.config_path,
        ['execution.executor="dask"', f'execution.scheduler="{address}"', *extra],
    )


def containers(project: Project) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(project.dir("compressed").glob("*.baler"))
        if p.is_file()
    }


def leftovers(project: Project) -> list[Path]:
    return list(project.dir("compressed").glob(".*.part"))


def read_tree(path: Path) -> dict[str, np.ndarray]:
    import awkward as ak
    import uproot

    arrays = uproot.open(path)["Events"].arrays()
    return {f: ak.to_numpy(ak.flatten(arrays[f], axis=None)) for f in arrays.fields}


def test_dask_matches_local_byte_for_byte(trained_project, cluster, tmp_path):
    ref = Project("ref", trained_project)
    expected = containers(ref)
    assert len(expected) == N_FILES
    project = fresh_project(trained_project, tmp_path, "dask")
    cfg = dask_cfg(project, cluster[0])
    results = compress(project, cfg)
    assert [r.path.name for r in results] == sorted(expected)
    assert containers(project) == expected  # byte-identical containers
    outs = decompress(project, cfg)
    assert len(outs) == N_FILES
    for out in outs:  # decoded data bit-identical (ROOT files carry write timestamps)
        a, b = read_tree(out), read_tree(ref.dir("decompressed") / out.name)
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k]), (out.name, k)


class KillOnce(WorkerPlugin):
    """Kill the worker process when it starts a task, once per task (marker files)."""

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or "baler_ext-" not in str(key):
            return
        marker = Path(self.marker_dir) / f"{abs(hash(str(key)))}.killed"
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(key))
        os._exit(1)


def test_killed_worker_is_retried_by_dask(trained_project, cluster, tmp_path):
    address, client = cluster
    project = fresh_project(trained_project, tmp_path, "killed")
    markers = tmp_path / "kills"
    # the plugin lives on the scheduler, so restarted workers get it again; the marker
    # files make each task kill a worker at most once
    client.register_plugin(KillOnce(str(markers)), name="kill-once")
    try:
        compress(project, dask_cfg(project, address, "execution.retries=0"))
    finally:
        client.unregister_worker_plugin("kill-once")
    assert len(list(markers.glob("*.killed"))) >= 1
    assert containers(project) == containers(Project("ref", trained_project))
    assert not leftovers(project)
    client.wait_for_workers(2, timeout=60)


def test_failed_file_then_resume(trained_project, cluster, tmp_path, caplog):
    address = cluster[0]
    project = fresh_project(trained_project, tmp_path, "resume")
    blocker = project.dir("compressed") / "part2.baler"
    blocker.mkdir(parents=True)  # the rename onto it fails on the worker
    cfg = dask_cfg(project, address, "execution.retries=0")
    with pytest.raises(ExecutionError, match=r"1 of 4 files failed .*part2\.root.*--resume"):
        compress(project, cfg)
    assert sorted(containers(project)) == ["part0.baler", "part1.baler", "part3.baler"]
    assert not leftovers(project)  # the failed file left nothing half-written
    done = {
        p: p.stat().st_mtime_ns for p in project.dir("compressed").glob("*.baler") if p.is_file()
    }
    blocker.rmdir()
    with caplog.at_level(logging.INFO, logger="baler_ext"):
        results = compress(project, cfg, resume=True)
    assert caplog.text.count("resume: skipping") == 3
    assert len(results) == N_FILES and results[2].seconds > 0
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # untouched
    assert containers(project) == containers(Project("ref", trained_project))


def test_local_resume_redoes_a_damaged_container(trained_project, tmp_path):
    project = fresh_project(trained_project, tmp_path, "local")
    cfg = load_config(project.config_path)
    compress(project, cfg)
    victim = project.dir("compressed") / "part1.baler"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    others = {
        p: p.stat().st_mtime_ns for p in project.dir("compressed").glob("*.baler") if p != victim
    }
    compress(project, cfg, resume=True)
    with ContainerReader(victim) as reader:
        reader.verify()
    assert all(p.stat().st_mtime_ns == t for p, t in others.items())
    assert containers(project) == containers(Project("ref", trained_project))
    decompress(project, cfg)
    outs = list(project.dir("decompressed").glob("*.root"))
    stamps = {p: p.stat().st_mtime_ns for p in outs}
    decompress(project, cfg, resume=True)  # everything done: nothing rewritten
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_resume_recompresses_when_compression_settings_changed(trained_project, tmp_path):
    project = fresh_project(trained_project, tmp_path, "settings")
    compress(project, load_config(project.config_path))
    before = containers(project)
    changed = load_config(project.config_path, ['compression.latent_dtype="float16"'])
    compress(project, changed, resume=True)  # same model and mode, other latent dtype
    after = containers(project)
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] for k in before)
    for path in project.dir("compressed").glob("*.baler"):
        with ContainerReader(path) as reader:
            assert reader.header["compression"]["latent_dtype"] == "float16"


def test_cli_executor_flags_become_config_overrides(monkeypatch, tmp_path):
    from baler_ext import cli

    seen = {}

    def fake_load(path, overrides=(), **_):
        seen["overrides"] = list(overrides)
        raise SystemExit(0)

    monkeypatch.setattr("baler_ext.config.load_config", fake_load)
    args = cli.build_parser().parse_args(
        [
            "-p",
            "x",
            "-m",
            "compress",
            "--config",
            str(tmp_path / "c.toml"),
            "--scheduler",
            "tcp://h:8786",
        ]
    )
    with pytest.raises(SystemExit):
        cli.run(args)
    assert seen["overrides"] == ['execution.executor="dask"', 'execution.scheduler="tcp://h:8786"']
