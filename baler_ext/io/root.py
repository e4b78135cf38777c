"""ROOT TTree reading and writing through uproot.

Reading is chunked (``TTree.iterate`` with ``step_size``). Writing rebuilds the
source layout: flat branches with their dtypes, and each jagged collection zipped
under its counter so that uproot writes the same counter and member names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from baler_ext.errors import InputDataError
from baler_ext.io.layout import BranchInfo, SourceLayout

log = logging.getLogger(__name__)


def _open(path: Path) -> Any:
    import uproot

    try:
        return uproot.open(path)
    except FileNotFoundError:
        raise InputDataError(f"{path}: file not found; check data.input") from None
    except Exception as exc:  # uproot raises many types, with multi-line text, for non-ROOT bytes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputDataError(
            f"{path}: not a readable ROOT file ({type(exc).__name__}: {first}); check data.input"
        ) from None


def open_tree(path: Path, tree: str | None) -> tuple[Any, str]:
    """Open the TTree ``tree`` of ``path`` (the only TTree when ``tree`` is None).

    Raises
    ------
    InputDataError
        When the tree is missing, is not a TTree (e.g. a histogram or an RNTuple),
        or the file holds several trees and none was named.
    """
    f = _open(path)
    classes = {k.split(";")[0]: v for k, v in f.classnames().items()}
    trees = sorted({k for k, v in classes.items() if v == "TTree"})
    if tree is None:
        if len(trees) == 1:
            tree = trees[0]
        elif not trees:
            others = ", ".join(f"{k} ({v})" for k, v in classes.items()) or "nothing"
            raise InputDataError(
                f"{path}: holds no TTree (found: {others}); give a file with a tree"
            )
        else:
            raise InputDataError(
                f"{path}: holds several TTrees ({', '.join(trees)}); choose one with data.tree"
            )
    if tree not in classes:
        from baler_ext.registry import suggest

        raise InputDataError(
            f"{path}: no object '{tree}'{suggest(tree, trees)}; TTrees in this file: "
            f"{', '.join(trees) or 'none'}; set data.tree"
        )
    if classes[tree] != "TTree":
        raise InputDataError(
            f"{path}: '{tree}' is a {classes[tree]}, not a TTree; TTrees in this file: "
            f"{', '.join(trees) or 'none'}; set data.tree to one of them"
        )
    return f[tree], tree


def inspect_tree(tree: Any, path: Path, exclude: set[str]) -> list[BranchInfo]:
    """Describe every top-level branch; unsupported branch types are an error.

    Branches holding objects (``TLorentzVector``, strings, nested vectors) cannot
    be compressed or carried; they must be excluded explicitly so that nothing is
    dropped silently.
    """
    import uproot

    infos: list[BranchInfo] = []
    for b in tree.branches:
        interp = b.interpretation
        jagged = isinstance(interp, uproot.AsJagged)
        content = interp.content if jagged else interp
        plain = (isinstance(content, uproot.AsDtype)
                 and not isinstance(content, uproot.AsStridedObjects)
                 and content.to_dtype.fields is None and content.to_dtype.shape == ())
        if not plain:
            if b.name in exclude:
                continue
            raise InputDataError(
                f"{path}: branch '{b.name}' holds {b.typename} values, which baler_ext cannot "
                f"read; add it to data.exclude to leave it out of the output"
            )
        counter = None
        if jagged:
            counter = b.count_branch.name if b.count_branch is not None else f"n{b.name}"
        infos.append(
            BranchInfo(name=b.name, dtype=content.to_dtype.newbyteorder("=").name, jagged=jagged,
                       counter=counter)
        )
    return infos


def iterate_root(
    path: Path, tree_name: str, branches: list[str], step_size: int
) -> Iterator[ak.Array]:
    """Yield records of ``branches``, ``step_size`` entries at a time."""
    tree, _ = open_tree(path, tree_name)
    wanted = set(branches)
    yield from tree.iterate(filter_name=lambda n: n in wanted, step_size=step_size, library="ak")


@dataclass
class _Collection:
    """A jagged collection as uproot writes it: one counter, zipped members."""

    key: str
    counter: str
    members: list[BranchInfo]
    zipped: bool


def _collections(layout: SourceLayout) -> list[_Collection]:
    """Group jagged branches by counter, as ``nJet`` + ``Jet_pt``, ``Jet_eta``, ..."""
    groups: dict[str, list[BranchInfo]] = {}
    for b in layout.branches:
        if b.jagged and b.counter is not None:
            groups.setdefault(b.counter, []).append(b)
    out: list[_Collection] = []
    for counter, members in groups.items():
        prefixes = {m.name.split("_", 1)[0] if "_" in m.name else None for m in members}
        if len(prefixes) == 1 and None not in prefixes:
            out.append(_Collection(prefixes.pop(), counter, members, zipped=True))
        else:  # no shared prefix: each branch gets a counter of its own
            for m in members:
                own = counter if len(members) == 1 else f"n{m.name}"
                out.append(_Collection(m.name, own, [m], zipped=False))
                if own != counter:
                    log.warning("jagged branch '%s' is written with its own counter '%s'",
                                m.name, own)
    return out


class RootWriter:
    """Write chunks of a record back to a TTree laid out like the source."""

    def __init__(self, path: Path, tree_name: str, layout: SourceLayout) -> None:
        import uproot

        self.tree_name = tree_name
        self.layout = layout
        self._collections = _collections(layout)
        self._by_member = {m.name: c for c in self._collections for m in c.members}
        self._counters = {c.counter for c in self._collections}
        self._counter_of = {c.key: c.counter for c in self._collections}
        self._file = uproot.recreate(path)
        self._tree: Any = None
        for b in layout.branches:
            if b.name in self._counters and b.dtype != "int32":
                log.warning(
                    "counter branch '%s' is written as int32 (it was %s): uproot writes counters "
                    "as int32", b.name, b.dtype,
                )

    def _chunk_dict(self, columns: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for b in self.layout.branches:
            if b.name in self._counters:
                continue
            coll = self._by_member.get(b.name)
            if coll is None:
                out[b.name] = np.asarray(columns[b.name]).astype(np.dtype(b.dtype), copy=False)
            elif coll.key not in out:
                arrays = {m.name: ak.values_astype(columns[m.name], np.dtype(m.dtype))
                          for m in coll.members}
                if coll.zipped:
                    n = len(coll.key) + 1
                    out[coll.key] = ak.zip({k[n:]: v for k, v in arrays.items()})
                else:
                    out[coll.key] = arrays[coll.key]
        return out

    def write(self, columns: dict[str, Any]) -> None:
        """Append one chunk: ``columns`` maps every kept branch name to its values."""
        data = self._chunk_dict(columns)
        if self._tree is None:
            types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype)
                     for k, v in data.items()}
            self._tree = self._file.mktree(
                self.tree_name,
                types,
                counter_name=lambda counted: self._counter_of.get(counted, "n" + counted),
                field_name=lambda outer, inner: f"{outer}_{inner}",
            )
        self._tree.extend(data)

    def close(self) -> None:
        self._file.close()
