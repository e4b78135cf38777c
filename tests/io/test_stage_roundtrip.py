"""Train -> compress -> decompress -> info with the defaults (bounded mode) on real files.

Checks what a user relies on: every float within the bound ``info`` lists for it,
sentinels kept exactly, integers and counters identical, a decompressed ROOT file no
bigger than its input, RNTuple in and out, and latent mode's warning beyond the bounds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from baler_ext.cli import main
from baler_ext.codec.container import ContainerReader
from baler_ext.precision import precision_from_header


def run(projects: Path, name: str, *modes: str) -> None:
    for mode in modes:
        assert (
            main(["--projects-dir", str(projects), "--project", name, "--mode", mode, "-q"]) == 0
        ), mode


def container_header(projects: Path, name: str) -> dict:
    (path,) = (projects / name / "output" / "compressed").glob("*.baler")
    with ContainerReader(path) as reader:
        return reader.header


def within(original: np.ndarray, restored: np.ndarray, bound: dict[str, float]) -> bool:
    ((kind, b),) = bound.items()
    limit = b if kind == "abs" else b * np.abs(original)
    return bool(np.all(np.abs(restored - original) <= limit))


@pytest.fixture
def sentinel_parquet(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    n = 4000
    btag = rng.uniform(0, 1, n)
    btag[rng.random(n) < 0.05] = -1.0
    pt = rng.exponential(80.0, n) + 25.0
    table = pa.table(
        {
            "pt": pt,
            "eta": rng.uniform(-2.5, 2.5, n),
            "btag": btag,
            "score": rng.integers(0, 4, n) / 4.0,
            "n": pa.array(rng.integers(0, 9, n), pa.int32()),
        }
    )
    path = tmp_path / "sentinel.parquet"
    pq.write_table(table, path)
    return path


def test_bounded_mode_keeps_bounds_sentinels_and_discrete_values(make_project, sentinel_parquet):
    projects, name = make_project(
        sentinel_parquet,
        compression={"mode": "bounded", "bounds": {"default": {"rel": 1e-3}, "*ta": {"abs": 1e-3}}},
    )
    run(projects, name, "train", "compress", "decompress", "info")
    original = pq.read_table(sentinel_parquet)
    restored = pq.read_table(projects / name / "output" / "decompressed" / "sentinel.parquet")
    assert restored.schema.equals(original.schema)
    assert restored.column("n").equals(original.column("n"))
    header = container_header(projects, name)
    assert header["mode"] == "bounded"
    assert header["precision"]["eta"] == {"bound": {"abs": 1e-3}, "pattern": "*ta"}  # 1.4
    assert precision_from_header(header["precision"])["eta"] == {
        "bound": {"abs": 1e-3},
        "pattern": "*ta",
        "origin": "config",
    }
    assert precision_from_header(header["precision"])["pt"]["pattern"] in ("pt", "default")
    for col in ("pt", "eta", "btag"):
        x, y = original.column(col).to_numpy(), restored.column(col).to_numpy()
        assert within(x, y, header["precision"][col]["bound"]), col
    btag_x, btag_y = original.column("btag").to_numpy(), restored.column("btag").to_numpy()
    np.testing.assert_array_equal(btag_y[btag_x == -1.0], -1.0)
    # four distinct values: stored losslessly
    assert header["discrete_columns"] == ["score"]
    assert restored.column("score").equals(original.column("score"))
    info = json.loads(
        next((projects / name / "output" / "compressed").glob("*.info.json")).read_text()
    )
    assert info["precision"]["pt"]["bound"] == {"rel": 1e-3}
    assert info["exact_values"] == {"btag": [-1.0]}
    honest = info["honest"]
    assert honest["stored_dtype_bytes"] == 4000 * 4 * 8
    assert honest["input_file_bytes"] == sentinel_parquet.stat().st_size
    # lossless LZMA of the same columns is bigger than rounding at the same precision
    assert honest["rounded_lzma9_bytes"] < honest["root_lzma9_bytes"]
    assert set(honest["ratios"]) == {
        "columns_vs_stored_dtype",
        "file_vs_input_on_disk",
        "columns_vs_root_lzma9",
        "columns_vs_rounded_lzma9",
    }


def test_latent_mode_warns_beyond_the_bounds(make_project, sentinel_parquet, caplog):
    projects, name = make_project(
        sentinel_parquet, data={"columns": ["pt", "eta", "btag"]}, compression={"mode": "latent"}
    )
    run(projects, name, "train")
    with caplog.at_level(logging.WARNING):
        run(projects, name, "compress")
    assert any("latent mode has no error bound" in r.getMessage() for r in caplog.records)
    run(projects, name, "decompress")
    original = pq.read_table(sentinel_parquet).column("btag").to_numpy()
    restored = (
        pq.read_table(projects / name / "output" / "decompressed" / "sentinel.parquet")
        .column("btag")
        .to_numpy()
    )
    np.testing.assert_array_equal(restored[original == -1.0], -1.0)  # never rewritten


def test_rntuple_compresses_and_decompresses(make_project, tmp_path):
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, 1500)
    total = int(counts.sum())
    data = {
        "event": np.arange(1500, dtype=np.int64),
        "Jet": ak.unflatten(
            ak.zip(
                {
                    "pt": rng.exponential(50, total) + 20,
                    "eta": rng.uniform(-2.5, 2.5, total),
                    "id": rng.integers(0, 3, total).astype(np.int32),
                }
            ),
            counts,
        ),
    }
    path = tmp_path / "nt.root"
    with uproot.recreate(path) as f:
        f.mkrntuple("Events", ak.Array(data))
    projects, name = make_project(
        path,
        data={"columns": ["Jet.pt", "Jet.eta"]},
        compression={
            "mode": "bounded",
            "bounds": {"default": {"rel": 1e-3}, "Jet.eta": {"abs": 1e-3}},
        },
    )
    run(projects, name, "train", "compress", "decompress")
    out = uproot.open(projects / name / "output" / "decompressed" / "nt.root")
    assert out.classnames() == {"Events;1": "ROOT::RNTuple"}
    back = out["Events"].arrays()
    assert ak.array_equal(back["event"], data["event"])
    assert ak.array_equal(back["Jet", "id"], data["Jet"]["id"])
    assert ak.array_equal(ak.num(back["Jet"]), counts)
    pt_x, pt_y = (ak.to_numpy(ak.flatten(a)) for a in (data["Jet"]["pt"], back["Jet", "pt"]))
    assert within(pt_x, pt_y, {"rel": 1e-3})


def test_cms_jets_round_trip_is_no_bigger_than_the_input(make_project, shared_data):
    src = shared_data / "cms_hep_tutorial" / "single_top.root"
    projects, name = make_project(
        src, data={"columns": ["Jet_*"]}, compression={"mode": "bounded", "policy": "nanoaod"}
    )
    run(projects, name, "train", "compress", "decompress")
    out = projects / name / "output" / "decompressed" / "single_top.root"
    assert out.stat().st_size <= src.stat().st_size
    header = container_header(projects, name)
    a, b = uproot.open(src)["events"], uproot.open(out)["events"]
    assert b.keys() == a.keys()
    for key in a.keys():
        assert b[key].typename == a[key].typename, key
        x, y = a[key].array(), b[key].array()
        if key in header["precision"]:
            x, y = ak.to_numpy(ak.flatten(x)), ak.to_numpy(ak.flatten(y))
            assert within(
                x.astype(np.float64), y.astype(np.float64), header["precision"][key]["bound"]
            ), key
        else:
            assert ak.array_equal(x, y), key
    btag = ak.to_numpy(ak.flatten(a["Jet_btag"].array()))
    restored = ak.to_numpy(ak.flatten(b["Jet_btag"].array()))
    assert np.count_nonzero(btag == -1) > 100
    np.testing.assert_array_equal(restored[btag == -1], -1.0)


def test_event_combination_in_a_jagged_file_takes_entries_as_events(shared_data):
    from baler_ext.analysis.mass import analysis_values_and_keys
    from baler_ext.analysis.spec import AnalysisSpec
    from baler_ext.config import Config, DataConfig
    from baler_ext.stages.analyse import _read_samples

    src = shared_data / "cms_hep_tutorial" / "qcd.root"
    spec = AnalysisSpec(
        variable="event_combination",
        p4_kind="pxpypze",
        p4_columns=["Jet_Px", "Jet_Py", "Jet_Pz", "Jet_E"],
        order_by="Jet_E",
        n_objects=2,
    )
    samples = _read_samples([(src, src)], Config(data=DataConfig(tree="events")), spec)
    assert samples.unit.startswith("events")  # the entries are the events
    masses, keys = analysis_values_and_keys(samples.original, spec, samples.keys)
    assert len(np.unique(keys)) == len(keys)  # one combination per event
    jets = uproot.open(src)["events"].arrays(["Jet_Px", "Jet_Py", "Jet_Pz", "Jet_E"])
    lead = jets[ak.argsort(jets["Jet_E"], ascending=False)][:, :2]
    two = lead[ak.num(lead["Jet_E"]) == 2]
    e, px, py, pz = (
        ak.to_numpy(ak.sum(two[k], axis=1)).astype(np.float64)
        for k in ("Jet_E", "Jet_Px", "Jet_Py", "Jet_Pz")
    )
    expected = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0))
    assert len(masses) == len(expected) > 0
    np.testing.assert_allclose(np.sort(masses), np.sort(expected), rtol=1e-4)
