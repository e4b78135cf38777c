"""Parquet reading and writing through pyarrow, in record batches."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from baler_ext.errors import InputDataError
from baler_ext.io.layout import LIST_COLLECTION, BranchInfo

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


def inspect_parquet(pf: pq.ParquetFile, path: Path, exclude: set[str]) -> list[BranchInfo]:
    """Describe every column: flat numeric/bool columns and lists of them."""
    infos: list[BranchInfo] = []
    for f in pf.schema_arrow:
        t = f.type
        jagged = pa.types.is_list(t) or pa.types.is_large_list(t)
        value_t = t.value_type if jagged else t
        if not (pa.types.is_floating(value_t) or pa.types.is_integer(value_t)
                or pa.types.is_boolean(value_t)):
            if f.name in exclude:
                continue
            raise InputDataError(
                f"{path}: column '{f.name}' has type {t}, which baler_ext cannot read; "
                "add it to data.exclude to leave it out of the output"
            )
        dtype = "bool" if pa.types.is_boolean(value_t) else value_t.to_pandas_dtype().__name__
        infos.append(BranchInfo(name=f.name, dtype=dtype, jagged=jagged,
                                counter=LIST_COLLECTION if jagged else None))
    return infos


def iterate_parquet(path: Path, columns: list[str], batch_size: int) -> Iterator[pa.Table]:
    """Yield tables of ``columns``, ``batch_size`` rows at a time."""
    pf = open_parquet(path)
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        yield pa.Table.from_batches([batch])


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
