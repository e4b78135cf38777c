"""The format registry: detection, RNTuple and TTree readers/writers, output compression.

Small files are written here with uproot (real ROOT files, no mocks); the shared RNTuple
file is used where present.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from baler_ext.config import DataConfig
from baler_ext.errors import ConfigError, InputDataError
from baler_ext.io.formats import detect_format, format_names, get_format
from baler_ext.io.layout import structure_groups
from baler_ext.io.source import OutputWriter, Source, read_columns


def events(n: int = 300, seed: int = 1) -> ak.Array:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, n)
    total = int(counts.sum())
    return ak.Array(
        {
            "event": np.arange(n, dtype=np.int64),
            "Jet": ak.unflatten(
                ak.zip(
                    {
                        "pt": rng.exponential(50, total).astype(np.float32) + 20,
                        "eta": rng.uniform(-2.5, 2.5, total).astype(np.float32),
                        "id": rng.integers(0, 3, total).astype(np.int32),
                    }
                ),
                counts,
            ),
        }
    )


@pytest.fixture
def rntuple_file(tmp_path: Path) -> Path:
    path = tmp_path / "small_rntuple.root"
    with uproot.recreate(path) as f:
        f.mkrntuple("Events", events())
    return path


@pytest.fixture
def ttree_file(tmp_path: Path) -> Path:
    """A NanoAOD-like TTree (uint32-free: uproot writes int32 counters) with LZMA(3)."""
    ev = events()
    path = tmp_path / "small_tree.root"
    data = {"event": ev["event"], "MET_pt": np.linspace(1, 2, len(ev)), "Jet": ev["Jet"]}
    with uproot.recreate(path, compression=uproot.LZMA(3)) as f:
        # mktree: assigning a dict (f["Events"] = ...) makes an RNTuple in uproot >= 5.7
        f.mktree(
            "Events",
            {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()},
        )
        f["Events"].extend(data)
    return path


def test_registry_lists_every_format_and_rejects_unknown_names():
    assert {"root", "rntuple", "parquet"} <= set(format_names())
    with pytest.raises(ConfigError, match="did you mean 'rntuple'"):
        get_format("rntupel")


def test_format_names_do_not_depend_on_which_reader_was_imported_first():
    """The config reference (docs/config.md) lists the formats through format_names: a
    process that imported the Parquet reader first must list them in the same order."""
    import subprocess
    import sys

    code = (
        "import baler_ext.io.parquet; from baler_ext.io.formats import format_names; "
        "print(','.join(format_names()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ",".join(format_names()) == "root,rntuple,parquet"


def test_detection_looks_inside_root_files(rntuple_file, ttree_file, tmp_path):
    assert detect_format(rntuple_file, "auto") == "rntuple"
    assert detect_format(ttree_file, "auto") == "root"
    with pytest.raises(InputDataError, match="cannot tell the format"):
        detect_format(tmp_path / "x.csv", "auto")


def test_rntuple_source_layout_and_chunks(rntuple_file):
    src = Source(rntuple_file, DataConfig(columns=["Jet.*"], chunk_size=100))
    assert src.format == "rntuple"
    assert src.columns == ["Jet.pt", "Jet.eta"]
    assert src.layout.collection == "Jet"
    assert src.layout.passthrough == ["event", "Jet.id"]
    chunks = list(src.chunks())
    assert sum(c.entries for c in chunks) == 300
    ev = events()
    np.testing.assert_array_equal(
        np.concatenate([c.counts for c in chunks]), ak.to_numpy(ak.num(ev["Jet"]))
    )
    np.testing.assert_array_equal(
        np.concatenate([c.values[:, 0] for c in chunks]),
        ak.to_numpy(ak.flatten(ev["Jet", "pt"])).astype(np.float64),
    )


def test_rntuple_written_back_with_fields_dtypes_and_values(rntuple_file, tmp_path):
    src = Source(rntuple_file, DataConfig(columns=["Jet.*"], chunk_size=120))
    out = tmp_path / "out.root"
    writer = OutputWriter(out, src.layout, "same", None, None)
    for chunk in src.chunks():
        writer.write(chunk.values, chunk.passthrough, chunk.counts)
    writer.close()
    back = uproot.open(out)["Events"].arrays()
    original = events()
    assert back.fields == original.fields
    assert str(back.type) == str(original.type)
    for field in ("pt", "eta", "id"):
        assert ak.array_equal(back["Jet", field], original["Jet", field])
    assert ak.array_equal(back["event"], original["event"])


def test_rntuple_output_bigger_than_its_input_is_rewritten_with_lzma_9(rntuple_file, tmp_path):
    """As for a TTree: an RNTuple round trip that comes out bigger than its input (here an
    input size of 1 B) is rewritten with ROOT's strongest setting, same content."""
    import dataclasses

    src = Source(rntuple_file, DataConfig(columns=["Jet.*"], chunk_size=120))
    layout = dataclasses.replace(
        src.layout, source_bytes=1, compression={"algorithm": "ZLIB", "level": 1}
    )
    plain, out = tmp_path / "plain.root", tmp_path / "out.root"
    for path, lay in ((plain, dataclasses.replace(layout, source_bytes=None)), (out, layout)):
        writer = OutputWriter(path, lay, "same", None, None)
        for chunk in src.chunks():
            writer.write(chunk.values, chunk.passthrough, chunk.counts)
        writer.close()
    assert Source(out, DataConfig(columns=["Jet.*"])).layout.compression == {
        "algorithm": "LZMA",
        "level": 9,
    }
    assert out.stat().st_size < plain.stat().st_size
    back, original = uproot.open(out)["Events"].arrays(), events()
    assert str(back.type) == str(original.type)
    for field in ("pt", "eta", "id"):
        assert ak.array_equal(back["Jet", field], original["Jet", field])
    assert not list(tmp_path.glob("*.lzma"))


