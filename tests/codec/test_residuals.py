"""Property tests: every value meets its bound, also when the decoder's prediction differs.

The decompressing device is simulated by perturbing the prediction by up to the
assumed device discrepancy :math:`D(p) = \\varepsilon (|p| + M)` before decoding.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from baler_ext.codec.residuals import EPS_PRED, Bound, ColumnCoder, resolve_bounds
from baler_ext.errors import ConfigError

SPECIAL = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1e-300,
    -1e-300,
    1e300,
    -1e300,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1.0,
    -1.0,
    3.0,
]
values_st = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1e4, 1e4),
    st.floats(1e-3, 1e3),
)
bound_st = st.one_of(
    st.builds(Bound, st.just("abs"), st.sampled_from([1e-6, 1e-4, 1e-3, 0.1, 1.0, 1e3])),
    st.builds(Bound, st.just("rel"), st.sampled_from([1e-6, 1e-4, 1e-3, 1e-2, 0.3])),
)


def assert_within(x: np.ndarray, xh: np.ndarray, bound: Bound) -> None:
    err = np.abs(x - xh)
    limit = bound.limit(x)
    bad = ~(err <= limit)
    assert not bad.any(), (x[bad][:5], xh[bad][:5], limit[bad][:5])


def perturbations(p: np.ndarray, coder: ColumnCoder, rng: np.random.Generator) -> list:
    d = EPS_PRED * (np.abs(p) + coder.magnitude)
    with np.errstate(all="ignore"):
        return [p, p + d, p - d, p + rng.uniform(-1, 1, p.shape) * d]


@settings(max_examples=150, deadline=None)
@given(
    x=hnp.arrays(np.float64, st.integers(1, 60), elements=values_st),
    bound=bound_st,
    magnitude=st.sampled_from([1e-3, 1.0, 500.0, 1e6]),
    noise=st.sampled_from([0.0, 1e-6, 1e-2, 1.0, 100.0]),
    float32=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_bound_holds_for_every_value(x, bound, magnitude, noise, float32, seed):
    rng = np.random.default_rng(seed)
    if float32:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32).astype(np.float64)
        x = np.where(np.isfinite(x), x, 0.0)
    with np.errstate(all="ignore"):
        p = x + noise * rng.standard_normal(x.shape) * (np.abs(x) + 1)
    coder = ColumnCoder(bound, magnitude, float32)
    codes = coder.encode(x, p)
    for p_dev in perturbations(p, coder, rng):
        xh = coder.decode(codes.codes, codes.sign, codes.exc_index, codes.exc_value, p_dev)
        assert_within(x, xh, bound)
    assert codes.max_ratio <= 1.0


@settings(max_examples=40, deadline=None)
@given(value=st.sampled_from(SPECIAL), n=st.integers(1, 50), bound=bound_st)
def test_constant_column_with_garbage_prediction(value, n, bound):
    x = np.full(n, value)
    p = np.array([np.nan, np.inf, -np.inf, 0.0, 1e308][: min(n, 5)] + [value] * max(0, n - 5))
    coder = ColumnCoder(bound, 1.0)
    c = coder.encode(x, p)
    xh = coder.decode(c.codes, c.sign, c.exc_index, c.exc_value, p)
    assert_within(x, xh, bound)


def test_relative_bound_keeps_zeros_exact_and_signs():
    x = np.array([0.0, -0.0, -5.0, 5.0, -1e-3, 1e-3, -123.456])
    p = np.array([0.1, -3.0, 4.0, -6.0, 0.0, 1.0, -120.0])
    coder = ColumnCoder(Bound("rel", 1e-3), 100.0)
    c = coder.encode(x, p)
    xh = coder.decode(c.codes, c.sign, c.exc_index, c.exc_value, p)
    assert xh[0] == 0.0 and xh[1] == 0.0
    # the sign bit of a negative zero survives (it is stored verbatim)
    assert not np.signbit(xh[0]) and np.signbit(xh[1])
    assert np.all(np.sign(xh) == np.sign(x))
    assert_within(x, xh, Bound("rel", 1e-3))
    assert c.exc_index.tolist() == [1]  # only the negative zero needs an exception


@pytest.mark.parametrize("kind,value", [("abs", 0.5), ("rel", 1e-2)])
def test_dither_makes_errors_uniform_and_values_distinct(kind, value):
    """Subtractive dither: a constant prediction no longer restores a comb of grid values,
    the errors fill the bound uniformly (independent of the value), the bound holds."""
    from baler_ext.codec import dither

    rng = np.random.default_rng(5)
    x = rng.exponential(50.0, 20_000) + 400.0
    p = np.full(x.size, 500.0)
    coder = ColumnCoder(Bound(kind, value), 2000.0)
    plain = coder.decode(*_codes(coder.encode(x, p)), p)
    u = dither.offsets(x.size, 3)
    c = coder.encode(x, p, u=u)
    xh = coder.decode(*_codes(c), p, u)
    assert_within(x, xh, Bound(kind, value))
    assert np.unique(plain).size < 0.05 * x.size  # the comb
    assert np.unique(xh).size > 0.99 * x.size
    err = (xh - x) / coder.bound.limit(x)
    assert abs(err.mean()) < 0.02 and abs(np.var(err) - 1 / 3) < 0.02  # uniform on [-1, 1]
    assert abs(np.corrcoef(err, x)[0, 1]) < 0.03
    # decoding without the offsets gives other values: the offsets are part of the format
    assert not np.allclose(coder.decode(*_codes(c), p), xh)


def _codes(c):
    return c.codes, c.sign, c.exc_index, c.exc_value


def test_dither_offsets_are_fixed_numbers():
    """The offsets are a pure function of (row, column): reproducible bit for bit, in
    [-1/2, 1/2), different per column and row."""
    from baler_ext.codec import dither

    a = dither.offsets(1000, 2)
    assert np.array_equal(a, dither.offsets(1000, 2)) and np.array_equal(
        a[:10], dither.offsets(10, 2)
    )
    assert a.min() >= -0.5 and a.max() < 0.5 and abs(a.mean()) < 0.05
    assert not np.array_equal(a, dither.offsets(1000, 3))
    # SplitMix64 reference value (Steele, Lea & Flood): splitmix64(0) = 0xE220A8397B1DCDAF
    assert int(dither.splitmix64(np.zeros(1, np.uint64))[0]) == 0xE220A8397B1DCDAF


def test_good_predictions_give_small_codes_and_no_exceptions():
    rng = np.random.default_rng(0)
    x = rng.normal(500, 100, 10_000)
    p = x + rng.normal(0, 1.0, x.size)
    c = ColumnCoder(Bound("abs", 1.0), 1300.0).encode(x, p)
    assert c.exc_index.size == 0
    assert np.abs(c.codes).max() <= 4
    assert 0.9 < c.max_ratio <= 1.0  # the bound is used, not wasted


def test_bound_too_tight_for_float64_is_stored_verbatim():
    x = np.array([1e6, 2e6 + 0.5])
    coder = ColumnCoder(Bound("abs", 1e-9), 1e6)
    assert coder.kind == "raw"
    c = coder.encode(x, x + 1)
    np.testing.assert_array_equal(coder.decode(c.codes, c.sign, c.exc_index, c.exc_value, x), x)


def test_resolve_bounds_defaults_overrides_and_did_you_mean():
    spec = {"default": {"rel": 1e-3}, "eta": {"abs": 1e-4}}
    assert resolve_bounds(spec, ["pt", "eta"]) == [Bound("rel", 1e-3), Bound("abs", 1e-4)]
    with pytest.raises(ConfigError, match="did you mean 'eta'"):
        resolve_bounds({"default": {"rel": 1e-3}, "Eta": {"abs": 1e-4}}, ["pt", "eta"])
