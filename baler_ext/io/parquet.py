"""Parquet reading and writing through pyarrow, in record batches (format ``parquet``).

Decompressed Parquet files use the input's codec (the most common column codec of its
first row group; zstd when the input is uncompressed), so a round trip is not bigger than
its input for that reason.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from baler_ext.config import DataConfig
from baler_ext.errors import InputDataError
from baler_ext.io.formats import FileFormat, FormatReader, FormatWriter, register_format
from baler_ext.io.layout import LIST_COLLECTION, BranchInfo, SourceLayout

#: ``arrow_schema`` header value of a file whose source schema is the one its layout
#: implies (:func:`layout_schema`; format 1.4): the schema is rebuilt, not stored
SCHEMA_FROM_LAYOUT = "layout"
#: codec of a decompressed Parquet file whose input was uncompressed or not Parquet
DEFAULT_CODEC = "zstd"

log = logging.getLogger(__name__)


def open_parquet(path: Path) -> pq.ParquetFile:
    """Open a Parquet file, turning pyarrow's errors into a one-line user error."""
    if not path.is_file():
        raise InputDataError(f"{path}: file not found; check data.input")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputDataError(
            f"{path}: not a readable Parquet file ({exc}); check data.input"
        ) from None


def inspect_parquet(
    pf: pq.ParquetFile, path: Path, exclude: set[str], strict: bool = True
) -> list[BranchInfo]:
    """Describe every column: flat numeric/bool columns and lists of them."""
    infos: list[BranchInfo] = []
    for f in pf.schema_arrow:
        t = f.type
        jagged = pa.types.is_list(t) or pa.types.is_large_list(t)
        value_t = t.value_type if jagged else t
        if not (
            pa.types.is_floating(value_t)
            or pa.types.is_integer(value_t)
            or pa.types.is_boolean(value_t)
        ):
            if f.name in exclude or not strict:
                continue
            raise InputDataError(
                f"{path}: column '{f.name}' has type {t}, which baler_ext cannot read; "
                "add it to data.exclude to leave it out of the output"
            )
        dtype = "bool" if pa.types.is_boolean(value_t) else value_t.to_pandas_dtype().__name__
        infos.append(
            BranchInfo(
                name=f.name, dtype=dtype, jagged=jagged, counter=LIST_COLLECTION if jagged else None
            )
        )
    return infos


def iterate_parquet(path: Path, columns: list[str], batch_size: int) -> Iterator[pa.Table]:
    """Yield tables of ``columns``, ``batch_size`` rows at a time."""
    pf = open_parquet(path)
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        yield pa.Table.from_batches([batch])


def codec_of(pf: pq.ParquetFile) -> dict[str, Any] | None:
    """The most common column codec of the first row group, or None when uncompressed."""
    if pf.metadata.num_row_groups == 0:
        return None
    rg = pf.metadata.row_group(0)
    codecs = [rg.column(i).compression.lower() for i in range(rg.num_columns)]
    codecs = [c for c in codecs if c != "uncompressed"]
    return {"codec": max(set(codecs), key=codecs.count)} if codecs else None


class ParquetReader(FormatReader):
    """A Parquet file opened for reading in record batches."""

    def __init__(
        self, path: Path, data: DataConfig, exclude: set[str], strict: bool = True
    ) -> None:
        self.path = path
        pf = open_parquet(path)
        self.branches = inspect_parquet(pf, path, exclude, strict)
        self.num_entries = int(pf.metadata.num_rows)
        self.arrow_schema = pf.schema_arrow
        self.compression = codec_of(pf)

    def iterate(self, names: list[str], step: int) -> Iterator[Any]:
        yield from iterate_parquet(self.path, names, step)

    def entries(self, raw: Any) -> int:
        return int(raw.num_rows)

    def column(self, raw: Any, name: str, jagged: bool) -> tuple[np.ndarray, np.ndarray | None]:
        chunked = raw.column(name).combine_chunks()
        if jagged:
            counts = np.diff(chunked.offsets.to_numpy()).astype(np.int64)
            return chunked.flatten().to_numpy(zero_copy_only=False), counts
        return chunked.to_numpy(zero_copy_only=False), None

    def passthrough(self, raw: Any, names: list[str]) -> pa.Table:
        return raw.select(names)

    def read(self, names: list[str]) -> ak.Array:
        return ak.from_arrow(open_parquet(self.path).read(columns=names))


