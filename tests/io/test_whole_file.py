"""Whole-file projects: every branch of a file in one container, one model per structure.

``[data] columns = ["*"]`` on a file with flat branches and jagged collections (each with
its own counter) trains one model per structure group, writes one container per input
and restores the whole file: every branch in its order, counters and integers identical,
floats within their bounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from baler_ext.codec.container import ContainerReader
from baler_ext.codec.digest import groups_digest
from baler_ext.stages.groups import is_grouped

#: small models and short fits: the test checks the plumbing, not the ratios
FAST_MODEL = {"hidden": [8], "latent_dim": 2}
FAST_RATE = {"epochs": 1, "hidden": [8]}


def within(original: np.ndarray, restored: np.ndarray, bound: dict[str, float]) -> bool:
    ((kind, b),) = bound.items()
    limit = b if kind == "abs" else b * np.abs(original)
    return bool(np.all(np.abs(restored - original) <= limit))


def check_round_trip(src: Path, out: Path, container: Path, kind: str = "ttree") -> dict:
    """The decompressed file holds the input's branches in order with its entries;
    integers and counters identical, floats within their group's bounds."""
    with ContainerReader(container) as reader:
        header = reader.header
        assert is_grouped(header)
        precision: dict = {}
        from baler_ext.stages.groups import inner_containers

        with inner_containers(reader) as inner:
            for _, r in inner:
                precision.update(r.header["precision"])
    tree = header["layout"]["tree"]
    a, b = uproot.open(src)[tree], uproot.open(out)[tree]
    assert b.num_entries == a.num_entries
    assert set(precision) == set(header["columns"])
    if kind == "rntuple":
        x_all, y_all = a.arrays(), b.arrays()
        assert ak.fields(y_all) == ak.fields(x_all)
        keys = [b["name"] for b in header["layout"]["branches"]]
        get = {k: (lambda arr, k=k: arr[tuple(k.split("."))] if "." in k else arr[k]) for k in keys}
        pairs = {k: (get[k](x_all), get[k](y_all)) for k in keys}
    else:
        assert b.keys() == a.keys()
        assert [a[k].typename for k in a.keys()] == [b[k].typename for k in a.keys()]
        pairs = {k: (a[k].array(), b[k].array()) for k in a.keys()}
    for key, (x, y) in pairs.items():
        if key in precision:
            if x.ndim > 1:
                assert ak.array_equal(ak.num(x), ak.num(y)), key
                x, y = ak.flatten(x), ak.flatten(y)
            x, y = (ak.to_numpy(v).astype(np.float64) for v in (x, y))
            assert within(x, y, precision[key]["bound"]), key
        else:
            assert ak.array_equal(x, y, equal_nan=True), key
    return header


def write_events(path: Path, kind: str) -> Path:
    """A flat float branch, a flat int, two jagged collections with their own counters
    (one with an integer member), an integer-only collection, a constant collection and a
    flat float holding NaN, as a TTree or RNTuple."""
    rng = np.random.default_rng(3)
    n = 1200
    n_jet, n_mu, n_hit = rng.integers(0, 5, n), rng.integers(0, 3, n), rng.integers(0, 4, n)
    jets, mus, hits = int(n_jet.sum()), int(n_mu.sum()), int(n_hit.sum())
    data = {
        "MET": rng.exponential(30.0, n).astype(np.float32),
        "run": rng.integers(0, 3, n).astype(np.int32),
        "Jet": ak.zip(
            {
                "pt": ak.unflatten(rng.exponential(40.0, jets).astype(np.float32) + 20, n_jet),
                "eta": ak.unflatten(rng.uniform(-2.5, 2.5, jets).astype(np.float32), n_jet),
                "id": ak.unflatten(rng.integers(0, 3, jets).astype(np.int32), n_jet),
            }
        ),
        "Mu": ak.zip({"pt": ak.unflatten(rng.exponential(20.0, mus).astype(np.float32) + 5, n_mu)}),
        "Hit": ak.zip({"layer": ak.unflatten(rng.integers(0, 9, hits).astype(np.int32), n_hit)}),
        # nothing varying: no model, carried losslessly
        "Pho": ak.zip({"e": ak.unflatten(np.ones(hits, np.float32), n_hit)}),
        # NaN: carried losslessly
        "W": np.where(rng.random(n) < 0.1, np.nan, rng.normal(1, 0.1, n)).astype(np.float32),
    }
    with uproot.recreate(path) as f:
        if kind == "rntuple":
            f.mkrntuple("Events", ak.Array(data))
        else:
            types = {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in data.items()}
            f.mktree("Events", types).extend(data)
    return path


