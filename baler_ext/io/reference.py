"""Reference sizes that make a compression ratio honest.

A ratio against raw float64 flatters a file stored as float32, and a ratio against raw
bytes ignores that ROOT files are already compressed. :func:`reference_sizes` measures,
for the compressed columns of one input:

* ``stored_dtype_bytes``: their raw size at each column's stored dtype;
* ``root_lzma9_bytes``: the same branches (with their counter) written by uproot as a
  TTree with ``compression = uproot.LZMA(9)``, ROOT's strongest lossless setting;
* ``rounded_lzma9_bytes``: the same, after NanoAOD-style reduction at *equal precision*:
  a column with a relative bound keeps the fewest float32 mantissa bits whose rounding
  stays within it (:func:`baler_ext.precision.rel_to_bits`, rounding as CMSSW's
  ``MiniFloatConverter::reduceMantissaToNbitsRounding``); a column with an absolute bound
  :math:`a` is rounded to multiples of :math:`2a` (error :math:`\\le a`).

Both files are written to a temporary folder and deleted.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from baler_ext.io.layout import BranchInfo
from baler_ext.io.root import RootWriter
from baler_ext.io.source import Source
from baler_ext.precision import rel_to_bits, round_mantissa

LZMA9: dict[str, Any] = {"algorithm": "LZMA", "level": 9}


def reduce_precision(values: np.ndarray, bound: dict[str, float]) -> np.ndarray:
    """``values`` rounded as coarsely as ``bound`` allows, NanoAOD-style (see module doc)."""
    ((kind, b),) = bound.items()
    if kind == "rel":
        return round_mantissa(values, rel_to_bits(b))
    return (np.round(values / (2 * b)) * (2 * b)).astype(np.float32)


def reference_sizes(source: Source, bounds: dict[str, dict[str, float]]) -> dict[str, int]:
    """The reference sizes of ``source``'s compressed columns (see the module docstring).

    Parameters
    ----------
    source
        The opened input.
    bounds
        Column -> ``{"abs": a}`` or ``{"rel": r}``, the bound each column was given.
    """
    lay = source.layout
    cols = lay.compressed
    infos: list[BranchInfo] = [lay.branch(c) for c in cols]
    layout = dataclasses.replace(lay, branches=infos, compression=LZMA9, source_bytes=None)
    jagged = lay.collection is not None
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        lossless = RootWriter(Path(tmp) / "lossless.root", "tree", layout)
        rounded = RootWriter(Path(tmp) / "rounded.root", "tree", layout)
        for raw in source.reader.iterate(cols, source.data.chunk_size):
            exact: dict[str, Any] = {}
            reduced: dict[str, Any] = {}
            for b in infos:
                col, counts = source.reader.column(raw, b.name, jagged)
                low = reduce_precision(col, bounds[b.name]).astype(np.dtype(b.dtype))
                exact[b.name] = ak.unflatten(col, counts) if counts is not None else col
                reduced[b.name] = ak.unflatten(low, counts) if counts is not None else low
            rows += len(col)
            lossless.write_columns(exact)
            rounded.write_columns(reduced)
        lossless.close()
        rounded.close()
        sizes = {
            "root_lzma9_bytes": (Path(tmp) / "lossless.root").stat().st_size,
            "rounded_lzma9_bytes": (Path(tmp) / "rounded.root").stat().st_size,
        }
    sizes["stored_dtype_bytes"] = rows * sum(np.dtype(b.dtype).itemsize for b in infos)
    return sizes
