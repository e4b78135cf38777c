"""The learned probability model: exact integer network, exact tables, exact decoding.

Decoding must rebuild every probability bit for bit, or the range decoder returns
garbage. These tests perturb everything that may differ between machines — summation
order, blocking and batch splits, thread counts, evaluation grouping — and require
identical integers, identical codes and identical values.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from baler_ext.codec.probability import learned as lrn
from baler_ext.codec.probability import tables
from baler_ext.codec.probability.fit import QuantMade, fit_rate_model, logistic_bits
from baler_ext.codec.probability.intnet import A_MAX, Incremental, IntMade, check_exact
from baler_ext.errors import ContainerError


def random_net(n_ctx: int, n_cols: int, hidden: tuple[int, ...], seed: int) -> IntMade:
    """A trained-looking integer MADE: QuantMade with random weights, converted."""
    torch.manual_seed(seed)
    qm = QuantMade(n_ctx, n_cols, list(hidden))
    with torch.no_grad():
        for lin in qm.layers:
            lin.weight.normal_(0, 0.3)
            lin.bias.normal_(0, 30.0)
    return qm.to_int()


def inputs(n: int, n_in: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.normal(0, 300, (n, n_in))), -(1 << 14), 1 << 14)


def test_quantised_training_network_equals_the_integer_network():
    """The float64 QAT forward (torch, any thread count) computes exactly the integers
    the numpy integer network computes: what is trained is what decodes."""
    torch.manual_seed(0)
    qm = QuantMade(3, 5, [32, 16])
    with torch.no_grad():
        for lin in qm.layers:
            lin.weight.normal_(0, 0.3)
    net = qm.to_int()
    x = inputs(500, 8, 1)
    loc, scale = net.forward(x)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.no_grad():
            tl, ts = qm(torch.as_tensor(x))
        assert np.array_equal(tl.numpy() * 1024, loc) and np.array_equal(ts.numpy() * 1024, scale)
    torch.set_num_threads(1)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_ctx=st.integers(0, 4),
    n_cols=st.integers(1, 6),
    hidden=st.sampled_from([(8,), (16, 8), (5, 7, 3)]),
)
def test_integer_network_is_exact_under_any_summation_order(seed, n_ctx, n_cols, hidden):
    """Full GEMM, row blocks of any size, permuted inputs (another summation order), a
    reversed accumulation loop and the decoder's one-column-at-a-time evaluation all give
    the same integers."""
    net = random_net(n_ctx, n_cols, hidden, seed)
    x = inputs(97, net.n_in, seed)
    loc, scale = net.forward(x)
    # batch splits
    parts = [net.forward(x[a : a + 13]) for a in range(0, len(x), 13)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), loc)
    # another summation order: inputs permuted with the weights
    perm = np.random.default_rng(seed).permutation(net.n_in)
    a = x[:, perm]
    for i, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        wp = w[:, perm] if i == 0 else w
        z = np.zeros((len(x), w.shape[0]))
        for j in reversed(range(wp.shape[1])):  # a scalar loop, last term first
            z += a[:, j : j + 1] * wp[:, j]
        z += b
        a = np.clip(np.floor(z * 2.0**-10), 0.0, A_MAX) if i < len(net.weights) - 1 else z
    assert np.array_equal(a[:, 0::2].astype(np.int64), loc)
    assert np.array_equal(a[:, 1::2].astype(np.int64), scale)
    # the decoder's incremental evaluation (column block filled step by step)
    xi = x.copy()
    xi[:, net.n_ctx :] = 0.0
    inc = Incremental(net, xi)
    for i in range(n_cols):
        li, si = inc.outputs(i)
        assert np.array_equal(li, loc[:, i]) and np.array_equal(si, scale[:, i])
        xi[:, net.n_ctx + i] = x[:, net.n_ctx + i]


def test_outputs_depend_only_on_earlier_columns():
    """The MADE masks: changing column j never changes the outputs of columns <= j."""
    net = random_net(2, 5, (24, 24), 3)
    x = inputs(50, net.n_in, 4)
    loc, scale = net.forward(x)
    for j in range(5):
        y = x.copy()
        y[:, net.n_ctx + j] += 777
        l2, s2 = net.forward(y)
        assert np.array_equal(l2[:, : j + 1], loc[:, : j + 1])
        assert np.array_equal(s2[:, : j + 1], scale[:, : j + 1])


def test_networks_that_could_be_inexact_are_refused():
    net = random_net(1, 3, (8,), 0)
    w = [a.copy() for a in net.weights]
    w[0][0, 0] += 0.5
    with pytest.raises(ContainerError, match="non-integer"):
        IntMade(1, 3, w, net.biases, net.degrees)
    w = [a.copy() for a in net.weights]
    w[-1][0, -1] = 5.0  # output 0 may not see the last hidden unit (degree 2)
    with pytest.raises(ContainerError, match="masks"):
        IntMade(1, 3, w, net.biases, net.degrees)
    w = [a.copy() for a in net.weights]
    w[0][0, 0] = float(1 << 25)  # beyond what the exactness proof accepts
    with pytest.raises(ContainerError, match="out of range"):
        IntMade(1, 3, w, net.biases, net.degrees)
    # a layer so wide that its sums could pass 2**53 is refused even with legal weights
    wide = 1 << 15
    with pytest.raises(ContainerError, match="exact integer range"):
        IntMade(
            wide,
            1,
            [np.full((2, wide + 1), float(1 << 24)) * np.r_[np.ones(wide), 0]],
            [np.zeros(2)],
            [],
        )
    check_exact(net)  # the untouched network passes


def test_tables_are_built_from_basic_operations_and_fingerprinted():
    x = np.linspace(-700, 700, 20001)
    rel = np.abs(tables.exp_basic(x) / np.exp(x) - 1)
    assert rel.max() < 1e-13
    t = tables.tables()
    assert t.shape == (tables.N_SCALES, tables.N_FRAC, tables.ALPHABET)
    assert np.all(t >= 1) and np.all(t.sum(axis=2) == tables.TOTAL)
    assert tables.table_digest() == tables.table_digest()
    assert tables._build().tobytes() == t.tobytes()  # rebuilt bit for bit
    # the tables are the discretised logistic they claim to be
    s = 2.0 ** ((20 - tables.LADDER_ZERO) / 4)
    n = np.arange(-tables.WINDOW, tables.WINDOW + 1)
    mu = (3 + 0.5) / tables.N_FRAC
    ref = 1 / (1 + np.exp(-(n - mu + 0.5) / s)) - 1 / (1 + np.exp(-(n - mu - 0.5) / s))
    got = t[20, 3, :-1] / tables.TOTAL
    assert np.abs(got - ref).max() < 3 * tables.ALPHABET / tables.TOTAL


def test_a_model_from_a_machine_with_other_tables_is_refused():
    model = lrn.LearnedModel.untrained(["a", "b"])
    meta = model.meta()
    meta["tables"] = "0" * 64
    with pytest.raises(ContainerError, match="different probability tables"):
        lrn.LearnedModel.from_parts(meta, model.to_arrays())
    back = lrn.LearnedModel.from_parts(model.meta(), model.to_arrays())
    assert back.columns == ["a", "b"]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 300))
def test_streams_round_trip_with_wide_scales_escapes_and_split_bits(seed, n):
    rng = np.random.default_rng(seed)
    mu = rng.integers(-(1 << 30), 1 << 30, n).astype(np.int64)
    ell = rng.integers(0, lrn.MAX_SCALE + 1, n).astype(np.int64)
    spread = (2.0 ** ((ell - 16) / 4)).astype(np.float64)
    k = (mu >> lrn.P) + np.rint(rng.logistic(0, 1, n) * spread).astype(np.int64)
    k[rng.random(n) < 0.05] += rng.integers(-(1 << 40), 1 << 40)  # outliers: escapes
    enc = lrn.StreamEncoder()
    half = n // 2
    enc.add(k[:half], mu[:half], ell[:half])
    enc.add(k[half:], mu[half:], ell[half:])
    arrays = enc.finish()
    dec = lrn.StreamDecoder(arrays)
    out = np.concatenate([dec.take(mu[:half], ell[:half]), dec.take(mu[half:], ell[half:])])
    dec.check_done()
    assert np.array_equal(out, k)


def correlated_codes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes of 4 columns with strong dependences, 2 objects per event."""
    rng = np.random.default_rng(seed)
    a = np.rint(rng.normal(0, 40, n))
    b = np.rint(0.8 * a + rng.normal(0, 3, n))
    c = np.rint(np.abs(a) / 4 + rng.laplace(0, 2, n))
    d = np.rint(rng.normal(0, 500, n))
    d[1::2] = -d[0::2][: len(d[1::2])] + np.rint(rng.normal(0, 5, len(d[1::2])))
    first = np.zeros(n, bool)
    first[0::2] = True
    return np.stack([a, b, c, d], axis=1).astype(np.int64), first


