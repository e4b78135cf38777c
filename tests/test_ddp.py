"""``torchrun --nproc_per_node 2 -m baler_ext --mode train``: DistributedDataParallel on
CPU (gloo) gives the validation loss of a single-process run (issue 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from baler_ext.cli import main
from baler_ext.training import shard_permutation

pytest.importorskip("torch.distributed")

# The global batch is the same (each rank takes ceil(batch_size / 2) rows of the same seeded
# permutation, whose union is the single-process batch) and DDP averages the gradients, so
# the two runs differ only by float64 summation order: a tolerance of 1e-6 relative.
RTOL = 1e-6


def test_shards_cover_the_permutation_like_distributed_sampler():
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    shards = [shard_permutation(perm, r, 3) for r in range(3)]
    assert {len(s) for s in shards} == {4}  # padded to equal length
    assert set(torch.cat(shards).tolist()) == set(range(11))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_torchrun_two_cpu_processes_match_single_process(make_project, flat_parquet):
    training = {"epochs": 3, "batch_size": 256, "device": "cpu", "checkpoint": True}
    projects, single = make_project(flat_parquet, name="single", training=training)
    _, ddp = make_project(flat_parquet, name="ddp", training=training)
    assert main(["-q", "--projects-dir", str(projects), "-p", single, "--mode", "train"]) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "baler_ext",
            "--projects-dir",
            str(projects),
            "-p",
            ddp,
            "--mode",
            "train",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 1 of 2 (gloo" in proc.stderr

    model_dir = projects / ddp / "output" / "model"
    assert {"model.json", "weights.pt", "history.csv", "checkpoint.pt"} <= {
        p.name for p in model_dir.iterdir()
    }
    assert not list(model_dir.glob(".*.part"))  # rank 0 alone wrote, nothing half-written
    a = json.loads((projects / single / "output" / "model" / "model.json").read_text())
    b = json.loads((model_dir / "model.json").read_text())
    assert b["best_val_loss"] == pytest.approx(a["best_val_loss"], rel=RTOL)
    hist_a = np.genfromtxt(
        projects / single / "output" / "model" / "history.csv", delimiter=",", names=True
    )
    hist_b = np.genfromtxt(model_dir / "history.csv", delimiter=",", names=True)
    np.testing.assert_allclose(hist_b["val_loss"], hist_a["val_loss"], rtol=RTOL)
    np.testing.assert_allclose(hist_b["train_loss"], hist_a["train_loss"], rtol=RTOL)


@pytest.mark.parametrize(("name", "options"), [("aae", {}), ("vqvae", {})])
def test_models_ddp_cannot_reproduce_fail_clearly(name, options):
    from baler_ext.config import ModelConfig
    from baler_ext.errors import ConfigError
    from baler_ext.models.base import build_model
    from baler_ext.training import check_distributable

    model = build_model(ModelConfig(name=name, options=options), 8)
    with pytest.raises(ConfigError, match="single process"):
        check_distributable(model)
    check_distributable(
        build_model(ModelConfig(name="vqvae", options={"codebook_update": "loss"}), 8)
    )
