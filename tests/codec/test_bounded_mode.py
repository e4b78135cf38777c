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


@settings(max_examples=40, deadline=None)
@given(rows=st.sets(st.integers(0, 5000), max_size=300), n_extra=st.integers(1, 70_000))
def test_exception_gaps_round_trip_in_the_narrowest_dtype(rows, n_extra):
    from baler_ext.codec.modes import exception_gaps, exception_rows

    r = np.array(sorted(rows), np.uint32)
    if r.size:
        r[-1] += n_extra  # a long gap needs a wider dtype
    gaps = exception_gaps(r)
    assert gaps.dtype.kind == "u"
    widest = int(np.diff(r.astype(np.int64), prepend=-1).max()) - 1 if r.size else 0
    assert gaps.itemsize == next(b for b in (1, 2, 4, 8) if widest < 2 ** (8 * b))
    n = int(r.max()) + 1 if r.size else 1
    assert np.array_equal(exception_rows({"exc_gap": gaps}, n), r.astype(np.int64))


def test_dense_exceptions_cost_about_a_bit_each_and_old_files_still_decode():
    """A sentinel in most rows (the CMS b-tag's -1 in 62 % of jets) is stored as row gaps:
    a fraction of the bytes of uint32 rows, decoded to the same values; a file of the
    previous writer (``exc_idx``) decodes unchanged; malformed gaps are refused."""
    import zstandard

    from baler_ext.errors import ContainerError

    values = jets(20_000, seed=4)
    sentinel = np.random.default_rng(1).random(len(values)) < 0.62
    values[sentinel, 1] = -1.0
    mode = make_mode(tiny_trained(values[~sentinel]), latent_policy="never")
    mode.configure({"mass": "float32"}, set(), exact={"eta": np.array([-1.0])})
    sections = mode.encode(values)
    gaps = sections["res/eta/exc_gap"]
    rows = np.flatnonzero(sentinel).astype(np.uint32)
    packed = len(zstandard.ZstdCompressor(level=19).compress(gaps.tobytes()))
    as_rows = len(zstandard.ZstdCompressor(level=19).compress(rows.tobytes()))
    p = sentinel.mean()
    entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p)) * len(values)  # of the mask
    assert packed * 8 < 1.25 * entropy and packed * 3 < as_rows
    out = mode.decode(sections, len(values))
    assert np.all(out[sentinel, 1] == -1.0)
    check(values[~sentinel], out[~sentinel])
    old = {k: v for k, v in sections.items() if k != "res/eta/exc_gap"}
    old["res/eta/exc_idx"] = rows
    assert np.array_equal(mode.decode(old, len(values)), out)
    with pytest.raises(ContainerError, match="both"):
        mode.decode({**sections, "res/eta/exc_idx": rows}, len(values))
    bad = dict(sections)
    bad["res/eta/exc_gap"] = np.array([len(values)], np.uint32)
    with pytest.raises(ContainerError, match="malformed"):
        mode.decode(bad, len(values))


def test_a_relative_column_stores_its_signs_only_when_one_is_not_positive():
    x = jets(500, seed=3)
    mode = make_mode(tiny_trained(x), latent_policy="never")
    assert np.all(x[:, 0] > 0) and np.any(x[:, 3] == 0)
    sections = mode.encode(x)
    # (1.3) pt is positive everywhere: no sign section; mass has exact zeros: it keeps one
    assert "res/pt/sign" not in sections and "res/mass/sign" in sections
    check(x, mode.decode(sections, len(x)))
    y = x.copy()
    y[::5, 0] *= -1.0
    y[7, 0] = 0.0
    sections = mode.encode(y)
    assert "res/pt/sign" in sections
    out = mode.decode(sections, len(y))
    check(y, out)
    assert out[7, 0] == 0.0 and np.all(np.sign(out[:, 0]) == np.sign(y[:, 0]))
