"""One interface over every registered input and output format.

:class:`Source` reads a file chunk by chunk through its format's reader
(:mod:`baler_ext.io.formats`) and splits each chunk into the float matrix the
autoencoder compresses (one row per object) and the passthrough table (everything
else, one row per entry, kept losslessly as Arrow). :class:`OutputWriter` does the
reverse through the output format's writer.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd
import pyarrow as pa

from baler_ext.config import Config, DataConfig
from baler_ext.errors import InputDataError
from baler_ext.io.formats import FormatWriter, detect_format, get_format
from baler_ext.io.layout import GroupData, GroupPlan, SourceLayout, plan_columns, plan_groups

log = logging.getLogger(__name__)

__all__ = [
    "Chunk",
    "OutputWriter",
    "Source",
    "detect_format",
    "file_groups",
    "open_sources",
    "read_columns",
    "resolve_inputs",
]


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
                raise InputDataError(
                    f"{pattern} is a folder, not a file; list its files in "
                    f"data.input, e.g. '{Path(item) / '*.root'}'"
                )
            if not pattern.is_file():
                raise InputDataError(
                    f"{pattern}: file not found; check data.input (relative "
                    f"paths are relative to the config's folder {cfg.base_dir})"
                )
            files.append(pattern)
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise InputDataError("data.input: two input files share a name; outputs would collide")
    return files


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
    """An input file of any registered format, described and read in chunks."""

    def __init__(self, path: Path, data: DataConfig, whole: bool = False) -> None:
        self.path = path
        self.data = data
        self.format = detect_format(path, data.format, data.tree)
        self.reader = get_format(self.format).open(path, data, self._plain_names(data.exclude))
        self.tree_name = self.reader.tree
        self.num_entries = self.reader.num_entries
        if whole:  # describes a whole-file project's layout; its columns are never read
            self.layout = self._whole_layout(data)
        else:
            self.layout = plan_columns(
                self.reader.branches, data, str(path), self.format, self.tree_name
            )
        if isinstance(data, GroupData):  # one structure group of a whole-file project
            keep = set(data.branches)
            self.layout.branches = [b for b in self.layout.branches if b.name in keep]
        self.layout.file_name = path.name
        self.layout.compression = self.reader.compression
        self.layout.source_bytes = path.stat().st_size
        self.arrow_schema: pa.Schema | None = None
        if self.reader.arrow_schema is not None:
            schema = self.reader.arrow_schema
            kept = [schema.field(b.name) for b in self.layout.branches]
            self.arrow_schema = pa.schema(kept, metadata=schema.metadata)

    def _whole_layout(self, data: DataConfig) -> SourceLayout:
        keep = set(data.branches) if isinstance(data, GroupData) else None
        branches = [b for b in self.reader.branches if keep is None or b.name in keep]
        return SourceLayout(
            format=self.format,
            file_name="",
            tree=self.tree_name,
            branches=branches,
            compressed=list(data.columns),
            collection=None,
            dropped=[
                b.name for b in self.reader.branches if keep is not None and b.name not in keep
            ],
        )

    @staticmethod
    def _plain_names(patterns: list[str]) -> set[str]:
        return {p for p in patterns if not any(ch in p for ch in "*?[")}

    @property
    def columns(self) -> list[str]:
        return self.layout.compressed

    def _raw_chunks(self, names: list[str]) -> Iterator[Any]:
        yield from self.reader.iterate(names, self.data.chunk_size)

    def _extract(self, raw: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """The compressed columns of one raw chunk as float64, and the counts."""
        cols = self.layout.compressed
        jagged = self.layout.collection is not None
        counts = None
        mats = []
        for name in cols:
            col, c = self.reader.column(raw, name, jagged)
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
        return self.reader.passthrough(raw, self.layout.passthrough)

    def _check_finite(
        self, values: np.ndarray, counts: np.ndarray | None, passthrough: pa.Table, first_row: int
    ) -> tuple[np.ndarray, pa.Table, int]:
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
                'data.nan_policy = "drop"'
            )
        if counts is not None:
            raise InputDataError(
                f"{self.path}: {n_bad} objects hold NaN or inf in '{col}'; data.nan_policy = "
                '"drop" works on flat tables only (dropping objects would misalign the '
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
            entries = self.reader.entries(raw)
            values, counts = self._extract(raw)
            passthrough = self._passthrough(raw)
            values, passthrough, n_bad = self._check_finite(values, counts, passthrough, first)
            dropped += n_bad
            first += entries
            yield Chunk(values, passthrough, counts, entries - n_bad)
        if dropped:
            log.warning(
                '%s: dropped %d rows holding NaN or inf (data.nan_policy = "drop")',
                self.path,
                dropped,
            )

    def read_values(self, check_finite: bool = True) -> np.ndarray:
        """All compressed columns of the file as one float64 matrix (for training);
        ``check_finite=False``: NaN and inf kept, whatever ``data.nan_policy`` says."""
        parts = []
        first = 0
        for raw in self._raw_chunks(self.layout.compressed):
            values, counts = self._extract(raw)
            if check_finite:
                values, _, _ = self._check_finite(values, counts, pa.table({}), first)
            first += self.reader.entries(raw)
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


def file_groups(cfg: Config, lossless: Collection[str] = ()) -> list[GroupPlan] | None:
    """The structure groups of a whole-file project (planned on its first input), or
    None when its selection is one structure (a single-group project); ``lossless``:
    groups carried losslessly (:func:`~baler_ext.io.layout.plan_groups`)."""
    path = resolve_inputs(cfg)[0]
    data = cfg.data
    fmt = detect_format(path, data.format, data.tree)
    plain = {p for p in data.exclude if not any(ch in p for ch in "*?[")}
    reader = get_format(fmt).open(path, data, plain)
    return plan_groups(reader.branches, data, str(path), lossless)


def whole_layout(path: Path, data: DataConfig, plans: list[GroupPlan]) -> Source:
    """``path`` opened whole (every kept branch, every group's compressed columns): the
    layout and Arrow schema a whole-file container restores."""
    columns = [c for p in plans for c in p.columns]
    kept = [b for p in plans for b in p.branches]
    return Source(path, GroupData(**{**vars(data), "columns": columns}, branches=kept), whole=True)


class OutputWriter:
    """Write restored chunks in the source's layout, in the source's or another format."""

    def __init__(
        self,
        path: Path,
        layout: SourceLayout,
        fmt: str,
        tree: str | None,
        arrow_schema: pa.Schema | None,
        chunks: int | None = None,
    ) -> None:
        self.layout = layout
        self.format = layout.format if fmt == "same" else fmt
        schema = arrow_schema if self.format == layout.format else None
        self._writer: FormatWriter = get_format(self.format).writer(
            path, layout, tree, schema, chunks
        )

    def write(self, values: np.ndarray, passthrough: pa.Table, counts: np.ndarray | None) -> None:
        """Write one chunk: restored ``values`` plus the passthrough table."""
        self._writer.write(values, passthrough, counts)

    def write_columns(self, columns: dict[str, Any]) -> None:
        """Write one chunk given as every branch by name (a whole-file container's
        groups restored together)."""
        self._writer.write_columns(columns)

    def close(self) -> None:
        self._writer.close()


def read_columns(
    path: Path, fmt: str, tree: str | None, columns: list[str], entry_column: str | None = None
) -> pd.DataFrame:
    """Read ``columns`` of a file as a DataFrame, one row per object.

    Jagged columns (all of one collection) are flattened and an ``entry`` column
    gives each object's entry number; flat per-entry columns asked for together
    with jagged ones are broadcast to the objects. Used by the evaluate and
    analyse stages, identically on the original and the decompressed file.

    ``entry_column`` names a column (e.g. the analysis' event column) that, when the
    file lacks it and the columns are jagged, is the entry number: in a jagged file
    every entry is an event.
    """
    fmt = detect_format(path, fmt, tree)
    reader = get_format(fmt).open(path, DataConfig(tree=tree), set(), strict=False)
    known = [b.name for b in reader.branches]
    from_entries = (
        entry_column is not None and entry_column in columns and entry_column not in known
    )
    if from_entries:
        columns = [c for c in columns if c != entry_column]
    missing = [c for c in columns if c not in known]
    if missing:
        from baler_ext.registry import suggest

        raise InputDataError(f"{path}: no column '{missing[0]}'{suggest(missing[0], known)}")
    if not columns:
        return pd.DataFrame()
    arrays = reader.read(columns)
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
    if from_entries:
        if not jagged:
            raise InputDataError(
                f"{path}: no column '{entry_column}', and the file is flat (one row per "
                "object), so its rows are not events; name the event column"
            )
        assert entry_column is not None
        out[entry_column] = out["entry"]
    return pd.DataFrame(out)
