"""The mixture of discretised logistics: exact integer mixtures, exact decoding.

A mixture's probabilities are integer sums of integer tables with integer weights, so the
decoder rebuilds them bit for bit; these tests check the round trip under every split of
the rows, that the coder spends what the training loss says, that the mixture learns what
one logistic cannot (a bimodal conditional), and that models whose weights or layout
differ are refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from baler_ext.codec.probability import escapes, tables
from baler_ext.codec.probability import learned as lrn
from baler_ext.codec.probability import mixture as mix
from baler_ext.codec.probability.fit import (
    QuantMade,
    feature_scaling,
    fit_rate_model,
    mixture_bits,
)
from baler_ext.codec.probability.intnet import IntMade
from baler_ext.errors import ContainerError


def random_mixtures(n: int, k: int, seed: int) -> tuple[mix.MixPlan, np.ndarray]:
    """Plans of random K-mixtures (wide, narrow, far-apart components) and codes drawn
    from them, with outliers that must be escaped."""
    rng = np.random.default_rng(seed)
    mu = rng.integers(-(1 << 36), 1 << 36, (n, 1)) + rng.integers(-(1 << 24), 1 << 24, (n, k))
    ell = rng.integers(0, lrn.MAX_SCALE + 1, (n, k))
    logits = rng.integers(-(1 << 17), 1 << 17, (n, k))
    p = mix.plan(mu, ell, mix.weights(logits, 10), lrn.P)
    comp = rng.integers(0, k, n)
    rows = np.arange(n)
    spread = 2.0 ** ((ell[rows, comp] - 16) / 4)
    codes = (mu[rows, comp] >> lrn.P) + np.rint(rng.logistic(0, 1, n) * spread).astype(np.int64)
    codes[rng.random(n) < 0.03] += rng.integers(-(1 << 40), 1 << 40)
    return p, codes


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 400),
    k=st.integers(2, 8),
    cut=st.floats(0, 1),
)
def test_mixture_streams_round_trip_whatever_the_split(seed, n, k, cut):
    p, codes = random_mixtures(n, k, seed)
    a = int(cut * n)
    first, second = np.arange(a), np.arange(a, n)
    enc = lrn.StreamEncoder()
    enc.add_mix(codes[first], p.rows(first))
    enc.add_mix(codes[second], p.rows(second))
    arrays = enc.finish()
    dec = lrn.StreamDecoder(arrays)
    out = np.concatenate([dec.take_mix(p.rows(first)), dec.take_mix(p.rows(second))])
    dec.check_done()
    assert np.array_equal(out, codes)


@pytest.mark.parametrize("inline", [True, False])
def test_mixture_coder_spends_its_ideal_code_length(inline):
    p, codes = random_mixtures(20_000, 3, 1)
    enc = lrn.StreamEncoder(inline)
    enc.add_mix(codes, p)
    arrays = enc.finish()
    escaped = p.symbols(codes)[1]
    assert escaped.sum() > 100
    # inline (1.3): the escapes are in the stream, at their Elias-gamma cost; in an
    # ``esc`` section (1.2): 64 bits each
    assert ("esc" in arrays) == (not inline)
    ideal = mix.bits(codes, p)
    if not inline:
        ideal[escaped] += 64 - escapes.escape_bits(codes[escaped])
    spent = arrays["bits"].nbytes * 8 + 64 * arrays.get("esc", np.zeros(0)).size
    assert abs(spent - ideal.sum()) < 0.01 * ideal.sum() + 64
    dec = lrn.StreamDecoder(arrays, inline)
    np.testing.assert_array_equal(dec.take_mix(p), codes)
    dec.check_done()


def test_bucket_and_offset_counts_are_the_mixture_of_the_tables():
    """The two-step coding gives every symbol the product probability of the full
    mixture table, built here the direct way (every symbol, every component)."""
    p, _ = random_mixtures(300, 4, 2)
    flat = tables.tables().reshape(-1, tables.ALPHABET)
    full = np.zeros((len(p), mix.WINDOW), np.int64)
    for j in range(p.table.shape[1]):
        for m in range(mix.WINDOW):
            src = m - p.delta[:, j]
            ok = (src >= 0) & (src <= 2 * tables.WINDOW)
            got = np.where(ok, flat[p.table[:, j], np.clip(src, 0, 256)], 0)
            full[:, m] += got * p.weight[:, j]
    bc = p.bucket_counts()
    total = p.weight.sum(axis=1) * tables.TOTAL
    assert np.array_equal(bc.sum(axis=1), total)
    assert np.array_equal(bc[:, : mix.N_BUCKETS], full.reshape(len(p), mix.N_BUCKETS, -1).sum(2))
    assert np.all(bc > 0)
    for b in (0, 7, 15):
        oc = p.offset_counts(np.full(len(p), b))
        assert np.array_equal(oc, full[:, b * mix.BUCKET : (b + 1) * mix.BUCKET])
        assert np.all(oc > 0)


def test_mixture_weights_are_built_from_basic_operations_and_fingerprinted():
    w = tables.mixture_weights()
    i = np.arange(tables.N_WEIGHTS)
    expect = np.maximum(np.floor(2.0**tables.WEIGHT_BITS * 2.0 ** (-i / 8)), 1)
    assert np.array_equal(w, expect.astype(np.int64))
    assert np.all(np.diff(w) <= 0) and w[0] == 1 << tables.WEIGHT_BITS
    assert tables.mixture_digest() == tables.mixture_digest()
    # a logit gap of 8 eighths (one bit) halves the weight
    got = mix.weights(np.array([[0, -8 << 10, -800 << 10]]), 10)
    assert got.tolist() == [[4096, 2048, 1]]


def test_quantised_mixture_network_equals_the_integer_network():
    torch.manual_seed(0)
    qm = QuantMade(3, 4, [24], n_out=9)
    with torch.no_grad():
        for lin in qm.layers:
            lin.weight.normal_(0, 0.3)
    net = qm.to_int()
    x = np.clip(np.rint(np.random.default_rng(0).normal(0, 300, (300, 7))), -16384, 16384)
    outs = net.forward(x)
    assert len(outs) == 9
    with torch.no_grad():
        touts = qm(torch.as_tensor(x))
    for a, b in zip(outs, touts, strict=True):
        assert np.array_equal(b.numpy() * 1024, a)
    back = IntMade.from_arrays(net.arrays())
    assert back.n_out == 9
    assert all(np.array_equal(a, b) for a, b in zip(back.forward(x), outs, strict=True))


def bimodal_codes(n: int, seed: int) -> np.ndarray:
    """Column b is a or -a (a coin flip) plus noise: bimodal given a."""
    rng = np.random.default_rng(seed)
    a = np.rint(rng.normal(0, 60, n))
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    b = np.rint(sign * a + rng.normal(0, 2, n))
    return np.stack([a, b], axis=1).astype(np.int64)


def fit(codes: np.ndarray, mixture: int, mixed: int | None = None) -> lrn.LearnedModel:
    probe = lrn.LearnedModel.untrained(["a", "b"])
    probe.offset, probe.exponent = feature_scaling(codes[:3000])
    ctx = np.zeros((len(codes), 0))
    return fit_rate_model(
        codes[:3000],
        ["a", "b"],
        ctx[:3000],
        (codes[3000:], ctx[3000:]),
        event_context=False,
        latent=None,
        hidden=[32, 32],
        epochs=40,
        batch_size=256,
        learning_rate=1e-2,
        seed=0,
        mixture=mixture,
        mixed=mixed,
    ).model


@pytest.fixture(scope="module")
def models() -> dict[int, lrn.LearnedModel]:
    codes = bimodal_codes(4000, 0)
    return {k: fit(codes, k) for k in (1, 3)}


def test_mixture_learns_a_bimodal_conditional_and_decodes_exactly(models):
    codes = bimodal_codes(1500, 1)
    bits = {k: lrn.code_bits(m, codes, None, None).mean(axis=0) for k, m in models.items()}
    # one logistic must cover both modes of b; the mixture puts one component on each
    assert bits[3][1] < bits[1][1] - 2
    model = models[3]
    assert model.mixture == 3 and model.net.n_out == 9
    streams = lrn.encode_codes(model, codes, None, None)
    spent = sum(s["bits"].nbytes * 8 + 64 * s.get("esc", np.zeros(0)).size for s in streams)
    assert spent / len(codes) < bits[3].sum() + 0.05
    for known in ({}, {0: codes[:, 0]}):
        out = lrn.decode_codes(model, streams, len(codes), None, None, known=known)
        assert np.array_equal(out, codes)
    back = lrn.LearnedModel.from_parts(model.meta(), model.to_arrays())
    assert np.array_equal(lrn.decode_codes(back, streams, len(codes), None, None), codes)


def test_training_loss_is_the_mixture_coders_code_length(models):
    """mixture_bits (the loss) and the integer mixture's code length agree."""
    model = models[3]
    codes = bimodal_codes(3000, 2)
    coder = lrn.code_bits(model, codes, None, None)[:, 1].mean()
    x = model.inputs(len(codes), None, None, None)
    x[:, model.net.n_ctx :] = model.column_features(codes)
    outs = model.net.forward(x)
    k = 3
    e = float(model.exponent[1])
    mu = model.offset[1] + np.stack(outs[:k], -1)[:, 1] / 1024 * 2.0**-e
    ell = np.clip((np.stack(outs[k : 2 * k], -1)[:, 1] >> 10) - 4 * e, 0, lrn.MAX_SCALE)
    lam = np.stack(outs[2 * k :], -1)[:, 1] >> 10
    loss = mixture_bits(
        torch.as_tensor(codes[:, 1], dtype=torch.float64),
        torch.as_tensor(mu),
        torch.as_tensor(ell, dtype=torch.float64),
        torch.as_tensor(lam, dtype=torch.float64),
    )
    assert abs(float(loss.mean()) - coder) < 0.15


