"""The heap keeps the memory a chunk frees for the next one (glibc), unless the
environment chose its own allocator settings; decoding does not depend on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith(
    "glibc"
)

# allocate and free chunk-sized arrays twice, counting the second round's page faults
PROBE = """
import resource, sys
import numpy as np
from baler_ext import heap
applied = heap.keep_freed_memory()
assert heap.keep_freed_memory() == applied  # once per process
def chunk():
    arrays = [np.ones(80_000) for _ in range(20)] + [np.ones((80_000, 17))]
    return sum(float(a[-1].sum()) for a in arrays)
chunk()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
chunk()
print(int(applied), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(env_extra: dict[str, str]) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_chunk_memory_is_reused_without_page_faults():
    applied, faults = probe({})
    assert applied == 1
    assert faults < 200  # the second chunk's 24 MB reuse the first one's pages


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_environment_s_own_allocator_settings_are_kept():
    applied, _ = probe({"MALLOC_TRIM_THRESHOLD_": "65536"})  # what dask's nanny sets
    assert applied == 0
