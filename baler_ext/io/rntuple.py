"""ROOT RNTuple reading and writing through uproot (format ``rntuple``).

An RNTuple's top-level fields map onto the layout as branches do: a field of a
primitive type is a flat branch; a collection of records (``Jet: var * {pt, eta, ...}``)
gives one jagged branch per member, named with uproot's dotted path (``Jet.pt``) and
counted by the collection (``counter = "Jet"``); a collection of primitives is a jagged
branch counted by itself. Deeper nesting is not supported and must be excluded.

Writing uses uproot's RNTuple writer (``mkrntuple`` then ``extend``, uproot >= 5.7) in a
file compressed as the input was (the compression uproot reports for the file, else ZSTD).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa

from baler_ext.config import DataConfig, suggest
from baler_ext.errors import InputDataError
from baler_ext.io.formats import (
    AwkwardReader,
    FileFormat,
    FormatWriter,
    awkward_columns,
    register_format,
)
from baler_ext.io.layout import BranchInfo, SourceLayout
from baler_ext.io.root import (
    DEFAULT_COMPRESSION,
    REWRITE_STEP,
    STRONGEST,
    _open,
    classnames,
    compression_of,
    rewrite_strongest,
    uproot_compression,
)

log = logging.getLogger(__name__)

RNTUPLE_CLASS = "ROOT::RNTuple"


def open_rntuple(path: Path, name: str | None) -> tuple[Any, str]:
    """The RNTuple ``name`` of ``path`` (the only one when ``name`` is None)."""
    f = _open(path)
    classes = {k.split(";")[0]: v for k, v in f.classnames().items()}
    found = sorted(k for k, v in classes.items() if v == RNTUPLE_CLASS)
    if name is None:
        if len(found) != 1:
            raise InputDataError(
                f"{path}: holds {len(found)} RNTuples ({', '.join(found) or 'none'}); "
                "choose one with data.tree"
                if found
                else f'{path}: holds no RNTuple; set data.format = "root" for a TTree'
            )
        name = found[0]
    if classes.get(name) != RNTUPLE_CLASS:
        raise InputDataError(
            f"{path}: no RNTuple '{name}'{suggest(name, found)}; RNTuples in this file: "
            f"{', '.join(found) or 'none'}; set data.tree"
        )
    return f[name], name


def _leaf_dtype(form: ak.forms.Form) -> str | None:
    if isinstance(form, ak.forms.NumpyForm) and not form.inner_shape:
        return np.dtype(ak.types.numpytype.primitive_to_dtype(form.primitive)).name
    return None


def inspect_rntuple(
    ntuple: Any, path: Path, exclude: set[str], strict: bool = True
) -> list[BranchInfo]:
    """Describe every top-level field (see the module docstring)."""
    form = ntuple.arrays(entry_stop=0).layout.form
    infos: list[BranchInfo] = []
    for field_name, content in zip(form.fields, form.contents, strict=True):
        dtype = _leaf_dtype(content)
        if dtype is not None:
            infos.append(BranchInfo(field_name, dtype))
            continue
        if isinstance(content, ak.forms.ListOffsetForm):
            inner = content.content
            dtype = _leaf_dtype(inner)
            if dtype is not None:
                infos.append(BranchInfo(field_name, dtype, jagged=True, counter=field_name))
                continue
            if isinstance(inner, ak.forms.RecordForm):
                members = [
                    (f"{field_name}.{m}", _leaf_dtype(c))
                    for m, c in zip(inner.fields, inner.contents, strict=True)
                ]
                bad = [m for m, d in members if d is None and m not in exclude and strict]
                if not bad:
                    infos.extend(
                        BranchInfo(m, d, jagged=True, counter=field_name)
                        for m, d in members
                        if d is not None
                    )
                    continue
                field_name = bad[0]
        if field_name in exclude or not strict:
            continue
        raise InputDataError(
            f"{path}: RNTuple field '{field_name}' is nested deeper than one collection of "
            "numbers, which baler_ext cannot read; add it to data.exclude"
        )
    return infos


def _get(chunk: ak.Array, name: str) -> ak.Array:
    return chunk[tuple(name.split(".", 1))] if "." in name else chunk[name]


class RNTupleReader(AwkwardReader):
    """An RNTuple opened for chunked reading; raw chunks are flat records keyed by
    dotted branch name."""

    def __init__(
        self, path: Path, data: DataConfig, exclude: set[str], strict: bool = True
    ) -> None:
        self.path = path
        nt, self.tree = open_rntuple(path, data.tree)
        self.branches = inspect_rntuple(nt, path, exclude, strict)
        self.num_entries = int(nt.num_entries)
        self.compression = compression_of([nt.file])

    def _flat(self, chunk: ak.Array, names: list[str]) -> ak.Array:
        return ak.zip({n: _get(chunk, n) for n in names}, depth_limit=1)

    def iterate(self, names: list[str], step: int) -> Iterator[Any]:
        nt, _ = open_rntuple(self.path, self.tree)
        for chunk in nt.iterate(names, step_size=step):
            yield self._flat(chunk, names)

    def read(self, names: list[str]) -> ak.Array:
        nt, _ = open_rntuple(self.path, self.tree)
        return self._flat(nt.arrays(names), names)


class RNTupleWriter(FormatWriter):
    """Restored chunks as an RNTuple with the source's fields, dtypes and collections."""

    def __init__(
        self,
        path: Path,
        layout: SourceLayout,
        name: str,
        compression: dict[str, Any] | None = None,
    ) -> None:
        import uproot

        self.path = path
        self.layout = layout
        self.name = name
        self.compression = compression or layout.compression or DEFAULT_COMPRESSION
        self._file = uproot.recreate(path, compression=uproot_compression(self.compression))
        self._ntuple: Any = None

    def _record(self, columns: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        members: dict[str, dict[str, Any]] = {}
        for b in self.layout.branches:
            arr = columns[b.name]
            if b.jagged and "." in b.name:
                top, member = b.name.split(".", 1)
                if top not in fields:
                    fields[top] = None  # keep the source's field order
                members.setdefault(top, {})[member] = ak.values_astype(arr, np.dtype(b.dtype))
            elif b.jagged:
                fields[b.name] = ak.values_astype(arr, np.dtype(b.dtype))
            else:
                fields[b.name] = np.asarray(arr).astype(np.dtype(b.dtype), copy=False)
        for top, m in members.items():
            fields[top] = ak.zip(m)
        return fields

    def write(self, values: np.ndarray, passthrough: pa.Table, counts: np.ndarray | None) -> None:
        self.write_columns(awkward_columns(self.layout, values, passthrough, counts))

    def write_columns(self, columns: dict[str, Any]) -> None:
        self._append(ak.zip(self._record(columns), depth_limit=1))

    def _append(self, data: ak.Array) -> None:
        if self._ntuple is None:
            self._ntuple = self._file.mkrntuple(self.name, data)
        else:
            self._ntuple.extend(data)

    def close(self) -> None:
        """Finish the file; when it is bigger than its input (``layout.source_bytes``),
        rewrite it with LZMA level 9 (:data:`~baler_ext.io.root.STRONGEST`), as the TTree
        writer does, so a round trip is not bigger than its input unless even that cannot
        make it so."""
        self._file.close()
        if not rewrite_strongest(self.path, self.layout.source_bytes, self.compression):
            return
        tmp = self.path.with_name(self.path.name + ".lzma")
        again = RNTupleWriter(tmp, self.layout, self.name, STRONGEST)
        ntuple, _ = open_rntuple(self.path, self.name)
        try:
            for chunk in ntuple.iterate(step_size=REWRITE_STEP):
                again._append(chunk)
        finally:
            ntuple.file.close()
        again._file.close()
        tmp.replace(self.path)


@register_format("rntuple")
class RNTupleFormat(FileFormat):
    """A ROOT RNTuple (primitive fields and collections of records)."""

    suffix = ".root"
    extensions = (".root",)

    def recognises(self, path: Path, tree: str | None) -> bool:
        try:
            classes = classnames(path)
        except InputDataError:
            return False
        if tree is not None:
            return classes.get(tree) == RNTUPLE_CLASS
        return RNTUPLE_CLASS in classes.values()

    def open(
        self, path: Path, data: DataConfig, exclude: set[str], strict: bool = True
    ) -> RNTupleReader:
        return RNTupleReader(path, data, exclude, strict)

    def writer(
        self,
        path: Path,
        layout: SourceLayout,
        tree: str | None,
        arrow_schema: pa.Schema | None,
        chunks: int | None = None,
    ) -> FormatWriter:
        return RNTupleWriter(path, layout, tree or layout.tree or "Events")