def test_mixture_models_from_other_weights_or_layouts_are_refused(models):
    model = models[3]
    meta, arrays = model.meta(), model.to_arrays()
    with pytest.raises(ContainerError, match="mixture weights"):
        lrn.LearnedModel.from_parts({**meta, "mixture_tables": "0" * 64}, arrays)
    with pytest.raises(ContainerError, match="does not match"):
        lrn.LearnedModel.from_parts({**meta, "mixture": 2}, arrays)
    with pytest.raises(ContainerError, match="mixture size"):
        lrn.LearnedModel.from_parts({**meta, "mixture": 99}, arrays)
    one = models[1].meta()
    assert "mixture" not in one  # one-logistic models keep the meta (and hash) they had


def test_columns_after_the_mixed_ones_use_the_first_component_alone(models):
    """A model that mixes only column a codes b as one logistic: b costs what the
    one-logistic model pays, and the stream still decodes exactly."""
    codes = bimodal_codes(4000, 0)
    model = fit(codes, 3, mixed=1)
    assert model.uses_mixture(0) and not model.uses_mixture(1)
    test = bimodal_codes(1500, 1)
    bits = lrn.code_bits(model, test, None, None).mean(axis=0)
    one = lrn.code_bits(models[1], test, None, None).mean(axis=0)
    assert abs(bits[1] - one[1]) < 0.3
    streams = lrn.encode_codes(model, test, None, None)
    assert np.array_equal(lrn.decode_codes(model, streams, len(test), None, None), test)
    back = lrn.LearnedModel.from_parts(model.meta(), model.to_arrays())
    assert back.mixed == 1


