"""The bounded mode with a learned probability model: bounds, exact decoding, context."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baler_ext.cli import main
from baler_ext.codec.modes import ChunkContext
from baler_ext.config import RateConfig
from baler_ext.errors import ContainerError
from baler_ext.stages.rate import fit_learned

from .test_relations import COLS, limits, mode_for, table


def events_of(n: int) -> np.ndarray:
    first = np.zeros(n, bool)
    first[0::2] = True
    return first


def learned_mode(x: np.ndarray, rate: RateConfig | None = None, **cfg):
    """A bounded mode whose learned model was fitted on ``x`` (2 objects per event, one
    integer column ``n`` as context); by default a mixture of 4 trained from scratch, so
    that the mixture coder is what the tests exercise."""
    n = len(x)
    ints = {"n": np.rint(np.abs(x[:, 3]) / 10).astype(np.int64), "event": np.arange(n) // 2}
    mode = mode_for(x, **cfg)
    idx = np.arange(n)
    model = fit_learned(
        mode,
        x,
        idx[: n * 3 // 4],
        idx[n * 3 // 4 :],
        events_of(n),
        ints,
        rate or RateConfig(hidden=[16], epochs=3, order="natural", mixture_start="scratch"),
        seed=0,
    )
    mode.learned = model
    mode.configure({}, set())
    return mode, ChunkContext(events_of(n), ints)


@pytest.fixture(scope="module")
def fitted():
    return learned_mode(table(3000, seed=1))


def test_learned_path_round_trip_and_context(fitted):
    mode, _ = fitted
    model = mode.learned
    assert model.mixture == 4 and model.uses_mixture(0)
    # rate.mixture_columns = "all": the derived columns' residuals use the mixture too
    assert model.mixed is None and all(model.uses_mixture(i) for i in range(len(model.columns)))
    assert model.event_context and model.aux_names == ["n"]  # not the event id
    assert set(model.columns) == set(COLS)  # independent and derived columns
    x = table(1000, seed=2)
    ctx = ChunkContext(events_of(1000), {"n": np.rint(np.abs(x[:, 3]) / 10).astype(np.int64)})
    sections = mode.encode(x, ctx)
    assert any(k.startswith("lrn/") for k in sections)
    out = mode.decode(sections, len(x), ctx)
    assert np.all(np.abs(out - x) <= limits(x, COLS))
    assert mode.header()["learned"]["order"] == model.columns
    # the decoder needs the same context: without the integer column it refuses
    with pytest.raises(ContainerError, match="integer columns"):
        mode.decode(sections, len(x), ChunkContext(events_of(1000), {}))


def test_files_with_escape_sections_still_decode(fitted, monkeypatch):
    """Format 1.2 stored escaped codes in an ``esc`` section per column; 1.3 codes them in
    the stream. A 1.2 header (no ``escapes`` key) selects the old layout."""
    mode, _ = fitted
    monkeypatch.setattr(mode.trained, "learned", mode.learned, raising=False)
    x = table(500, seed=4)
    x[::7, COLS.index("other")] *= 1e4  # far outside the model's windows: escapes
    ctx = ChunkContext(events_of(500), {"n": np.rint(np.abs(x[:, 3]) / 10).astype(np.int64)})
    inline = mode.encode(x, ctx)
    assert not any(k.endswith("/esc") for k in inline)
    # 1.3 packs every learned stream into lrn/bits, cut by lrn/words (count + 1 per column)
    assert {"lrn/bits", "lrn/words"} <= set(inline)
    assert not any(k.startswith("lrn/") and k.count("/") == 2 for k in inline)
    words = inline["lrn/words"].astype(np.int64)
    assert (
        words.size == len(mode.learned.columns)
        and (words - 1)[words > 0].sum() == inline["lrn/bits"].size
    )
    for bad in (words + 1, words[:-1], words - 2):
        tampered = {**inline, "lrn/words": bad}
        with pytest.raises(ContainerError):
            mode.decode(tampered, len(x), ctx)
    settings = mode.header()
    assert settings["learned"]["escapes"] == "inline"
    mode.inline_escapes = False
    try:
        old = mode.encode(x, ctx)
    finally:
        mode.inline_escapes = True
    assert any(k.startswith("lrn/") and k.endswith("/esc") for k in old)
    assert "lrn/bits" not in old and any(k.endswith("/bits") for k in old)
    legacy = {
        **settings,
        "learned": {k: v for k, v in settings["learned"].items() if k != "escapes"},
    }
    mode.load_header(legacy)
    try:
        assert not mode.inline_escapes
        out = mode.decode(old, len(x), ctx)
    finally:
        mode.load_header(settings)
    assert mode.inline_escapes
    np.testing.assert_array_equal(out, mode.decode(inline, len(x), ctx))
    assert np.all(np.abs(out - x) <= limits(x, COLS))
    with pytest.raises(ContainerError, match="escapes"):
        mode.load_header({**settings, "learned": {**settings["learned"], "escapes": "zip"}})


def test_the_train_stage_keeps_the_best_of_one_logistic_and_two_mixtures():
    rate = RateConfig(hidden=[16], epochs=3, order="natural", mixture=3, mixture_start="both")
    mode, _ = learned_mode(table(2000, seed=5), rate)
    trials = mode.learned.settings["mixture_trials"]
    rates = {k: v for k, v in trials.items() if k != "chosen"}
    assert set(rates) == {"one logistic", "mixture from one logistic", "mixture from scratch"}
    assert trials["chosen"] == min(rates, key=lambda k: rates[k])
    assert mode.learned.mixture == (1 if trials["chosen"] == "one logistic" else 3)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.sampled_from([1, 2, 5, 64, 300]),
    sign=st.sampled_from([-1.0, 1.0]),
    rel_sign=st.sampled_from([-1.0, 0.0, 1.0]),
    outliers=st.booleans(),
)
def test_learned_path_meets_every_bound_on_another_device(
    fitted, another_device, seed, n, sign, rel_sign, outliers
):
    """Values the model never saw (outliers, zeros, negative zeros) and the worst drift of
    every floating-point prediction: the codes decode exactly, every bound holds."""
    mode, _ = fitted
    x = table(n, seed=seed)
    if outliers:
        x[::3, 3] = -0.0
        x[1::4, 0] *= 1e6
        x[2::5, 8] = 1e-300
    ctx = ChunkContext(events_of(n), {"n": np.arange(n) % 7})
    sections = mode.encode(x, ctx)
    lim = limits(x, COLS)
    for signs in ((None, None), (sign, rel_sign)):
        if signs[0] is None:
            out = mode.decode(sections, n, ctx)
        else:
            with another_device(mode, *signs):
                out = mode.decode(sections, n, ctx)
        assert np.all(np.abs(out - x) <= lim), signs
        zero = x == 0
        assert np.array_equal(np.signbit(out[zero]), np.signbit(x[zero]))


def test_learned_codes_do_not_depend_on_floating_point_drift(fitted, another_device):
    """The learned streams decode to the same codes whatever the predictions: the drift
    moves values within their bound but never the probabilities."""
    mode, ctx = fitted
    x = table(400, seed=5)
    ctx = ChunkContext(events_of(400), {"n": np.arange(400) % 5})
    sections = mode.encode(x, ctx)
    a = mode._decode_learned(sections, 400, ctx)
    with another_device(mode, 1.0, 1.0):
        b = mode._decode_learned(sections, 400, ctx)
    assert np.array_equal(a, b)


def test_cli_learned_model_end_to_end(make_project, flat_parquet, capsys):
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [16], "latent_dim": 3},
        # "learned": the train stage must train the model that this setting demands
        compression={
            "mode": "bounded",
            "bounds": {"default": {"rel": 1e-3}, "eta": {"abs": 1e-4}},
            "probability_model": "learned",
        },
        rate={"epochs": 3, "hidden": [16], "order": "search"},
    )
    assert main(["--projects-dir", str(projects), "-p", name, "--mode", "train", "-q"]) == 0
    # compress and decompress with the learned model run without importing torch
    code = (
        "import sys; from baler_ext.cli import main; "
        f"rcs = [main(['--projects-dir', {str(projects)!r}, '-p', {name!r}, '--mode', m, "
        "'-q']) for m in ('compress', 'decompress')]; "
        "print(rcs, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[-3:] == ["[0,", "0]", "False"], out
    assert main(["--projects-dir", str(projects), "-p", name, "--mode", "info", "-q"]) == 0
    out = projects / name / "output"
    hist = (out / "model" / "rate_history.csv").read_text().splitlines()
    assert hist[0] == "epoch,train_bits_per_row,val_bits_per_row,lr,refit" and len(hist) >= 2
    # no refit by default (rate.refit): every epoch is the choosing fit's
    assert {line.rsplit(",", 1)[1] for line in hist[1:]} == {"0"}
    meta = json.loads((out / "model" / "rate_model.json").read_text())
    assert meta["event_context"]  # flat table with an event column
    assert meta["aux"]["names"] == ["matched"]
    assert set(meta["settings"]["order_trials"]) == {"natural", "greedy", "reverse_greedy"}
    info = json.loads((out / "compressed" / "jets.info.json").read_text())
    assert info["learned"]["order"] == meta["columns"] and info["dither"]
    assert info["streams"]["pt"] in ("learned", "static")
    original, restored = (
        pq.read_table(flat_parquet),
        pq.read_table(out / "decompressed" / "jets.parquet"),
    )
    for col in ("pt", "eta", "phi", "mass", "px", "py"):
        x = original.column(col).to_numpy().astype(np.float64)
        y = restored.column(col).to_numpy().astype(np.float64)
        lim = 1e-4 if col == "eta" else 1e-3 * np.abs(x)
        assert np.all(np.abs(x - y) <= lim), col
    assert original.column("event").equals(restored.column("event"))