@pytest.fixture
def two_collections(tmp_path: Path) -> Path:
    return write_events(tmp_path / "events.root", "ttree")


@pytest.mark.parametrize(
    ("kind", "groups", "hosted"),
    [
        ("ttree", ["flat", "nJet", "nMu"], {"nHit", "Hit_layer", "nPho", "Pho_e", "W"}),
        ("rntuple", ["flat", "Jet", "Mu"], {"Hit.layer", "Pho.e", "W"}),
    ],
)
def test_two_collections_round_trip_in_one_container(
    make_project, cli, tmp_path, kind, groups, hosted
):
    src = write_events(tmp_path / "events.root", kind)
    projects, name = make_project(
        src,
        data={"columns": ["*"]},
        model=FAST_MODEL,
        rate=FAST_RATE,
        compression={"mode": "bounded", "bounds": {"default": {"rel": 1e-3}}},
    )
    for mode in ("train", "compress", "decompress", "info"):
        assert cli(projects, name, mode) == 0, mode
    out = projects / name / "output"
    models = sorted(p.name for p in (out / "model" / "groups").iterdir() if p.is_dir())
    assert models == sorted(groups)
    (container,) = (out / "compressed").glob("*.baler")
    header = check_round_trip(src, out / "decompressed" / "events.root", container, kind)
    assert [g["name"] for g in header["groups"]] == groups
    # the integer-only and constant collections ride losslessly in the first group's
    # container, and so does the flat float holding NaN
    assert hosted <= set(header["groups"][0]["branches"])
    assert not hosted & set(header["columns"])
    info = json.loads((out / "compressed" / "events.info.json").read_text())
    assert info["mode"] == "groups"
    assert [g["group"] for g in info["groups"]] == groups
    assert info["compressed_bytes"] == container.stat().st_size
    assert sum(info["bytes_by_section"].values()) == info["compressed_bytes"]
    assert info["ratios"]["payload_vs_float64"] > 1
    # --resume keeps a whole-file container that verifies and was made by these models
    before = container.stat().st_mtime_ns
    assert cli(projects, name, "compress", "--resume") == 0
    assert container.stat().st_mtime_ns == before
    # steps made for one model say so
    assert cli(projects, name, "export") != 0
    # evaluate: each group as a project of its own
    assert cli(projects, name, "evaluate") == 0
    for g in groups:
        metrics = json.loads((out / "evaluation" / "groups" / g / "metrics.json").read_text())
        assert sorted(metrics["per_column"]) == sorted(
            next(h["columns"] for h in header["groups"] if h["name"] == g)
        )


def test_a_single_structure_is_a_single_group_project(make_project, cli, two_collections):
    projects, name = make_project(
        two_collections,
        data={"columns": ["Jet_*"]},
        model=FAST_MODEL,
        rate=FAST_RATE,
        compression={"mode": "bounded"},
    )
    for mode in ("train", "compress"):
        assert cli(projects, name, mode) == 0, mode
    out = projects / name / "output"
    assert (out / "model" / "model.json").is_file()
    assert not (out / "model" / "groups").exists()
    (container,) = (out / "compressed").glob("*.baler")
    with ContainerReader(container) as reader:
        assert reader.header["mode"] == "bounded"
        assert "groups" not in reader.header


