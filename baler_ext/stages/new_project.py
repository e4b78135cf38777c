"""``--mode new_project``: a commented default config and the empty output tree."""

from __future__ import annotations

import logging
from pathlib import Path

from baler_ext.config import render_default_config
from baler_ext.errors import ProjectError
from baler_ext.project import OUTPUT_SUBDIRS, Project

log = logging.getLogger(__name__)


def new_project(project: Project) -> Path:
    """Create ``projects/NAME/config.toml`` and ``output/*``; never overwrite."""
    if project.root.exists():
        raise ProjectError(
            f"project folder {project.root} exists already; choose another name or edit "
            f"{project.config_path}"
        )
    project.root.mkdir(parents=True)
    (project.root / "data").mkdir()
    for sub in OUTPUT_SUBDIRS:
        project.dir(sub).mkdir(parents=True)
    project.config_path.write_text(render_default_config())
    log.info(
        "created %s; put your input under %s and edit data.input",
        project.config_path,
        project.root / "data",
    )
    return project.config_path
