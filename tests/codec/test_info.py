"""``--mode info`` reports the sections, ratios, bounds and measured errors."""

from __future__ import annotations

import json

from baler_ext.cli import main
from baler_ext.codec.container import ContainerReader
from baler_ext.errors import ProjectError


def test_info_reports_sections_ratios_and_bounds(cli, make_project, flat_parquet):
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [8], "latent_dim": 2},
        compression={
            "mode": "bounded",
            "embed_decoder": True,
            "latent_policy": "always",
            "probability_model": "static",
            "bounds": {"default": {"rel": 1e-3}, "eta": {"abs": 1e-4}},
        },
    )
    assert cli(projects, name, "info") == ProjectError.exit_code  # nothing compressed yet
    assert cli(projects, name, "train", "--set", "training.epochs=1") == 0
    assert cli(projects, name, "compress") == 0
    assert cli(projects, name, "info") == 0
    d = json.loads((projects / name / "output" / "compressed" / "jets.info.json").read_text())
    assert d["rows"] == 3000 and d["mode"] == "bounded"
    assert d["raw_float64_bytes"] == 3000 * len(d["columns"]) * 8
    assert d["raw_float32_bytes"] == d["raw_float64_bytes"] // 2
    groups = d["bytes_by_section"]
    assert {"header", "latent", "residuals", "passthrough", "decoder"} <= set(groups)
    assert (
        sum(groups.values())
        == d["compressed_bytes"]
        == (projects / name / "output" / "compressed" / "jets.baler").stat().st_size
    )
    assert d["decoder_embedded"] and d["decoder_bytes"] == groups["decoder"]
    r = d["ratios"]
    assert r["payload_with_decoder_vs_float64"] < r["payload_vs_float64"]
    assert d["bounds"]["eta"] == {"abs": 1e-4} and d["bounds"]["pt"] == {"rel": 1e-3}
    assert d["latent_chunks"] == len(d["chunks"]) == 1
    # px, py = pt cos(phi), pt sin(phi) in the table: the info lists the relations the
    # file was coded with, exactly as its header stores them
    assert d["relations"], "px/py are exact functions of pt/phi: a relation was expected"
    cartesian = {"pt", "phi", "px", "py"}
    assert any(r["target"] in cartesian and set(r["inputs"]) <= cartesian for r in d["relations"])
    with ContainerReader(projects / name / "output" / "compressed" / "jets.baler") as reader:
        stored = reader.header["mode_settings"]["relations"]
    assert [(r["kind"], r["target"], r["inputs"]) for r in d["relations"]] == [
        (r["kind"], r["target"], list(r["inputs"])) for r in stored
    ]
    for stats in d["measured_at_compress"].values():
        assert 0 < stats["max_error_over_bound"] <= 1.0
    # an embedded decoder does not change what decompress restores
    assert cli(projects, name, "decompress") == 0


def test_compressed_columns_stored_exactly_count_in_the_payload(make_project, flat_parquet):
    """A cvae's condition columns are stored losslessly: they are payload, not passthrough."""
    from baler_ext.stages.info import describe

    projects, name = make_project(
        flat_parquet,
        model={"name": "cvae", "latent_dim": 2, "hidden": [16], "options": {"conditions": ["pt"]}},
    )
    for mode in ("train", "compress"):
        assert main(["-q", "--projects-dir", str(projects), "-p", name, "--mode", mode]) == 0
    info = describe(projects / name / "output" / "compressed" / "jets.baler")
    groups = info["bytes_by_section"]
    assert groups["lossless"] > 0
    payload = info["compressed_bytes"] - groups["passthrough"]
    assert info["ratios"]["payload_vs_float64"] == info["raw_float64_bytes"] / payload
