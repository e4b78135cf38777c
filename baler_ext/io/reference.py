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

Both files are written to a temporary folder and deleted. LZMA-9 writes a few MB/s, so
:func:`cached_reference_sizes` keeps each result in ``$XDG_CACHE_HOME/baler_ext``
(``~/.cache/baler_ext``), keyed by the input file's path, size and modification time,
its columns, chunk size and bounds: ``--mode info`` measures an input once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
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
#: version of the cached entries: bump when the reference files change
CACHE_VERSION = 1

log = logging.getLogger(__name__)


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


def cache_dir() -> Path:
    """Where reference sizes are cached (``$XDG_CACHE_HOME/baler_ext``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "baler_ext" / "references"


def cached_reference_sizes(source: Source, bounds: dict[str, dict[str, float]]) -> dict[str, int]:
    """:func:`reference_sizes`, measured once per input file state and settings.

    The key hashes the input's resolved path, size and ``st_mtime_ns``, the compressed
    columns, the chunk size and the bounds, so a changed file or bound measures again. A
    cache that cannot be read or written is ignored (the sizes are measured).
    """
    st = source.path.stat()
    key = json.dumps(
        [
            CACHE_VERSION,
            str(source.path.resolve()),
            st.st_size,
            st.st_mtime_ns,
            list(source.layout.compressed),
            source.data.chunk_size,
            {c: bounds[c] for c in sorted(bounds)},
        ],
        sort_keys=True,
    )
    path = cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    try:
        entry = json.loads(path.read_text())
        if entry.get("key") == key:
            return {k: int(v) for k, v in entry["sizes"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    log.info("%s: measuring the LZMA-9 reference sizes (once; cached)", source.path.name)
    sizes = reference_sizes(source, bounds)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        tmp.write_text(json.dumps({"key": key, "sizes": sizes}))
        tmp.replace(path)
    except OSError as exc:
        log.debug("reference-size cache not written: %s", exc)
    return sizes
