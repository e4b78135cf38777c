"""The codec's fast paths give the bits of the straightforward code they replaced.

The residual coder, the centre median, the dither offsets, the linear predictor's fit and
drift and the relations' drift were rewritten for speed (in-place operations, one
partition instead of ``np.median``, the Gram matrix grown column by column, ...). Their
outputs decide the container bytes and the decoded values, so each is compared here bit
for bit with a frozen copy of the earlier implementation, on values chosen to hit every
branch: zeros of both signs, subnormals, huge values, NaN and infinities.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from baler_ext.codec import dither, relations
from baler_ext.codec.predictors import ChunkState
from baler_ext.codec.predictors.centre import median_of_finite
from baler_ext.codec.predictors.linear import RIDGE, LinearPredictor
from baler_ext.codec.relations import Relation
from baler_ext.codec.residuals import (
    _HUGE,
    _MAX_CODE,
    _ULP32,
    EPS_PRED,
    Bound,
    ColumnCoder,
    ColumnCodes,
    _twice_spacing,
)

SPECIAL = np.array(
    [
        *(0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 1e300, -1e300),
        *(1.7e308, -1.7e308, np.inf, -np.inf, np.nan, 1.0, -1.0, 3.0, 1e-30),
    ]
)


def same(a: object, b: object) -> bool:
    """Bit-identical arrays (or equal scalars, the same bits for floats)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()  # type: ignore[arg-type]
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def mixed(rng: np.random.Generator, n: int, scale: float = 100.0, special: float = 0.05):
    """Values around ``scale`` with a sprinkling of special values and exact zeros."""
    x = rng.normal(0, scale, n)
    x[rng.random(n) < 0.05] = 0.0
    pick = rng.random(n) < special
    x[pick] = rng.choice(SPECIAL, pick.sum())
    return x


