"""The LZMA-9 reference sizes of ``info`` are measured once per input state and bounds."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from baler_ext.config import DataConfig
from baler_ext.io import reference
from baler_ext.io.source import Source


def test_reference_sizes_are_cached_per_file_state_and_bound(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": rng.normal(size=2000), "b": rng.normal(size=2000)}), path)
    calls = []
    measure = reference.reference_sizes

    def counted(source, bounds):
        calls.append(dict(bounds))
        return measure(source, bounds)

    monkeypatch.setattr(reference, "reference_sizes", counted)
    bounds = {"a": {"rel": 1e-3}, "b": {"abs": 1e-2}}
    first = reference.cached_reference_sizes(Source(path, DataConfig(input=[str(path)])), bounds)
    again = reference.cached_reference_sizes(Source(path, DataConfig(input=[str(path)])), bounds)
    assert again == first and len(calls) == 1
    assert first["rounded_lzma9_bytes"] < first["root_lzma9_bytes"]
    # another bound, or the file changed: measured again
    other = {**bounds, "a": {"rel": 1e-2}}
    reference.cached_reference_sizes(Source(path, DataConfig(input=[str(path)])), other)
    assert len(calls) == 2
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    reference.cached_reference_sizes(Source(path, DataConfig(input=[str(path)])), bounds)
    assert len(calls) == 3
    # a damaged cache entry is ignored and rewritten
    for f in reference.cache_dir().glob("*.json"):
        f.write_text("{not json")
    assert (
        reference.cached_reference_sizes(Source(path, DataConfig(input=[str(path)])), bounds)
        == first
    )
    assert len(calls) == 4
