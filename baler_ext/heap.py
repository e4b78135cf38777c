"""Keep the memory a chunk frees in the process heap for the next chunk (glibc only).

A chunk is coded in a few dozen arrays of a column's length (626 kB for the 78,238 shared
jets) and a few of the whole chunk's (its decoded matrix, 10.6 MB; the linear
predictor's features, up to 21 MB). glibc's allocator serves the large ones from fresh
``mmap`` regions and returns the heap's free top to the system (``trim``) whenever it
exceeds twice its adaptive threshold, so every chunk, and every file, first-touches
tens of MB of new pages again: 9,000 page faults per classical decode of the shared
jets, which took 96 ms of CPU with them and 71 ms without (on this project's machines).
:func:`keep_freed_memory` raises the ``mmap`` threshold to :data:`MMAP_THRESHOLD` and the
trim threshold to :data:`TRIM_THRESHOLD` (``mallopt``), so the next chunk reuses those
pages: the process keeps up to that much freed memory resident.

It is process-wide, so it is applied where the process's threads are configured (the
CLI and a dask worker's task), never on import. Where the environment sets any of
glibc's ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_TOP_PAD_``
(dask's nanny sets the trim threshold for its workers) that choice is kept; on other C
libraries and systems nothing changes. Decoded values do not depend on it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

#: arrays up to this size come from the heap (glibc's default adapts from 128 kB to the
#: largest freed block, at most 32 MB on 64-bit systems, and is reset by every trim)
MMAP_THRESHOLD = 32 << 20
#: free memory at the top of the heap kept before it is returned to the system
TRIM_THRESHOLD = 128 << 20
#: glibc's ``mallopt`` parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: environment variables through which glibc reads a user's own settings
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_state: dict[str, bool] = {}


def _glibc() -> bool:
    """Whether this process runs on glibc (``confstr``: no file read, unlike
    :func:`platform.libc_ver`)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


def keep_freed_memory() -> bool:
    """Apply :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` once per process.

    Returns
    -------
    bool
        Whether they are in force (False: not glibc, or the environment sets its own).
    """
    if "applied" in _state:
        return _state["applied"]
    applied = False
    if (
        sys.platform.startswith("linux")
        and _glibc()
        and not any(v in os.environ for v in MALLOC_ENV)
    ):
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            applied = (
                mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            )
    log.debug("heap: keep freed memory %s", "on" if applied else "unchanged")
    _state["applied"] = applied
    return applied
