r"""Per-column fidelity metrics of a reconstructed (decompressed) table.

Notation, for one column with original values :math:`x_i` and reconstructed
values :math:`\hat x_i`, :math:`i = 1..N`:

* residual :math:`r_i = \hat x_i - x_i` (same unit as the column);
* ``mean`` :math:`= \frac1N\sum_i r_i`, ``rms`` :math:`= \sqrt{\frac1N\sum_i r_i^2}`,
  ``std`` :math:`= \sqrt{\frac1N\sum_i (r_i - \bar r)^2}` (population, ``ddof=0``,
  so ``rms**2 == mean**2 + std**2``), ``max_abs`` :math:`= \max_i |r_i|`;
* ``abs_q68``, ``abs_q95``, ``abs_q99.9``: the 68 %, 95 % and 99.9 % quantiles of
  :math:`|r_i|` (:func:`numpy.quantile`, linear interpolation): 68 % of the values
  are reconstructed within ``abs_q68`` of the original, and so on;
* ``rel_rms`` :math:`= \mathrm{rms}(r) / \mathrm{rms}(x)` with
  :math:`\mathrm{rms}(x) = \sqrt{\frac1N\sum_i x_i^2}` (NaN when the column is all zero);
* response :math:`\rho_i = (\hat x_i - x_i) / x_i`, **defined only where**
  :math:`|x_i| > \varepsilon` with :math:`\varepsilon = f\cdot\mathrm{rms}(x)` and
  :math:`f` = ``response_eps_frac`` (default :math:`10^{-6}`). Values with
  :math:`|x_i| \le \varepsilon` (in particular exact zeros) are *masked*: left out
  of the response statistics and counted in ``response_n_masked``. Clamping the
  denominator instead would turn every tiny residual at :math:`x = 0` into a huge
  response that dominates its mean and RMS; masking keeps the response
  statistics finite and meaningful, and the count tells how much was left out.
  The response gets the same ``mean``/``rms``/``std`` and :math:`|\rho|` quantiles
  (``response_mean``, ``response_rms``, ``response_std``, ``response_abs_q68``...).

Pairs where :math:`x_i` or :math:`\hat x_i` is not finite are left out of all
statistics and counted in ``n_nonfinite`` (and count as bound violations).

Table-level quantities (:func:`evaluate_tables`):

* Pearson correlation matrices :math:`C^{orig}`, :math:`C^{reco}` of the chosen
  columns (rows where every chosen column is finite in both tables), their
  difference :math:`C^{reco} - C^{orig}` and ``max_abs_diff``
  :math:`= \max_{jk} |C^{reco}_{jk} - C^{orig}_{jk}|`;
* per-row anomaly score :math:`s_i = \frac1{C'}\sum_{c} (r_{ic}/\sigma_c)^2`, with
  :math:`\sigma_c` the standard deviation (``ddof=0``) of the original column and the
  sum over the :math:`C'` columns with :math:`\sigma_c > 0` (constant columns are
  left out and listed). A row with a non-finite residual scores :math:`+\infty`;
* error bounds, per column ``("abs", e)``: :math:`b_i = e`, or ``("rel", e)``:
  :math:`b_i = e\,|x_i|`. A value violates its bound when :math:`|r_i| > b_i` (or
  :math:`r_i` is not finite). ``bound_use`` :math:`= \max_i |r_i| / b_i` with
  :math:`0/0 := 0` and :math:`r/0 := \infty` for :math:`r \ne 0`; it is :math:`\le 1`
  exactly when there is no violation.

Every function returns plain Python numbers (NaN where undefined); :func:`to_json`
writes a result with NaN and infinities as ``null``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baler_ext.errors import BoundViolationError, ConfigError, InputDataError

log = logging.getLogger(__name__)

#: Quantile levels of |residual| and |response| reported for every column.
QUANTILE_LEVELS: tuple[float, ...] = (0.68, 0.95, 0.999)
#: Default :math:`f` of the response threshold :math:`\varepsilon = f\cdot\mathrm{rms}(x)`.
DEFAULT_RESPONSE_EPS_FRAC: float = 1e-6
#: Bound kinds accepted by :func:`evaluate_tables`.
BOUND_KINDS: tuple[str, ...] = ("abs", "rel")
#: Rows per block when correlation sums are accumulated (bounds the memory use).
_CORR_CHUNK_ROWS = 1 << 20

Bounds = Mapping[str, tuple[str, float]]


def quantile_key(level: float, prefix: str = "abs_q") -> str:
    """Key of a quantile in a metrics dict: ``0.68 -> "abs_q68"``, ``0.999 -> "abs_q99.9"``."""
    return f"{prefix}{100.0 * level:g}"


def _as_float_1d(values: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputDataError(f"{what} values are not numeric: {exc}") from exc
    if arr.ndim != 1:
        raise InputDataError(f"{what} values must be one-dimensional, got shape {arr.shape}")
    return arr


def _abs_quantiles(values: np.ndarray, prefix: str) -> dict[str, float]:
    if values.size == 0:
        return {quantile_key(q, prefix): math.nan for q in QUANTILE_LEVELS}
    qs = np.quantile(np.abs(values), QUANTILE_LEVELS)
    return {quantile_key(q, prefix): float(v) for q, v in zip(QUANTILE_LEVELS, qs, strict=True)}


def _moments(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, rms, std with ddof=0) of ``values``; NaN for an empty array, std 0 if constant."""
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.mean(values))
    rms = float(np.sqrt(np.mean(np.square(values))))
    # exactly 0 for constant data (np.std can leave a rounding residue there)
    std = float(np.std(values)) if np.min(values) != np.max(values) else 0.0
    return mean, rms, std


