"""One interface over ROOT and Parquet inputs and outputs.

:class:`Source` reads a file chunk by chunk and splits each chunk into the
float matrix the autoencoder compresses (one row per object) and the
passthrough table (everything else, one row per entry, kept losslessly as
Arrow). :class:`OutputWriter` does the reverse.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd
import pyarrow as pa

from baler_ext.config import Config, DataConfig
from baler_ext.errors import InputDataError
from baler_ext.io import parquet as pq_io
from baler_ext.io import root as root_io
from baler_ext.io.layout import SourceLayout, plan_columns

log = logging.getLogger(__name__)

EXTENSIONS = {".root": "root", ".parquet": "parquet", ".pq": "parquet"}


def resolve_inputs(cfg: Config) -> list[Path]:
    """Expand ``data.input`` (paths and globs, relative to the config) into files."""
    files: list[Path] = []
    for item in cfg.data.input:
        pattern = Path(item).expanduser()
        if not pattern.is_absolute():
            pattern = cfg.base_dir / pattern
        # an existing file wins over a glob reading of its name (``jets [1].parquet``)
        if any(ch in item for ch in "*?[") and not pattern.is_file():
            matched = sorted(Path(p) for p in glob.glob(str(pattern)))
            if not matched:
                raise InputDataError(f"data.input: the pattern {pattern} matches no file")
            files.extend(matched)
        else:
            if pattern.is_dir():
                raise InputDataError(f"{pattern} is a folder, not a file; list its files in "
                                     f"data.input, e.g. '{Path(item) / '*.root'}'")
            if not pattern.is_file():
                raise InputDataError(f"{pattern}: file not found; check data.input (relative "
                                     f"paths are relative to the config's folder {cfg.base_dir})")
            files.append(pattern)
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise InputDataError("data.input: two input files share a name; outputs would collide")
    return files


def detect_format(path: Path, fmt: str) -> str:
    """The format of ``path``: ``data.format`` or, when ``auto``, the extension's."""
    if fmt != "auto":
        return fmt
    try:
        return EXTENSIONS[path.suffix.lower()]
    except KeyError:
        raise InputDataError(
            f"{path}: cannot tell the format from '{path.suffix}'; set data.format = "
            "\"root\" or \"parquet\""
        ) from None


@dataclass
class Chunk:
    """One chunk of a source split for compression.

    Attributes
    ----------
    values
        ``(n_rows, n_columns)`` float64 matrix of the compressed columns.
    passthrough
        One row per entry: every kept column that is not compressed.
    counts
        Objects per entry for a jagged collection, else None.
    entries
        Number of entries (events, or rows of a flat table).
    """

    values: np.ndarray
    passthrough: pa.Table
    counts: np.ndarray | None
    entries: int


