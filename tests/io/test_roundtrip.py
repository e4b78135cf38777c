"""Round trips on the real shared files: parquet -> parquet, ROOT (flat and jagged) -> ROOT.

The decompressed file must have the source's entries, counts per entry, branch
names and dtypes; integer and untouched branches bit-identical; float columns
equal to the model's own reconstruction (the only loss is the autoencoder's; the
``make_project`` projects use latent mode, whose output is exactly that reconstruction).
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot

from baler_ext.cli import main
from baler_ext.codec.container import ContainerReader
from baler_ext.codec.modes import run_batched
from baler_ext.config import load_config
from baler_ext.io.parquet import SCHEMA_FROM_LAYOUT
from baler_ext.io.source import Source
from baler_ext.model_store import load_model


def run_all(projects: Path, name: str, *extra: str) -> None:
    args = ["--projects-dir", str(projects), "--project", name, "--mode", "all", "-q"]
    assert main([*args, *extra]) == 0


def model_reconstruction(projects: Path, name: str, values: np.ndarray) -> np.ndarray:
    trained = load_model(projects / name / "output" / "model")
    norm, model = trained.normaliser, trained.model
    dtype = next(model.parameters()).dtype
    x = run_batched(
        lambda t: model.decode(model.encode(t)),
        norm.transform(values),
        dtype,
        next(model.parameters()).device,
    )
    return norm.inverse(x)


def original_values(projects: Path, name: str) -> tuple[np.ndarray, list[str]]:
    cfg = load_config(projects / name / "config.toml")
    src = Source(Path(cfg.data.input[0]), cfg.data)
    return src.read_values(), src.columns


def check_floats(projects: Path, name: str, restored: np.ndarray, columns: list[str]) -> None:
    values, cols = original_values(projects, name)
    assert cols == columns
    expected = model_reconstruction(projects, name, values)
    # values found exact on the training data (sentinels, discrete columns) come back as
    # they were; every other value is the model's reconstruction
    found = load_model(projects / name / "output" / "model").meta["exact_values"]
    for j, c in enumerate(columns):
        keep = (
            np.ones(len(values), bool)
            if c in found["discrete"]
            else np.isin(values[:, j], found["sentinels"].get(c, []))
        )
        np.testing.assert_array_equal(restored[keep, j], values[keep, j])
        expected[keep, j] = values[keep, j]
    scale = np.abs(values).max(axis=0) + 1e-300
    np.testing.assert_allclose(restored / scale, expected / scale, rtol=0, atol=1e-6)
    # the model learned something: error well below the spread of each column
    rms = np.sqrt(np.mean((restored - values) ** 2, axis=0))
    assert np.all(rms < values.std(axis=0)), dict(
        zip(columns, rms / values.std(axis=0), strict=True)
    )


def test_parquet_roundtrip(make_project, jets_parquet):
    projects, name = make_project(
        jets_parquet,
        data={"chunk_size": 20000},
        compression={"latent_dtype": "float64"},
        training={"epochs": 3, "max_rows": 20000},
    )
    run_all(projects, name)
    out = projects / name / "output" / "decompressed" / "ttbar_boosted_jets.parquet"
    original, restored = pq.read_table(jets_parquet), pq.read_table(out)
    assert restored.schema.equals(original.schema, check_metadata=True)
    container = next((projects / name / "output" / "compressed").glob("*.baler"))
    with ContainerReader(container) as reader:  # rebuilt from the layout, not stored (1.4)
        assert reader.header["arrow_schema"] == SCHEMA_FROM_LAYOUT
    assert restored.num_rows == original.num_rows == 78238
    for col in ("event", "jet_index", "n_constituents", "n_charged", "top_matched"):
        assert restored.column(col).equals(original.column(col)), col
    cols = [f.name for f in original.schema if str(f.type) == "double"]
    mat = np.column_stack([restored.column(c).to_numpy() for c in cols])
    check_floats(projects, name, mat, cols)


def compare_trees(src: Path, out: Path, tree: str, compressed: list[str]) -> np.ndarray:
    a, b = uproot.open(src)[tree], uproot.open(out)[tree]
    assert b.keys() == a.keys()
    assert b.num_entries == a.num_entries
    for key in a.keys():
        assert b[key].typename == a[key].typename, key
        if key not in compressed:
            assert ak.array_equal(a[key].array(), b[key].array()), key
    cols = []
    for key in compressed:
        x, y = a[key].array(), b[key].array()
        assert ak.array_equal(ak.num(x, axis=1), ak.num(y, axis=1)), key
        cols.append(ak.to_numpy(ak.flatten(y)).astype(np.float64))
    return np.column_stack(cols)


@pytest.mark.parametrize(
    ("relpath", "tree", "columns"),
    [
        ("pythia_ttbar/ttbar_boosted_events.root", "Events", ["*"]),
        ("cms_hep_tutorial/single_top.root", "events", ["Jet_*"]),
    ],
)
def test_jagged_root_roundtrip(make_project, shared_data, relpath, tree, columns):
    src = shared_data / relpath
    projects, name = make_project(
        src,
        data={"columns": columns, "chunk_size": 2000},
        compression={"latent_dtype": "float64"},
        training={"epochs": 3},
    )
    run_all(projects, name)
    out = projects / name / "output" / "decompressed" / src.name
    compressed = load_model(projects / name / "output" / "model").normaliser.columns
    assert compressed and all(c.startswith("Jet_") for c in compressed)
    restored = compare_trees(src, out, tree, compressed)
    check_floats(projects, name, restored, compressed)


def test_flat_root_roundtrip_and_format_change(make_project, shared_data):
    src = shared_data / "pythia_ttbar" / "ttbar_boosted_jets.root"
    projects, name = make_project(
        src, data={"columns": ["pt", "eta", "phi", "mass"]}, training={"epochs": 2}
    )
    run_all(projects, name, "--set", 'output.format="parquet"')
    out = projects / name / "output" / "decompressed" / "ttbar_boosted_jets.parquet"
    table = pq.read_table(out)
    tree = uproot.open(src)["jets"]
    assert table.column_names == tree.keys()
    assert table.num_rows == tree.num_entries
    np.testing.assert_array_equal(
        table.column("event").to_numpy(), tree["event"].array(library="np")
    )
    np.testing.assert_array_equal(table.column("tau2").to_numpy(), tree["tau2"].array(library="np"))