def test_cms_whole_file_in_one_container(make_project, cli, shared_data):
    """Every branch of a CMS tutorial file (flat event branches and four collections with
    their own counters) in one container: the acceptance test of whole-file projects."""
    src = shared_data / "cms_hep_tutorial" / "single_top.root"
    projects, name = make_project(
        src,
        data={"columns": ["*"]},
        model=FAST_MODEL,
        rate=FAST_RATE,
        compression={"mode": "bounded", "policy": "nanoaod"},
    )
    for mode in ("train", "compress", "decompress", "info"):
        assert cli(projects, name, mode) == 0, mode
    out = projects / name / "output"
    containers = list((out / "compressed").glob("*.baler"))
    assert [c.name for c in containers] == ["single_top.baler"]  # one container per input
    restored = out / "decompressed" / "single_top.root"
    header = check_round_trip(src, restored, containers[0])
    assert [g["name"] for g in header["groups"]] == [
        "flat",
        "NJet",
        "NMuon",
        "NElectron",
        "NPhoton",
    ]
    assert restored.stat().st_size <= src.stat().st_size
    assert containers[0].stat().st_size < src.stat().st_size


def test_groups_too_small_to_train_are_carried_losslessly(make_project, cli, shared_data):
    """qcd.root holds 18 muons, 2 photons and no electron: too few rows for a model;
    those collections ride losslessly in the first group's container."""
    src = shared_data / "cms_hep_tutorial" / "qcd.root"
    projects, name = make_project(
        src,
        data={"columns": ["*"]},
        model=FAST_MODEL,
        rate=FAST_RATE,
        compression={"mode": "bounded", "policy": "nanoaod"},
    )
    for mode in ("train", "compress", "decompress"):
        assert cli(projects, name, mode) == 0, mode
    out = projects / name / "output"
    plan = json.loads((out / "model" / "groups" / "groups.json").read_text())
    assert plan == {
        "trained": ["flat", "NJet"],
        "lossless": ["NMuon", "NElectron", "NPhoton"],
        "passthrough": [],
    }
    header = check_round_trip(
        src, out / "decompressed" / "qcd.root", out / "compressed" / "qcd.baler"
    )
    assert "Muon_Px" in header["groups"][0]["branches"]
    assert "Muon_Px" not in header["columns"]  # stored exactly


def write_outer(path: Path, header: dict, sections: dict[str, bytes]) -> Path:
    from baler_ext.codec.container import ContainerWriter

    with path.open("wb") as fh:
        writer = ContainerWriter(fh)
        for name, data in sections.items():
            writer.add_bytes(name, -1, data)
        writer.close(header)
    return path


def outer_header(**changes) -> dict:
    group = {
        "name": "flat",
        "section": "group:flat",
        "model_hash": "ab",
        "columns": ["MET"],
        "branches": ["MET"],
        "rows": 10,
        "entries": 10,
        "chunks": 1,
    }
    header = {
        "mode": "groups",
        "features": ["groups"],
        "model": {"hash": "cd", "latent_dim": 0},
        "columns": ["MET"],
        "layout": {},
        "rows": 10,
        "entries": 10,
        "chunks": [],
        "groups": [group],
    }
    for key, value in changes.items():
        if key.startswith("group_"):
            group[key[6:]] = value
        elif value is None:
            header.pop(key)
        else:
            header[key] = value
    if "output_digest" not in changes:
        header["output_digest"] = groups_digest(header)
    return header