class LayoutParquetWriter(FormatWriter):
    """Restored chunks as Parquet: the source's schema when it was Parquet, else the
    layout's dtypes."""

    def __init__(self, path: Path, layout: SourceLayout, arrow_schema: pa.Schema | None) -> None:
        self.layout = layout
        self._same_format = arrow_schema is not None
        codec = (layout.compression or {}).get("codec", DEFAULT_CODEC)
        self._writer = ParquetWriter(path, arrow_schema, compression=codec)

    def write(self, values: np.ndarray, passthrough: pa.Table, counts: np.ndarray | None) -> None:
        lay = self.layout
        arrays: dict[str, Any] = {}
        pt = passthrough
        if not self._same_format and pt.num_columns:
            pt = ak.to_arrow_table(ak.from_arrow(pt), extensionarray=False)
        for name in pt.column_names:
            arrays[name] = pt.column(name)
        for i, name in enumerate(lay.compressed):
            col = pa.array(values[:, i])
            if counts is not None:
                offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
                col = pa.ListArray.from_arrays(pa.array(offsets), col)
            arrays[name] = col
        order = [b.name for b in lay.branches]
        table = pa.table({n: arrays[n] for n in order if n in arrays})
        if not self._same_format:
            table = _cast_to_layout(table, lay)
        self._writer.write(table)

    def write_columns(self, columns: dict[str, Any]) -> None:
        arrays: dict[str, Any] = {}
        for b in self.layout.branches:
            col = columns[b.name]
            if isinstance(col, ak.Array):
                col = ak.to_packed(ak.values_astype(col, np.dtype(b.dtype)))
                arrays[b.name] = ak.to_arrow(col, extensionarray=False)
            else:
                arrays[b.name] = pa.array(np.ascontiguousarray(col, dtype=np.dtype(b.dtype)))
        self._writer.write(pa.table(arrays))

    def close(self) -> None:
        self._writer.close()


def layout_field(b: BranchInfo) -> pa.Field:
    """The Arrow field a branch's dtype implies (a list of it when jagged)."""
    value_t = pa.from_numpy_dtype(np.dtype(b.dtype))
    return pa.field(b.name, pa.list_(value_t) if b.jagged else value_t)


def layout_schema(layout: SourceLayout) -> pa.Schema:
    """The Arrow schema ``layout``'s branches imply (no metadata)."""
    return pa.schema([layout_field(b) for b in layout.branches])


def schema_to_header(schema: pa.Schema | None, layout: SourceLayout) -> str | None:
    """The header's ``arrow_schema``: None without one, :data:`SCHEMA_FROM_LAYOUT` when
    ``schema`` serialises to exactly the bytes of :func:`layout_schema` (the 600 B of a
    flat table's schema are then not stored), else the base64 of its IPC bytes."""
    if schema is None:
        return None
    data = schema.serialize().to_pybytes()
    if data == layout_schema(layout).serialize().to_pybytes():
        return SCHEMA_FROM_LAYOUT
    return base64.b64encode(data).decode()


def schema_from_header(value: Any, layout: SourceLayout) -> pa.Schema | None:
    """The source's Arrow schema from the header's ``arrow_schema`` (the inverse of
    :func:`schema_to_header`; files before 1.4 always hold the base64 form)."""
    if not value:
        return None
    if value == SCHEMA_FROM_LAYOUT:
        return layout_schema(layout)
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(value, validate=True)))


def _cast_to_layout(table: pa.Table, layout: SourceLayout) -> pa.Table:
    """Cast the compressed columns to their source dtype when changing format."""
    fields = [
        layout_field(layout.branch(f.name)) if f.name in layout.compressed else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


@register_format("parquet")
class ParquetFormat(FileFormat):
    """A Parquet file: flat numeric/bool columns and lists of them."""

    suffix = ".parquet"
    extensions = (".parquet", ".pq")

    def open(
        self, path: Path, data: DataConfig, exclude: set[str], strict: bool = True
    ) -> ParquetReader:
        return ParquetReader(path, data, exclude, strict)

    def writer(
        self,
        path: Path,
        layout: SourceLayout,
        tree: str | None,
        arrow_schema: pa.Schema | None,
        chunks: int | None = None,
    ) -> FormatWriter:
        return LayoutParquetWriter(path, layout, arrow_schema)


class ParquetWriter:
    """Write chunks to a Parquet file with a fixed schema (the source's, when known)."""

    def __init__(self, path: Path, schema: pa.Schema | None, compression: str = "zstd") -> None:
        self.path = path
        self.schema = schema
        self.compression = compression
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.schema is not None:
            table = table.select(self.schema.names).cast(self.schema)
        if self._writer is None:
            self.schema = table.schema
            self._writer = pq.ParquetWriter(self.path, table.schema, compression=self.compression)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is None:  # no chunk at all: still write a valid empty file
            if self.schema is None:
                raise InputDataError(f"{self.path}: nothing to write")
            self._writer = pq.ParquetWriter(self.path, self.schema, compression=self.compression)
        self._writer.close()
