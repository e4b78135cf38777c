"""Exception types for errors a user can cause.

Every exception here carries a one-line message that says what went wrong and
what to do. The CLI prints it without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations

import errno
import os


class BalerError(Exception):
    """Base class of every user-facing error of baler_ext."""

    exit_code: int = 1


class ConfigError(BalerError):
    """The project configuration (``config.toml`` or ``--set``) is invalid."""

    exit_code = 2


class ProjectError(BalerError):
    """The project folder is missing, exists already, or lacks a stage's output."""

    exit_code = 3


class ModelError(ProjectError):
    """The project's trained model files are missing pieces or unreadable (retrain)."""


class InputDataError(BalerError):
    """An input file is missing, unreadable, or holds data the tool cannot compress."""

    exit_code = 4


class ContainerError(BalerError):
    """A compressed file is corrupt, truncated, from the future, or from another model."""

    exit_code = 5


class BoundViolationError(BalerError):
    """A decompressed value breaks its configured error bound."""

    exit_code = 6


class FitError(BalerError):
    """A physics fit failed or its configuration cannot be fitted."""

    exit_code = 7


class ExecutionError(BalerError):
    """Some files of a distributed run failed (after dask's retries)."""

    exit_code = 8


class ExportError(BalerError):
    """The model cannot be exported to TorchScript."""

    #: 10, not 9: 9 is the filesystem error's code (:data:`FILESYSTEM_EXIT`)
    exit_code = 10


#: exit code of a filesystem error (disk full, read-only folder, unreadable file)
FILESYSTEM_EXIT = 9

_OS_REASONS: dict[int, str] = {
    errno.ENOSPC: "the disk is full (no space left on device); free space or write to another disk",
    errno.EDQUOT: "the disk quota is exceeded; free space or write to another disk",
    errno.EROFS: "the filesystem is read-only; write to a writable folder",
    errno.EACCES: "permission denied; check the permissions or write to another folder",
    errno.EPERM: "operation not permitted; check the permissions or write to another folder",
    errno.EIO: "an input/output error (failing disk or network filesystem?)",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "a folder where a file was expected",
    errno.ENOTDIR: "a file where a folder was expected",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
}


def describe_os_error(exc: OSError) -> str:
    """One line for a filesystem error: the path(s) and the reason, with what to do.

    An OSError without an errno (e.g. a reader hitting the end of a half-written file)
    is reported as a truncated or damaged input.
    """
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(paths)
    if exc.errno in _OS_REASONS:
        reason = _OS_REASONS[exc.errno]
    elif exc.errno is not None:
        reason = exc.strerror or os.strerror(exc.errno)
    else:
        text = " ".join(str(exc).split())[:300]
        reason = (
            f"{text} (a truncated or damaged file?)" if text else "the file is truncated or damaged"
        )
    return f"{where}: {reason}" if where else reason
