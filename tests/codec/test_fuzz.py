"""Seeded fuzzing of the container reader (issue 15), small enough for CI (< 60 s).

The engine is ``benchmarks/fuzz_containers.py`` (its longer run is quoted in
``benchmarks/RESULTS_fuzz.md``). It runs in a subprocess so that its peak memory is its
own: for each of two projects, 280 random cases (byte flips, truncations, appended
bytes, crafted index fields and section contents with recomputed CRCs, swapped and
removed entries) and the memory bombs (declared rows of 2e7 and 1e12, 3 GiB zstd
frames in a small file). Required: no traceback, no decode that differs from the
original with exit 0, and the peak memory of every bomb below 20x the file size +
200 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

CASES = 280  # per project variant


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory) -> list[dict]:
    """The engine's report for both project variants: bounded mode on a flat table
    (float32 column, passthrough, embedded decoder) and latent mode on a jagged ROOT
    collection (counts, events without jets)."""
    out = tmp_path_factory.mktemp("fuzz") / "fuzz.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.fuzz_containers",
            "--variants",
            "bounded",
            "latent-jagged",
            "--cases",
            str(CASES),
            "--seed",
            "0",
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.is_file(), proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["variant"] for r in results] == ["bounded", "latent-jagged"]
    return results


@pytest.fixture(params=[0, 1], ids=["bounded", "latent-jagged"])
def fuzz_result(request, fuzz_results) -> dict:
    return fuzz_results[request.param]


def test_no_traceback_and_no_wrong_decode(fuzz_result):
    counts = fuzz_result["counts"]
    assert fuzz_result["bad"] == []
    assert not any(k.endswith(("/wrong", "/traceback")) for k in counts)
    # every random case was decoded (identically) or refused with a clean error
    assert sum(v for k, v in counts.items() if not k.startswith("bomb/")) == CASES
    # accidental damage is always detected (never "identical" by luck of the layout)
    for kind in ("flip", "truncate", "append", "remove"):
        assert counts.get(f"{kind}/error", 0) == CASES // 7, kind


def test_memory_bombs_refused_within_bounded_memory(fuzz_result):
    control, *bombs = fuzz_result["memory"]
    assert control["outcome"] == "identical"
    assert control["peak_traced_mb"] > 0.05  # the measurement sees a real decode
    assert len(bombs) >= 9
    for bomb in bombs:
        assert bomb["outcome"] == "error", bomb
        limit_mb = 20 * bomb["file_bytes"] / 2**20 + 200
        assert bomb["peak_rss_growth_mb"] < limit_mb, bomb
        assert bomb["peak_traced_mb"] < limit_mb, bomb