class Source:
    """A ROOT TTree or Parquet file, described and read in chunks."""

    def __init__(self, path: Path, data: DataConfig) -> None:
        self.path = path
        self.data = data
        self.format = detect_format(path, data.format)
        self.arrow_schema: pa.Schema | None = None
        exclude_names = self._plain_names(data.exclude)
        if self.format == "root":
            tree, self.tree_name = root_io.open_tree(path, data.tree)
            branches = root_io.inspect_tree(tree, path, exclude_names)
            self.num_entries = int(tree.num_entries)
        else:
            pf = pq_io.open_parquet(path)
            branches = pq_io.inspect_parquet(pf, path, exclude_names)
            self.tree_name = None
            self.arrow_schema = pf.schema_arrow
            self.num_entries = int(pf.metadata.num_rows)
        self.layout: SourceLayout = plan_columns(
            branches, data, str(path), self.format, self.tree_name
        )
        self.layout.file_name = path.name
        if self.arrow_schema is not None:
            kept = [self.arrow_schema.field(b.name) for b in self.layout.branches]
            self.arrow_schema = pa.schema(kept, metadata=self.arrow_schema.metadata)

    @staticmethod
    def _plain_names(patterns: list[str]) -> set[str]:
        return {p for p in patterns if not any(ch in p for ch in "*?[")}

    @property
    def columns(self) -> list[str]:
        return self.layout.compressed

    def _raw_chunks(self, names: list[str]) -> Iterator[Any]:
        step = self.data.chunk_size
        if self.format == "root":
            yield from root_io.iterate_root(self.path, self.tree_name, names, step)
        else:
            yield from pq_io.iterate_parquet(self.path, names, step)

    def _extract(self, raw: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """The compressed columns of one raw chunk as float64, and the counts."""
        cols = self.layout.compressed
        counts = None
        mats = []
        for name in cols:
            if self.format == "root":
                arr = raw[name]
                if self.layout.collection is not None:
                    c = ak.to_numpy(ak.num(arr, axis=1)).astype(np.int64)
                    arr = ak.flatten(arr, axis=1)
                else:
                    c = None
                col = ak.to_numpy(arr)
            else:
                chunked = raw.column(name).combine_chunks()
                if self.layout.collection is not None:
                    offsets = chunked.offsets.to_numpy()
                    c = np.diff(offsets).astype(np.int64)
                    col = chunked.flatten().to_numpy(zero_copy_only=False)
                else:
                    c = None
                    col = chunked.to_numpy(zero_copy_only=False)
            if c is not None:
                if counts is None:
                    counts = c
                elif not np.array_equal(counts, c):
                    raise InputDataError(
                        f"{self.path}: column '{name}' has other list lengths than '{cols[0]}'; "
                        "compress columns of one collection together"
                    )
            mats.append(np.asarray(col, dtype=np.float64))
        values = np.column_stack(mats) if mats else np.empty((0, 0))
        return values, counts

    def _passthrough(self, raw: Any) -> pa.Table:
        names = self.layout.passthrough
        if self.format == "root":
            if not names:
                return pa.table({})
            return ak.to_arrow_table(raw[names], extensionarray=True)
        return raw.select(names)

    def _check_finite(self, values: np.ndarray, counts: np.ndarray | None,
                      passthrough: pa.Table, first_row: int) -> tuple[np.ndarray, pa.Table, int]:
        finite = np.isfinite(values)
        if finite.all():
            return values, passthrough, 0
        bad_rows = ~finite.all(axis=1)
        col = self.layout.compressed[int(np.argmin(finite.all(axis=0)))]
        n_bad = int(bad_rows.sum())
        if self.data.nan_policy == "error":
            raise InputDataError(
                f"{self.path}: {n_bad} rows hold NaN or inf (first in column '{col}', row "
                f"{first_row + int(np.argmax(bad_rows))}); fix the input or set "
                "data.nan_policy = \"drop\""
            )
        if counts is not None:
            raise InputDataError(
                f"{self.path}: {n_bad} objects hold NaN or inf in '{col}'; data.nan_policy = "
                "\"drop\" works on flat tables only (dropping objects would misalign the "
                "collection's other branches); fix the input"
            )
        keep = ~bad_rows
        table = passthrough.filter(pa.array(keep)) if passthrough.num_columns else passthrough
        return values[keep], table, n_bad

    def chunks(self) -> Iterator[Chunk]:
        """Yield the file chunk by chunk, split for compression."""
        names = [b.name for b in self.layout.branches]
        first = 0
        dropped = 0
        for raw in self._raw_chunks(names):
            entries = len(raw) if self.format == "root" else raw.num_rows
            values, counts = self._extract(raw)
            passthrough = self._passthrough(raw)
            values, passthrough, n_bad = self._check_finite(values, counts, passthrough, first)
            dropped += n_bad
            first += entries
            yield Chunk(values, passthrough, counts, entries - n_bad)
        if dropped:
            log.warning("%s: dropped %d rows holding NaN or inf (data.nan_policy = \"drop\")",
                        self.path, dropped)

    def read_values(self) -> np.ndarray:
        """All compressed columns of the file as one float64 matrix (for training)."""
        parts = []
        first = 0
        for raw in self._raw_chunks(self.layout.compressed):
            values, counts = self._extract(raw)
            values, _, _ = self._check_finite(values, counts, pa.table({}), first)
            first += len(raw) if self.format == "root" else raw.num_rows
            parts.append(values)
        if not parts:
            return np.empty((0, len(self.layout.compressed)))
        return np.concatenate(parts)


def open_sources(cfg: Config) -> list[Source]:
    """Open every input file; all must expose the same compressed columns."""
    sources = [Source(p, cfg.data) for p in resolve_inputs(cfg)]
    first = sources[0]
    for s in sources[1:]:
        if s.columns != first.columns:
            raise InputDataError(
                f"{s.path}: its compressed columns differ from {first.path}'s; all inputs of a "
                "project must share the same columns"
            )
    return sources


def _no_options(arr: ak.Array, name: str) -> ak.Array:
    if "?" in str(arr.type):
        if ak.any(ak.is_none(arr, axis=-1)):
            raise InputDataError(f"column '{name}' holds missing values, which ROOT cannot store")
        arr = ak.drop_none(arr)
    return arr


class OutputWriter:
    """Write restored chunks in the source's layout, as ROOT or Parquet."""

    def __init__(self, path: Path, layout: SourceLayout, fmt: str, tree: str | None,
                 arrow_schema: pa.Schema | None) -> None:
        self.layout = layout
        self.format = layout.format if fmt == "same" else fmt
        self._same_format = self.format == layout.format
        if self.format == "root":
            name = tree or layout.tree or "tree"
            self._writer: Any = root_io.RootWriter(path, name, layout)
        else:
            schema = arrow_schema if self._same_format else None
            self._writer = pq_io.ParquetWriter(path, schema)

    def write(self, values: np.ndarray, passthrough: pa.Table, counts: np.ndarray | None) -> None:
        """Write one chunk: restored ``values`` plus the passthrough table."""
        lay = self.layout
        if self.format == "root":
            columns: dict[str, Any] = {}
            if passthrough.num_columns:
                rec = ak.from_arrow(passthrough)
                for name in passthrough.column_names:
                    columns[name] = _no_options(rec[name], name)
            for i, name in enumerate(lay.compressed):
                col = values[:, i]
                columns[name] = ak.unflatten(col, counts) if counts is not None else col
            self._writer.write(columns)
            return
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

    def close(self) -> None:
        self._writer.close()


def _cast_to_layout(table: pa.Table, layout: SourceLayout) -> pa.Table:
    """Cast the compressed columns to their source dtype when changing format."""
    fields = []
    for f in table.schema:
        if f.name in layout.compressed:
            value_t = pa.from_numpy_dtype(np.dtype(layout.branch(f.name).dtype))
            t = pa.list_(value_t) if layout.collection is not None else value_t
            fields.append(pa.field(f.name, t))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields))