def test_a_mixture_started_from_one_logistic_begins_at_its_rate(models):
    """The warm start copies the logistic into component 0 and gives the others a weight
    of 2^-6: before any training the mixture codes within a few hundredths of a bit of
    the logistic (the price of the light components), and decodes exactly."""
    codes = bimodal_codes(4000, 0)
    ctx = np.zeros((len(codes), 0))
    start = fit_rate_model(
        codes[:3000],
        ["a", "b"],
        ctx[:3000],
        (codes[3000:], ctx[3000:]),
        event_context=False,
        latent=None,
        hidden=[32, 32],
        epochs=0,
        batch_size=256,
        learning_rate=1e-2,
        seed=0,
        mixture=3,
        start=models[1],
    ).model
    test = bimodal_codes(1500, 1)
    one = lrn.code_bits(models[1], test, None, None).mean(axis=0)
    mixed = lrn.code_bits(start, test, None, None).mean(axis=0)
    assert np.all(mixed - one < 0.1) and np.all(mixed - one > -0.5)
    streams = lrn.encode_codes(start, test, None, None)
    assert np.array_equal(lrn.decode_codes(start, streams, len(test), None, None), test)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_mixture_counts_are_exact_at_the_largest_weights(k):
    """The counts accumulate in uint32 (``mixture._accumulator``): with every component
    at the largest weight (equal logits, the sum's worst case 8 * 2^12 * 2^16 = 2^31)
    they equal the int64 sums of the tables, and each row's buckets, offsets and escape
    add up to its total (the divisor the coder uses)."""
    rng = np.random.default_rng(k)
    n = 500
    mu = rng.integers(-(1 << 20), 1 << 20, (n, 1)) + rng.integers(-(1 << 22), 1 << 22, (n, k))
    ell = rng.integers(0, lrn.MAX_SCALE + 1, (n, k))
    p = mix.plan(mu, ell, mix.weights(np.zeros((n, k), np.int64), 10), lrn.P)
    assert np.all(p.weight == tables.mixture_weights()[0])
    # window edge 16 b is symbol 16 b - delta of a component's table (cumulative counts,
    # 0 below the table, its total above)
    c = tables.cumulative()
    edges = np.arange(mix.N_BUCKETS + 1) * mix.BUCKET
    ref = np.zeros((n, mix.N_BUCKETS + 1), np.int64)
    for j in range(k):
        y = np.clip(edges[None, :] - p.delta[:, j, None], 0, c.shape[1] - 1)
        ref += c[p.table[:, j, None], y] * p.weight[:, j, None]
    bc = p.bucket_counts().astype(np.int64)
    np.testing.assert_array_equal(bc[:, :-1], np.diff(ref, axis=1))
    np.testing.assert_array_equal(bc.sum(axis=1), p.totals())
    bucket = rng.integers(0, mix.N_BUCKETS, n)
    oc = p.offset_counts(bucket).astype(np.int64)
    np.testing.assert_array_equal(oc.sum(axis=1), bc[np.arange(n), bucket])