@pytest.fixture(scope="module")
def trained_model() -> lrn.LearnedModel:
    codes, first = correlated_codes(4000, 0)
    u = np.random.default_rng(9).uniform(-0.5, 0.5, codes.shape)
    model0 = lrn.LearnedModel.untrained(list("abcd"), event_context=True)
    _, prev = lrn.event_phases(first, len(codes))
    from baler_ext.codec.probability.fit import feature_scaling

    model0.offset, model0.exponent = feature_scaling(codes[:3000])
    ctx = model0.inputs(len(codes), prev, model0.column_features(codes, u), None)
    ctx = ctx[:, : model0.net.n_ctx]
    return fit_rate_model(
        codes[:3000],
        list("abcd"),
        ctx[:3000],
        (codes[3000:], ctx[3000:]),
        event_context=True,
        latent=None,
        hidden=[32, 32],
        epochs=40,
        batch_size=256,
        learning_rate=3e-3,
        seed=0,
        dither=(u[:3000], u[3000:]),
    ).model


def test_learned_model_learns_dependences_and_beats_static_histograms(trained_model):
    codes, first = correlated_codes(2000, 1)
    u = np.random.default_rng(2).uniform(-0.5, 0.5, codes.shape)
    bits = lrn.code_bits(trained_model, codes, first, None, u).sum(axis=0) / len(codes)

    def entropy(k):
        _, cnt = np.unique(k, return_counts=True)
        p = cnt / cnt.sum()
        return -(p * np.log2(p)).sum()

    static = np.array([entropy(codes[:, j]) for j in range(4)])
    assert bits[1] < static[1] - 2  # b from a
    assert bits[3] < static[3] - 1.5  # d from the previous object's d (half the rows)
    streams = lrn.encode_codes(trained_model, codes, first, None, u)
    actual = np.array([sum(a.nbytes for a in s.values()) * 8 / len(codes) for s in streams])
    assert np.all(actual < bits + 0.2)  # the range coder spends what the model says