def read_columns(path: Path, fmt: str, tree: str | None, columns: list[str]) -> pd.DataFrame:
    """Read ``columns`` of a file as a DataFrame, one row per object.

    Jagged columns (all of one collection) are flattened and an ``entry`` column
    gives each object's entry number; flat per-entry columns asked for together
    with jagged ones are broadcast to the objects. Used by the evaluate and
    analyse stages, identically on the original and the decompressed file.
    """
    fmt = detect_format(path, fmt)
    if fmt == "root":
        t, _ = root_io.open_tree(path, tree)
        missing = [c for c in columns if c not in t.keys()]
        arrays = t.arrays([c for c in columns if c not in missing], library="ak") if len(
            missing) < len(columns) else None
    else:
        pf = pq_io.open_parquet(path)
        names = pf.schema_arrow.names
        missing = [c for c in columns if c not in names]
        arrays = (ak.from_arrow(pf.read(columns=[c for c in columns if c not in missing]))
                  if len(missing) < len(columns) else None)
    if missing:
        from baler_ext.registry import suggest

        known = t.keys() if fmt == "root" else names
        raise InputDataError(f"{path}: no column '{missing[0]}'{suggest(missing[0], known)}")
    if arrays is None:
        return pd.DataFrame()
    jagged = [c for c in columns if arrays[c].ndim > 1]
    out: dict[str, np.ndarray] = {}
    if jagged:
        counts = ak.to_numpy(ak.num(arrays[jagged[0]], axis=1))
        out["entry"] = np.repeat(np.arange(len(counts)), counts)
    for c in columns:
        arr = ak.drop_none(arrays[c]) if "?" in str(arrays[c].type) else arrays[c]
        if c in jagged:
            out[c] = ak.to_numpy(ak.flatten(arr, axis=1))
        elif jagged:
            out[c] = np.repeat(ak.to_numpy(arr), counts)
        else:
            out[c] = ak.to_numpy(arr)
    return pd.DataFrame(out)
