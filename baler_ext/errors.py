"""Exception types for errors a user can cause.

Every exception here carries a one-line message that says what went wrong and
what to do. The CLI prints it without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations


class BalerError(Exception):
    """Base class of every user-facing error of baler_ext."""

    exit_code: int = 1


class ConfigError(BalerError):
    """The project configuration (``config.toml`` or ``--set``) is invalid."""

    exit_code = 2


class ProjectError(BalerError):
    """The project folder is missing, exists already, or lacks a stage's output."""

    exit_code = 3


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