@pytest.mark.parametrize("split", [1, 7, 2000])
def test_encoded_chunks_decode_identically_whatever_the_batching(trained_model, split):
    """The decoder evaluates the network phase by phase and column by column; encoding
    in one GEMM or in row blocks gives the same stream, and decoding returns the codes."""
    codes, first = correlated_codes(600, 3)
    u = np.random.default_rng(4).uniform(-0.5, 0.5, codes.shape)
    streams = lrn.encode_codes(trained_model, codes, first, None, u)
    _, prev = lrn.event_phases(first, len(codes))
    feats = trained_model.column_features(codes, u)
    x = trained_model.inputs(len(codes), prev, feats, None)
    x[:, trained_model.net.n_ctx :] = feats
    blocks = [trained_model.net.forward(x[a : a + split]) for a in range(0, len(x), split)]
    loc = np.concatenate([b[0] for b in blocks])
    full, _ = trained_model.net.forward(x)
    assert np.array_equal(loc, full)
    out = lrn.decode_codes(trained_model, streams, len(codes), first, None, u=u)
    assert np.array_equal(out, codes)
    # the same with column 2 coded elsewhere (a static fallback)
    out = lrn.decode_codes(
        trained_model, streams, len(codes), first, None, known={2: codes[:, 2]}, u=u
    )
    assert np.array_equal(out, codes)
    # decoding with other dither offsets does not give the codes (they are part of the file)
    try:
        bad = lrn.decode_codes(trained_model, streams, len(codes), first, None, u=u[::-1].copy())
    except ContainerError:
        pass
    else:
        assert not np.array_equal(bad, codes)


