r"""Diagnostics that see what per-value error metrics miss: combs, cut migrations, ratio bands.

A compressor can keep every value within its bound and still damage a
distribution: a quantiser that restores values on a grid (a *comb*) keeps
:math:`|\hat x - x| \le b` but piles the values onto a few distinct numbers, so
fine histograms get spikes and every cut on the column moves events coherently.
The functions here measure that, per column:

Distinct fraction
    :math:`n_\mathrm{distinct}(\hat x) / n`, next to the same for the original. A
    continuous original has a fraction near 1; a comb shows up as a few percent.

Comb diagnostic
    Work in a coordinate :math:`u` in which the bound is one unit wide: :math:`u = x/e`
    for an absolute bound :math:`e`, :math:`u = \mathrm{sign}(x)\,\ln(1 + |x|/t)/e`
    for a relative bound :math:`e` (:math:`t` = the 1 % quantile of the non-zero
    :math:`|x|`, so that :math:`du \approx dx/(e|x|)` above it), and for an
    unbounded column :math:`u = x/h` with :math:`h = \sqrt3\,\mathrm{RMS}(\hat x - x)`
    (the half-width of a uniform error of the same RMS). Histogram the original
    and the decompressed :math:`u` in bins of :data:`FINE_BIN_UNITS` (half a bound)
    and form the two-histogram statistic

    .. math:: \chi^2(a, b) = \sum_{i:\,a_i+b_i>0} \frac{(a_i - b_i)^2}{a_i + b_i}.

    The reference is what the bound alone would give: the same statistic for the
    original against the original plus uniform noise :math:`U(-h_i, h_i)` with
    :math:`h_i` the value's bound (seeded). ``comb_ratio`` =
    :math:`\chi^2_\mathrm{decompressed} / \chi^2_\mathrm{reference}`: about 1 for
    errors that are uniform and uncorrelated with the value (e.g. subtractive
    dithering), far above 1 for a comb (:data:`COMB_RATIO` flags it).

Cut change
    For a cut (``evaluation.cuts``, e.g. ``"pt > 600"``; the safe parser of
    :mod:`baler_ext.analysis.selection`) the counts passing on both sides, the
    rows lost and gained, and the change :math:`\Delta = n_\mathrm{gained} -
    n_\mathrm{lost}`. The same rows are on both sides, so only the migrating rows
    fluctuate: the paired (bootstrap) variance of :math:`\Delta` is
    :math:`n_\mathrm{lost} + n_\mathrm{gained}` (each row contributes
    :math:`d_i^2 \in \{0, 1\}`), not :math:`2N`.

Paired ratio-panel errors
    The same argument per histogram bin: :math:`\sigma(N_\mathrm{dec} - N_\mathrm{orig})
    = \sqrt{n_\mathrm{in} + n_\mathrm{out}}`, the rows migrating into and out of the
    bin (:func:`paired_bin_sigma`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from baler_ext.analysis.selection import evaluate_cut

log = logging.getLogger(__name__)

#: Width of a fine bin of the comb diagnostic, in units of the bound.
FINE_BIN_UNITS = 0.5
#: Most fine bins (wider bins beyond that; the bin width used is reported).
MAX_FINE_BINS = 20_000
#: A comb ratio above this flags the column.
COMB_RATIO = 3.0
#: Seed of the reference noise.
REFERENCE_SEED = 12345


def distinct_fraction(values: np.ndarray) -> float:
    """Number of distinct finite values over the number of finite values (NaN if none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.unique(v).size / v.size) if v.size else math.nan


def two_sample_chi2(a: np.ndarray, b: np.ndarray) -> float:
    r""":math:`\sum_{a_i+b_i>0} (a_i-b_i)^2/(a_i+b_i)` of two histograms on the same bins."""
    s = a + b
    nz = s > 0
    return float(np.sum((a[nz] - b[nz]) ** 2 / s[nz]))


def _coordinate(x: np.ndarray, kind: str, value: float, scale: float) -> np.ndarray:
    if kind == "rel":
        return np.sign(x) * np.log1p(np.abs(x) / scale) / value
    return x / value