def test_ttree_output_uses_the_input_compression_and_keeps_branch_order(ttree_file, tmp_path):
    src = Source(ttree_file, DataConfig(columns=["Jet_*"]))
    assert src.layout.compression == {"algorithm": "LZMA", "level": 3}
    out = tmp_path / "out.root"
    writer = OutputWriter(out, src.layout, "same", None, None, chunks=1)
    for chunk in src.chunks():
        writer.write(chunk.values, chunk.passthrough, chunk.counts)
    writer.close()
    a, b = uproot.open(ttree_file)["Events"], uproot.open(out)["Events"]
    assert b.keys() == a.keys()
    assert Source(out, DataConfig(columns=["Jet_*"])).layout.compression == src.layout.compression
    assert b.compressed_bytes < b.uncompressed_bytes
    for key in b.keys():
        assert ak.array_equal(a[key].array(), b[key].array()), key


def test_parquet_output_uses_the_input_codec(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"x": np.linspace(0, 1, 500), "k": np.arange(500)}), path, compression="gzip"
    )
    src = Source(path, DataConfig(columns=["x"]))
    assert src.layout.compression == {"codec": "gzip"}
    out = tmp_path / "out.parquet"
    writer = OutputWriter(out, src.layout, "same", None, src.arrow_schema)
    for chunk in src.chunks():
        writer.write(chunk.values, chunk.passthrough, chunk.counts)
    writer.close()
    meta = pq.ParquetFile(out).metadata.row_group(0)
    assert {meta.column(i).compression for i in range(meta.num_columns)} == {"GZIP"}


def test_read_columns_takes_entries_as_events_in_jagged_files(ttree_file):
    df = read_columns(
        ttree_file, "auto", None, ["Jet_pt", "event_number"], entry_column="event_number"
    )
    counts = ak.to_numpy(ak.num(events()["Jet"]))
    np.testing.assert_array_equal(
        df["event_number"].to_numpy(), np.repeat(np.arange(len(counts)), counts)
    )
    with pytest.raises(InputDataError, match="no column 'nope'"):
        read_columns(ttree_file, "auto", None, ["Jet_pt", "nope"], entry_column="event_number")


def test_read_columns_refuses_entries_as_events_in_flat_files(tmp_path):
    path = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"pt": np.arange(10.0)}), path)
    with pytest.raises(InputDataError, match="rows are not events"):
        read_columns(path, "auto", None, ["pt", "event"], entry_column="event")


def test_structure_groups_put_each_counter_with_its_collection(shared_data):
    path = shared_data / "cms_hep_tutorial" / "single_top.root"
    reader = get_format("root").open(path, DataConfig(), set())
    groups = {g.key: g for g in structure_groups(reader.branches)}
    assert set(groups) == {"flat", "NJet", "NMuon", "NElectron", "NPhoton"}
    assert groups["NJet"].others == ["NJet", "Jet_ID"]
    assert groups["NJet"].floats == ["Jet_Px", "Jet_Py", "Jet_Pz", "Jet_E", "Jet_btag"]
    assert "MET_px" in groups["flat"].floats and "NJet" not in groups["flat"].others
    names = [n for g in groups.values() for n in g.floats + g.others]
    assert sorted(names) == sorted(b.name for b in reader.branches)


def test_shared_rntuple_file_is_read(shared_data):
    path = shared_data / "pythia_ttbar" / "ttbar_boosted_events_rntuple.root"
    src = Source(path, DataConfig(columns=["Jet.pt", "Jet.eta"], chunk_size=5000))
    assert src.format == "rntuple" and src.num_entries == 40000
    assert src.layout.compression is not None
    first = next(src.chunks())
    assert first.entries == 5000 and first.values.shape[1] == 2
    assert int(first.counts.sum()) == len(first.values)
