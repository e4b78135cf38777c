"""A project folder and the paths its stages read and write.

``projects/NAME/config.toml`` configures the project; ``projects/NAME/output/``
holds what the stages produce::

    output/model/          weights.pt, model.json, normaliser.json, history.csv, loss.png
    output/compressed/     one .baler container per input file
    output/decompressed/   the restored files, in the input's format
    output/evaluation/     metrics.json, plots, report.pdf
    output/analysis/       analysis.json, analysis.md, analysis.png
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from baler_ext.errors import ProjectError

log = logging.getLogger(__name__)

OUTPUT_SUBDIRS = ("model", "compressed", "decompressed", "evaluation", "analysis")
CONTAINER_SUFFIX = ".baler"


@dataclass(frozen=True)
class Project:
    """Paths of one project."""

    name: str
    root: Path

    @classmethod
    def locate(cls, name: str, projects_dir: Path) -> Project:
        """The project ``name`` under ``projects_dir`` (it need not exist yet)."""
        if not name or "/" in name or name in {".", ".."}:
            raise ProjectError(f"invalid project name {name!r}: use a plain folder name")
        return cls(name=name, root=projects_dir / name)

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def output(self) -> Path:
        return self.root / "output"

    def dir(self, stage: str) -> Path:
        """The output folder of a stage (``model``, ``compressed``, ...)."""
        return self.output / stage

    def require_exists(self) -> None:
        if self.config_path.is_file():
            return
        folder = self.root.parent
        where = (
            f"{folder.resolve()} (--projects-dir, relative to the current folder {Path.cwd()})"
            if not folder.is_absolute()
            else str(folder)
        )
        raise ProjectError(
            f"project '{self.name}' has no {self.config_path.name} in {where}; if the "
            f"project lives elsewhere pass --projects-dir DIR, otherwise create it with "
            f"'baler_ext --project {self.name} --mode new_project'"
        )


def require_stage_output(path: Path, stage: str, project: str, what: str) -> None:
    """Fail with the command to run first when an earlier stage's output is missing."""
    if not path.exists():
        raise ProjectError(
            f"{what} not found at {path}; run 'baler_ext --project {project} --mode {stage}' first"
        )


#: a ``.part`` file of an output older than this is a leftover of a killed run
STALE_PART_SECONDS = 3600.0


def _owner_tag() -> str:
    """``host-pid`` of this process, part of its ``.part`` file names."""
    return f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_parts(final: Path, older_than: float = STALE_PART_SECONDS) -> list[Path]:
    """Remove ``.NAME.<host>-<pid>.*.part`` files beside ``final`` left by killed runs.

    A partial file is stale when the process named in it ran on this host and is gone,
    or when it was last modified more than ``older_than`` seconds ago (a writer on
    another host, or one that predates the host-pid tag); a concurrent writer of the
    same output keeps its file.
    """
    removed = []
    now = time.time()
    host = socket.gethostname().replace(".", "_")
    for part in final.parent.glob(f".{glob.escape(final.name)}.*.part"):
        rest = part.name[len(final.name) + 2 :].split(".")
        if len(rest) not in (2, 3):  # the partial file of another output (``NAME.x``)
            continue
        # 2: a file from before the host-pid tag, judged by its age alone
        owner_host, _, pid = rest[0].rpartition("-") if len(rest) == 3 else ("", "", "")
        try:
            dead = owner_host == host and pid.isdigit() and not _alive(int(pid))
            if dead or now - part.stat().st_mtime > older_than:
                part.unlink()
                removed.append(part)
        except FileNotFoundError:
            continue
    if removed:
        log.info(
            "removed %d stale partial file(s) of %s left by an interrupted run",
            len(removed),
            final.name,
        )
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows, where folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    On success the temporary file is flushed to disk (``fsync``) before it is renamed,
    and the folder after, so that a crash never leaves a renamed but empty file. On any
    exception the temporary file is removed, so no half-written output is ever left
    under the final name. Partial files of ``final`` left by killed runs (older than
    :data:`STALE_PART_SECONDS`) are removed first.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(final)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.{_owner_tag()}.", suffix=".part", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:  # a bare write() error (ENOSPC)
            raise type(exc)(exc.errno, exc.strerror, str(final)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