def column_metrics(
    original: np.ndarray,
    reconstructed: np.ndarray,
    *,
    response_eps_frac: float = DEFAULT_RESPONSE_EPS_FRAC,
) -> dict[str, Any]:
    r"""Fidelity metrics of one reconstructed column.

    Parameters
    ----------
    original, reconstructed
        1-D arrays of the same length (any numeric dtype; computed in float64).
    response_eps_frac
        :math:`f` of the response threshold :math:`\varepsilon = f\cdot\mathrm{rms}(x)`.

    Returns
    -------
    dict
        ``n``, ``n_nonfinite``; residual :math:`r = \hat x - x`: ``mean``, ``rms``,
        ``std`` (ddof=0), ``max_abs``, ``abs_q68``, ``abs_q95``, ``abs_q99.9``
        (quantiles of :math:`|r|`); original column: ``orig_mean``, ``orig_std``,
        ``orig_rms``; ``rel_rms`` = rms / orig_rms; response
        :math:`\rho = r/x` on :math:`|x| > \varepsilon`: ``response_mean``,
        ``response_rms``, ``response_std``, ``response_abs_q68``,
        ``response_abs_q95``, ``response_abs_q99.9``, ``response_eps`` (the
        :math:`\varepsilon` used) and ``response_n_masked`` (values with
        :math:`|x| \le \varepsilon`, left out). All values are plain ``int``/``float``;
        NaN where undefined (e.g. no finite pairs).

    Raises
    ------
    InputDataError
        The arrays are not 1-D numeric arrays of the same length.
    """
    x = _as_float_1d(original, "original")
    xh = _as_float_1d(reconstructed, "decompressed")
    if x.shape != xh.shape:
        raise InputDataError(
            f"original has {x.size} values but decompressed has {xh.size}; they must match"
        )
    if not (response_eps_frac >= 0 and math.isfinite(response_eps_frac)):
        raise ConfigError(f"response_eps_frac must be finite and >= 0, got {response_eps_frac}")
    r_all = xh - x
    finite = np.isfinite(r_all)
    n_nonfinite = int(x.size - np.count_nonzero(finite))
    r = r_all[finite] if n_nonfinite else r_all
    xf = x[finite] if n_nonfinite else x

    mean, rms, std = _moments(r)
    orig_mean, orig_rms, orig_std = _moments(xf)
    out: dict[str, Any] = {
        "n": int(x.size),
        "n_nonfinite": n_nonfinite,
        "mean": mean,
        "rms": rms,
        "std": std,
        "max_abs": float(np.max(np.abs(r))) if r.size else math.nan,
    }
    out.update(_abs_quantiles(r, "abs_q"))
    out.update(
        {
            "orig_mean": orig_mean,
            "orig_std": orig_std,
            "orig_rms": orig_rms,
            "rel_rms": rms / orig_rms if orig_rms > 0 else math.nan,
        }
    )

    eps = response_eps_frac * orig_rms if math.isfinite(orig_rms) else 0.0
    valid = np.abs(xf) > eps
    response = r[valid] / xf[valid]
    r_mean, r_rms, r_std = _moments(response)
    out.update(
        {
            "response_mean": r_mean,
            "response_rms": r_rms,
            "response_std": r_std,
        }
    )
    out.update(_abs_quantiles(response, "response_abs_q"))
    out["response_eps"] = float(eps)
    out["response_n_masked"] = int(xf.size - response.size)
    return out


