"""How many CPU threads this process computes with, set once and never oversubscribed.

``[execution] threads`` decides; unset, it is the number of cores this process may use:
the CPUs of its affinity mask (:func:`os.sched_getaffinity`, which honours ``taskset``,
cgroup cpusets and batch-system pinning), capped by ``OMP_NUM_THREADS`` when that is set
(``torchrun`` sets it to 1 for every rank of a multi-process job). A configured value is
capped by the affinity mask too, with a warning, because more threads than cores only
makes the threads wait for one another.

Under dask each worker process computes with **one** thread unless ``threads`` is set:
the cores are shared out between worker processes, not between threads of one worker.

:func:`configure` is called by the CLI before torch is imported. It exports the count
as ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` (read by torch,
numpy's BLAS and numexpr when they load), sets ``OMP_WAIT_POLICY=PASSIVE`` unless the
environment says otherwise (idle OpenMP threads sleep instead of spinning: with three
other busy processes on two cores, a 2-thread epoch took 20 s spinning and 2 s passive,
against 0.9 s single-threaded), and applies the count to torch (intra-op threads = the
count, inter-op threads = 1: nothing in baler_ext runs torch operators concurrently, so
a larger inter-op pool could only multiply the intra-op teams). torch's inter-op count
can be set once per process, before any parallel work; later calls keep the first value.

The environment variables only reach a library that loads afterwards. numpy is imported
before the configuration is read (the CLI needs it to validate the config), and
OpenBLAS sizes its pool when numpy loads, so a process started on two cores kept two BLAS
threads under ``threads = 1``: a 2-thread matmul stalled for up to 0.65 s when another
process held a core (2-13 ms with one thread). :func:`configure` therefore also limits
the BLAS libraries already loaded, through threadpoolctl (the scikit-learn maintainers'
portable interface to OpenBLAS, MKL and BLIS pools).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: environment variables that size the thread pools of OpenMP, MKL, OpenBLAS and numexpr
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "NUMEXPR_NUM_THREADS",
)

_state: dict[str, int] = {}


def affinity_cores() -> int:
    """Number of CPUs this process may run on (its affinity mask; ``os.cpu_count`` where
    the platform has no affinity call)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def available_cores(env: Mapping[str, str] | None = None) -> int:
    """Cores this process may use: the affinity mask, capped by a valid ``OMP_NUM_THREADS``.

    Parameters
    ----------
    env
        The environment to read (default: :data:`os.environ`).
    """
    env = os.environ if env is None else env
    cores = affinity_cores()
    raw = env.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if raw.isdigit() and int(raw) > 0:
        return min(cores, int(raw))
    return cores


def resolve_threads(
    configured: int | None, worker: bool = False, env: Mapping[str, str] | None = None
) -> int:
    """The thread count to use.

    Parameters
    ----------
    configured
        ``execution.threads``; ``None`` for the default.
    worker
        True in a dask worker process, where the default is 1.
    env
        The environment to read (default: :data:`os.environ`).

    Returns
    -------
    int
        ``configured`` capped by the affinity mask, or the default: 1 in a dask
        worker, else :func:`available_cores`.
    """
    if configured is None:
        return 1 if worker else available_cores(env)
    cores = affinity_cores()
    if configured > cores:
        log.warning(
            "execution.threads = %d but this process may use %d cores: using %d "
            "(more threads than cores only wait for one another)",
            configured,
            cores,
            cores,
        )
        return cores
    return configured


def configure(threads: int) -> int:
    """Make ``threads`` the thread count of this process (see the module docstring).

    Safe to call again (a dask worker runs one call per task); only what changed is set.
    Returns ``threads``.
    """
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _state["threads"] = threads
    limit_loaded_blas(threads)
    apply_if_loaded()
    return threads


def limit_loaded_blas(threads: int) -> None:
    """Size the pools of the BLAS libraries already loaded (numpy's, once numpy is
    imported) to ``threads``; a library loaded later reads the environment instead."""
    if "numpy" not in sys.modules:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def configured_threads() -> int | None:
    """The count set by :func:`configure` in this process, or None."""
    return _state.get("threads")


def apply_torch() -> None:
    """Apply the configured count to torch (imports it); a no-op before :func:`configure`.

    Intra-op threads are set whenever they differ; the inter-op pool is set to one
    thread once, guarded because torch refuses a second call or one made after
    inter-op work started.
    """
    threads = _state.get("threads")
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if "interop" not in _state:
        _state["interop"] = 1
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or inter-op work already ran in this process
            log.debug("torch inter-op threads stay at %d", torch.get_num_interop_threads())


def apply_if_loaded() -> None:
    """:func:`apply_torch` when torch is already imported (never imports it)."""
    if "torch" in sys.modules:
        apply_torch()