@pytest.mark.parametrize(
    ("changes", "sections", "message"),
    [
        ({}, {"group:flat": b"x", "latent": b"y"}, "is not one of the whole-file"),
        ({}, {}, "section 'group:flat' of a group is missing"),
        ({"features": None}, {"group:flat": b"x"}, "groups are malformed"),
        ({"groups": None}, {"group:flat": b"x"}, "groups are malformed"),
        ({"mode": "bounded"}, {"group:flat": b"x"}, "groups are malformed"),
        ({"group_model_hash": 3}, {"group:flat": b"x"}, "entry of group 0 is malformed"),
        ({"group_section": "latent"}, {"group:flat": b"x"}, "entry of group 0 is malformed"),
        ({"group_rows": -1}, {"group:flat": b"x"}, "entry of group 0 is malformed"),
        ({"columns": ["MET", "x"]}, {"group:flat": b"x"}, "columns are not those of its groups"),
        ({"entries": 11}, {"group:flat": b"x"}, "totals disagree with its groups"),
        ({"chunks": [{"rows": 0, "entries": 0}]}, {"group:flat": b"x"}, "chunk 0 has no"),
        ({"output_digest": "00"}, {"group:flat": b"x"}, "do not match their digest"),
    ],
)
def test_crafted_whole_file_headers_are_refused(tmp_path, changes, sections, message):
    from baler_ext.errors import ContainerError

    path = write_outer(tmp_path / "x.baler", outer_header(**changes), sections)
    with pytest.raises(ContainerError, match=message):
        ContainerReader(path)


def test_a_damaged_inner_container_is_a_container_error(tmp_path):
    from baler_ext.errors import ContainerError
    from baler_ext.stages.groups import inner_containers

    path = write_outer(tmp_path / "x.baler", outer_header(), {"group:flat": b"not a container"})
    with (
        ContainerReader(path) as reader,
        pytest.raises(ContainerError, match=r"x.baler:group:flat: too short"),
    ):
        with inner_containers(reader):
            pass


