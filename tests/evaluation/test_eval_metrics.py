"""Metrics of baler_ext.evaluation against independently computed values.

Statistical checks use a tolerance of 5 standard errors (TOL_SE), so with the
fixed seeds they are deterministic and would fail by chance with probability
well below 1e-5 per check under any seed.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from baler_ext.errors import BoundViolationError, ConfigError, InputDataError
from baler_ext.evaluation import (
    QUANTILE_LEVELS,
    check_bounds,
    column_metrics,
    evaluate_tables,
    quantile_key,
    summary_table,
    to_json,
    top_anomalies,
)

N_ROWS = 200_000
TOL_SE = 5.0
#: column -> (offset, sigma) of the perturbation x_hat = x + offset + N(0, sigma^2)
PERTURBATIONS: dict[str, tuple[float, float]] = {
    "alpha": (0.3, 0.5),
    "beta": (-0.05, 0.2),
    "gamma": (0.0, 0.01),
    "delta": (2.0, 0.5),
}


@pytest.fixture(scope="module")
def perturbed() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(20240601)
    original = pd.DataFrame(
        {
            "alpha": rng.normal(50.0, 10.0, N_ROWS),
            "beta": rng.exponential(20.0, N_ROWS),
            "gamma": rng.uniform(-1.0, 1.0, N_ROWS),
            "delta": rng.normal(0.0, 1e3, N_ROWS),
        }
    )
    reconstructed = original.copy()
    for col, (offset, sigma) in PERTURBATIONS.items():
        reconstructed[col] = original[col] + offset + rng.normal(0.0, sigma, N_ROWS)
    return original, reconstructed


@pytest.fixture(scope="module")
def perturbed_metrics(perturbed: tuple[pd.DataFrame, pd.DataFrame]) -> dict:
    original, reconstructed = perturbed
    return evaluate_tables(original, reconstructed, list(PERTURBATIONS))


# --------------------------------------------------------------------------- residuals


@pytest.mark.parametrize("col", list(PERTURBATIONS))
def test_residual_moments_match_the_injected_perturbation(
    perturbed_metrics: dict, col: str
) -> None:
    offset, sigma = PERTURBATIONS[col]
    m = perturbed_metrics["per_column"][col]
    n = N_ROWS
    # mean residual: E = offset, standard error sigma / sqrt(N)
    assert abs(m["mean"] - offset) <= TOL_SE * sigma / math.sqrt(n)
    # rms: E[r^2] = offset^2 + sigma^2, Var(r^2) = 4 offset^2 sigma^2 + 2 sigma^4,
    # SE(rms) = SE(rms^2) / (2 rms) by the delta method
    rms_true = math.sqrt(offset**2 + sigma**2)
    se_rms = math.sqrt((4 * offset**2 * sigma**2 + 2 * sigma**4) / n) / (2 * rms_true)
    assert abs(m["rms"] - rms_true) <= TOL_SE * se_rms
    # std of a normal sample: SE = sigma / sqrt(2N)
    assert abs(m["std"] - sigma) <= TOL_SE * sigma / math.sqrt(2 * n)
    assert m["rms"] ** 2 == pytest.approx(m["mean"] ** 2 + m["std"] ** 2, rel=1e-9)
    assert m["n"] == n and m["n_nonfinite"] == 0


@pytest.mark.parametrize("col", list(PERTURBATIONS))
def test_residual_quantiles_equal_numpy_on_the_same_draws(
    perturbed: tuple[pd.DataFrame, pd.DataFrame], perturbed_metrics: dict, col: str
) -> None:
    original, reconstructed = perturbed
    r = reconstructed[col].to_numpy() - original[col].to_numpy()
    m = perturbed_metrics["per_column"][col]
    for level in QUANTILE_LEVELS:
        assert m[quantile_key(level)] == pytest.approx(np.percentile(np.abs(r), 100 * level))
    assert m["max_abs"] == np.max(np.abs(r))
    x = original[col].to_numpy()
    assert m["rel_rms"] == pytest.approx(np.sqrt(np.mean(r**2)) / np.sqrt(np.mean(x**2)))


@pytest.mark.parametrize("col", list(PERTURBATIONS))
def test_residual_quantiles_match_the_folded_normal(perturbed_metrics: dict, col: str) -> None:
    """|r| with r ~ N(offset, sigma^2) is folded-normal; quantile SE = sqrt(p(1-p)/N) / pdf(q)."""
    offset, sigma = PERTURBATIONS[col]
    dist = stats.foldnorm(c=abs(offset) / sigma, scale=sigma)
    m = perturbed_metrics["per_column"][col]
    for level in QUANTILE_LEVELS:
        q = dist.ppf(level)
        se = math.sqrt(level * (1 - level) / N_ROWS) / dist.pdf(q)
        assert abs(m[quantile_key(level)] - q) <= TOL_SE * se, (col, level)


def test_response_matches_an_independent_computation(
    perturbed: tuple[pd.DataFrame, pd.DataFrame], perturbed_metrics: dict
) -> None:
    original, reconstructed = perturbed
    for col in PERTURBATIONS:
        x = original[col].to_numpy()
        r = reconstructed[col].to_numpy() - x
        eps = 1e-6 * np.sqrt(np.mean(x**2))
        keep = np.abs(x) > eps
        rho = r[keep] / x[keep]
        m = perturbed_metrics["per_column"][col]
        assert m["response_eps"] == pytest.approx(eps)
        assert m["response_n_masked"] == int(np.count_nonzero(~keep))
        assert m["response_mean"] == pytest.approx(np.mean(rho))
        assert m["response_rms"] == pytest.approx(np.sqrt(np.mean(rho**2)))
        for level in QUANTILE_LEVELS:
            assert m[quantile_key(level, "response_abs_q")] == pytest.approx(
                np.quantile(np.abs(rho), level)
            )


def test_response_near_zero_is_finite_and_masks_exact_zeros() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([np.zeros(500), rng.uniform(0.0, 1.0, 9_500), [1e-12, -1e-12]])
    x_hat = x + rng.normal(0.0, 1e-3, x.size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = column_metrics(x, x_hat)
    assert m["response_n_masked"] == 502  # exact zeros and the two |x| < eps values
    for key in ("response_mean", "response_rms", "response_std", "response_abs_q99.9"):
        assert math.isfinite(m[key]), key
    # the response of the kept values only: bounded by |r| / eps-free denominators
    keep = np.abs(x) > m["response_eps"]
    assert m["response_rms"] == pytest.approx(np.sqrt(np.mean(((x_hat - x)[keep] / x[keep]) ** 2)))


def test_all_zero_column_gives_nan_not_errors() -> None:
    x = np.zeros(1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = column_metrics(x, x + 0.5)
    assert m["rms"] == pytest.approx(0.5)
    assert math.isnan(m["rel_rms"])
    assert m["response_n_masked"] == 1000
    assert math.isnan(m["response_mean"])


def test_nonfinite_pairs_are_counted_and_left_out() -> None:
    x = np.arange(10, dtype=float)
    x_hat = x + 0.1
    x_hat[3] = np.nan
    x_hat[4] = np.inf
    m = column_metrics(x, x_hat)
    assert m["n_nonfinite"] == 2
    assert m["mean"] == pytest.approx(0.1)
    assert m["max_abs"] == pytest.approx(0.1)


def test_column_metrics_rejects_different_lengths() -> None:
    with pytest.raises(InputDataError, match="10 values"):
        column_metrics(np.zeros(10), np.zeros(11))


# --------------------------------------------------------------------------- bounds


@pytest.fixture()
def bounded_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(11)
    n = 5_000
    x_abs = rng.normal(100.0, 30.0, n)
    # rel column: negatives, exact zeros and positives
    x_rel = rng.normal(0.0, 5.0, n)
    x_rel[::50] = 0.0
    original = pd.DataFrame({"energy_like": x_abs, "signed": x_rel, "free": rng.normal(size=n)})
    reconstructed = pd.DataFrame(
        {
            "energy_like": x_abs + rng.uniform(-0.9, 0.9, n) * 0.01,  # abs bound 0.01
            "signed": x_rel * (1 + rng.uniform(-0.9, 0.9, n) * 1e-3),  # rel bound 1e-3
            "free": original["free"] + rng.normal(0, 1, n),
        }
    )
    return original, reconstructed


BOUNDS = {"energy_like": ("abs", 0.01), "signed": ("rel", 1e-3)}


def test_within_bounds_passes(bounded_tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    original, reconstructed = bounded_tables
    m = evaluate_tables(original, reconstructed, list(original.columns), BOUNDS)
    for col in BOUNDS:
        assert 0.0 < m["per_column"][col]["bound_use"] <= 1.0
        assert m["per_column"][col]["n_violations"] == 0
    assert "bound_use" not in m["per_column"]["free"]
    assert m["bounds"]["n_violations"] == 0 and m["bounds"]["failing_columns"] == []
    check_bounds(m)  # does not raise


def test_one_value_over_the_abs_bound_raises(
    bounded_tables: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    original, reconstructed = bounded_tables
    reconstructed.loc[1234, "energy_like"] = original.loc[1234, "energy_like"] + 0.015
    m = evaluate_tables(original, reconstructed, list(original.columns), BOUNDS)
    pc = m["per_column"]["energy_like"]
    assert pc["n_violations"] == 1
    assert pc["bound_use"] == pytest.approx(1.5)
    assert pc["worst_row"] == 1234
    with pytest.raises(BoundViolationError) as info:
        check_bounds(m)
    msg = str(info.value)
    assert "'energy_like'" in msg and "1.5" in msg and "1 of 5000" in msg
    assert "\n" not in msg


def test_rel_bound_uses_abs_x_and_exact_zeros(
    bounded_tables: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    original, reconstructed = bounded_tables
    x = original["signed"].to_numpy()
    assert (x < 0).sum() > 1000 and (x == 0).sum() == 100
    m = evaluate_tables(original, reconstructed, ["signed"], {"signed": ("rel", 1e-3)})
    assert m["per_column"]["signed"]["n_violations"] == 0  # negatives are not violations
    # a non-zero reconstruction of an exact zero breaks a relative bound
    zero_row = int(np.flatnonzero(x == 0)[3])
    reconstructed.loc[zero_row, "signed"] = 1e-9
    # and a negative value pushed out by 2 x the bound
    neg_row = int(np.flatnonzero(x < -1)[0])
    reconstructed.loc[neg_row, "signed"] = x[neg_row] * (1 - 2e-3)
    m = evaluate_tables(original, reconstructed, ["signed"], {"signed": ("rel", 1e-3)})
    pc = m["per_column"]["signed"]
    assert pc["n_violations"] == 2
    assert math.isinf(pc["bound_use"]) and pc["worst_row"] == zero_row
    with pytest.raises(BoundViolationError, match=r"'signed'.*relative.*2 of 5000"):
        check_bounds(m)


def test_check_bounds_names_the_worst_of_several_columns(
    bounded_tables: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    original, reconstructed = bounded_tables
    reconstructed.loc[0, "energy_like"] += 0.05  # use about 5
    reconstructed.loc[1, "signed"] = original.loc[1, "signed"] * 1.1 + 0.0  # use about 100
    m = evaluate_tables(original, reconstructed, list(BOUNDS), BOUNDS)
    assert m["bounds"]["worst_column"] == "signed"
    with pytest.raises(BoundViolationError, match=r"^column 'signed'.*energy_like$"):
        check_bounds(m)


def test_nan_reconstruction_is_a_violation(
    bounded_tables: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    original, reconstructed = bounded_tables
    reconstructed.loc[7, "energy_like"] = np.nan
    m = evaluate_tables(original, reconstructed, ["energy_like"], {"energy_like": ("abs", 0.01)})
    assert m["per_column"]["energy_like"]["n_violations"] == 1
    with pytest.raises(BoundViolationError):
        check_bounds(m)


@pytest.mark.parametrize(
    "bounds",
    [
        {"nope": ("abs", 1.0)},
        {"free": ("percent", 1.0)},
        {"free": ("abs", -1.0)},
        {"free": ("abs", float("nan"))},
        {"free": "abs"},
    ],
)
def test_malformed_bounds_are_config_errors(
    bounded_tables: tuple[pd.DataFrame, pd.DataFrame], bounds: dict
) -> None:
    original, reconstructed = bounded_tables
    with pytest.raises(ConfigError):
        evaluate_tables(original, reconstructed, ["free"], bounds)


# --------------------------------------------------------------------------- correlation


def test_decorrelation_shows_in_max_abs_diff() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    a = rng.normal(size=n)
    original = pd.DataFrame({"a": a, "b": a + 0.1 * rng.normal(size=n), "c": rng.normal(size=n)})
    close = original + rng.normal(0, 0.01, size=original.shape)
    m_close = evaluate_tables(original, close, ["a", "b", "c"])
    assert m_close["correlation"]["max_abs_diff"] < 0.01

    broken = close.copy()
    broken["b"] = rng.permutation(broken["b"].to_numpy())
    m = evaluate_tables(original, broken, ["a", "b", "c"])
    corr = m["correlation"]
    expected_o = np.corrcoef(original[["a", "b", "c"]].to_numpy().T)
    expected_r = np.corrcoef(broken[["a", "b", "c"]].to_numpy().T)
    np.testing.assert_allclose(corr["original"], expected_o, atol=1e-10)
    np.testing.assert_allclose(corr["reconstructed"], expected_r, atol=1e-10)
    assert corr["max_abs_diff"] > 0.9
    assert sorted(corr["max_abs_diff_pair"]) == ["a", "b"]


def test_constant_column_gives_nan_correlation_without_warnings() -> None:
    original = pd.DataFrame({"a": np.arange(100.0), "k": np.full(100, 0.1)})
    reconstructed = original + 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = evaluate_tables(original, reconstructed, ["a", "k"])
    corr = m["correlation"]["original"]
    assert corr[0, 0] == 1.0 and np.isnan(corr[1, 1]) and np.isnan(corr[0, 1])
    assert m["anomaly"]["excluded_columns"] == ["k"]
    assert np.all(np.isfinite(m["anomaly_scores"]))


# --------------------------------------------------------------------------- anomaly


def test_rows_with_large_errors_are_the_top_anomalies() -> None:
    rng = np.random.default_rng(8)
    n = 5_000
    original = pd.DataFrame(
        {"p": rng.exponential(50, n), "q": rng.normal(0, 2, n), "w": rng.integers(0, 30, n)},
        index=np.arange(n) + 100_000,
    )
    reconstructed = original + rng.normal(0, 0.01, size=original.shape)
    bad_rows = [17, 123, 4000]
    reconstructed.iloc[17, 0] += 40.0
    reconstructed.iloc[123, 1] -= 3.0
    reconstructed.iloc[4000, 2] += 20.0
    m = evaluate_tables(original, reconstructed, ["p", "q", "w"])
    scores = m["anomaly_scores"]
    # independent score: mean over columns of (r / std(x))^2
    r = (reconstructed - original).to_numpy()
    expected = np.mean((r / original.to_numpy().std(axis=0)) ** 2, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)

    top = top_anomalies(original, reconstructed, scores, 3)
    assert sorted(t["row"] for t in top) == bad_rows
    assert [t["rank"] for t in top] == [1, 2, 3]
    assert top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    first = top[0]
    assert first["index"] == first["row"] + 100_000
    assert first["original"]["p"] == original["p"].iloc[first["row"]]
    assert first["reconstructed"]["w"] == reconstructed["w"].iloc[first["row"]]
    json.dumps(top)  # plain Python values
    assert top_anomalies(original, reconstructed, scores, 0) == []
    assert len(top_anomalies(original, reconstructed, scores, 10 * n)) == n
    with pytest.raises(InputDataError):
        top_anomalies(original, reconstructed, scores[:-1], 3)


# --------------------------------------------------------------------------- output


def test_summary_table_is_aligned_and_names_every_column(perturbed_metrics: dict) -> None:
    text = summary_table(perturbed_metrics)
    lines = text.splitlines()
    assert len(lines) == 2 + len(PERTURBATIONS)
    assert len({len(line) for line in lines}) == 1
    assert "RMS" in lines[0] and "q99.9" in lines[0] and "bound use" not in lines[0]
    for col, line in zip(PERTURBATIONS, lines[2:], strict=True):
        assert line.startswith(col)
    # numbers are right-aligned under their headers
    end_of_rms = lines[0].index("RMS") + len("RMS")
    for line in lines[2:]:
        assert line[end_of_rms - 1] != " " and line[end_of_rms : end_of_rms + 2] == "  "


def test_summary_table_shows_bound_use(bounded_tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    original, reconstructed = bounded_tables
    m = evaluate_tables(original, reconstructed, list(original.columns), BOUNDS)
    lines = summary_table(m).splitlines()
    assert lines[0].rstrip().endswith("bound use")
    free = next(line for line in lines if line.startswith("free"))
    assert free.rstrip().endswith("-")
    assert len({len(line) for line in lines}) == 1


def test_to_json_writes_plain_json_atomically(perturbed_metrics: dict, tmp_path) -> None:
    target = tmp_path / "sub" / "metrics.json"
    metrics = dict(perturbed_metrics)
    metrics["extra"] = {"nan": float("nan"), "inf": np.inf, "np": np.float32(1.5), "t": (1, 2)}
    assert to_json(metrics, target) == target
    data = json.loads(target.read_text())
    assert data["extra"] == {"nan": None, "inf": None, "np": 1.5, "t": [1, 2]}
    assert "anomaly_scores" not in data
    assert set(data["per_column"]) == set(PERTURBATIONS)
    assert len(data["correlation"]["original"]) == len(PERTURBATIONS)
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temp file left
    to_json(metrics, target, include_row_scores=True)
    assert len(json.loads(target.read_text())["anomaly_scores"]) == N_ROWS


def test_to_json_leaves_no_temp_file_on_failure(tmp_path) -> None:
    with pytest.raises(TypeError):
        to_json({"bad": object()}, tmp_path / "m.json")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- input errors


def test_different_row_counts_are_input_errors() -> None:
    a = pd.DataFrame({"x": np.arange(10.0)})
    with pytest.raises(InputDataError, match=r"10 rows.*9") as info:
        evaluate_tables(a, a.iloc[:9], ["x"])
    assert "\n" not in str(info.value)


def test_missing_columns_are_input_errors() -> None:
    a = pd.DataFrame({"x": np.arange(10.0), "y": np.arange(10.0)})
    with pytest.raises(InputDataError, match=r"decompressed.*'y'"):
        evaluate_tables(a, a[["x"]], ["x", "y"])
    with pytest.raises(InputDataError, match=r"original.*'z'"):
        evaluate_tables(a, a.assign(z=1.0), ["x", "z"])
    with pytest.raises(InputDataError, match="no columns"):
        evaluate_tables(a, a, [])


def test_non_numeric_columns_are_input_errors() -> None:
    a = pd.DataFrame({"x": np.arange(3.0), "s": ["a", "b", "c"]})
    with pytest.raises(InputDataError, match="'s'"):
        evaluate_tables(a, a, ["x", "s"])