# -- frozen reference implementations -------------------------------------------------------
def ref_log_pred(c: ColumnCoder, p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.log(np.maximum(np.abs(p), c.floor))


def ref_reconstruct(c: ColumnCoder, k, sign, p, u=None) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        kf = k.astype(np.float64) if u is None else k.astype(np.float64) + u
        if c.kind == "abs":
            x = p + kf * c.step
        elif c.kind == "rel":
            x = np.exp(ref_log_pred(c, p) + kf * c.step)
            x = np.where(sign == 1, -x, x)
            x[sign == 2] = 0.0
        else:
            x = np.zeros_like(p)
        if c.float32:
            x = x.astype(np.float32).astype(np.float64)
    return x


def ref_encode(c: ColumnCoder, x, p, d=None, u=None) -> ColumnCodes:
    x = np.asarray(x, np.float64)
    p = np.asarray(p, np.float64)
    n = x.size
    sign = None
    with np.errstate(all="ignore"):
        valid = (np.abs(x) < _HUGE) & (np.abs(p) < _HUGE)
        if c.kind == "abs":
            t = (x - p) / c.step
        elif c.kind == "rel":
            sign = np.where(x > 0, 0, np.where(x < 0, 1, 2)).astype(np.uint8)
            t = (np.log(np.abs(x)) - ref_log_pred(c, p)) / c.step
            t[sign == 2] = 0.0
        else:
            t = np.zeros(n)
            valid[:] = False
        if u is not None:
            t = t - u
        valid &= np.abs(t) < _MAX_CODE
        valid &= ~((x == 0) & np.signbit(x))
        k = np.where(valid, np.rint(np.where(valid, t, 0.0)), 0.0).astype(np.int64)
        xh = ref_reconstruct(c, k, sign, p, u)
        err = np.abs(x - xh)
        if d is None:
            d = EPS_PRED * (np.abs(p) + c.magnitude)
        else:
            d = np.where(np.isfinite(d), np.asarray(d, np.float64), np.inf)
        slack = 2 * np.abs(np.spacing(xh))
        if c.float32:
            slack += _ULP32 * np.abs(xh)
        if c.kind == "abs":
            drift = 1.01 * d + slack
            ok = err + drift <= c.bound.value
        else:
            dlog = d / np.maximum(np.abs(p), c.floor) + 1e-15 * (np.abs(ref_log_pred(c, p)) + 1)
            drift = np.abs(xh) * (1.01 * dlog + 1e-15) + slack
            ok = err + drift <= c.bound.value * np.abs(x)
            ok |= sign == 2
            drift = np.where(sign == 2, 0.0, drift)
        ok &= valid & np.isfinite(xh) & np.isfinite(drift)
    exc = np.flatnonzero(~ok)
    k[exc] = 0
    if sign is not None:
        sign[exc] = 0
    limit = c.bound.limit(x)
    err[exc] = 0.0
    with np.errstate(all="ignore"):
        ratio = np.where(limit > 0, err / np.where(limit > 0, limit, 1.0), 0.0)
    xh[exc] = x[exc]
    drift[exc] = 0.0
    return ColumnCodes(
        k,
        sign,
        exc.astype(np.uint32),
        x[exc].copy(),
        float(err.max()) if n else 0.0,
        float(ratio.max()) if n else 0.0,
        xh,
        drift,
    )


def ref_mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def ref_offsets(n_rows: int, column: int, seed: int = 0) -> np.ndarray:
    mix = ref_mix
    rows = np.arange(n_rows, dtype=np.uint64)
    key = np.uint64((int(column) * 0x100000001B3 + int(seed) * 0x1F3) & (2**64 - 1))
    with np.errstate(over="ignore"):
        h = mix(mix(rows ^ key) + np.uint64(int(column)))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5


def ref_linear(scales, order, decoded, drift, x, fit_rows=8192):
    """The fit (full einsum Gram matrix), prediction and drift of the linear predictor."""
    n = len(x)
    cols = [np.ones(n)]
    dcols = [np.zeros(n)]
    for c in order:
        v, dr = decoded[c], drift[c]
        with np.errstate(all="ignore"):
            usable = np.isfinite(v) & (np.abs(v) < 1e300)
            f = np.where(usable, v, 0.0) / scales[c]
            df = np.where(usable, dr, 0.0) / scales[c]
        cols += [f, f * f]
        dcols += [df, (2 * np.abs(f) + df) * df]
    a_all = np.asfortranarray(np.stack(cols, axis=1))
    da = np.asfortranarray(np.stack(dcols, axis=1))
    absa = np.abs(a_all)
    rows = slice(None, None, max(1, n // fit_rows))
    a, xs = a_all[rows], x[rows]
    ok = np.isfinite(xs) & (np.abs(xs) < 1e300)
    beta = np.zeros(a.shape[1])
    if ok.sum() >= a.shape[1]:
        a, xs = a[ok], xs[ok]
        gram = np.einsum("ij,ik->jk", a, a)
        gram[np.diag_indices_from(gram)] += RIDGE * (np.trace(gram) / len(gram) + 1e-300)
        with np.errstate(all="ignore"):
            try:
                sol = np.linalg.solve(gram, np.einsum("ij,i->j", a, xs))
            except np.linalg.LinAlgError:
                sol = beta
        if np.all(np.isfinite(sol)):
            beta = sol
    with np.errstate(all="ignore"):
        p = np.einsum("ij,j->i", a_all, beta)
        b = np.abs(beta)
        d = 2 * np.einsum("ij,j->i", da, b) + 1e-15 * a_all.shape[1] * np.einsum("ij,j->i", absa, b)
    return beta, p, d


def ref_relation_drift(rel: Relation, p, v, drift):
    """The relations' drift as first written (the kinds whose code changed)."""
    r = 1e-14
    inf = np.inf
    with np.errstate(all="ignore"):
        if rel.kind == "sum":
            ins = [v[c] for c in rel.inputs]
            return 2 * np.sum([drift[c] for c in rel.inputs], axis=0) + 1e-15 * (len(ins) + 1) * (
                abs(rel.total) + np.sum(np.abs(ins), axis=0)
            )
        px, py = v[rel.inputs[0]], v[rel.inputs[1]]
        dpx, dpy = drift[rel.inputs[0]], drift[rel.inputs[1]]
        rho = np.hypot(px, py)
        drho = dpx + dpy
        rho_lo = rho - drho
        if rel.kind == "pt_xy":
            return 2 * drho + r * rho
        if rel.kind == "phi_xy":
            d = np.where(rho_lo > 0, 2 * drho / np.where(rho_lo > 0, rho_lo, 1.0), inf)
            d = np.where((px < 0) & (np.abs(py) <= 2 * dpy + r * np.abs(px)), inf, d)
            return d + r * (np.abs(p) + 1)
        pz, dpz = v[rel.inputs[2]], drift[rel.inputs[2]]
        if rel.kind == "eta_xyz":
            mom_lo = np.hypot(rho, pz) - drho - dpz
            ok = (rho_lo > 0) & (mom_lo > 0)
            d = np.where(
                ok,
                2
                * (dpz + np.abs(pz) * drho / np.where(ok, rho_lo, 1.0))
                / np.where(ok, mom_lo, 1.0),
                inf,
            )
            return d + r * (np.abs(p) + 1)
        m, dm = v[rel.inputs[3]], drift[rel.inputs[3]]
        return 2 * (dm + drho + dpz) + r * (np.abs(p) + np.abs(m))


# -- tests -----------------------------------------------------------------------------------
def test_twice_spacing_is_exact() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**64 - 1, 200_000, dtype=np.uint64, endpoint=True)
    x = np.concatenate([bits.view(np.float64), SPECIAL])
    finite = np.isfinite(x)
    with np.errstate(invalid="ignore"):
        ref = 2 * np.abs(np.spacing(x))
    got = _twice_spacing(x)
    assert same(got[finite], ref[finite])
    assert np.all(np.isinf(got[~finite]))


@pytest.mark.parametrize("kind", ["abs", "rel"])
@pytest.mark.parametrize("float32", [False, True])
@pytest.mark.parametrize("value", [1e-3, 1.0, 1e-12, 1e300])
def test_encode_matches_reference(kind: str, float32: bool, value: float) -> None:
    if kind == "rel" and value > 1:
        value = 0.5
    rng = np.random.default_rng([kind == "abs", float32, int(-math.log10(value) + 400)])
    n = 5000
    for trial in range(6):
        coder = ColumnCoder(Bound(kind, value), 10.0 ** rng.integers(-3, 4), float32)
        x = mixed(rng, n, 10.0 ** rng.integers(-4, 5))
        p = x + rng.normal(0, 1, n) * 10.0 ** rng.integers(-6, 3)
        p[rng.random(n) < 0.01] = rng.choice(SPECIAL, 1)
        if trial % 3 == 0:
            p[rng.random(n) < 0.3] = -0.0
        d = None
        if trial % 2:
            d = np.abs(rng.normal(0, 1e-6, n))
            d[rng.random(n) < 0.01] = rng.choice([np.nan, np.inf, -np.inf, 0.0], 1)
        u = dither.offsets(n, trial) if trial % 3 != 2 else None
        xs = np.stack([x, x], axis=1)[:, 1]  # strided, as a column of a chunk
        got, ref = coder.encode(xs, p, d, u), ref_encode(coder, x, p, d, u)
        for field in ("codes", "sign", "exc_index", "exc_value", "decoded", "drift"):
            assert same(getattr(got, field), getattr(ref, field)), field
        assert same(got.max_err, ref.max_err) and same(got.max_ratio, ref.max_ratio)
        dec = coder.decode(got.codes, got.sign, got.exc_index, got.exc_value, p, u)
        assert same(dec, ref.decoded)


def test_encode_raw_and_empty_match_reference() -> None:
    raw = ColumnCoder(Bound("abs", 1e-300), 1e10)
    assert raw.kind == "raw"
    x = mixed(np.random.default_rng(1), 300)
    for coder, xs in ((raw, x), (ColumnCoder(Bound("rel", 1e-3), 1.0), x[:0])):
        got, ref = coder.encode(xs, xs * 0.5), ref_encode(coder, xs, xs * 0.5)
        for field in ("codes", "sign", "exc_index", "exc_value", "decoded", "drift"):
            assert same(getattr(got, field), getattr(ref, field)), field
        assert same(got.max_err, ref.max_err) and same(got.max_ratio, ref.max_ratio)


def test_median_of_finite_matches_np_median() -> None:
    rng = np.random.default_rng(2)
    cases = [np.zeros(0), np.array([np.nan]), np.array([-0.0]), np.array([0.0, -0.0])]
    cases += [np.array([-0.0, 0.0, -0.0, 1.0]), np.array([1.7e308, 1.7e308]), SPECIAL]
    for n in (1, 2, 3, 4, 5, 10, 101, 1000, 4001):
        for _ in range(8):
            x = mixed(rng, n, special=0.2)
            if rng.random() < 0.5:
                x = np.round(x / 50) * 50  # ties
            if rng.random() < 0.3:
                x[: n // 2 + 1] = rng.choice([0.0, -0.0], n // 2 + 1)  # a zero median
            cases.append(x)
    cases.append(np.arange(7))  # integers: np.median itself
    for x in cases:
        v = x[np.isfinite(x)]
        with np.errstate(over="ignore"):
            ref = float(np.median(v)) if v.size else 0.0
        strided = np.stack([x, x], axis=1)[:, 0]
        assert same(median_of_finite(strided), ref), x
        assert same(median_of_finite(x), ref), x


@pytest.mark.parametrize("n", [0, 1, 7, 8694, 78238])
def test_offsets_match_reference(n: int) -> None:
    for column, seed in ((0, 0), (5, 0), (16, 3), (1000, 2**40)):
        assert same(dither.offsets(n, column, seed), ref_offsets(n, column, seed))
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    before = x.copy()
    assert same(dither.splitmix64(x), ref_mix(x))
    assert same(x, before)  # the input is left alone


def test_gram_blocks_are_the_whole_einsum() -> None:
    """The incremental Gram matrix rests on einsum summing over rows in order for the
    whole matrix and for the new columns' rows alike."""
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 9, 100, 8694):
        for m in range(3, 30, 4):
            a = rng.normal(0, 1, (n, m))
            a[rng.random((n, m)) < 0.2] = 0.0
            a[rng.random((n, m)) < 0.1] = -0.0
            a[:, 0] = 1.0
            a[:, m // 2] = -0.0
            whole = np.einsum("ij,ik->jk", a, a)
            for k in range(1, m):
                assert same(np.einsum("ik,ij->kj", a[:, k:], a), whole[k:])


@pytest.mark.parametrize("n_rows", [40, 5000, 20000])
def test_linear_fit_and_drift_match_reference(n_rows: int) -> None:
    rng = np.random.default_rng(n_rows)
    names = [f"c{i}" for i in range(9)]
    scales = {c: float(10.0 ** rng.integers(-1, 3)) for c in names}
    decoded = {c: mixed(rng, n_rows, scales[c], special=0.002) for c in names}
    decoded["c2"][::3] = -0.0
    drift = {c: np.abs(rng.normal(0, 1e-9, n_rows)) * scales[c] for c in names}
    state = ChunkState(n_rows)
    lin = LinearPredictor(scales)
    for i, c in enumerate(names):
        if i:
            x = decoded[c] * 0.7 + decoded[names[i - 1]] * 0.3
            if i in (3, 6):  # a target with unusable values: another set of fit rows
                x[5] = np.nan
            side = lin.fit(c, x, state)
            p, d = lin.predict(c, side, state)
            beta, ref_p, ref_d = ref_linear(scales, state.order, decoded, drift, x)
            assert same(side["beta"], beta) and same(p, ref_p) and same(d, ref_d), c
            dec = ChunkState(n_rows, state.decoded, state.drift, state.order)
            assert same(lin.predict(c, side, dec, with_drift=False)[0], ref_p)
        state.add(c, decoded[c], drift[c])


@pytest.mark.parametrize(
    "rel",
    [
        Relation("pt_xy", "pt", ("px", "py")),
        Relation("phi_xy", "phi", ("px", "py")),
        Relation("eta_xyz", "eta", ("px", "py", "pz")),
        Relation("energy_xyzm", "e", ("px", "py", "pz", "m")),
        Relation("sum", "c", ("a",)),
        Relation("sum", "c", ("a", "b")),
        Relation("sum", "c", ("a", "b", "m"), 2.0),
    ],
    ids=lambda r: f"{r.kind}{len(r.inputs)}",
)
def test_relation_drift_matches_reference(rel: Relation) -> None:
    rng = np.random.default_rng(len(rel.kind) + len(rel.inputs))
    n = 4000
    v = {c: mixed(rng, n, 50.0, special=0.01) for c in ("px", "py", "pz", "m", "a", "b")}
    v["py"][:50] = rng.normal(0, 1e-9, 50)  # next to the branch cut of atan2
    v["px"][:100] = np.abs(rng.normal(0, 1e-9, 100))  # rho - drift <= 0
    drift = {c: np.abs(rng.normal(0, 1e-6, n)) for c in v}
    drift["px"][200:210] = 0.0
    p, d = relations.predict(rel, v, drift)
    assert same(p, relations.value(rel, v))
    assert same(d, ref_relation_drift(rel, p, v, drift))
