"""ROOT TTree reading and writing through uproot (format ``root``).

Reading is chunked (``TTree.iterate`` with ``step_size``). Writing rebuilds the
source layout: every branch in source order with its dtype, each jagged branch under
its source counter (branches sharing a counter share it), with the
compression algorithm and level uproot reports for the input's branches (ZSTD when the
input is uncompressed or says nothing), so that a round trip is not bigger than its input.

Counters: uproot (5.7) writes the counter of a jagged branch as ``int32`` whatever the
source's type (``uproot/writing/_cascadetree.py`` fixes ``counter_dtype =
numpy.int32``); NanoAOD's ``uint32`` ``nJet`` therefore comes back as ``int32`` with the
same values. Every other branch keeps its dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa

from baler_ext.config import DataConfig
from baler_ext.errors import InputDataError
from baler_ext.io.formats import (
    AwkwardReader,
    FileFormat,
    FormatWriter,
    awkward_columns,
    register_format,
)
from baler_ext.io.layout import BranchInfo, SourceLayout

log = logging.getLogger(__name__)


def classnames(path: Path) -> dict[str, str]:
    """Object name (without its ``;cycle``) -> ROOT class, of every key in the file."""
    return {k.split(";")[0]: v for k, v in _open(path).classnames().items()}


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


def inspect_tree(tree: Any, path: Path, exclude: set[str], strict: bool = True) -> list[BranchInfo]:
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
        plain = (
            isinstance(content, uproot.AsDtype)
            and not isinstance(content, uproot.AsStridedObjects)
            and content.to_dtype.fields is None
            and content.to_dtype.shape == ()
        )
        if not plain:
            if b.name in exclude or not strict:
                continue
            raise InputDataError(
                f"{path}: branch '{b.name}' holds {b.typename} values, which baler_ext cannot "
                f"read; add it to data.exclude to leave it out of the output"
            )
        counter = None
        if jagged:
            counter = b.count_branch.name if b.count_branch is not None else f"n{b.name}"
        infos.append(
            BranchInfo(
                name=b.name,
                dtype=content.to_dtype.newbyteorder("=").name,
                jagged=jagged,
                counter=counter,
            )
        )
    return infos


def iterate_root(
    path: Path, tree_name: str, branches: list[str], step_size: int
) -> Iterator[ak.Array]:
    """Yield records of ``branches``, ``step_size`` entries at a time."""
    tree, _ = open_tree(path, tree_name)
    wanted = set(branches)
    yield from tree.iterate(filter_name=lambda n: n in wanted, step_size=step_size, library="ak")


#: ROOT compression algorithms uproot writes, by the class name uproot reports
ALGORITHMS = ("ZLIB", "LZMA", "LZ4", "ZSTD")
#: what a ROOT output uses when the input is uncompressed or reports nothing (ROOT's
#: own default since 6.30 is ZSTD level 5, code 505)
DEFAULT_COMPRESSION: dict[str, Any] = {"algorithm": "ZSTD", "level": 5}
#: the fallback when an output with the input's setting is bigger than the input
STRONGEST: dict[str, Any] = {"algorithm": "LZMA", "level": 9}
#: entries per chunk when rewriting an output with :data:`STRONGEST`
REWRITE_STEP = 100_000


def _setting(code: int) -> tuple[str, int] | None:
    """ROOT's ``fCompress`` (``100 * algorithm + level``) as (algorithm, level).

    Algorithm 0 is ROOT's ``kUseGlobal``, the global default, which is ZLIB for every
    ROOT before 6.30 (uproot reports it as uncompressed, ``Compression.from_code``); the
    CMS tutorial files say ``fCompress = 1``, i.e. ZLIB level 1.
    """
    algorithm, level = divmod(int(code), 100)
    if level == 0:
        return None
    names = {0: "ZLIB", 1: "ZLIB", 2: "LZMA", 4: "LZ4", 5: "ZSTD"}
    return (names[algorithm], level) if algorithm in names else None


def compression_of(objects: list[Any]) -> dict[str, Any] | None:
    """The most common compression among ``objects`` (branches, or a file), as a dict;
    None when they are uncompressed."""
    seen: dict[tuple[str, int], int] = {}
    for obj in objects:
        code = obj.member("fCompress") if hasattr(obj, "member") else obj.fCompress
        key = _setting(code)
        if key is not None:
            seen[key] = seen.get(key, 0) + 1
    if not seen:
        return None
    algorithm, level = max(seen, key=lambda k: seen[k])
    return {"algorithm": algorithm, "level": level}


def uproot_compression(spec: dict[str, Any] | None) -> Any:
    """The uproot compression object of ``spec`` (``{"algorithm", "level"}``), else ZSTD(5)."""
    import uproot

    classes = {"ZLIB": uproot.ZLIB, "LZMA": uproot.LZMA, "LZ4": uproot.LZ4, "ZSTD": uproot.ZSTD}
    if not spec or spec.get("algorithm") not in classes:
        spec = DEFAULT_COMPRESSION
    return classes[spec["algorithm"]](int(spec["level"]))


class TTreeReader(AwkwardReader):
    """A TTree opened for chunked reading."""

    def __init__(
        self, path: Path, data: DataConfig, exclude: set[str], strict: bool = True
    ) -> None:
        self.path = path
        t, self.tree = open_tree(path, data.tree)
        self.branches = inspect_tree(t, path, exclude, strict)
        self.num_entries = int(t.num_entries)
        kept = {b.name for b in self.branches}
        # the branches' own setting; uproot-written files record it on the file only
        self.compression = compression_of(
            [b for b in t.branches if b.name in kept]
        ) or compression_of([t.file])

    def iterate(self, names: list[str], step: int) -> Iterator[Any]:
        assert self.tree is not None
        yield from iterate_root(self.path, self.tree, names, step)

    def read(self, names: list[str]) -> ak.Array:
        assert self.tree is not None
        t, _ = open_tree(self.path, self.tree)
        return t.arrays(names, library="ak")


@register_format("root")
class TTreeFormat(FileFormat):
    """A ROOT TTree (flat branches and jagged collections with counters)."""

    suffix = ".root"
    extensions = (".root",)

    def recognises(self, path: Path, tree: str | None) -> bool:
        try:
            classes = classnames(path)
        except InputDataError:
            return True  # let open() report it
        if tree is not None:
            return classes.get(tree, "TTree") == "TTree"
        return "TTree" in classes.values() or "ROOT::RNTuple" not in classes.values()

    def open(
        self, path: Path, data: DataConfig, exclude: set[str], strict: bool = True
    ) -> TTreeReader:
        return TTreeReader(path, data, exclude, strict)

    def writer(
        self,
        path: Path,
        layout: SourceLayout,
        tree: str | None,
        arrow_schema: pa.Schema | None,
        chunks: int | None = None,
    ) -> FormatWriter:
        return RootWriter(path, tree or layout.tree or "tree", layout, chunks=chunks)


def counters_of(layout: SourceLayout) -> dict[str, str]:
    """Jagged branch -> the counter uproot writes for it: the source's counter, or
    ``n<branch>`` for a jagged branch without one."""
    return {b.name: b.counter or f"n{b.name}" for b in layout.branches if b.jagged}


def rewrite_strongest(path: Path, limit: int | None, compression: Any) -> bool:
    """Whether the finished file ``path`` must be written again with :data:`STRONGEST`:
    it is bigger than its input (``limit`` bytes; None: unknown) and was not written with
    it already. Logs the decision."""
    size = path.stat().st_size
    if limit is None or size <= limit or compression == STRONGEST:
        return False
    log.info(
        "%s: %d B with %s is bigger than the input (%d B); rewriting with %s",
        path.name,
        size,
        compression,
        limit,
        STRONGEST,
    )
    return True


class RootWriter(FormatWriter):
    """Write chunks of a record back to a TTree laid out like the source.

    The file is compressed as the source was (``layout.compression``, see
    :func:`uproot_compression`); each chunk becomes one basket per branch. uproot
    writes the TTree metadata and streamer records uncompressed, a fixed cost of tens of
    kB; when the finished file is bigger than its input (``layout.source_bytes``) it is
    rewritten with LZMA level 9 (:data:`STRONGEST`), so a round trip is not bigger than
    its input unless even that cannot make it so.
    """

    def __init__(
        self,
        path: Path,
        tree_name: str,
        layout: SourceLayout,
        compression: dict[str, Any] | None = None,
        chunks: int | None = None,
    ) -> None:
        import uproot

        self.path = path
        self.compression = compression or layout.compression or DEFAULT_COMPRESSION
        self.tree_name = tree_name
        self.layout = layout
        self.chunks = chunks
        self._counter_of = counters_of(layout)
        self._counters = set(self._counter_of.values())
        self._file = uproot.recreate(path, compression=uproot_compression(self.compression))
        self._tree: Any = None
        changed = [
            f"{b.name} ({b.dtype})"
            for b in layout.branches
            if b.name in self._counters and b.dtype != "int32"
        ]
        if changed:
            log.info(
                "counters written as int32 with the same values, as uproot writes every "
                "counter: %s",
                ", ".join(changed),
            )

    def _chunk_dict(self, columns: dict[str, Any]) -> dict[str, Any]:
        """Every branch in source order; jagged ones unzipped (uproot gives the branches
        that share a counter name one shared counter, placed before the first of them)."""
        out: dict[str, Any] = {}
        for b in self.layout.branches:
            if b.name in self._counters:
                continue
            if b.jagged:
                out[b.name] = ak.values_astype(columns[b.name], np.dtype(b.dtype))
            else:
                out[b.name] = np.asarray(columns[b.name]).astype(np.dtype(b.dtype), copy=False)
        return out

    def write(self, values: np.ndarray, passthrough: pa.Table, counts: np.ndarray | None) -> None:
        self.write_columns(awkward_columns(self.layout, values, passthrough, counts))

    def write_columns(self, columns: dict[str, Any]) -> None:
        """Append one chunk: ``columns`` maps every kept branch name to its values."""
        data = self._chunk_dict(columns)
        if self._tree is None:
            types = {
                k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()
            }
            self._tree = self._file.mktree(
                self.tree_name,
                types,
                counter_name=lambda counted: self._counter_of.get(counted, "n" + counted),
                # room for every chunk's basket, so the metadata is written once (uproot's
                # default of 10 costs 200 B per branch; 947 NanoAOD branches: 190 kB)
                initial_basket_capacity=max(2, (self.chunks or 9) + 1),
            )
        self._tree.extend(data)

    def close(self) -> None:
        self._file.close()
        # uproot writes the TTree metadata and streamers uncompressed (tens of kB); when
        # that makes the output bigger than its input, rewrite it with ROOT's strongest
        # setting, chunk by chunk
        if not rewrite_strongest(self.path, self.layout.source_bytes, self.compression):
            return
        tmp = self.path.with_name(self.path.name + ".lzma")
        again = RootWriter(tmp, self.tree_name, self.layout, STRONGEST, self.chunks)
        names = [b.name for b in self.layout.branches]
        for chunk in iterate_root(self.path, self.tree_name, names, REWRITE_STEP):
            again.write_columns({n: chunk[n] for n in names})
        again._file.close()
        tmp.replace(self.path)
