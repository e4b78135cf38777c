"""File formats behind one reader/writer interface, registered by name.

Each format is one module (:mod:`baler_ext.io.root` for TTrees, :mod:`baler_ext.io.rntuple`,
:mod:`baler_ext.io.parquet`) that registers a :class:`FileFormat`: it opens a file as a
:class:`FormatReader` (branches, entries, chunked reading, the input's own compression) and
writes restored chunks through a :class:`FormatWriter`. Nothing outside these modules asks
which format a file is; a new format is one new module added to :data:`FORMAT_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa

from baler_ext.config import DataConfig
from baler_ext.errors import InputDataError
from baler_ext.io.layout import BranchInfo, SourceLayout
from baler_ext.registry import Registry

#: modules that register a format; imported on first use (they import this module)
FORMAT_MODULES = ("baler_ext.io.root", "baler_ext.io.rntuple", "baler_ext.io.parquet")

FORMAT_REGISTRY: Registry[FileFormat] = Registry("data.format")


def register_format(name: str) -> Callable[[type[FileFormat]], type[FileFormat]]:
    """Class decorator: register one instance of the decorated format under ``name``."""

    def decorator(cls: type[FileFormat]) -> type[FileFormat]:
        cls.name = name
        FORMAT_REGISTRY.register(name)(cls())
        return cls

    return decorator


def _load() -> None:
    for module in FORMAT_MODULES:
        importlib.import_module(module)


def get_format(name: str) -> FileFormat:
    """The format registered as ``name`` (``root``, ``rntuple``, ``parquet``)."""
    _load()
    return FORMAT_REGISTRY.get(name)


def format_names() -> list[str]:
    """Every registered format name, in :data:`FORMAT_MODULES` order: the registry's own
    order is the order the modules were first imported, which depends on what the process
    read first (``docs/config.md`` and :func:`detect_format`'s message must not; the
    did-you-mean of :func:`get_format` still lists the registry's order)."""
    _load()
    rank = {module: i for i, module in enumerate(FORMAT_MODULES)}
    return sorted(
        FORMAT_REGISTRY.names(),
        key=lambda n: rank.get(type(FORMAT_REGISTRY.get(n)).__module__, len(rank)),
    )


def detect_format(path: Path, fmt: str, tree: str | None = None) -> str:
    """The format of ``path``: ``fmt`` or, when ``auto``, the first format whose
    extension matches and that recognises the file (a ``.root`` file holding an
    RNTuple rather than a TTree is ``rntuple``)."""
    if fmt != "auto":
        get_format(fmt)
        return fmt
    _load()
    suffix = path.suffix.lower()
    candidates = [
        FORMAT_REGISTRY[n] for n in FORMAT_REGISTRY if suffix in FORMAT_REGISTRY[n].extensions
    ]
    if not candidates:
        raise InputDataError(
            f"{path}: cannot tell the format from '{path.suffix}'; set data.format to one of "
            f"{', '.join(format_names())}"
        )
    for f in candidates:
        if f.recognises(path, tree):
            return f.name
    return candidates[0].name  # its reader gives the precise error


class FormatReader:
    """An open input file: its branches and entries, read in chunks.

    Attributes
    ----------
    branches
        Every readable top-level branch/column (excluded unreadable ones left out).
    num_entries
        Entries (events, or rows of a flat table).
    tree
        TTree or RNTuple name, None for Parquet.
    arrow_schema
        The file's Arrow schema when the format is Arrow-native (Parquet), else None.
    compression
        The input's compression as the format's writer understands it, e.g.
        ``{"algorithm": "ZLIB", "level": 1}`` or ``{"codec": "zstd"}``; None when
        unknown or uncompressed.
    """

    branches: list[BranchInfo]
    num_entries: int
    tree: str | None = None
    arrow_schema: pa.Schema | None = None
    compression: dict[str, Any] | None = None

    def iterate(self, names: list[str], step: int) -> Iterator[Any]:
        """Raw chunks of ``names``, ``step`` entries at a time."""
        raise NotImplementedError

    def entries(self, raw: Any) -> int:
        """Entries in one raw chunk."""
        raise NotImplementedError

    def column(self, raw: Any, name: str, jagged: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """One column of a raw chunk: its values (flattened) and counts per entry."""
        raise NotImplementedError

    def passthrough(self, raw: Any, names: list[str]) -> pa.Table:
        """The columns ``names`` of a raw chunk as an Arrow table, one row per entry."""
        raise NotImplementedError

    def read(self, names: list[str]) -> ak.Array:
        """Whole columns as an awkward record with one field per name."""
        raise NotImplementedError


class AwkwardReader(FormatReader):
    """Shared chunk handling of readers whose raw chunks are awkward records."""

    def entries(self, raw: Any) -> int:
        return len(raw)

    def column(self, raw: Any, name: str, jagged: bool) -> tuple[np.ndarray, np.ndarray | None]:
        arr = raw[name]
        counts = None
        if jagged:
            counts = ak.to_numpy(ak.num(arr, axis=1)).astype(np.int64)
            arr = ak.flatten(arr, axis=1)
        return ak.to_numpy(arr), counts

    def passthrough(self, raw: Any, names: list[str]) -> pa.Table:
        if not names:
            return pa.table({})
        return ak.to_arrow_table(raw[names], extensionarray=True)


class FormatWriter:
    """Writes restored chunks in the source's layout."""

    def write(self, values: np.ndarray, passthrough: pa.Table, counts: np.ndarray | None) -> None:
        """Write one chunk: the restored compressed columns plus the passthrough table."""
        raise NotImplementedError

    def write_columns(self, columns: dict[str, Any]) -> None:
        """Write one chunk given as every kept branch by name (awkward arrays for jagged
        branches, numpy arrays for flat ones): how a whole-file container's groups are
        written together."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class FileFormat:
    """One file format: how to recognise, open and write it."""

    name: str = ""
    #: suffix of decompressed files
    suffix: str = ""
    #: lower-case extensions that may hold this format
    extensions: tuple[str, ...] = ()

    def recognises(self, path: Path, tree: str | None) -> bool:
        """Whether ``path`` (of a matching extension) holds this format."""
        return True

    def open(
        self, path: Path, data: DataConfig, exclude: set[str], strict: bool = True
    ) -> FormatReader:
        """Open ``path`` for reading.

        An unreadable branch (objects, strings, deeper nesting) is an error unless it is
        named in ``exclude``; with ``strict=False`` it is left out silently (for reading a
        few named columns).
        """
        raise NotImplementedError

    def writer(
        self,
        path: Path,
        layout: SourceLayout,
        tree: str | None,
        arrow_schema: pa.Schema | None,
        chunks: int | None = None,
    ) -> FormatWriter:
        """A writer of ``layout`` into ``path`` (``arrow_schema``: the source's, if Arrow;
        ``chunks``: how many chunks will be written, when known)."""
        raise NotImplementedError


def no_options(arr: ak.Array, name: str) -> ak.Array:
    """``arr`` without option type; missing values are an error (ROOT cannot store them)."""
    if "?" in str(arr.type):
        if ak.any(ak.is_none(arr, axis=-1)):
            raise InputDataError(f"column '{name}' holds missing values, which ROOT cannot store")
        arr = ak.drop_none(arr)
    return arr


def awkward_columns(
    layout: SourceLayout, values: np.ndarray, passthrough: pa.Table, counts: np.ndarray | None
) -> dict[str, Any]:
    """Every kept branch of one restored chunk by name, as awkward (jagged) or numpy arrays."""
    columns: dict[str, Any] = {}
    if passthrough.num_columns:
        rec = ak.from_arrow(passthrough)
        for name in passthrough.column_names:
            columns[name] = no_options(rec[name], name)
    for i, name in enumerate(layout.compressed):
        col = values[:, i]
        columns[name] = ak.unflatten(col, counts) if counts is not None else col
    return columns
