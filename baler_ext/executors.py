"""Where per-file work runs: here, one file after another (``local``), or on dask (``dask``).

``--mode compress`` and ``--mode decompress`` turn every input into one task: a plain
picklable function and its arguments (paths, the config, the model folder). The
``local`` executor calls them in order with a progress bar over files; the ``dask``
executor submits them to a ``distributed.Client`` (a scheduler address, or a
``LocalCluster`` of ``execution.workers`` single-threaded worker processes) and
gathers them with :func:`distributed.as_completed`. No process pool of our own:
retries, worker deaths and rescheduling are dask's.

Failure semantics (see ``docs/distributed.md``): a task that raises is retried
``execution.retries`` times; a task whose worker dies is rescheduled by dask on
another worker (up to the scheduler's ``distributed.scheduler.allowed-failures``).
When a file still fails, the run raises :class:`ExecutionError` naming every failed
file, after the other files finished. Outputs are written to a temporary name and
renamed, so a killed task never leaves a truncated file under its final name, and a
re-run with ``--resume`` skips what is already done.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from baler_ext.config import ExecutionConfig
from baler_ext.errors import BalerError, ExecutionError

log = logging.getLogger(__name__)


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ExecutionError(
            "execution.executor = 'dask' needs dask.distributed: pip install 'baler_ext[dask]'"
        ) from None
    return distributed


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    names: Sequence[str],
    execution: ExecutionConfig,
    desc: str,
) -> list[Any]:
    """Run ``fn(*args)`` for every ``args`` of ``tasks``; results in the order of ``tasks``.

    Parameters
    ----------
    fn
        A module-level function (picklable by reference).
    tasks
        Its argument tuples, one per file.
    names
        One short name per task (the file name) for progress and error messages.
    execution
        The ``[execution]`` section.
    desc
        What is done (``compress``), for the progress bar and task keys.
    """
    if not tasks:
        return []
    if execution.executor == "local":
        from tqdm import tqdm

        results = []
        for args in tqdm(
            tasks, desc=desc, unit="file", disable=None if len(tasks) > 1 else True, leave=False
        ):
            results.append(fn(*args))
        return results
    return _run_dask(fn, tasks, names, execution, desc)


@contextlib.contextmanager
def dask_client(execution: ExecutionConfig) -> Iterator[Any]:
    """A ``distributed.Client``: to ``execution.scheduler``, or to a fresh ``LocalCluster``."""
    distributed = _import_distributed()
    # dask logs every worker start and stop at INFO: only our -v (DEBUG) shows them
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if execution.scheduler:
        try:
            client = distributed.Client(execution.scheduler, timeout="30s")
        except OSError as exc:
            raise ExecutionError(
                f"cannot reach the dask scheduler at {execution.scheduler} "
                f"({exc}); check execution.scheduler / --scheduler"
            ) from None
        with client:
            log.info(
                "dask: scheduler %s, %d workers",
                execution.scheduler,
                len(client.scheduler_info().get("workers", {})),
            )
            yield client
        return
    # one task at a time per worker process, each computing with execution.threads
    # threads (default 1, set by the task: worker_threads): the cores are shared out
    # between processes, so that a crashing file cannot take the others down
    from baler_ext.threads import affinity_cores

    per_worker = execution.threads or 1
    if execution.workers * per_worker > affinity_cores():
        log.warning(
            "dask: %d workers x %d threads exceed the %d cores of this machine; "
            "lower execution.workers or execution.threads",
            execution.workers,
            per_worker,
            affinity_cores(),
        )
    with (
        distributed.LocalCluster(
            n_workers=execution.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        log.info(
            "dask: LocalCluster with %d workers, %d thread(s) each", execution.workers, per_worker
        )
        yield client


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if type(exc).__name__ == "KilledWorker":
        return "its worker died each time it ran it (out of memory? killed?); see the worker logs"
    return text if isinstance(exc, BalerError) else f"{type(exc).__name__}: {text}"


def _run_dask(
    fn: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    names: Sequence[str],
    execution: ExecutionConfig,
    desc: str,
) -> list[Any]:
    distributed = _import_distributed()
    from tqdm import tqdm

    run_id = uuid.uuid4().hex[:8]
    with dask_client(execution) as client:
        futures = [
            client.submit(
                fn,
                *args,
                key=f"baler_ext-{desc}-{name}-{run_id}",
                pure=False,
                retries=execution.retries,
            )
            for args, name in zip(tasks, names, strict=True)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        failures: list[str] = []
        bar = tqdm(
            total=len(futures), desc=f"{desc} (dask)", unit="file", disable=None, leave=False
        )
        for fut in distributed.as_completed(futures):
            i = index[fut.key]
            try:
                results[i] = fut.result()
            except Exception as exc:
                log.error("%s %s failed: %s", desc, names[i], _describe(exc))
                failures.append(f"{names[i]}: {_describe(exc)}")
            bar.update(1)
        bar.close()
    if failures:
        raise ExecutionError(
            f"{len(failures)} of {len(tasks)} files failed to {desc} on dask ("
            + "; ".join(failures)
            + f"); the {len(tasks) - len(failures)} finished files are "
            "complete and verified, re-run with --resume to skip them"
        )
    return results


@lru_cache(maxsize=4)
def _cached_model(model_dir: str, expected_hash: str, mtime_ns: int) -> Any:
    from baler_ext.model_store import load_model

    trained = load_model(Path(model_dir))
    if trained.hash != expected_hash:
        raise ExecutionError(
            f"{model_dir} holds model {trained.hash[:12]} on this worker, not "
            f"{expected_hash[:12]}: the model changed during the run or the workers see "
            "another filesystem"
        )
    return trained


def worker_model(model_dir: Path, expected_hash: str) -> Any:
    """The project's trained model on a worker, loaded once per process and checked."""
    from baler_ext.model_store import MODEL_JSON

    try:
        mtime = (model_dir / MODEL_JSON).stat().st_mtime_ns
    except OSError:
        raise ExecutionError(
            f"{model_dir}: the model folder is not visible on this worker; "
            "dask workers need the project on a shared filesystem"
        ) from None
    return _cached_model(str(model_dir), expected_hash, mtime)


def worker_threads(cfg: Any) -> int:
    """In a dask worker process, set its thread count: ``execution.threads``, default 1
    (and keep freed memory in its heap, :mod:`baler_ext.heap`).

    The local executor runs in the CLI's process, whose count the CLI already set;
    this leaves it alone. Returns the count in force.
    """
    from baler_ext import heap, threads

    heap.keep_freed_memory()  # once per process; a no-op where the CLI already did it
    if cfg.execution.executor != "dask":
        return threads.configured_threads() or threads.available_cores()
    n = threads.resolve_threads(cfg.execution.threads, worker=True)
    if threads.configured_threads() != n:
        threads.configure(n)
    return n
