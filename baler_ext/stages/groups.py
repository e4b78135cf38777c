"""Whole-file projects: one container per input file, one model per structure group.

A selection (``[data] columns``) whose float columns span several structures (the flat
event-level branches and jagged collections with their own counters,
:func:`baler_ext.io.layout.structure_groups`) is a *whole-file project*. Each structure
group holding a selected float column gets:

- its own model, trained on that group's rows alone, in ``output/model/groups/<group>/``
  (:class:`GroupProject` points the stages' ``model`` folder there);
- its own complete inner container, written by the per-file compress code path with the
  group's model (bounds, sentinels, digests, the learned probability model: all as for a
  single-group project), stored as the byte section ``group:<name>`` of the file's one
  outer container, whose header lists the groups and the whole file's layout.

Branches of groups without a selected float column (an integer-only collection) ride
losslessly in the first group's container. A selection of one structure is a
single-group project, compressed exactly as before (none of this applies).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from baler_ext.codec.container import GROUP_PREFIX, GROUPS_FEATURE, ContainerReader
from baler_ext.config import Config
from baler_ext.errors import ContainerError, ProjectError
from baler_ext.io.layout import GroupData, GroupPlan, group_folder
from baler_ext.project import Project, atomic_path

#: the folder under ``output/model`` that holds one model folder per group
GROUPS_DIR = "groups"
PLAN_JSON = "groups.json"
#: a structure group with fewer rows (objects) than this in the training inputs gets no
#: model: its branches are carried losslessly in the first group's container
MIN_GROUP_ROWS = 100


@dataclass(frozen=True)
class GroupProject(Project):
    """The project as one structure group's stages see it: its ``model`` and
    ``evaluation`` folders are the group's (``output/model/groups/<folder>``,
    ``output/evaluation/groups/<folder>``), every other folder the project's."""

    group: str = ""

    def dir(self, stage: str) -> Path:
        if stage in ("model", "evaluation"):
            return self.output / stage / GROUPS_DIR / group_folder(self.group)
        return super().dir(stage)


def group_project(project: Project, name: str) -> GroupProject:
    return GroupProject(project.name, project.root, name)


def group_config(cfg: Config, plan: GroupPlan) -> Config:
    """The project's config restricted to one group: its compressed columns and the
    branches its container carries (``[data] passthrough`` and ``exclude`` are already
    applied by the plan)."""
    base = {f.name: getattr(cfg.data, f.name) for f in dataclasses.fields(cfg.data)}
    base.update(columns=list(plan.columns), passthrough=[])
    data = GroupData(**base, group=plan.name, branches=list(plan.branches))
    return dataclasses.replace(cfg, data=data)


def plan_path(project: Project) -> Path:
    """``output/model/groups/groups.json``: the groups the train stage trained models
    for and those it left to be carried losslessly."""
    return project.dir("model") / GROUPS_DIR / PLAN_JSON


def write_plan(
    project: Project, trained: list[str], lossless: list[str], passthrough: list[str]
) -> None:
    path = plan_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"trained": trained, "lossless": lossless, "passthrough": passthrough}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))


def read_plan(project: Project) -> dict[str, list[str]]:
    """What the train stage decided for a whole-file project (:func:`write_plan`): the
    groups it trained, those carried losslessly and the float columns it found holding
    NaN or inf (carried losslessly)."""
    path = plan_path(project)
    if not path.is_file():
        return {"trained": [], "lossless": [], "passthrough": []}
    try:
        record = json.loads(path.read_text())
        out = {k: record.get(k, []) for k in ("trained", "lossless", "passthrough")}
    except (ValueError, AttributeError):
        raise ProjectError(f"{path} cannot be read; rerun --mode train") from None
    for v in out.values():
        if not isinstance(v, list) or not all(isinstance(n, str) for n in v):
            raise ProjectError(f"{path} is malformed; rerun --mode train")
    return out


def is_grouped(header: dict) -> bool:
    """Whether a container's header is a whole-file container's."""
    return header.get("mode") == GROUPS_FEATURE and "groups" in header


def combined_hash(hashes: list[tuple[str, str]]) -> str:
    """One hash for the models of a whole-file project: (group, model hash) pairs."""
    return hashlib.sha256(json.dumps(sorted(hashes)).encode()).hexdigest()


@contextmanager
def inner_containers(
    reader: ContainerReader, folder: Path | None = None
) -> Iterator[list[tuple[dict, ContainerReader]]]:
    """Each group of a whole-file container (open in ``reader``) as its header entry and
    an open, validated reader of its inner container (extracted to a temporary file)."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".groups-") as tmp, ExitStack() as stack:
        out = []
        for i, g in enumerate(reader.header["groups"]):
            path = Path(tmp) / f"{i}-{group_folder(g['name'])}.baler"
            path.write_bytes(reader.read_bytes(g["section"], -1))
            # messages name the outer file and the group, not the temporary file
            shown = Path(f"{reader.path}:{g['section']}")
            try:
                inner = stack.enter_context(ContainerReader(path))
            except ContainerError as exc:
                raise ContainerError(str(exc).replace(str(path), str(shown))) from None
            inner.path = shown
            h = inner.header
            if (
                "groups" in h
                or h["model"]["hash"] != g["model_hash"]
                or h["columns"] != g["columns"]
                or [b["name"] for b in h["layout"]["branches"]] != g["branches"]
                or h["entries"] != g["entries"]
                or len(h["chunks"]) != g["chunks"]
            ):
                raise ContainerError(
                    f"{reader.path}: the container of group '{g['name']}' does not match "
                    "its header entry; the file is damaged, recreate it with --mode compress"
                )
            out.append((g, inner))
        chunks = {len(r.header["chunks"]) for _, r in out}
        per_chunk = {tuple(m["entries"] for m in r.header["chunks"]) for _, r in out}
        if len(chunks) != 1 or len(per_chunk) != 1:
            raise ContainerError(
                f"{reader.path}: its groups are chunked differently; the file is damaged, "
                "recreate it with --mode compress"
            )
        yield out


__all__ = [
    "GROUPS_DIR",
    "GROUP_PREFIX",
    "GroupProject",
    "combined_hash",
    "group_config",
    "group_project",
    "inner_containers",
    "is_grouped",
    "read_plan",
    "write_plan",
]
