"""Planning a whole-file project (:mod:`baler_ext.stages.groups`): which structure groups
get a model, with which config.

Apart from :mod:`baler_ext.stages.groups` because it opens the input (the readers import
awkward and pyarrow), which ``--mode info`` never needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from baler_ext.config import Config
from baler_ext.errors import BalerError, InputDataError
from baler_ext.io.layout import GroupData, GroupPlan
from baler_ext.io.source import file_groups
from baler_ext.project import Project
from baler_ext.stages.groups import group_config, read_plan


def plan(
    cfg: Config,
    project: Project | None = None,
    lossless: Collection[str] | None = None,
    passthrough: list[str] | None = None,
) -> list[tuple[GroupPlan, Config]] | None:
    """Each structure group of a whole-file project with its config, or None for a
    single-group project.

    ``lossless``: the groups carried losslessly (too few rows or nothing varying to
    train on); ``passthrough``: float columns carried losslessly (holding NaN or inf); by
    default those the train stage recorded for ``project`` (:func:`read_plan`).
    """
    if isinstance(cfg.data, GroupData):  # already one group's
        return None
    if lossless is None:
        lossless = read_plan(project)["lossless"] if project is not None else []
    if passthrough is None:
        passthrough = read_plan(project)["passthrough"] if project is not None else []
    if passthrough:
        cfg = dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, passthrough=[*cfg.data.passthrough, *passthrough]),
        )
    plans = file_groups(cfg, lossless)
    if plans is None:
        return None
    if cfg.data.nan_policy != "error":
        raise InputDataError(
            'data.nan_policy = "drop" drops rows of one structure group only, which would '
            "misalign the groups of a whole file; fix the input or select one structure"
        )
    return [(p, group_config(cfg, p)) for p in plans]


def refuse_whole_file(cfg: Config, mode: str) -> None:
    """Raise a clear error when ``cfg`` is a whole-file project (several structure
    groups) for a stage that works on one structure; input errors are left to the stage."""
    try:
        groups = plan(cfg, lossless=[], passthrough=[])
    except BalerError:
        return
    if groups is not None:
        raise InputDataError(
            f"--mode {mode} works on one structure group (one model), but data.columns "
            f"{cfg.data.columns} spans {len(groups)} ({', '.join(p.name for p, _ in groups)}): "
            "a whole-file project; select one structure in data.columns for this step"
        )
