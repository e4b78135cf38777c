"""The layout of a source file and the plan of which columns get compressed.

A source is a ROOT TTree or a Parquet file. Each branch (or column) is described
by a :class:`BranchInfo`. :func:`plan_columns` turns the ``[data]`` selection into
a :class:`SourceLayout`: the float columns the autoencoder compresses (one row per
object for jagged collections), and everything else, which is carried losslessly.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from baler_ext.config import DataConfig
from baler_ext.console import log_once
from baler_ext.errors import InputDataError
from baler_ext.registry import suggest

log = logging.getLogger(__name__)

#: Pseudo counter name that groups Parquet list columns (they have no counter column).
LIST_COLLECTION = "<list>"


@dataclass
class BranchInfo:
    """One branch of a TTree or one column of a Parquet file.

    Attributes
    ----------
    name
        Branch or column name.
    dtype
        numpy dtype name of the values (``"float32"``, ``"int32"``, ``"bool"``, ...).
    jagged
        True for variable-length collections (one list per entry).
    counter
        Name of the counter branch (ROOT) or :data:`LIST_COLLECTION` (Parquet lists).
    """

    name: str
    dtype: str
    jagged: bool = False
    counter: str | None = None

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")


#: BranchInfo fields a header entry omits when they hold these values
_BRANCH_DEFAULTS: dict[str, Any] = {"jagged": False, "counter": None}


@dataclass
class SourceLayout:
    """What a compressed file must know to restore its source exactly.

    ``format`` is a registered format name (:mod:`baler_ext.io.formats`).
    """

    format: str
    file_name: str
    tree: str | None
    branches: list[BranchInfo]
    compressed: list[str]
    collection: str | None = None
    dropped: list[str] = field(default_factory=list)
    #: the input's compression as its format reports it (see FormatReader.compression);
    #: decompressed files of the same format are written with it
    compression: dict[str, Any] | None = None
    #: size of the input file on disk (outputs aim to be no bigger)
    source_bytes: int | None = None

    @property
    def passthrough(self) -> list[str]:
        """Every branch that is kept but not compressed, in source order."""
        skip = set(self.compressed)
        return [b.name for b in self.branches if b.name not in skip]

    def branch(self, name: str) -> BranchInfo:
        for b in self.branches:
            if b.name == name:
                return b
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The layout as a header entry; a branch's defaults (``jagged`` false, no
        ``counter``) are left out (format 1.4; :meth:`from_dict` fills them in)."""
        d = asdict(self)
        d["branches"] = [
            {k: v for k, v in b.items() if not (k in _BRANCH_DEFAULTS and v == _BRANCH_DEFAULTS[k])}
            for b in d["branches"]
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceLayout:
        d = dict(d)
        # written by older versions, never read: files that carry it still load
        d.pop("constant_in_source", None)
        d["branches"] = [BranchInfo(**b) for b in d["branches"]]
        return cls(**d)


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _check_patterns(patterns: list[str], names: list[str], key: str, where: str) -> None:
    """A plain name (no wildcard) that matches nothing is an error with a suggestion."""
    for p in patterns:
        if not any(ch in p for ch in "*?[") and p not in names:
            raise InputDataError(
                f"{where}: column '{p}' (from data.{key}) is not in the file{suggest(p, names)}; "
                "check the name or remove it from the config"
            )


@dataclass
class StructureGroup:
    """Branches that share one row structure: flat (one row per entry) or one counter.

    Collections that share a counter (``nJet`` counts ``Jet_pt`` and ``Jet_btag``) are
    one group; the counter branch itself belongs to its group.
    """

    counter: str | None
    floats: list[str]
    others: list[str]

    @property
    def key(self) -> str:
        return "flat" if self.counter is None else self.counter


def structure_groups(branches: list[BranchInfo]) -> list[StructureGroup]:
    """Split ``branches`` by structure, in order of first appearance (flat first)."""
    counters = {b.counter for b in branches if b.jagged}
    groups: dict[str | None, StructureGroup] = {None: StructureGroup(None, [], [])}
    for b in branches:
        key = b.counter if b.jagged else (b.name if b.name in counters else None)
        g = groups.setdefault(key, StructureGroup(key, [], []))
        (g.floats if b.is_float and b.name not in counters else g.others).append(b.name)
    return [g for g in groups.values() if g.floats or g.others]


def plan_columns(
    branches: list[BranchInfo], data: DataConfig, where: str, file_format: str, tree: str | None
) -> SourceLayout:
    """Decide which columns are compressed and which are carried losslessly.

    Only floating-point columns go through the autoencoder; integer and boolean
    columns matched by ``data.columns`` are carried losslessly. All compressed
    columns must share one structure: all flat, or all members of one jagged
    collection (one row per object).

    Raises
    ------
    InputDataError
        When a named column is missing, the selection is empty, or the selected
        columns mix collections.
    """
    names = [b.name for b in branches]
    _check_patterns(data.columns, names, "columns", where)
    _check_patterns(data.exclude, names, "exclude", where)
    _check_patterns(data.passthrough, names, "passthrough", where)

    dropped = [n for n in names if _matches(n, data.exclude)]
    kept = [b for b in branches if b.name not in set(dropped)]
    if dropped:
        log_once(
            log,
            logging.WARNING,
            "%s: excluded (not written to the output): %s",
            where,
            ", ".join(dropped),
        )
    selected = [
        b for b in kept if _matches(b.name, data.columns) and not _matches(b.name, data.passthrough)
    ]
    lossless = [b.name for b in selected if not b.is_float]
    if lossless:
        log_once(
            log,
            logging.INFO,
            "%s: non-float columns carried losslessly: %s",
            where,
            ", ".join(lossless),
        )
    floats = [b for b in selected if b.is_float]
    if not floats:
        raise InputDataError(
            f"{where}: data.columns {data.columns} selects no float column to compress; "
            f"float columns in the file: {', '.join(b.name for b in kept if b.is_float) or 'none'}"
        )
    structures: dict[str | None, list[str]] = {}
    for b in floats:
        structures.setdefault(b.counter if b.jagged else None, []).append(b.name)
    if len(structures) > 1:
        parts = "; ".join(
            f"{'flat' if k is None else 'counted by ' + k}: {', '.join(v[:4])}"
            + ("..." if len(v) > 4 else "")
            for k, v in structures.items()
        )
        raise InputDataError(
            f"{where}: the selected columns mix {len(structures)} structures ({parts}); "
            "--mode train, compress, decompress and info handle such whole-file projects "
            "(one model per structure), but this step works on one structure: use one "
            'project per collection, e.g. data.columns = ["Jet_*"]'
        )
    (collection,) = structures
    return SourceLayout(
        format=file_format,
        file_name="",
        tree=tree,
        branches=kept,
        compressed=[b.name for b in floats],
        collection=collection,
        dropped=dropped,
    )


# --- whole files: one container per file, one model per structure group ---------------


@dataclass
class GroupData(DataConfig):
    """``[data]`` of one structure group of a whole-file project.

    A :class:`~baler_ext.io.source.Source` opened with it reads and carries only
    ``branches`` (the group's own branches and those it hosts); ``columns`` names the
    group's compressed float columns. Made by :func:`plan_groups`, never read from a config.
    """

    group: str = ""
    branches: list[str] = field(default_factory=list)


@dataclass
class GroupPlan:
    """One structure group of a whole-file project: what its inner container holds.

    Attributes
    ----------
    name
        ``flat`` or the collection's counter (``nJet``).
    columns
        The float columns its model compresses, in source order.
    branches
        Every branch its container carries (compressed or losslessly), in source
        order: the group's own and, for the first group, those of groups without a
        selected float column (carried losslessly, they need no model).
    """

    name: str
    columns: list[str]
    branches: list[str]

    @property
    def folder(self) -> str:
        """The group's folder name (``output/model/groups/<folder>``)."""
        return group_folder(self.name)


def group_folder(name: str) -> str:
    """A file-system safe folder name of a group (letters, digits, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_"


def plan_groups(
    branches: list[BranchInfo], data: DataConfig, where: str, lossless: Collection[str] = ()
) -> list[GroupPlan] | None:
    """The structure groups of a whole-file selection, or None for one structure.

    None when the selected float columns share one structure: such a project is a
    single-group project, compressed exactly as :func:`plan_columns` plans it. Otherwise
    one :class:`GroupPlan` per structure group holding a selected float column; the
    branches of the other groups, and of the groups named in ``lossless`` (too few rows
    to train a model on), ride losslessly in the first group's container.
    """
    names = [b.name for b in branches]
    _check_patterns(data.columns, names, "columns", where)
    _check_patterns(data.exclude, names, "exclude", where)
    _check_patterns(data.passthrough, names, "passthrough", where)
    kept = [b for b in branches if not _matches(b.name, data.exclude)]
    selected = {
        b.name
        for b in kept
        if b.is_float and _matches(b.name, data.columns) and not _matches(b.name, data.passthrough)
    }
    structures = {b.counter if b.jagged else None for b in kept if b.name in selected}
    if len(structures) <= 1:
        return None
    plans: list[GroupPlan] = []
    hosted: list[str] = []
    for g in structure_groups(kept):
        floats = [f for f in g.floats if f in selected]
        if floats and g.key not in lossless:
            plans.append(GroupPlan(g.key, floats, g.floats + g.others))
        else:
            hosted += g.floats + g.others
    if not plans:
        raise InputDataError(
            f"{where}: every structure group of the selection has too few rows to train a "
            "model on; store the file losslessly or select more data"
        )
    plans[0].branches += hosted
    order = {n: i for i, n in enumerate(names)}
    for p in plans:
        p.branches.sort(key=order.__getitem__)
    folders = [p.folder for p in plans]
    if len(set(folders)) != len(folders):
        raise InputDataError(
            f"{where}: the structure groups {', '.join(p.name for p in plans)} do not have "
            "distinct folder names; compress the collections in separate projects"
        )
    return plans
