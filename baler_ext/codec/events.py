"""Which rows start an event: the learned probability model's event context.

Objects of one event are consecutive rows: a jagged collection's counts give the events
directly; a flat table gives them through an integer event column (runs of one value).
The source of the markers is written to the container header so that decompress rebuilds
exactly the markers compress used.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from baler_ext.errors import ContainerError


def from_counts(counts: np.ndarray) -> np.ndarray:
    """Event starts of the flattened objects of a jagged collection."""
    counts = np.asarray(counts, np.int64)
    first = np.zeros(int(counts.sum()), bool)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]
    first[starts] = True
    return first


def from_ids(ids: np.ndarray) -> np.ndarray:
    """Event starts of rows whose event ids are ``ids`` (a new run starts an event)."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return np.zeros(0, bool)
    return np.concatenate([[True], ids[1:] != ids[:-1]])


def source_of(counts: np.ndarray | None, passthrough: pa.Table, event_column: str) -> str | None:
    """``"counts"``, ``"column:<name>"`` or None (no events) for a chunk at compress time."""
    if counts is not None:
        return "counts"
    if event_column in passthrough.column_names and pa.types.is_integer(
        passthrough.schema.field(event_column).type
    ):
        return f"column:{event_column}"
    return None


def row_integers(
    counts: np.ndarray | None, passthrough: pa.Table, n_rows: int
) -> dict[str, np.ndarray]:
    """The integer columns stored losslessly beside the floats, one value per row:
    per-row columns of a flat table, or a jagged collection's per-event columns repeated
    for each object. The learned probability model may use them as free context."""
    out: dict[str, np.ndarray] = {}
    for name in passthrough.column_names:
        field = passthrough.schema.field(name)
        if not (pa.types.is_integer(field.type) or pa.types.is_boolean(field.type)):
            continue
        col = passthrough.column(name)
        if col.null_count:
            continue
        v = col.to_numpy(zero_copy_only=False).astype(np.int64)
        if counts is not None and len(v) == len(counts):
            v = np.repeat(v, np.asarray(counts, np.int64))
        if len(v) == n_rows:
            out[name] = v
    return out


def event_starts(
    source: str | None, counts: np.ndarray | None, passthrough: pa.Table, n_rows: int
) -> np.ndarray | None:
    """The markers of ``source`` for a chunk (compress and decompress alike)."""
    if source is None:
        return None
    if source == "counts":
        if counts is None:
            raise ContainerError(
                "the file's event markers come from counts it does not have; the file is damaged"
            )
        first = from_counts(counts)
    elif source.startswith("column:"):
        name = source.split(":", 1)[1]
        if name not in passthrough.column_names:
            raise ContainerError(
                f"the event column '{name}' is missing from a chunk; the file is damaged"
            )
        first = from_ids(passthrough.column(name).to_numpy())
    else:
        raise ContainerError(f"unknown event source {source!r}; upgrade baler_ext")
    if first.size != n_rows:
        raise ContainerError("a chunk's event markers do not match its rows; the file is damaged")
    return first
