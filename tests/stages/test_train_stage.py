"""The train stage: outputs, condition metadata, resume after a kill, refused resumptions."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from baler_ext.cli import main
from baler_ext.errors import ConfigError
from baler_ext.training import CHECKPOINT

FAST = {"epochs": 4, "batch_size": 200, "max_rows": 2000, "early_stopping_patience": 0}


def test_train_stage_writes_history_plot_checkpoint(jets_parquet, make_project) -> None:
    projects, name = make_project(
        jets_parquet, training=FAST, model={"name": "wae", "latent_dim": 4, "hidden": [16, 8]}
    )
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "train", "-q"]) == 0
    out = projects / name / "output" / "model"
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    for col in (
        "epoch",
        "train_loss",
        "val_loss",
        "train_reconstruction",
        "train_mmd",
        "val_reconstruction",
        "val_mmd",
        "lr",
        "epoch_time_s",
    ):
        assert col in header
    assert (out / "loss.png").stat().st_size > 1000
    assert (out / CHECKPOINT).is_file()
    val = json.loads((out / "validation.json").read_text())
    assert set(val["columns"]) >= {"pt", "mass"} and val["columns"]["pt"]["rms_sigma"] > 0
    # σ-normalised, so columns near zero (eta, phi) stay O(1) instead of diverging
    assert all(
        c["rms_sigma"] < 10 for c in val["columns"].values() if c["rms_sigma"] == c["rms_sigma"]
    )
    assert "rms_rel" not in val["columns"]["pt"]


def test_cvae_train_stage_saves_condition_metadata(jets_parquet, make_project) -> None:
    from baler_ext.model_store import load_model

    projects, name = make_project(
        jets_parquet,
        training={**FAST, "epochs": 1},
        model={"name": "cvae", "latent_dim": 4, "hidden": [16], "options": {"conditions": ["pt"]}},
    )
    assert main(["--project", name, "--projects-dir", str(projects), "--mode", "train", "-q"]) == 0
    trained = load_model(projects / name / "output" / "model")
    assert trained.meta["lossless_columns"] == ["pt"] and trained.model.latent_dim == 5


RUNNER = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import baler_ext.training as training
    from baler_ext.cli import main
    kill_after = int(sys.argv[1])
    real_save = training.save_checkpoint
    def save_then_die(path, state):
        real_save(path, state)
        if state["epoch"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    training.save_checkpoint = save_then_die
    main(sys.argv[2:])
""")


@pytest.mark.parametrize("name", ["sae_dropout_bn", "aae"])
def test_resume_after_kill_reaches_the_same_weights(
    name, jets_parquet, make_project, tmp_path
) -> None:
    """SIGKILL after epoch 2 of 4, then --resume: weights equal the uninterrupted run's
    exactly (tolerance 0: same seed, device and thread count)."""
    sections = {
        "training": {**FAST, "lr_patience": 1},
        "model": {"name": name, "latent_dim": 4, "hidden": [16, 8]},
    }
    projects, full = make_project(jets_parquet, name="full", **sections)
    make_project(jets_parquet, name="killed", **{k: dict(v) for k, v in sections.items()})
    # one thread in both runs (the CLI applies the count it is given): bit-identical weights
    common = [
        "--projects-dir",
        str(projects),
        "--mode",
        "train",
        "-q",
        "--set",
        "execution.threads=1",
    ]
    assert main(["--project", full, *common]) == 0
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), "2", "--project", "killed", *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    killed = projects / "killed" / "output" / "model"
    assert torch.load(killed / CHECKPOINT, weights_only=True)["epoch"] == 2
    assert not (killed / "weights.pt").exists()
    assert main(["--project", "killed", *common, "--resume"]) == 0
    a = torch.load(projects / full / "output" / "model" / "weights.pt", weights_only=True)
    b = torch.load(killed / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    hist = (killed / "history.csv").read_text().splitlines()
    assert len(hist) == 1 + 4


def test_resume_without_checkpoint_fails_cleanly(jets_parquet, make_project) -> None:
    projects, name = make_project(jets_parquet)
    assert (
        main(
            [
                "--project",
                name,
                "--projects-dir",
                str(projects),
                "--mode",
                "train",
                "-q",
                "--resume",
            ]
        )
        != 0
    )
    assert (
        main(
            [
                "--project",
                name,
                "--projects-dir",
                str(projects),
                "--mode",
                "compress",
                "-q",
                "--resume",
            ]
        )
        != 0
    )


@pytest.mark.parametrize(
    "change",
    [
        "model.latent_dim=3",
        "training.seed=7",
        'data.normalisation="minmax"',
        "training.max_rows=1500",
    ],
)
def test_resume_refuses_a_changed_run(flat_parquet, make_project, caplog, change) -> None:
    """A checkpoint is only valid for its model, data selection, normaliser and settings."""
    projects, name = make_project(flat_parquet, model={"latent_dim": 2, "hidden": [16, 8]})
    common = ["--project", name, "--projects-dir", str(projects), "--mode", "train", "-q"]
    assert main(common) == 0
    with caplog.at_level(logging.ERROR):
        assert main([*common, "--resume", "--set", change]) == ConfigError.exit_code
    assert "train without --resume" in caplog.text
    # more epochs is a legitimate resumption
    assert main([*common, "--resume", "--set", "training.epochs=3"]) == 0


def test_loss_plot_is_the_evaluate_stages_history_plot(tmp_path) -> None:
    """loss.png is plot_training_history of history.csv (evaluate copies it); none for no epochs."""
    from baler_ext.evaluation.plots import plot_training_history
    from baler_ext.stages.train import write_loss_plot

    history = tmp_path / "history.csv"
    history.write_text("epoch,train_loss,val_loss,lr,epoch_time_s\n")
    assert write_loss_plot(history, tmp_path) is None
    history.write_text(
        "epoch,train_loss,val_loss,lr,epoch_time_s\n1,0.5,0.6,0.001,0.3\n2,0.3,0.4,0.001,0.2\n"
    )
    loss = write_loss_plot(history, tmp_path)
    assert loss is not None and loss.name == "loss.png"
    assert loss.read_bytes() == plot_training_history(history, tmp_path / "eval").read_bytes()