def test_loss_is_the_code_length_of_the_tables():
    """The training loss (analytic discretised logistic) and the tables' code length agree."""
    rng = np.random.default_rng(0)
    for ell in (10, 18, 26):
        s = 2.0 ** ((ell - 16) / 4)
        k = np.rint(rng.logistic(0.3, s, 5000))
        loss = logistic_bits(torch.as_tensor(k), torch.tensor(0.3), torch.tensor(float(ell)))
        frac = int(0.3 * tables.N_FRAC)
        cnt = tables.tables()[
            ell, frac, np.clip(k, -tables.WINDOW, tables.WINDOW).astype(int) + tables.WINDOW
        ]
        table_bits = np.log2(tables.TOTAL) - np.log2(cnt)
        assert abs(float(loss.mean()) - table_bits.mean()) < 0.03


@pytest.mark.parametrize("z", [3, 6])
def test_loss_follows_a_wide_codes_cost_beyond_the_tables_16_bits(z):
    """A wide code is split into a table symbol and uniform low bits, so a tail code costs
    more than the tables' 16-bit floor; the loss must say so and keep its gradient (a
    loss floored at 16 bits left the tails of the widest columns untrained)."""
    ell = 80  # logistic scale 2^16 codes: 4 table steps and the low bits
    k = np.full(4000, int(z * 2 ** ((ell - 16) / 4)), np.int64)
    mu = torch.tensor(0.0, requires_grad=True)
    loss = logistic_bits(torch.tensor(float(k[0])), mu, torch.tensor(float(ell)))
    loss.backward()
    enc = lrn.StreamEncoder()
    enc.add(k, np.zeros(len(k), np.int64), np.full(len(k), ell, np.int64))
    spent = enc.finish()["bits"].nbytes * 8 / len(k)
    assert spent > 20 and float(loss) > 20
    assert abs(float(loss) - spent) < 0.2
    assert mu.grad is not None and float(mu.grad) != 0.0


def context_free_fit(rows: int, seed: int, **kwargs):
    """A small rate fit of :func:`correlated_codes` without context (4/5 train, 1/5
    validation)."""
    codes, _ = correlated_codes(rows, seed)
    model0 = lrn.LearnedModel.untrained(list("abcd"), event_context=False)
    ctx = np.zeros((len(codes), model0.net.n_ctx))
    cut = rows * 4 // 5
    settings = {"hidden": [16], "batch_size": 128, "learning_rate": 4e-3, "seed": 0}
    return fit_rate_model(
        codes[:cut],
        list("abcd"),
        ctx[:cut],
        (codes[cut:], ctx[cut:]),
        event_context=False,
        latent=None,
        **{**settings, **kwargs},
    )


@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_rate_schedules_train_and_cosine_ends_at_its_floor(schedule):
    """Both learning-rate schedules train the model below the static rate; the cosine
    one falls from the learning rate to COSINE_FLOOR of it over the epochs."""
    from baler_ext.codec.probability.fit import COSINE_FLOOR

    result = context_free_fit(1500, 3, epochs=6, patience=0, schedule=schedule)
    vals = [h["val_bits_per_row"] for h in result.history]
    assert len(vals) == 6 and vals[-1] < vals[0]
    lrs = [h["lr"] for h in result.history]
    if schedule == "cosine":
        assert lrs[-1] == pytest.approx(4e-3 * COSINE_FLOOR)
        assert all(a > b for a, b in itertools.pairwise(lrs))


def test_unknown_rate_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine or plateau"):
        context_free_fit(300, 4, epochs=1, schedule="step")
