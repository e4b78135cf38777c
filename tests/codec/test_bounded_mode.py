"""The bounded mode on whole tables: untrained tiny models (the bound does not need training)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from baler_ext.codec.modes import BoundedMode, dequantise_latent, quantise_latent
from baler_ext.config import CompressionConfig, ModelConfig
from baler_ext.errors import ConfigError
from baler_ext.model_store import TrainedModel
from baler_ext.models.base import build_model
from baler_ext.normalise import Normaliser

COLUMNS = ["pt", "eta", "phi", "mass"]
BOUNDS = {"default": {"rel": 1e-3}, "eta": {"abs": 1e-4}, "phi": {"abs": 1e-3}}


def tiny_trained(fit_values: np.ndarray, dtype: str = "float64") -> TrainedModel:
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=2, hidden=[8], dtype=dtype)
    with np.errstate(all="ignore"):
        norm = Normaliser.fit(fit_values, COLUMNS, "standard")
    norm.scale = [s if np.isfinite(s) and s > 0 else 1.0 for s in norm.scale]
    norm.shift = [s if np.isfinite(s) else 0.0 for s in norm.shift]
    model = build_model(cfg, len(norm.active) or 1)
    return TrainedModel(model, norm, {"hash": "0" * 64, "arch": {"name": "sae", "latent_dim": 2}})


def make_mode(trained: TrainedModel, coder: str = "range", **cfg) -> BoundedMode:
    mode = BoundedMode(
        trained,
        CompressionConfig(mode="bounded", bounds=BOUNDS, entropy_coder=coder, **cfg),
        torch.device("cpu"),
    )
    mode.configure({"mass": "float32"}, set())
    return mode


def check(values: np.ndarray, out: np.ndarray, mass_f32: bool = True) -> None:
    lim = np.stack(
        [
            1e-3 * np.abs(values[:, 0]),
            np.full(len(values), 1e-4),
            np.full(len(values), 1e-3),
            1e-3 * np.abs(values[:, 3]),
        ],
        axis=1,
    )
    assert np.all(np.abs(values - out) <= lim)


def jets(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mass = np.abs(rng.normal(172, 15, n)).astype(np.float32).astype(np.float64)
    mass[::7] = 0.0
    return np.column_stack(
        [
            rng.exponential(100, n) + 300,
            rng.uniform(-2.4, 2.4, n),
            rng.uniform(-np.pi, np.pi, n),
            mass,
        ]
    )


SPECIAL = [0.0, -0.0, 5e-324, -1e-310, 1e-300, -1e300, 1e300, 1e15, -7.5, 3.0]
cell = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(-1e3, 1e3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)


@settings(max_examples=40, deadline=None)
@given(
    table=hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.just(4)), elements=cell),
    coder=st.sampled_from(["range", "zstd"]),
    constant=st.booleans(),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_random_tables_meet_every_bound_on_another_device(
    table, coder, constant, sign, another_device
):
    table = table.copy()
    with np.errstate(over="ignore"):
        mass = table[:, 3].astype(np.float32).astype(np.float64)
    table[:, 3] = np.where(np.isfinite(mass), mass, 0.0)  # a float32 column holds float32s
    if constant:
        table[:, 1] = table[0, 1]
    mode = make_mode(tiny_trained(jets(200)), coder)
    sections = mode.encode(table)
    check(table, mode.decode(sections, len(table)))
    with another_device(mode, sign):  # worst-case drift inside the assumption
        check(table, mode.decode(sections, len(table)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_model_dtype_does_not_matter_for_the_bound(dtype):
    values = jets(2000)
    mode = make_mode(tiny_trained(values, dtype))
    sections = mode.encode(values)
    out = mode.decode(sections, len(values))
    check(values, out)
    assert mode.stats["eta"]["max_error_over_bound"] <= 1.0
    assert sum(s["exceptions"] for s in mode.stats.values()) == 0


def test_latent_quantiser_round_trip():
    z = np.random.default_rng(0).normal(size=(100, 3))
    codes, lo, step = quantise_latent(z, 8)
    assert codes.min() == 0 and codes.max() == 255
    assert np.abs(dequantise_latent(codes, lo, step) - z).max() <= step.max() / 2 + 1e-12


def test_cli_bounded_round_trip_on_flat_parquet(cli, make_project, flat_parquet):
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [16], "latent_dim": 3},
        compression={
            "mode": "bounded",
            "bounds": {"default": {"rel": 1e-3}, "eta": {"abs": 1e-4}, "px": {"abs": 0.5}},
        },
    )
    assert cli(projects, name, "train", "--set", "training.epochs=1") == 0
    assert cli(projects, name, "compress") == 0
    assert cli(projects, name, "decompress") == 0
    original = pq.read_table(flat_parquet)
    restored = pq.read_table(projects / name / "output" / "decompressed" / "jets.parquet")
    assert restored.schema == original.schema
    assert restored.column("event").equals(original.column("event"))
    for col in ("pt", "eta", "phi", "mass", "px", "py", "frac"):
        x = original.column(col).to_numpy().astype(np.float64)
        y = restored.column(col).to_numpy().astype(np.float64)
        lim = {"eta": 1e-4, "px": 0.5}.get(col)
        assert np.all(np.abs(x - y) <= (lim if lim is not None else 1e-3 * np.abs(x))), col


def test_unknown_bound_column_fails_before_writing(cli, make_project, flat_parquet, caplog):
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [8], "latent_dim": 2},
        compression={
            "mode": "bounded",
            "bounds": {"default": {"rel": 1e-3}, "ETA2": {"abs": 1e-4}},
        },
    )
    # the learned probability model is trained for the bounds: train already refuses them
    assert cli(projects, name, "train", "--set", "training.epochs=1") == ConfigError.exit_code
    assert "did you mean 'eta'" in caplog.text
    assert not (projects / name / "output" / "model" / "model.json").exists()
    caplog.clear()
    assert (
        cli(projects, name, "train", "--set", "training.epochs=1", "--set", "rate.enabled=false")
        == 0
    )
    assert cli(projects, name, "compress") == ConfigError.exit_code
    assert "did you mean 'eta'" in caplog.text
    assert not list((projects / name / "output" / "compressed").glob("*"))