def _check_tables(
    original: pd.DataFrame, reconstructed: pd.DataFrame, columns: Sequence[str]
) -> list[str]:
    if not isinstance(original, pd.DataFrame) or not isinstance(reconstructed, pd.DataFrame):
        raise InputDataError("original and decompressed must both be pandas DataFrames")
    cols = list(dict.fromkeys(columns))
    if not cols:
        raise InputDataError("no columns to evaluate: pass at least one column name")
    if len(original) != len(reconstructed):
        raise InputDataError(
            f"original has {len(original)} rows but decompressed has {len(reconstructed)}; "
            "compare tables of the same rows"
        )
    for name, df in (("original", original), ("decompressed", reconstructed)):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputDataError(
                f"{name} table lacks column(s) {', '.join(map(repr, missing))} "
                f"(it has {len(df.columns)} columns)"
            )
        bad = [
            c
            for c in cols
            if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
        ]
        if bad:
            raise InputDataError(
                f"{name} column(s) {', '.join(map(repr, bad))} are not numeric and cannot be "
                "evaluated"
            )
    return cols


def _column_values(df: pd.DataFrame, column: str) -> np.ndarray:
    return df[column].to_numpy(dtype=np.float64, na_value=np.nan)


def _normalise_bounds(
    bounds: Bounds | None, columns: Sequence[str]
) -> dict[str, tuple[str, float]]:
    if not bounds:
        return {}
    out: dict[str, tuple[str, float]] = {}
    for col, spec in bounds.items():
        if col not in columns:
            raise ConfigError(
                f"an error bound is given for column {col!r}, which is not among the "
                "evaluated columns"
            )
        try:
            kind, value = spec
            value = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"error bound of column {col!r} must be (kind, value), got {spec!r}"
            ) from exc
        if kind not in BOUND_KINDS:
            raise ConfigError(
                f"error bound of column {col!r} has kind {kind!r}; use one of {BOUND_KINDS}"
            )
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"error bound of column {col!r} must be finite and >= 0, got {value}")
        out[col] = (kind, value)
    return out