def comb_diagnostic(
    original: np.ndarray, decompressed: np.ndarray, bound: tuple[str, float] | None = None
) -> dict[str, Any]:
    """The comb statistic of one column (see the module docstring).

    Parameters
    ----------
    original, decompressed
        Row-aligned values.
    bound
        ``("abs" | "rel", e)``, or None to use the residual RMS as the scale.

    Returns
    -------
    dict
        ``chi2`` (decompressed vs original), ``chi2_reference`` (original + uniform
        noise of the bound vs original), ``comb_ratio``, ``comb`` (flag),
        ``bins``, ``bin_units`` (fine-bin width in bound units) and ``scale``
        (``"bound"`` or ``"residual rms"``).
    """
    x = np.asarray(original, dtype=np.float64)
    xh = np.asarray(decompressed, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(xh)
    x, xh = x[ok], xh[ok]
    out: dict[str, Any] = {
        "chi2": math.nan,
        "chi2_reference": math.nan,
        "comb_ratio": math.nan,
        "comb": False,
        "bins": 0,
        "bin_units": FINE_BIN_UNITS,
        "scale": "bound" if bound else "residual rms",
    }
    if x.size < 2:
        return out
    if bound is not None and bound[1] > 0:
        kind, value = bound
    else:
        rms = float(np.sqrt(np.mean((xh - x) ** 2)))
        if rms == 0.0:
            out.update(chi2=0.0, chi2_reference=0.0, comb_ratio=0.0)
            return out
        kind, value = "abs", math.sqrt(3.0) * rms
    nonzero = np.abs(x[x != 0])
    scale = float(np.quantile(nonzero, 0.01)) if nonzero.size else 1.0
    half = value * np.abs(x) if kind == "rel" else np.full(x.size, value)
    rng = np.random.default_rng(REFERENCE_SEED)
    reference = x + rng.uniform(-1.0, 1.0, x.size) * half
    u, uh, ur = (_coordinate(v, kind, value, scale) for v in (x, xh, reference))
    lo, hi = (float(q) for q in np.quantile(u, (0.005, 0.995)))
    if not hi > lo:
        lo, hi = lo - 1.0, hi + 1.0
    width = FINE_BIN_UNITS
    n_bins = math.ceil((hi - lo) / width)
    if n_bins > MAX_FINE_BINS:
        n_bins = MAX_FINE_BINS
        width = (hi - lo) / n_bins
    edges = lo + width * np.arange(n_bins + 1)
    h, hh, hr = (np.histogram(v, edges)[0].astype(np.float64) for v in (u, uh, ur))
    chi2, chi2_ref = two_sample_chi2(hh, h), two_sample_chi2(hr, h)
    ratio = chi2 / chi2_ref if chi2_ref > 0 else (0.0 if chi2 == 0 else math.inf)
    out.update(
        chi2=chi2,
        chi2_reference=chi2_ref,
        comb_ratio=ratio,
        comb=bool(ratio > COMB_RATIO),
        bins=n_bins,
        bin_units=width,
    )
    return out


def column_diagnostics(
    original: np.ndarray, decompressed: np.ndarray, bound: tuple[str, float] | None = None
) -> dict[str, Any]:
    """Distinct fractions (original and decompressed) and the comb diagnostic of one column."""
    return {
        "distinct_fraction": distinct_fraction(decompressed),
        "distinct_fraction_original": distinct_fraction(original),
        **{
            f"comb_{k}" if not k.startswith("comb") else k: v
            for k, v in comb_diagnostic(original, decompressed, bound).items()
        },
    }


def cut_change(original: pd.DataFrame, decompressed: pd.DataFrame, cut: str) -> dict[str, Any]:
    """Rows passing ``cut`` before and after, with the paired error of the change.

    Parameters
    ----------
    original, decompressed
        Row-aligned tables holding the cut's columns (columns the compressor did not
        touch may be left out of ``decompressed``; they are taken from ``original``).
    cut
        A cut expression, e.g. ``"pt > 600"``.

    Returns
    -------
    dict
        ``cut``, ``n_original``, ``n_decompressed``, ``lost``, ``gained``,
        ``delta`` (= gained − lost), ``sigma_paired`` (:math:`\\sqrt{lost + gained}`),
        ``n_sigma_paired``, ``sigma_poisson`` (:math:`\\sqrt{n_\\mathrm{original}}`,
        for comparison) and ``relative_change``.
    """
    merged = decompressed
    missing = [c for c in original.columns if c not in decompressed.columns]
    if missing:
        merged = decompressed.reset_index(drop=True).assign(
            **{c: original[c].to_numpy() for c in missing}
        )
    before = evaluate_cut(cut, original)
    after = evaluate_cut(cut, merged)
    lost = int(np.count_nonzero(before & ~after))
    gained = int(np.count_nonzero(after & ~before))
    n_o, n_d = int(before.sum()), int(after.sum())
    sigma = math.sqrt(lost + gained)
    delta = gained - lost
    return {
        "cut": cut,
        "n_original": n_o,
        "n_decompressed": n_d,
        "lost": lost,
        "gained": gained,
        "delta": delta,
        "sigma_paired": sigma,
        "n_sigma_paired": abs(delta) / sigma if sigma > 0 else 0.0,
        "sigma_poisson": math.sqrt(n_o),
        "relative_change": delta / n_o if n_o else math.nan,
    }


def cut_changes(
    original: pd.DataFrame, decompressed: pd.DataFrame, cuts: Sequence[str]
) -> list[dict[str, Any]]:
    """:func:`cut_change` of every cut, logged."""
    out = []
    for cut in cuts:
        c = cut_change(original, decompressed, cut)
        log.info(
            "cut '%s': %d -> %d rows (%+d ± %.1f paired, %.1fσ; lost %d, gained %d)",
            cut,
            c["n_original"],
            c["n_decompressed"],
            c["delta"],
            c["sigma_paired"],
            c["n_sigma_paired"],
            c["lost"],
            c["gained"],
        )
        out.append(c)
    return out


def paired_bin_sigma(
    original: np.ndarray, decompressed: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    r"""Per bin, the paired error :math:`\sqrt{n_{in} + n_{out}}` of :math:`N_{dec} - N_{orig}`.

    A row counts as migrating *into* bin :math:`k` when its decompressed value falls in
    :math:`k` and its original value does not (under/overflow included), and *out of* it
    the other way round. Non-finite values count as outside every bin.
    """
    n_bins = len(edges) - 1

    def index(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        i = np.searchsorted(edges, v, side="right") - 1
        i[v == edges[-1]] = n_bins - 1
        i[(i < 0) | (i >= n_bins) | ~np.isfinite(v)] = n_bins  # one "outside" slot
        return i

    io, id_ = index(original), index(decompressed)
    moved = io != id_
    into = np.bincount(id_[moved], minlength=n_bins + 1)[:n_bins]
    out = np.bincount(io[moved], minlength=n_bins + 1)[:n_bins]
    return np.sqrt(into + out).astype(np.float64)


def flagged_columns(
    per_column: Mapping[str, Mapping[str, Any]],
    cuts: Sequence[Mapping[str, Any]] = (),
    cut_columns: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Columns worth a closer look: a comb, a broken bound, or in a cut that moved > 2σ."""
    out = [c for c, m in per_column.items() if m.get("comb") or (m.get("n_violations") or 0) > 0]
    for c in cuts:
        if c["n_sigma_paired"] > 2.0 and cut_columns:
            out += [col for col in cut_columns.get(c["cut"], ()) if col in per_column]
    return list(dict.fromkeys(out))


def add_diagnostics(
    metrics: dict[str, Any],
    original: pd.DataFrame,
    decompressed: pd.DataFrame,
    bounds: Mapping[str, tuple[str, float]] | None = None,
    cuts: Sequence[str] = (),
) -> list[str]:
    """Add :func:`column_diagnostics` to ``metrics["per_column"]`` and the cut changes.

    Returns
    -------
    list of str
        The flagged columns (:func:`flagged_columns`); also stored as
        ``metrics["flagged_columns"]``, the cut changes as ``metrics["cuts"]``.
    """
    from baler_ext.analysis.selection import cut_columns

    bounds = bounds or {}
    for col, m in metrics["per_column"].items():
        x = original[col].to_numpy(dtype=np.float64, na_value=np.nan)
        xh = decompressed[col].to_numpy(dtype=np.float64, na_value=np.nan)
        m.update(column_diagnostics(x, xh, bounds.get(col)))
        if m["comb"]:
            log.warning(
                "column %r: decompressed values form a comb (%.1f%% distinct, fine-bin "
                "χ² %.3g× what the bound alone gives)",
                col,
                100 * m["distinct_fraction"],
                m["comb_ratio"],
            )
    metrics["cuts"] = cut_changes(original, decompressed, cuts)
    flagged = flagged_columns(
        metrics["per_column"], metrics["cuts"], {c: sorted(cut_columns(c)) for c in cuts}
    )
    metrics["flagged_columns"] = flagged
    return flagged
