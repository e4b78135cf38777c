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
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from baler_ext.errors import ProjectError

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
        if not self.config_path.is_file():
            raise ProjectError(
                f"project '{self.name}' has no {self.config_path}; create it with "
                f"'baler_ext --project {self.name} --mode new_project'"
            )


def require_stage_output(path: Path, stage: str, project: str, what: str) -> None:
    """Fail with the command to run first when an earlier stage's output is missing."""
    if not path.exists():
        raise ProjectError(
            f"{what} not found at {path}; run 'baler_ext --project {project} --mode {stage}' first"
        )


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    On any exception the temporary file is removed, so no half-written output is
    ever left under the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