def _bound_stats(x: np.ndarray, r: np.ndarray, kind: str, value: float) -> dict[str, Any]:
    """bound_use, n_violations and worst_row of one column (see module docstring)."""
    allowed = np.full(x.shape, value) if kind == "abs" else value * np.abs(x)
    abs_r = np.abs(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = abs_r / allowed
    ratio[(abs_r == 0) & (allowed == 0)] = 0.0  # exact value within a zero bound
    ratio[~np.isfinite(r)] = np.inf
    ratio[np.isnan(ratio)] = np.inf  # e.g. non-finite x in a rel bound
    violations = ~(abs_r <= allowed)  # NaN residuals count as violations
    worst = int(np.argmax(ratio)) if ratio.size else -1
    return {
        "bound_kind": kind,
        "bound_value": value,
        "bound_use": float(ratio[worst]) if ratio.size else 0.0,
        "n_violations": int(np.count_nonzero(violations)),
        "worst_row": worst,
    }


def _correlation(df: pd.DataFrame, columns: list[str], keep: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``columns`` over rows with ``keep``, accumulated in row blocks."""
    n_cols = len(columns)
    shift: np.ndarray | None = None
    total = np.zeros(n_cols)
    cross = np.zeros((n_cols, n_cols))
    n = 0
    for start in range(0, len(df), _CORR_CHUNK_ROWS):
        stop = start + _CORR_CHUNK_ROWS
        block = df[columns].iloc[start:stop].to_numpy(dtype=np.float64, na_value=np.nan)
        block = block[keep[start:stop]]
        if block.shape[0] == 0:
            continue
        if shift is None:
            shift = block[0].copy()  # exact for constant columns, O(sigma) offsets otherwise
        block -= shift
        total += block.sum(axis=0)
        # einsum, not BLAS: a threaded gemm of this thin product stalls for up to a
        # second when another process holds a core (measured 0.6 s vs 11 ms)
        cross += np.einsum("ij,ik->jk", block, block)
        n += block.shape[0]
    corr = np.full((n_cols, n_cols), np.nan)
    if n < 2:
        return corr
    mean = total / n
    cov = cross / n - np.outer(mean, mean)
    var = np.clip(np.diag(cov), 0.0, None)
    sd = np.sqrt(var)
    ok = sd > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    corr[~ok, :] = np.nan
    corr[:, ~ok] = np.nan
    corr = np.clip(corr, -1.0, 1.0)
    corr[np.diag_indices(n_cols)] = np.where(ok, 1.0, np.nan)
    return corr


def _nan_stat(values: np.ndarray, func: Any) -> float:
    finite = values[np.isfinite(values)]
    return float(func(finite)) if finite.size else math.nan


def evaluate_tables(
    original: pd.DataFrame,
    reconstructed: pd.DataFrame,
    columns: Sequence[str],
    bounds: Bounds | None = None,
    *,
    response_eps_frac: float = DEFAULT_RESPONSE_EPS_FRAC,
) -> dict[str, Any]:
    r"""Compare a reconstructed table with its original, column by column.

    Rows are matched by position (the index is ignored).

    Parameters
    ----------
    original, reconstructed
        Tables with the same number of rows, both holding every name in ``columns``.
    columns
        Numeric columns to evaluate.
    bounds
        Optional ``{column: ("abs", e)}`` (:math:`|\hat x - x| \le e`) or
        ``{column: ("rel", e)}`` (:math:`|\hat x - x| \le e\,|x|`) error bounds.
    response_eps_frac
        See :func:`column_metrics`.

    Returns
    -------
    dict
        ``n_rows``, ``columns``, ``response_eps_frac``;
        ``per_column``: ``{column: column_metrics(...)}``, plus for bounded columns
        ``bound_kind``, ``bound_value``, ``bound_use`` (:math:`\max_i |r_i|/b_i`,
        :math:`\le 1` when within bounds), ``n_violations`` and ``worst_row``
        (position of the largest :math:`|r_i|/b_i`);
        ``correlation``: ``original``, ``reconstructed``, ``difference``
        (reconstructed - original) as ``ndarray`` of shape (C, C), ``max_abs_diff``,
        ``max_abs_diff_pair`` (the two column names, or None) and ``n_rows_used``;
        ``anomaly``: summary of the per-row score (``mean``, ``median``, ``q99``,
        ``q99.9``, ``max``, ``n_infinite``, ``excluded_columns``);
        ``anomaly_scores``: the per-row scores as an ``ndarray`` of length ``n_rows``;
        ``bounds`` (only when bounds are given): ``max_bound_use``, ``worst_column``,
        ``n_violations`` (all columns), ``failing_columns``.

    Raises
    ------
    InputDataError
        Different row counts, a column missing from either table, or a
        non-numeric column.
    ConfigError
        A malformed bound, or a bound for a column not in ``columns``.
    """
    cols = _check_tables(original, reconstructed, columns)
    bound_specs = _normalise_bounds(bounds, cols)
    n_rows = len(original)

    per_column: dict[str, dict[str, Any]] = {}
    score_sum = np.zeros(n_rows)
    n_scored = 0
    excluded: list[str] = []
    all_finite = np.ones(n_rows, dtype=bool)
    for col in cols:
        x = _column_values(original, col)
        xh = _column_values(reconstructed, col)
        metrics = column_metrics(x, xh, response_eps_frac=response_eps_frac)
        r = xh - x
        finite = np.isfinite(r)
        all_finite &= finite
        sigma = metrics["orig_std"]
        if math.isfinite(sigma) and sigma > 0:
            contrib = np.square(r / sigma)
            contrib[~finite] = np.inf
            score_sum += contrib
            n_scored += 1
        else:
            excluded.append(col)
            score_sum[~finite] = np.inf
        if col in bound_specs:
            metrics.update(_bound_stats(x, r, *bound_specs[col]))
        per_column[col] = metrics
        if metrics["n_nonfinite"]:
            log.warning("column %r: %d non-finite value pair(s)", col, metrics["n_nonfinite"])

    if excluded:
        log.info("anomaly score leaves out constant column(s): %s", ", ".join(excluded))
    scores = score_sum / n_scored if n_scored else score_sum

    corr_o = _correlation(original, cols, all_finite)
    corr_r = _correlation(reconstructed, cols, all_finite)
    diff = corr_r - corr_o
    abs_diff = np.abs(diff)
    if np.isfinite(abs_diff).any():
        flat = int(np.nanargmax(abs_diff))
        j, k = divmod(flat, len(cols))
        max_abs_diff = float(abs_diff[j, k])
        pair: list[str] | None = [cols[j], cols[k]]
    else:
        max_abs_diff, pair = math.nan, None

    result: dict[str, Any] = {
        "n_rows": n_rows,
        "columns": cols,
        "response_eps_frac": float(response_eps_frac),
        "per_column": per_column,
        "correlation": {
            "original": corr_o,
            "reconstructed": corr_r,
            "difference": diff,
            "max_abs_diff": max_abs_diff,
            "max_abs_diff_pair": pair,
            "n_rows_used": int(np.count_nonzero(all_finite)),
        },
        "anomaly": {
            "mean": _nan_stat(scores, np.mean),
            "median": _nan_stat(scores, np.median),
            "q99": _nan_stat(scores, lambda v: np.quantile(v, 0.99)),
            "q99.9": _nan_stat(scores, lambda v: np.quantile(v, 0.999)),
            "max": float(np.max(scores)) if scores.size else math.nan,
            "n_infinite": int(np.count_nonzero(np.isinf(scores))),
            "excluded_columns": excluded,
        },
        "anomaly_scores": scores,
    }
    if bound_specs:
        bounded = {c: per_column[c] for c in bound_specs}
        failing = [c for c, m in bounded.items() if m["n_violations"] > 0]
        worst = max(bounded, key=lambda c: bounded[c]["bound_use"])
        result["bounds"] = {
            "max_bound_use": bounded[worst]["bound_use"],
            "worst_column": worst,
            "n_violations": sum(m["n_violations"] for m in bounded.values()),
            "failing_columns": failing,
        }
    log.info(
        "evaluated %d columns over %d rows; max |delta corr| = %.3g",
        len(cols),
        n_rows,
        max_abs_diff,
    )
    return result


def check_bounds(metrics: Mapping[str, Any]) -> None:
    """Raise if any column of an :func:`evaluate_tables` result broke its error bound.

    Parameters
    ----------
    metrics
        Result of :func:`evaluate_tables` (or its ``per_column`` mapping).

    Raises
    ------
    BoundViolationError
        One line naming the worst column (largest ``bound_use`` among the columns
        with violations), its bound, its max |error|/bound and how many values
        broke it, plus how many other columns fail.
    """
    per_column = metrics.get("per_column", metrics)
    failing = {
        col: m
        for col, m in per_column.items()
        if isinstance(m, Mapping) and "bound_use" in m and m.get("n_violations", 0) > 0
    }
    if not failing:
        n_bounded = sum(
            1 for m in per_column.values() if isinstance(m, Mapping) and "bound_use" in m
        )
        log.info("all %d bounded column(s) are within their error bounds", n_bounded)
        return
    worst = max(failing, key=lambda c: failing[c]["bound_use"])
    m = failing[worst]
    kind = "absolute" if m["bound_kind"] == "abs" else "relative"
    others = sorted(c for c in failing if c != worst)
    tail = f"; {len(others)} other column(s) fail too: {', '.join(others)}" if others else ""
    raise BoundViolationError(
        f"column {worst!r} breaks its {kind} error bound {m['bound_value']:g}: "
        f"max |error|/bound = {m['bound_use']:.4g}, {m['n_violations']} of {m['n']} values "
        f"outside{tail}"
    )


def top_anomalies(
    original: pd.DataFrame,
    reconstructed: pd.DataFrame,
    scores: np.ndarray,
    k: int,
    *,
    columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` rows with the highest anomaly score, highest first.

    Parameters
    ----------
    original, reconstructed
        The tables that were evaluated (matched by position).
    scores
        Per-row scores, e.g. ``evaluate_tables(...)["anomaly_scores"]``. NaN ranks
        like :math:`+\\infty` (most anomalous).
    k
        Number of rows (clipped to the number of rows; ``k <= 0`` gives ``[]``).
    columns
        Columns to report; default: the columns of ``original`` that
        ``reconstructed`` also has.

    Returns
    -------
    list of dict
        ``rank`` (1-based), ``row`` (position), ``index`` (the original table's
        index label), ``score``, and ``original`` / ``reconstructed``:
        ``{column: value}`` as plain Python numbers.

    Raises
    ------
    InputDataError
        The tables or ``scores`` differ in length, or a column is missing.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size != len(original):
        raise InputDataError(
            f"got {s.size} anomaly scores for a table of {len(original)} rows; they must match"
        )
    if columns is None:
        columns = [c for c in original.columns if c in reconstructed.columns]
    cols = _check_tables(original, reconstructed, columns)
    k = min(int(k), s.size)
    if k <= 0:
        return []
    key = np.where(np.isnan(s), np.inf, s)
    if k < s.size:
        part = np.argpartition(-key, k - 1)[:k]
    else:
        part = np.arange(s.size)
    order = part[np.lexsort((part, -key[part]))]  # by score desc, then row asc
    out: list[dict[str, Any]] = []
    for rank, row in enumerate(order, start=1):
        label = original.index[row]
        out.append(
            {
                "rank": rank,
                "row": int(row),
                "index": label.item() if isinstance(label, np.generic) else label,
                "score": float(s[row]),
                "original": {c: _plain(original[c].iloc[row]) for c in cols},
                "reconstructed": {c: _plain(reconstructed[c].iloc[row]) for c in cols},
            }
        )
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def summary_table(metrics: Mapping[str, Any]) -> str:
    """Fixed-width text table of the per-column metrics for the terminal.

    Columns: column, RMS, rel. RMS, max |err|, q68, q95, q99.9 (quantiles of
    |residual|), "bound use" (``max |error|/bound``, ``-`` for unbounded
    columns) when any column has a bound, and "distinct" (fraction of distinct
    decompressed values) and "comb χ² ratio" when the diagnostics of
    :mod:`baler_ext.evaluation.diagnostics` were added. A comb-flagged column
    is marked with ``*``. Names are left-aligned, numbers
    right-aligned with 4 significant digits; every line has the same width.

    Parameters
    ----------
    metrics
        Result of :func:`evaluate_tables`, or a ``{column: column_metrics(...)}`` mapping.
    """
    per_column = metrics.get("per_column", metrics)
    per_column = {c: m for c, m in per_column.items() if isinstance(m, Mapping)}
    fields: list[tuple[str, str]] = [
        ("RMS", "rms"),
        ("rel. RMS", "rel_rms"),
        ("max |err|", "max_abs"),
        *[(f"q{100 * q:g}", quantile_key(q)) for q in QUANTILE_LEVELS],
    ]
    if any("bound_use" in m for m in per_column.values()):
        fields.append(("bound use", "bound_use"))
    if any("distinct_fraction" in m for m in per_column.values()):
        fields += [("distinct", "distinct_fraction"), ("comb χ² ratio", "comb_ratio")]
    header = ["column", *[label for label, _ in fields]]
    rows = [
        [str(col) + (" *" if m.get("comb") else ""), *[_fmt(m.get(key)) for _, key in fields]]
        for col, m in per_column.items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def jsonable(obj: Any) -> Any:
    """Convert a metrics structure to plain JSON types.

    numpy scalars and arrays become Python numbers and (nested) lists, tuples
    become lists, mapping keys become strings, and NaN / infinities become ``None``.
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def default_file_mode() -> int:
    """``0o666`` minus the process umask: the mode ``open()`` would give a new file.

    :func:`tempfile.mkstemp` creates files with mode ``0o600``; atomic writers
    restore the usual mode before moving the file into place.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def to_json(
    metrics: Mapping[str, Any], path: str | Path, *, include_row_scores: bool = False
) -> Path:
    """Write metrics as JSON, atomically (temporary file in the same folder + ``os.replace``).

    Parameters
    ----------
    metrics
        Any metrics structure (e.g. from :func:`evaluate_tables`).
    path
        Target file; its folder is created if needed.
    include_row_scores
        Keep the per-row ``anomaly_scores`` array (one number per row; large);
        by default it is left out and only the ``anomaly`` summary is written.

    Returns
    -------
    Path
        ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = dict(metrics)
    if not include_row_scores:
        data.pop("anomaly_scores", None)
    text = json.dumps(jsonable(data), indent=2, allow_nan=False)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    log.info("wrote metrics to %s", target)
    return target
