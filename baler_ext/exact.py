"""Values kept bit-exact: sentinels and few-distinct-value floats, found on training data.

Real files hold floats that are not measurements: a b-tag of ``-1`` for "not computed",
``-999`` defaults, an isolation of exactly ``0``, discrete scores or flags stored as
float. A bounded or learned reconstruction moves them (``-1`` becomes ``-0.9993``),
which breaks every selection that tests for them. :func:`detect_exact` finds them on
the training rows:

* **discrete columns**: at most :data:`DISCRETE_MAX` distinct values; the whole column
  is stored losslessly (it costs a few bits per value under zstd);
* **sentinels**: in other columns, each value repeated *exactly* at least
  :data:`MIN_COUNT` times and in at least :data:`MIN_FRACTION` of the rows (at most
  :data:`MAX_EXACT` per column, the most frequent first). A continuous measurement
  almost never repeats to the last bit, so such spikes are defaults, sentinels or
  physical zeros.

They are stored with the model (``model.json`` ``exact_values``). At compress time a
mode that supports it (``configure(..., exact=...)``) keeps them itself; otherwise
:func:`override_sections` stores, per chunk, the rows holding them (``exact:<column>``
sections, delta-coded row numbers and the value's index) and :func:`apply_overrides`
writes them back after decoding, so they are exact in every mode.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

#: a column with at most this many distinct values on the training rows is discrete
DISCRETE_MAX = 16
#: a repeated value is a sentinel only with at least this many occurrences ...
MIN_COUNT = 20
#: ... and in at least this fraction of the rows
MIN_FRACTION = 0.002
#: at most this many sentinel values per column
MAX_EXACT = 8
SECTION = "exact"


def detect_exact(values: np.ndarray, columns: list[str]) -> dict[str, dict[str, list[float]]]:
    """Discrete columns and sentinel values of ``values`` (rows x ``columns``).

    Returns
    -------
    dict
        ``{"discrete": {column: [values]}, "sentinels": {column: [values]}}``; a column
        is in at most one of them. Non-finite values are ignored.
    """
    discrete: dict[str, list[float]] = {}
    sentinels: dict[str, list[float]] = {}
    n = len(values)
    for j, c in enumerate(columns):
        col = values[:, j]
        col = col[np.isfinite(col)]
        if not len(col):
            continue
        uniq, counts = np.unique(col, return_counts=True)
        if len(uniq) <= DISCRETE_MAX:
            if len(uniq) > 1:  # constant columns are handled by the normaliser
                discrete[c] = [float(v) for v in uniq]
            continue
        spike = (counts >= MIN_COUNT) & (counts >= MIN_FRACTION * n)
        if spike.any():
            order = np.argsort(-counts[spike], kind="stable")[:MAX_EXACT]
            sentinels[c] = [float(v) for v in uniq[spike][order]]
    if discrete:
        log.info(
            "discrete float columns (kept losslessly): %s",
            ", ".join(f"{c} ({len(v)} values)" for c, v in discrete.items()),
        )
    if sentinels:
        log.info(
            "repeated values kept exactly: %s",
            "; ".join(f"{c}: {', '.join(f'{v:g}' for v in vs)}" for c, vs in sentinels.items()),
        )
    return {"discrete": discrete, "sentinels": sentinels}


def sentinel_arrays(
    found: dict[str, dict[str, list[float]]] | None, columns: list[str]
) -> dict[str, np.ndarray]:
    """The sentinel values per compressed column, as float64 arrays."""
    if not found:
        return {}
    return {
        c: np.asarray(v, dtype=np.float64)
        for c, v in found.get("sentinels", {}).items()
        if c in columns
    }


def override_sections(
    values: np.ndarray, columns: list[str], exact: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per column with sentinels: ``exact:<c>/rows`` (delta-coded row numbers) and
    ``exact:<c>/which`` (index into the column's sentinel values)."""
    out: dict[str, np.ndarray] = {}
    for c, vals in exact.items():
        col = values[:, columns.index(c)]
        hit = np.isin(col, vals)
        if not hit.any():
            continue
        rows = np.flatnonzero(hit)
        which = np.zeros(len(rows), dtype=np.uint8)
        for k, v in enumerate(vals):
            which[col[rows] == v] = k
        out[f"{SECTION}:{c}/rows"] = np.diff(rows, prepend=0).astype(np.int64)
        out[f"{SECTION}:{c}/which"] = which
    return out


def apply_overrides(
    values: np.ndarray,
    columns: list[str],
    exact: dict[str, np.ndarray],
    sections: dict[str, np.ndarray],
) -> np.ndarray:
    """Write the sentinel values recorded by :func:`override_sections` back into ``values``."""
    for c, vals in exact.items():
        rows = sections.get(f"{SECTION}:{c}/rows")
        if rows is None:
            continue
        idx = np.cumsum(rows)
        values[idx, columns.index(c)] = vals[sections[f"{SECTION}:{c}/which"].astype(np.int64)]
    return values


def sentinel_damage(
    original: np.ndarray, restored: np.ndarray, columns: list[str], exact: dict[str, np.ndarray]
) -> dict[str, int]:
    """How many sentinel values ``restored`` changed, per column (for latent mode)."""
    out: dict[str, int] = {}
    for c, vals in exact.items():
        j = columns.index(c)
        hit = np.isin(original[:, j], vals)
        bad = int(np.count_nonzero(restored[hit, j] != original[hit, j]))
        if bad:
            out[c] = bad
    return out
