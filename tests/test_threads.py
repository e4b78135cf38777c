"""``[execution] threads``: the default follows the cores this process may use, a dask
worker computes with one thread, and the CLI applies the count to torch."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from baler_ext import threads
from baler_ext.config import Config, ExecutionConfig
from baler_ext.errors import ConfigError, InputDataError

REPO_ROOT = Path(__file__).resolve().parents[1]
CORES = threads.affinity_cores()


def test_default_respects_omp_num_threads():
    assert threads.available_cores({}) == CORES
    assert threads.available_cores({"OMP_NUM_THREADS": "1"}) == 1
    assert threads.available_cores({"OMP_NUM_THREADS": "1,1"}) == 1  # nested form
    assert threads.available_cores({"OMP_NUM_THREADS": str(CORES + 7)}) == CORES
    assert threads.available_cores({"OMP_NUM_THREADS": "many"}) == CORES
    assert threads.available_cores({"OMP_NUM_THREADS": "0"}) == CORES


def test_resolve_defaults_and_never_oversubscribes(caplog):
    env = {"OMP_NUM_THREADS": "1"}
    assert threads.resolve_threads(None, env=env) == 1
    assert threads.resolve_threads(None, env={}) == CORES
    assert threads.resolve_threads(None, worker=True, env={}) == 1
    # an explicit count is not capped by OMP_NUM_THREADS (dask sets it to 1 in workers) ...
    assert threads.resolve_threads(CORES, worker=True, env=env) == CORES
    # ... but by the cores, with a warning
    with caplog.at_level(logging.WARNING):
        assert threads.resolve_threads(CORES + 3) == CORES
    assert f"execution.threads = {CORES + 3}" in caplog.text


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_default_respects_cpu_affinity():
    """A process pinned to one CPU (taskset, a batch slot) defaults to one thread."""
    code = (
        "import os; from baler_ext import threads; "
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "print(threads.resolve_threads(None, env={}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=True,
    )
    assert out.stdout.strip() == "1"


def test_threads_must_be_positive(tmp_path):
    from baler_ext.config import load_config

    path = tmp_path / "config.toml"
    path.write_text("[execution]\nthreads = 0\n")
    with pytest.raises(ConfigError, match=r"'execution\.threads' must be > 0"):
        load_config(path)


def test_dask_worker_uses_one_thread_unless_configured(monkeypatch):
    import torch

    from baler_ext.executors import worker_threads

    for name in (*threads.THREAD_ENV, "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_state", {})
    torch.set_num_threads(CORES)
    cfg = Config(execution=ExecutionConfig(executor="dask"))
    assert worker_threads(cfg) == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["NUMEXPR_MAX_THREADS"] == "1"
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    cfg = Config(execution=ExecutionConfig(executor="dask", threads=CORES))
    assert worker_threads(cfg) == CORES == torch.get_num_threads()
    # the local executor leaves the CLI's setting alone
    assert worker_threads(Config(execution=ExecutionConfig(threads=1))) == CORES


@pytest.mark.skipif(CORES < 2, reason="one core: torch's default is one thread anyway")
def test_cli_sets_torch_threads_from_the_config(tmp_path, make_project):
    """Run ``--mode train`` through the CLI in a fresh process whose environment sets no
    thread count (torch alone would use every core) with ``execution.threads = 1``; the
    input is missing, so the stage stops right after its module (and torch) loaded."""
    projects, name = make_project(tmp_path / "missing.parquet")
    out = tmp_path / "threads.json"
    code = (
        "import json, os, sys\n"
        "from baler_ext.cli import main\n"
        "rc = main(sys.argv[2:])\n"
        "import torch\n"
        "json.dump({'rc': rc, 'intra': torch.get_num_threads(), "
        "'interop': torch.get_num_interop_threads(), "
        "'wait': os.environ.get('OMP_WAIT_POLICY')}, open(sys.argv[1], 'w'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (*threads.THREAD_ENV, "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(out),
            "-q",
            "--projects-dir",
            str(projects),
            "-p",
            name,
            "-m",
            "train",
            "--set",
            "execution.threads=1",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.is_file(), proc.stderr
    result = json.loads(out.read_text())
    assert result == {
        "rc": InputDataError.exit_code,
        "intra": 1,
        "interop": 1,
        "wait": "PASSIVE",
    }, proc.stderr


def test_configure_limits_the_blas_numpy_already_loaded():
    """numpy (and its OpenBLAS) is loaded before the config is read; ``configure`` must
    shrink that pool too, not only export the environment variables."""
    code = (
        "import numpy, threadpoolctl\n"
        "from baler_ext import threads\n"
        "threads.configure(1)\n"
        "print([i['num_threads'] for i in threadpoolctl.threadpool_info() "
        "if i['user_api'] == 'blas'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    counts = json.loads(out.stdout.strip())
    assert counts, "numpy loaded no BLAS that threadpoolctl can see"
    assert set(counts) == {1}
