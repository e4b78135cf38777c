"""On a terminal, log lines are written above the progress bars, never into them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
pty = pytest.importorskip("pty", reason="needs a POSIX pseudo-terminal")


def run_on_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run ``argv`` with stdout and stderr on a 100-column pseudo-terminal; its output."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_epoch_lines_are_not_written_into_the_training_bar(make_project, flat_parquet):
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [8], "latent_dim": 2},
        training={"epochs": 2, "max_rows": 1000},
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TERM": "xterm"}
    out = run_on_terminal(
        [
            sys.executable,
            "-m",
            "baler_ext",
            "--projects-dir",
            str(projects),
            "-p",
            name,
            "-m",
            "train",
        ],
        env,
    )
    assert "train:" in out, "no progress bar was drawn: " + repr(out[:300])
    log_lines = [line for line in out.split("\n") if "baler_ext: INFO:" in line]
    assert any("epoch 2" in line for line in log_lines)
    for line in log_lines:
        # what the terminal shows of the line: the text after its last carriage return
        shown = line.rstrip("\r").rsplit("\r", 1)[-1]
        assert shown.startswith("baler_ext: INFO:"), repr(line)