def test_parquet_flat_and_list_columns_in_one_container(make_project, cli, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(9)
    n = 1500
    counts = rng.integers(0, 4, n)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    total = int(counts.sum())
    table = pa.table(
        {
            "met": rng.exponential(30.0, n),
            "n": pa.array(counts.astype(np.int32)),
            "jet_pt": pa.ListArray.from_arrays(offsets, pa.array(rng.exponential(40, total))),
            "jet_eta": pa.ListArray.from_arrays(offsets, pa.array(rng.uniform(-2, 2, total))),
        }
    )
    src = tmp_path / "flat_and_lists.parquet"
    pq.write_table(table, src)
    projects, name = make_project(
        src,
        data={"columns": ["*"]},
        model=FAST_MODEL,
        rate=FAST_RATE,
        compression={"mode": "bounded", "bounds": {"default": {"abs": 1e-3}}},
    )
    for mode in ("train", "compress", "decompress", "info"):
        assert cli(projects, name, mode) == 0, mode
    out = projects / name / "output"
    with ContainerReader(out / "compressed" / "flat_and_lists.baler") as reader:
        assert [g["name"] for g in reader.header["groups"]] == ["flat", "<list>"]
    restored = pq.read_table(out / "decompressed" / "flat_and_lists.parquet")
    assert restored.schema.equals(table.schema)
    assert restored.column("n").equals(table.column("n"))
    for col in ("met", "jet_pt", "jet_eta"):
        x, y = (
            ak.to_numpy(ak.flatten(ak.from_arrow(t.column(col)), axis=None))
            for t in (table, restored)
        )
        assert within(x, y, {"abs": 1e-3}), col
    offsets_back = restored.column("jet_pt").combine_chunks().offsets
    assert offsets_back.equals(offsets)


def test_info_of_whole_files_imports_no_reader():
    """--mode info reads containers only: the whole-file support keeps it free of the
    readers' libraries (planning, which opens inputs, lives in stages/group_plan.py)."""
    import subprocess
    import sys

    code = (
        "import sys, baler_ext.stages.info; "
        "print(sorted(m for m in ('awkward', 'pyarrow', 'pandas', 'uproot') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(root), "PATH": ""},
    ).stdout.strip()
    assert out == "[]"


def test_damaged_and_crafted_whole_file_containers_fail_cleanly(make_project, cli, tmp_path):
    """A few seeded cases of the container fuzzer (benchmarks/fuzz_containers.py) on a
    whole-file container: byte flips, truncations, appended bytes, crafted fields of its
    index, altered bytes of an inner container (re-framed with valid checksums) and
    removed or renamed group sections. Each decodes to the reference or fails with a
    one-line BalerError naming the file; never another exception or other data."""
    import pyarrow.parquet as pq

    from baler_ext.config import load_config
    from baler_ext.errors import BalerError
    from baler_ext.executors import worker_model
    from baler_ext.project import Project
    from baler_ext.stages.decompress import decompress_groups_file, group_models
    from baler_ext.stages.info import describe
    from benchmarks import fuzz_containers as fz

    src = write_events(tmp_path / "events.root", "ttree")
    projects, name = make_project(
        src,
        data={"columns": ["*"], "chunk_size": 500},
        model=FAST_MODEL,
        rate=FAST_RATE,
        compression={"mode": "bounded"},
        output={"format": "parquet"},
    )
    for mode in ("train", "compress"):
        assert cli(projects, name, mode) == 0, mode
    project = Project.locate(name, projects)
    cfg = load_config(project.config_path)
    original_path = project.dir("compressed") / "events.baler"
    original = original_path.read_bytes()
    with ContainerReader(original_path) as reader:
        groups = reader.header["groups"]
    models = {
        g: worker_model(folder, h) for g, folder, h in group_models(project, original_path, groups)
    }
    work = tmp_path / "fuzz"
    work.mkdir()
    container, out = work / "events.baler", work / "out.parquet"

    def decode(data: bytes):
        container.write_bytes(data)
        out.unlink(missing_ok=True)
        try:
            describe(container)
            decompress_groups_file(container, models, cfg, out)
        except BalerError as exc:
            text = str(exc)
            assert "\n" not in text and str(container) in text, text
            return None
        return pq.read_table(out)

    def same(a, b) -> bool:  # W holds NaN
        return a.schema.equals(b.schema) and all(
            ak.array_equal(ak.from_arrow(a[c]), ak.from_arrow(b[c]), equal_nan=True)
            for c in a.column_names
        )

    reference = decode(original)
    assert reference is not None and reference.num_rows == 1200
    parsed = fz.parse(original)
    rng = np.random.default_rng(0)
    outcomes: dict[str, int] = {}
    cases = 60  # 900 (same seed) ran clean while this test was written
    for n in range(cases):
        kind = ("flip", "truncate", "append", "index", "content", "remove")[n % 6]
        what, altered = fz.mutate(original, parsed, kind, rng)
        restored = decode(altered)
        assert restored is None or same(restored, reference), what
        key = f"{kind}/{'error' if restored is None else 'identical'}"
        outcomes[key] = outcomes.get(key, 0) + 1
        assert not list(work.glob(".out.parquet.*.part")), what
    for kind in ("flip", "truncate", "append", "remove"):
        assert outcomes.get(f"{kind}/error") == cases // 6, (kind, outcomes)


def test_two_inputs_give_two_whole_file_containers(make_project, cli, tmp_path):
    a = write_events(tmp_path / "a.root", "ttree")
    b = write_events(tmp_path / "b.root", "ttree")
    projects, name = make_project(
        str(tmp_path / "*.root"),
        data={"columns": ["*"]},
        model=FAST_MODEL,
        rate=FAST_RATE,
        compression={"mode": "bounded"},
    )
    for mode in ("train", "compress", "decompress"):
        assert cli(projects, name, mode) == 0, mode
    out = projects / name / "output"
    assert sorted(p.name for p in (out / "compressed").glob("*.baler")) == ["a.baler", "b.baler"]
    for src in (a, b):
        check_round_trip(
            src, out / "decompressed" / src.name, out / "compressed" / f"{src.stem}.baler"
        )
