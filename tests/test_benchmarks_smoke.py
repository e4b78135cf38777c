"""CI smoke test of ``benchmarks/run.py`` (issue 7): the benchmark code must not rot.

Runs the quick mode on 3,000 rows with 2 epochs and a few methods; asserts that the
report is produced and that every bounded method met every bound. No speed assertions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _run(tmp_path: Path, methods: str, extra: list[str] | None = None) -> dict:
    from benchmarks import run

    out = tmp_path / "out"
    rc = run.main(
        [
            "--quick",
            "--rows",
            "3000",
            "--epochs",
            "2",
            "--datasets",
            "pythia_ttbar",
            "--methods",
            methods,
            "--no-baler",
            "--workdir",
            str(tmp_path / "work"),
            "--out-dir",
            str(out),
            *(extra or []),
        ]
    )
    assert rc == 0
    for name in (
        "RESULTS.md",
        "results.json",
        "rd_momenta.png",
        "rd_angles.png",
        "rd_dimensionless.png",
    ):
        assert (out / name).is_file(), name
    return json.loads((out / "results.json").read_text())


def _check(results: dict, expected: set[str]) -> None:
    runs = results["datasets"]["pythia_ttbar"]["runs"]
    assert {r["method"] for r in runs} == expected
    for r in runs:
        assert "error" not in r, r
        assert r["bytes"] > 0 and r["ratio_f64"] > 0
        if r["bounds"] is not None:
            assert r["errors"]["bounds_met"], (r["method"], r["setting"])
            assert r["errors"]["max_err_over_bound"] <= 1.0


@pytest.mark.usefixtures("shared_data")
def test_quick_benchmark_core_methods(tmp_path: Path) -> None:
    """baler_ext bounded (P1, P2) against zstd and the uniform quantiser: no optional deps."""
    results = _run(tmp_path, "zstd19_f64,quantise_zstd,balerext_bounded")
    _check(results, {"zstd19_f64", "quantise_zstd", "balerext_bounded"})
    settings = {
        r["setting"]
        for r in results["datasets"]["pythia_ttbar"]["runs"]
        if r["method"] == "balerext_bounded"
    }
    assert settings == {"P1", "P2"}
    assert "Targets" in (tmp_path / "out" / "RESULTS.md").read_text()


@pytest.mark.usefixtures("shared_data")
def test_quick_benchmark_optional_references(tmp_path: Path) -> None:
    """The optional per-column references meet every bound (tighten-until-met)."""
    for mod in ("numcodecs", "blosc2", "pysz", "zfpy"):
        pytest.importorskip(mod, reason=f"{mod} is in the bench extra: pip install -e '.[bench]'")
    results = _run(tmp_path, "bitround_zstd,bitround_blosc2,sz3,zfp,blosc2_bitshuffle_f32")
    _check(results, {"bitround_zstd", "bitround_blosc2", "sz3", "zfp", "blosc2_bitshuffle_f32"})


@pytest.mark.slow  # six worker processes (~1 min on a busy 2-core machine)
@pytest.mark.usefixtures("shared_data")
def test_quick_benchmark_like_for_like_baler(tmp_path: Path) -> None:
    """With Baler 0.0.6 installed, a baler_ext model trained like Baler is compared too."""
    pytest.importorskip("baler_compressor", reason="pip install --no-deps baler-compressor==0.0.6")
    from benchmarks import run

    out = tmp_path / "out"
    assert (
        run.main(
            [
                "--quick",
                "--rows",
                "3000",
                "--epochs",
                "2",
                "--datasets",
                "pythia_ttbar",
                "--methods",
                "balerext_latent,baler_0.0.6",
                "--train-threads",
                "1",
                "--workdir",
                str(tmp_path / "work"),
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    runs = {(r["method"], r["setting"]): r for r in res["datasets"]["pythia_ttbar"]["runs"]}
    like = runs[("balerext_latent", "latent 8 float64 like Baler")]
    peer = runs[("baler_0.0.6", "latent 8 float64")]
    assert "error" not in like and "error" not in peer
    # same latent size and dtype: the ratios differ only by the containers' overheads
    assert like["ratio_f64"] == pytest.approx(peer["ratio_f64"], rel=0.15)
    model_json = (
        tmp_path
        / "work"
        / "pythia_ttbar"
        / "projects"
        / "train_l8_like_baler"
        / "output"
        / "model"
        / "normaliser.json"
    ).read_text()
    assert '"method": "minmax"' in model_json
    assert any("like for like" in t["target"] for t in res["targets"])


@pytest.mark.parametrize("quick", [True, False])
def test_bench_learned_plan_reuses_only_models_it_trains(quick: bool) -> None:
    """bench_learned runs the model-sharing runs after the others (``--jobs``): each
    ``share_from`` must name the project of a run that trains, and labels are unique."""
    from benchmarks.bench_learned import planned_runs, project_name

    plan = planned_runs(quick)
    labels = [kw["label"] for kw in plan]
    assert len(set(labels)) == len(labels)
    trained = {project_name(kw["label"]) for kw in plan if "share_from" not in kw}
    shared = [kw["share_from"] for kw in plan if "share_from" in kw]
    assert shared and set(shared) <= trained
    assert {"P1 learned, refit + augment 7", "P2 learned, refit + augment 7"} <= set(labels)
