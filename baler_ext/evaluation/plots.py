r"""Evaluation plots: one PNG per call, and one multi-page PDF of them all.

Every ``plot_*`` function draws one figure in the baler_ext style
(:mod:`baler_ext.plotting`), writes ``<out_dir>/<name>.png`` and returns its path.
Figures are plain :class:`matplotlib.figure.Figure` objects (never registered with
:mod:`matplotlib.pyplot`) and are cleared after saving, so writing many plots does
not grow memory. Matplotlib is imported on the first call only.

Plots
-----
* :func:`plot_histogram`: original vs reconstructed distribution of one column,
  on bins from robust percentiles of the *original* (default 0.1-99.9 %; integer
  columns get integer-centred bins), with a ratio panel decompressed/original
  whose band is the *paired* error: both histograms hold the same rows, so only
  rows that migrate between bins make them differ, and
  :math:`\sigma_R = \sqrt{n_\mathrm{in} + n_\mathrm{out}}/N_o`
  (:func:`baler_ext.evaluation.diagnostics.paired_bin_sigma`), not the
  independent-Poisson :math:`\sqrt{N_r + R^2 N_o}/N_o`, which is many times larger.
* :func:`plot_residuals`: residual :math:`\hat x - x` and response
  :math:`(\hat x - x)/x` distributions (see :mod:`baler_ext.evaluation.metrics`)
  with mean, RMS, max |error| and the 68/95/99.9 % quantiles written on the plot.
* :func:`plot_correlations`: correlation matrices before, after and their difference.
* :func:`plot_latent_corner` / :func:`plot_latent_pca`: pairwise views of the
  latent dimensions and their 2-D PCA projection, coloured by any array.
* :func:`plot_anomaly_scores`: distribution of the per-row anomaly score (log y).
* :func:`plot_compression`: bytes per container section and compression ratios.
* :func:`plot_training_history`: loss curves (log y) and learning rate from a CSV.
* :func:`write_pdf`: one PDF page per figure or PNG; :func:`write_report`: all of
  the above for a pair of tables.

Scatter plots draw at most ``max_points`` rows (default 20,000), chosen with a
fixed seed; histograms always use every row.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from baler_ext.errors import InputDataError
from baler_ext.evaluation.diagnostics import paired_bin_sigma
from baler_ext.evaluation.metrics import (
    DEFAULT_RESPONSE_EPS_FRAC,
    QUANTILE_LEVELS,
    column_metrics,
    default_file_mode,
    evaluate_tables,
    quantile_key,
)
from baler_ext.plotting import (
    DIVERGING_CMAP,
    GUIDE_COLOR,
    ORIGINAL_COLOR,
    PNG_DPI,
    RECONSTRUCTED_COLOR,
    RESIDUAL_COLOR,
    RESPONSE_COLOR,
    SEQUENTIAL_CMAP,
    axis_label,
    engineering_exponent,
    format_value,
    hep_figure,
    latex_name,
    matplotlib_agg,
    save_png,
    subsample_indices,
    units_for,
    with_unit,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

#: Default number of points drawn in scatter plots.
MAX_SCATTER_POINTS = 20_000
#: Default number of latent dimensions in the corner plot.
MAX_CORNER_DIMS = 6
#: Size of every PDF page in inches (A4 landscape).
PDF_PAGE_SIZE: tuple[float, float] = (11.69, 8.27)
#: Largest number of distinct integer values coloured with a discrete colour map.
MAX_DISCRETE_COLORS = 10
#: Stem of the training-history plot the train stage writes beside ``history.csv``.
LOSS_PLOT = "loss"

PathLike = str | Path

_BOX = {"boxstyle": "round,pad=0.35", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.85}


# --------------------------------------------------------------------------- helpers


def _pair(original: Any, reconstructed: Any, column: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(original, dtype=np.float64).ravel()
    xh = np.asarray(reconstructed, dtype=np.float64).ravel()
    if x.shape != xh.shape:
        raise InputDataError(
            f"column {column!r}: original has {x.size} values, decompressed {xh.size}"
        )
    return x, xh


def _is_integer_valued(values: np.ndarray) -> bool:
    return values.size > 0 and bool(np.all(values == np.round(values)))


def robust_edges(
    values: np.ndarray, bins: int = 60, percentiles: tuple[float, float] = (0.1, 99.9)
) -> np.ndarray:
    """Bin edges spanning the given percentiles of ``values`` (non-finite values ignored).

    Integer-valued data get edges at half-integers (bin width a whole number,
    at most ``bins`` bins); a degenerate range is widened around its value.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.linspace(-0.5, 0.5, bins + 1)
    lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    if _is_integer_valued(finite):
        lo_i, hi_i = math.floor(lo), math.ceil(hi)
        width = max(1, math.ceil((hi_i - lo_i + 1) / bins))
        n_bins = math.ceil((hi_i - lo_i + 1) / width)
        return lo_i - 0.5 + width * np.arange(n_bins + 1, dtype=np.float64)
    if not hi > lo:
        pad = 0.5 * abs(lo) if lo != 0 else 0.5
        lo, hi = lo - pad, hi + pad
    return np.linspace(lo, hi, bins + 1)


def _spread_edges(values: np.ndarray, bins: int, tail: float = 0.05) -> np.ndarray:
    """Edges over the central (100 - 2*tail) % of ``values``, padded by 5 %; never degenerate."""
    if values.size == 0:
        return np.linspace(-1.0, 1.0, bins + 1)
    lo, hi = (float(v) for v in np.percentile(values, (tail, 100.0 - tail)))
    if not hi > lo:
        pad = 0.1 * abs(lo) if lo != 0 else 1.0
        lo, hi = lo - pad, hi + pad
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, bins + 1)


def _hist_from_counts(
    ax: Axes, counts: np.ndarray, edges: np.ndarray, color: str, label: str | None = None
) -> None:
    """Filled step histogram of precomputed counts (works on log axes)."""
    ax.hist(
        edges[:-1],
        bins=edges.tolist(),
        weights=counts,
        histtype="stepfilled",
        color=color,
        alpha=0.3,
        label=label,
    )
    ax.hist(
        edges[:-1], bins=edges.tolist(), weights=counts, histtype="step", color=color, linewidth=1.4
    )


def _text_box(ax: Axes, lines: Sequence[str], loc: str = "upper left") -> None:
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.96, "top") if "upper" in loc else (0.04, "bottom")
    ax.text(
        x,
        y,
        "\n".join(lines),
        transform=ax.transAxes,
        ha=ha,
        va=va,
        fontsize=11,
        bbox=_BOX,
    )


def _color_mapping(values: np.ndarray) -> tuple[Colormap, Normalize, list[float] | None]:
    """Colormap, norm and (for few integer values) colorbar ticks for colour-coding."""
    mpl = matplotlib_agg()
    from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize

    finite = values[np.isfinite(values)]
    uniq = np.unique(finite) if finite.size else np.array([0.0])
    if _is_integer_valued(finite) and uniq.size <= MAX_DISCRETE_COLORS:
        base = mpl.colormaps["tab10"]
        cmap = ListedColormap([base(i) for i in range(uniq.size)])
        bounds = np.concatenate([[uniq[0] - 0.5], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + 0.5]])
        return cmap, BoundaryNorm(bounds, cmap.N), [float(u) for u in uniq]
    lo, hi = (float(v) for v in np.percentile(finite, (1, 99))) if finite.size else (0.0, 1.0)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return mpl.colormaps[SEQUENTIAL_CMAP], Normalize(lo, hi), None


def _latent_matrix(latent: Any) -> np.ndarray:
    z = np.asarray(latent, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise InputDataError(f"latent values must be a non-empty (rows, dims) array, got {z.shape}")
    return z


def _color_values(color: Any, n: int) -> np.ndarray | None:
    if color is None:
        return None
    c = np.asarray(color, dtype=np.float64).ravel()
    if c.size != n:
        raise InputDataError(f"colour array has {c.size} values but the latent array {n} rows")
    return c


def _fig_size_bytes(n: float) -> tuple[float, str]:
    for scale, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= scale:
            return scale, unit
    return 1.0, "B"


def format_bytes(n: float) -> str:
    """``1234567 -> "1.23 MB"`` (decimal units: 1 kB = 1000 B)."""
    scale, unit = _fig_size_bytes(n)
    return f"{n / scale:.3g} {unit}"


# --------------------------------------------------------------------------- per column


def plot_histogram(
    original: Any,
    reconstructed: Any,
    column: str,
    out_dir: PathLike,
    *,
    bins: int = 60,
    percentiles: tuple[float, float] = (0.1, 99.9),
    logy: bool = False,
    filename: str | None = None,
) -> Path:
    r"""Original vs reconstructed histogram of one column, with a ratio panel.

    Both histograms use the same edges, from :func:`robust_edges` of the
    original (``percentiles``, default 0.1-99.9 %). The ratio panel shows
    :math:`R = N_r / N_o` per bin and, as a grey band around 1, the paired error
    :math:`\sigma_R = \sqrt{n_\mathrm{in} + n_\mathrm{out}}/N_o` from the rows migrating
    into and out of the bin (bins with :math:`N_o = 0` are not drawn).

    Parameters
    ----------
    original, reconstructed
        1-D arrays of the column.
    column
        Column name (axis label, title and file name ``hist_<column>.png``).
    out_dir
        Output folder (created if needed).
    bins
        Number of bins (integer columns: at most this many).
    percentiles
        Percentiles of the original that the bins span.
    logy
        Logarithmic y axis.
    filename
        File stem instead of ``hist_<column>``.

    Returns
    -------
    Path
        The PNG.
    """
    x, xh = _pair(original, reconstructed, column)
    edges = robust_edges(x, bins, percentiles)
    xo, xr = x[np.isfinite(x)], xh[np.isfinite(xh)]
    h_o, _ = np.histogram(xo, edges)
    h_r, _ = np.histogram(xr, edges)
    out_o = int(xo.size - h_o.sum())
    out_r = int(xr.size - h_r.sum())
    x_exp = engineering_exponent(float(np.max(np.abs(edges))))
    pedges = edges / 10.0**x_exp  # plotted edges
    centers = 0.5 * (pedges[:-1] + pedges[1:])
    half = 0.5 * np.diff(pedges)
    ok = h_o > 0
    ratio = np.divide(h_r, h_o, out=np.full(h_o.shape, np.nan), where=ok)
    # paired errors: only rows that migrate between bins make N_r differ from N_o
    err = np.divide(paired_bin_sigma(x, xh, edges), h_o, out=np.full(h_o.shape, np.nan), where=ok)

    with hep_figure(figsize=(6.6, 6.2)) as fig:
        gs = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.06)
        ax = fig.add_subplot(gs[0])
        rax = fig.add_subplot(gs[1], sharex=ax)
        top = max(int(h_o.max(initial=0)), int(h_r.max(initial=0)), 1)
        y_exp = 0 if logy else engineering_exponent(float(top))
        y_div = 10.0**y_exp
        ax.stairs(h_o / y_div, pedges, color=ORIGINAL_COLOR, linewidth=1.8, label="original")
        ax.stairs(
            h_r / y_div,
            pedges,
            color=RECONSTRUCTED_COLOR,
            linewidth=1.6,
            linestyle="--",
            label="decompressed",
        )
        ax.set_ylabel(with_unit("entries / bin", "", y_exp))
        if logy:
            ax.set_yscale("log")
            ax.set_ylim(0.5, top * 30)
        else:
            ax.set_ylim(0, top * 1.35 / y_div)
        ax.legend(loc="upper right")
        ax.tick_params(labelbottom=False)
        ax.set_title(latex_name(column), loc="left")
        ax.text(
            0.03,
            0.96,
            f"bins: {percentiles[0]:g}-{percentiles[1]:g} % of original\n"
            f"outside: {out_o} original, {out_r} decompressed",
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=10,
            color="0.25",
        )

        # the band: ±1 paired σ around 1, what the migrations alone allow
        band = np.where(ok, err, 0.0)
        rax.stairs(
            1 + band,
            pedges,
            baseline=1 - band,
            fill=True,
            color="0.8",
            label="paired ±1σ (migrations)",
        )
        rax.errorbar(
            centers[ok],
            ratio[ok],
            xerr=half[ok],
            fmt="o",
            markersize=3,
            color=RECONSTRUCTED_COLOR,
            elinewidth=1.0,
            capsize=0,
        )
        rax.axhline(1.0, color=GUIDE_COLOR, linestyle=":", linewidth=1.2)
        dev = np.abs(ratio[ok] - 1) + err[ok]
        span = float(np.clip(np.nanmax(dev) * 1.15 if dev.size else 0.1, 0.01, 1.0))
        rax.set_ylim(1 - span, 1 + span)
        rax.set_xlim(pedges[0], pedges[-1])
        rax.set_ylabel("decomp. / orig.")
        rax.set_xlabel(axis_label(column, scale_exp=x_exp))
        fig.align_ylabels([ax, rax])
        return save_png(fig, out_dir, filename or f"hist_{column}")


def _distribution_panel(
    ax: Axes,
    values: np.ndarray,
    bins: int,
    color: str,
    label: tuple[str, str],
    stats: Sequence[str],
    quantiles: Mapping[float, float],
    symbol: str,
) -> None:
    """Log-y histogram of ``values`` with ±quantile lines, a stats box and a legend.

    ``label`` is (quantity, unit); the x values are rescaled by a power of ten
    that is written into the label when they are very small or large.
    """
    from matplotlib.ticker import MaxNLocator

    edges = _spread_edges(values, bins)
    counts, _ = np.histogram(values, edges)
    outside = int(values.size - counts.sum())
    x_exp = engineering_exponent(float(np.max(np.abs(edges))))
    div = 10.0**x_exp
    pedges = edges / div
    if values.size:
        _hist_from_counts(ax, counts, pedges, color)
        ax.set_yscale("log")
        # headroom for the statistics box: 60 % more decades above the data than it spans
        peak = max(int(counts.max(initial=1)), 1)
        ax.set_ylim(0.5, peak * (2.0 * peak) ** 0.6 * 2.0)
    styles = {QUANTILE_LEVELS[0]: "--", QUANTILE_LEVELS[1]: "-.", QUANTILE_LEVELS[-1]: ":"}
    for level, q in quantiles.items():
        if not math.isfinite(q):
            continue
        for sign in (-1, 1):
            if edges[0] <= sign * q <= edges[-1]:
                ax.axvline(
                    sign * q / div,
                    color=GUIDE_COLOR,
                    linestyle=styles.get(level, "--"),
                    linewidth=1.0,
                    label=f"±q{100 * level:g} of |{symbol}|" if sign > 0 else None,
                )
    ax.set_xlim(pedges[0], pedges[-1])
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_xlabel(with_unit(label[0], label[1], x_exp))
    ax.set_ylabel("entries / bin")
    _text_box(ax, [*stats, f"outside plot: {outside}"], "upper left")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=10, frameon=True, edgecolor="0.7", framealpha=0.85)


def plot_residuals(
    original: Any,
    reconstructed: Any,
    column: str,
    out_dir: PathLike,
    *,
    bins: int = 80,
    response_eps_frac: float = DEFAULT_RESPONSE_EPS_FRAC,
    filename: str | None = None,
) -> Path:
    r"""Residual and response distributions of one column, side by side (log y).

    Residual :math:`r = \hat x - x` (left) and response :math:`r/x` on
    :math:`|x| > \varepsilon` (right; see :func:`~baler_ext.evaluation.metrics.column_metrics`).
    Each panel states mean, RMS, max |value| and the 68/95/99.9 % quantiles of
    the absolute value, and marks :math:`\pm` those quantiles; the x range covers
    the central 99.9 % of the values (how many fall outside is written too).

    Returns
    -------
    Path
        ``<out_dir>/residual_<column>.png`` (or ``<filename>.png``).
    """
    x, xh = _pair(original, reconstructed, column)
    m = column_metrics(x, xh, response_eps_frac=response_eps_frac)
    r = xh - x
    finite = np.isfinite(r)
    r, xf = r[finite], x[finite]
    valid = np.abs(xf) > m["response_eps"]
    response = r[valid] / xf[valid]
    unit = units_for(column)

    def q_lines(prefix: str, symbol: str, unit_: str) -> list[str]:
        return [
            f"q{100 * q:g} of |{symbol}| = {format_value(m[quantile_key(q, prefix)], unit_)}"
            for q in QUANTILE_LEVELS
        ]

    max_resp = float(np.max(np.abs(response))) if response.size else math.nan
    res_stats = [
        f"mean = {format_value(m['mean'], unit)}",
        f"RMS = {format_value(m['rms'], unit)}",
        f"max |r| = {format_value(m['max_abs'], unit)}",
        *q_lines("abs_q", "r", unit),
    ]
    resp_stats = [
        f"mean = {format_value(m['response_mean'])}",
        f"RMS = {format_value(m['response_rms'])}",
        f"max |ρ| = {format_value(max_resp)}",
        *q_lines("response_abs_q", "ρ", ""),
        f"masked (|x| ≤ {format_value(m['response_eps'])}): {m['response_n_masked']}",
    ]
    with hep_figure(figsize=(13.5, 5.2)) as fig:
        ax_r, ax_p = fig.subplots(1, 2, gridspec_kw={"wspace": 0.25})
        _distribution_panel(
            ax_r,
            r,
            bins,
            RESIDUAL_COLOR,
            (f"{latex_name(column)} residual r = decompressed − original", unit),
            res_stats,
            {q: m[quantile_key(q)] for q in QUANTILE_LEVELS},
            "r",
        )
        _distribution_panel(
            ax_p,
            response,
            bins,
            RESPONSE_COLOR,
            (f"{latex_name(column)} response ρ = r / original", ""),
            resp_stats,
            {q: m[quantile_key(q, "response_abs_q")] for q in QUANTILE_LEVELS},
            "ρ",
        )
        fig.subplots_adjust(top=0.88)
        fig.suptitle(f"{column}: {m['n']} values, rel. RMS = {format_value(m['rel_rms'])}", y=0.97)
        return save_png(fig, out_dir, filename or f"residual_{column}")


# --------------------------------------------------------------------------- table level


def plot_correlations(
    corr_original: Any,
    corr_reconstructed: Any,
    columns: Sequence[str],
    out_dir: PathLike,
    *,
    annotate: bool | None = None,
    filename: str | None = None,
) -> Path:
    r"""Correlation matrices before, after, and their difference (three panels).

    Before/after use a diverging colormap on [-1, 1]; the difference
    :math:`C^{reco} - C^{orig}` uses it on a symmetric range
    :math:`\pm\max|\Delta|`. Undefined entries (constant columns) are grey.

    Parameters
    ----------
    corr_original, corr_reconstructed
        (C, C) matrices, e.g. ``evaluate_tables(...)["correlation"]["original"]``.
    columns
        The C column names (axis labels).
    annotate
        Write the values in the cells; default: when C <= 8.

    Returns
    -------
    Path
        ``<out_dir>/correlation.png``.
    """
    mpl = matplotlib_agg()
    co = np.asarray(corr_original, dtype=np.float64)
    cr = np.asarray(corr_reconstructed, dtype=np.float64)
    n = len(columns)
    if co.shape != (n, n) or cr.shape != (n, n):
        raise InputDataError(
            f"correlation matrices of shapes {co.shape} and {cr.shape} do not match "
            f"{n} column names"
        )
    diff = cr - co
    max_diff = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else math.nan
    lim = max(max_diff, 1e-6) if math.isfinite(max_diff) else 1.0
    annotate = n <= 8 if annotate is None else annotate
    cmap = mpl.colormaps[DIVERGING_CMAP].with_extremes(bad="0.8")
    tick_size = 11 if n <= 25 else max(6, int(11 * 25 / n))
    panel = max(3.8, 0.36 * n + 1.2)

    with hep_figure(figsize=(3 * panel + 3.0, panel + 1.6)) as fig:
        axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.45})
        panels = (
            (co, "original", -1.0, 1.0),
            (cr, "decompressed", -1.0, 1.0),
            (diff, f"decompressed − original (max |Δ| = {format_value(max_diff)})", -lim, lim),
        )
        for ax, (mat, title, vmin, vmax) in zip(axes, panels, strict=True):
            im = ax.imshow(
                np.ma.masked_invalid(mat), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
            )
            ax.set_title(title)
            ax.set_xticks(range(n), labels=list(columns), rotation=90, fontsize=tick_size)
            ax.set_yticks(range(n), labels=list(columns), fontsize=tick_size)
            ax.minorticks_off()
            ax.tick_params(which="both", length=0, top=False, right=False)
            cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            cbar.ax.minorticks_off()
            if annotate:
                for (i, j), v in np.ndenumerate(mat):
                    if math.isfinite(v):
                        ax.text(
                            j,
                            i,
                            f"{v:.2g}",
                            ha="center",
                            va="center",
                            fontsize=10,
                            color="white" if abs(v) > 0.6 * max(abs(vmin), abs(vmax)) else "black",
                        )
        return save_png(fig, out_dir, filename or "correlation")


def plot_anomaly_scores(
    scores: Any,
    out_dir: PathLike,
    *,
    bins: int = 100,
    logx: bool | None = None,
    filename: str | None = None,
) -> Path:
    r"""Distribution of the per-row anomaly score :math:`s_i = \mathrm{mean}_c (r_{ic}/\sigma_c)^2`.

    Log y. ``logx=True`` gives log-spaced bins on a log x axis (positive scores
    only; rows scoring exactly 0 are counted in the text box); the default
    ``None`` chooses it when the positive scores span more than two decades
    (max / 1 % quantile > 100), which is the usual case with a few outliers.
    The 99 % and 99.9 % quantiles are marked; non-finite scores (rows with a
    non-finite residual) are counted in the text box.

    Returns
    -------
    Path
        ``<out_dir>/anomaly_scores.png``.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    finite = s[np.isfinite(s)]
    n_bad = int(s.size - finite.size)
    positive = finite[finite > 0]
    if logx is None:
        logx = positive.size > 0 and float(positive.max()) > 100 * float(
            np.quantile(positive, 0.01)
        )
    values = positive if logx else finite
    if values.size == 0:
        edges = np.geomspace(1e-3, 1.0, bins + 1) if logx else np.linspace(0.0, 1.0, bins + 1)
    else:
        lo, hi = float(values.min()), float(values.max())
        if not hi > lo:
            hi = lo + (abs(lo) if lo != 0 else 1.0)
        edges = np.geomspace(lo, hi, bins + 1) if logx else np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(values, edges)

    with hep_figure(figsize=(7.0, 5.0)) as fig:
        ax = fig.add_subplot()
        if values.size:
            _hist_from_counts(ax, counts, edges, RESIDUAL_COLOR)
            ax.set_yscale("log")
            ax.set_ylim(0.5, max(int(counts.max()), 1) * 3000)
        if logx:
            ax.set_xscale("log")
        lines = [f"rows: {s.size}"]
        if finite.size:
            q99, q999 = np.quantile(finite, (0.99, 0.999))
            for q, label, style in ((q99, "99 %", "--"), (q999, "99.9 %", ":")):
                ax.axvline(q, color=GUIDE_COLOR, linestyle=style, label=f"{label} quantile")
            lines += [
                f"mean = {format_value(float(finite.mean()))}",
                f"median = {format_value(float(np.median(finite)))}",
                f"max = {format_value(float(finite.max()))}",
            ]
            ax.legend(loc="upper right")
        lines.append(f"non-finite: {n_bad}")
        if logx:
            lines.append(f"zero (not shown): {int(finite.size - positive.size)}")
        _text_box(ax, lines, "upper left")
        ax.set_xlabel(r"anomaly score  $\langle (r/\sigma)^2 \rangle_{\mathrm{columns}}$")
        ax.set_ylabel("rows / bin")
        return save_png(fig, out_dir, filename or "anomaly_scores")


# --------------------------------------------------------------------------- latent space


def pca_2d(latent: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Two leading principal axes of ``latent`` (rows with non-finite values ignored).

    With :math:`\mu` the mean and :math:`S = \frac1N\sum_i (z_i-\mu)(z_i-\mu)^T`
    the covariance, :math:`S = U\,\mathrm{diag}(\lambda)\,U^T` from
    :func:`numpy.linalg.svd` (S is symmetric positive semi-definite). Returns
    ``(mean, axes, explained)``: ``axes`` is (2, d) (a zero row when d = 1) and
    ``explained`` the variance fractions :math:`\lambda_k/\sum\lambda`.
    Project with ``(z - mean) @ axes.T``.
    """
    z = _latent_matrix(latent)
    z = z[np.isfinite(z).all(axis=1)]
    d = z.shape[1]
    if z.shape[0] == 0:
        raise InputDataError("latent array has no row with only finite values")
    mean = z.mean(axis=0)
    zc = z - mean
    cov = zc.T @ zc / z.shape[0]
    u, lam, _ = np.linalg.svd(cov)
    axes = np.zeros((2, d))
    k = min(2, d)
    axes[:k] = u[:, :k].T
    total = float(lam.sum())
    explained = np.zeros(2)
    if total > 0:
        explained[:k] = lam[:k] / total
    return mean, axes, explained


def plot_latent_pca(
    latent: Any,
    out_dir: PathLike,
    *,
    color: Any = None,
    color_label: str = "",
    max_points: int = MAX_SCATTER_POINTS,
    seed: int = 0,
    filename: str | None = None,
) -> Path:
    """Scatter plot of the latent vectors projected on their two leading principal axes.

    The axes come from all rows (:func:`pca_2d`); at most ``max_points`` rows
    (fixed ``seed``) are drawn, coloured by ``color`` (same length as the rows)
    with a colorbar labelled ``color_label`` (integer arrays with few values,
    e.g. a truth flag, get a discrete colour per value).

    Returns
    -------
    Path
        ``<out_dir>/latent_pca.png``.
    """
    z = _latent_matrix(latent)
    c = _color_values(color, z.shape[0])
    mean, axes, explained = pca_2d(z)
    idx = subsample_indices(z.shape[0], max_points, seed)
    zs = z[idx]
    keep = np.isfinite(zs).all(axis=1)
    proj = (zs[keep] - mean) @ axes.T
    cs = c[idx][keep] if c is not None else None

    with hep_figure(figsize=(7.4, 6.0)) as fig:
        ax = fig.add_subplot()
        sc = _scatter(ax, proj[:, 0], proj[:, 1], cs)
        if cs is not None:
            _colorbar(fig, sc, cs, color_label, ax=ax, pad=0.02)
        ax.set_xlabel(f"PC1 ({100 * explained[0]:.1f} % of variance)")
        ax.set_ylabel(f"PC2 ({100 * explained[1]:.1f} % of variance)")
        ax.set_title(
            f"latent PCA ({z.shape[1]} dims, {proj.shape[0]} of {z.shape[0]} rows drawn)",
            fontsize=12,
        )
        return save_png(fig, out_dir, filename or "latent_pca")


def _draw_order(cs: np.ndarray, discrete: bool) -> np.ndarray:
    """Drawing order: rare classes last (on top) for discrete colours, else low to high."""
    if not discrete:
        return np.argsort(cs, kind="stable")
    _, inverse, counts = np.unique(cs, return_inverse=True, return_counts=True)
    return np.argsort(-counts[inverse], kind="stable")


def _scatter(ax: Axes, xs: np.ndarray, ys: np.ndarray, cs: np.ndarray | None) -> Any:
    """Small rasterised points, coloured by ``cs`` when given; returns the collection."""
    if cs is None:
        return ax.scatter(xs, ys, s=2, color="0.15", alpha=0.4, linewidths=0, rasterized=True)
    cmap, norm, ticks = _color_mapping(cs)
    order = _draw_order(cs, ticks is not None)
    return ax.scatter(
        xs[order],
        ys[order],
        c=cs[order],
        cmap=cmap,
        norm=norm,
        s=2,
        alpha=0.6,
        linewidths=0,
        rasterized=True,
    )


def _colorbar(fig: Figure, mappable: Any, cs: np.ndarray, label: str, **kwargs: Any) -> None:
    _, _, ticks = _color_mapping(cs)
    cbar = fig.colorbar(mappable, **kwargs)
    cbar.set_label(axis_label(label) if label else "colour")
    if ticks is not None:
        cbar.set_ticks(ticks)
        cbar.set_ticklabels([f"{t:g}" for t in ticks])
        cbar.ax.minorticks_off()


def plot_latent_corner(
    latent: Any,
    out_dir: PathLike,
    *,
    color: Any = None,
    color_label: str = "",
    dim_labels: Sequence[str] | None = None,
    max_dims: int = MAX_CORNER_DIMS,
    max_points: int = MAX_SCATTER_POINTS,
    seed: int = 0,
    filename: str | None = None,
) -> Path:
    """Corner-style grid of the first ``max_dims`` latent dimensions.

    Diagonal: histogram of each dimension (all rows); below it: pairwise scatter
    plots of at most ``max_points`` rows (fixed ``seed``), coloured by ``color``
    with one colorbar labelled ``color_label``. Axis ranges are the
    0.1-99.9 % percentiles of each dimension.

    Parameters
    ----------
    dim_labels
        Names of the dimensions; default ``z0, z1, ...``.

    Returns
    -------
    Path
        ``<out_dir>/latent_corner.png``.
    """
    mpl = matplotlib_agg()
    from matplotlib.ticker import MaxNLocator

    z = _latent_matrix(latent)
    c = _color_values(color, z.shape[0])
    n_dims = z.shape[1]
    d = max(1, min(n_dims, max_dims))
    if n_dims > d:
        log.info("corner plot shows %d of %d latent dimensions", d, n_dims)
    labels = list(dim_labels) if dim_labels is not None else [f"z{i}" for i in range(n_dims)]
    if len(labels) < d:
        raise InputDataError(f"got {len(labels)} dimension labels for {d} dimensions")
    idx = subsample_indices(z.shape[0], max_points, seed)
    zs = z[idx, :d]
    keep = np.isfinite(zs).all(axis=1)
    zs = zs[keep]
    cs = c[idx][keep] if c is not None else None
    lims = []
    for j in range(d):
        col = z[:, j][np.isfinite(z[:, j])]
        lo, hi = (float(v) for v in np.percentile(col, (0.1, 99.9))) if col.size else (-1, 1)
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        pad = 0.03 * (hi - lo)
        lims.append((lo - pad, hi + pad))

    size = 2.2
    with hep_figure(figsize=(size * d + (1.4 if cs is not None else 0.4), size * d + 0.6)) as fig:
        axes = fig.subplots(d, d, squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.08})
        scatter_axes = []
        for i in range(d):
            for j in range(d):
                ax = axes[i, j]
                if j > i:
                    ax.set_visible(False)
                    continue
                if i == j:
                    col = z[:, j][np.isfinite(z[:, j])]
                    edges = np.linspace(*lims[j], 41)
                    counts, _ = np.histogram(col, edges)
                    ax.stairs(counts, edges, color=ORIGINAL_COLOR, linewidth=1.3)
                    ax.set_ylim(0, max(int(counts.max(initial=0)), 1) * 1.1)
                    ax.tick_params(labelleft=False)
                else:
                    _scatter(ax, zs[:, j], zs[:, i], cs)
                    ax.set_ylim(*lims[i])
                    scatter_axes.append(ax)
                ax.set_xlim(*lims[j])
                ax.xaxis.set_major_locator(MaxNLocator(3))
                ax.yaxis.set_major_locator(MaxNLocator(3))
                ax.tick_params(labelsize=10)
                if i == d - 1:
                    ax.set_xlabel(labels[j])
                    for t in ax.get_xticklabels():
                        t.set_rotation(45)
                else:
                    ax.tick_params(labelbottom=False)
                if j == 0 and i > 0:
                    ax.set_ylabel(labels[i])
                elif j > 0:
                    ax.tick_params(labelleft=False)
        height = size * d + 0.6
        fig.subplots_adjust(top=1 - 0.55 / height, bottom=0.6 / height)
        if cs is not None and scatter_axes:
            cmap, norm, _ = _color_mapping(cs)
            sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
            _colorbar(
                fig,
                sm,
                cs,
                color_label,
                ax=axes.ravel().tolist(),
                pad=0.02,
                fraction=0.04,
                shrink=0.6,
            )
        fig.suptitle(
            f"latent space: {d} of {n_dims} dims, {zs.shape[0]} of {z.shape[0]} rows drawn",
            fontsize=13,
            y=1 - 0.2 / height,
        )
        return save_png(fig, out_dir, filename or "latent_corner")


# --------------------------------------------------------------------------- codec / training


def plot_compression(
    sizes: Mapping[str, int],
    ratios: Mapping[str, float],
    out_dir: PathLike,
    *,
    filename: str | None = None,
) -> Path:
    """Horizontal bars of bytes per container section, and of the compression ratios.

    Parameters
    ----------
    sizes
        ``{section: bytes}`` in display order (e.g. header, model weights,
        latent payload, residual corrections).
    ratios
        ``{name: ratio}`` (e.g. "vs float64 input": 12.5); drawn as a second
        panel when not empty.

    Returns
    -------
    Path
        ``<out_dir>/compression.png``.
    """
    if not sizes and not ratios:
        raise InputDataError("nothing to plot: both the section sizes and the ratios are empty")
    for name, value in sizes.items():
        if not (isinstance(value, int | np.integer | float) and value >= 0):
            raise InputDataError(f"section {name!r} has size {value!r}; sizes are bytes >= 0")
    for name, ratio in ratios.items():
        if not isinstance(ratio, int | float | np.number):
            raise InputDataError(f"ratio {name!r} is {ratio!r}; ratios are numbers")
    rows = max(len(sizes), len(ratios), 1)
    n_panels = int(bool(sizes)) + int(bool(ratios))
    total = float(sum(sizes.values()))
    with hep_figure(figsize=(6.5 * n_panels + 1.5, 1.3 + 0.5 * rows)) as fig:
        axes = fig.subplots(1, n_panels, squeeze=False, gridspec_kw={"wspace": 0.6})[0]
        k = 0
        if sizes:
            ax = axes[k]
            k += 1
            names = list(sizes)
            vals = np.array([float(sizes[nm]) for nm in names])
            scale, unit = _fig_size_bytes(float(vals.max(initial=0)))
            ypos = np.arange(len(names))
            ax.barh(ypos, vals / scale, color=RESIDUAL_COLOR, alpha=0.8)
            for y, v in zip(ypos, vals, strict=True):
                share = 100 * v / total if total > 0 else 0.0
                ax.text(
                    v / scale, y, f" {format_bytes(v)} ({share:.1f} %)", va="center", fontsize=10
                )
            ax.set_yticks(ypos, labels=names)
            ax.invert_yaxis()
            ax.set_xlim(0, max(float(vals.max(initial=0)) / scale, 1e-12) * 1.6)
            ax.set_xlabel(f"size [{unit}]")
            ax.set_title(f"container sections (total {format_bytes(total)})", fontsize=12)
            ax.tick_params(axis="y", which="both", left=False, right=False)
            ax.minorticks_off()
        if ratios:
            ax = axes[k]
            names = list(ratios)
            vals = np.array([float(ratios[nm]) for nm in names])
            ypos = np.arange(len(names))
            ax.barh(ypos, np.nan_to_num(vals), color=RECONSTRUCTED_COLOR, alpha=0.8)
            for y, v in zip(ypos, vals, strict=True):
                xpos = max(float(np.nan_to_num(v)), 0.0)
                ax.text(xpos, y, f" {v:.3g}×", va="center", fontsize=10)
            ax.axvline(1.0, color=GUIDE_COLOR, linestyle=":", linewidth=1.2)
            ax.set_yticks(ypos, labels=names)
            ax.invert_yaxis()
            finite = vals[np.isfinite(vals)]
            ax.set_xlim(0, max(float(finite.max(initial=1.0)), 1.0) * 1.35)
            ax.set_xlabel("compression ratio")
            ax.set_title("compression ratios", fontsize=12)
            ax.tick_params(axis="y", which="both", left=False, right=False)
            ax.minorticks_off()
        return save_png(fig, out_dir, filename or "compression")


def _is_time_column(name: str) -> bool:
    """Wall-time columns of a history (``epoch_time_s``, ``time``, ``*_seconds``): not losses."""
    low = name.lower()
    return "time" in low or low.endswith(("_s", "_sec", "_seconds"))


def loss_columns(
    df: pd.DataFrame, epoch_column: str = "epoch", lr_columns: Sequence[str] = ()
) -> list[str]:
    """The numeric columns of a training history that are losses (not epoch, lr or time)."""
    return [
        str(c)
        for c in df.columns
        if c != epoch_column
        and c not in lr_columns
        and pd.api.types.is_numeric_dtype(df[c])
        and not _is_time_column(str(c))
    ]


def plot_training_history(
    csv_path: PathLike,
    out_dir: PathLike,
    *,
    epoch_column: str = "epoch",
    lr_columns: Sequence[str] = ("lr", "learning_rate"),
    monitor: str | None = "val_loss",
    filename: str | None = None,
) -> Path:
    """Loss curves per epoch (log y) and the learning rate on a twin axis.

    Every numeric column of the CSV other than ``epoch_column``, the
    ``lr_columns`` (matched case-insensitively) and wall-time columns such as
    ``epoch_time_s`` (seconds are not a loss) is drawn as a loss curve; the
    y axis is logarithmic when all of them are positive. The learning rate (if
    a column is present) is drawn dashed on a log twin axis. When ``monitor`` is
    a loss column its best (minimum) epoch is marked.

    Raises
    ------
    InputDataError
        The CSV cannot be read, is empty, lacks ``epoch_column`` or has no loss column.

    Returns
    -------
    Path
        ``<out_dir>/training_history.png``.
    """
    path = Path(csv_path)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputDataError(f"cannot read training history {path}: {exc}") from exc
    if df.empty:
        raise InputDataError(f"training history {path} has no rows")
    if epoch_column not in df.columns:
        raise InputDataError(f"training history {path} has no {epoch_column!r} column")
    lr_names = {name.lower() for name in lr_columns}
    lr_cols = [c for c in df.columns if str(c).lower() in lr_names]
    loss_cols = loss_columns(df, epoch_column, lr_cols)
    if not loss_cols:
        raise InputDataError(f"training history {path} has no loss column besides {epoch_column!r}")
    epoch = df[epoch_column].to_numpy(dtype=np.float64)
    losses = df[loss_cols].to_numpy(dtype=np.float64)
    finite = losses[np.isfinite(losses)]
    log_y = finite.size > 0 and bool(np.all(finite > 0))
    if not log_y:
        log.info("training history has non-positive loss values; using a linear y axis")
    marker = "o" if len(df) <= 40 else None

    with hep_figure(figsize=(8.0, 5.2)) as fig:
        ax = fig.add_subplot()
        for j, c in enumerate(loss_cols):
            ax.plot(epoch, losses[:, j], marker=marker, markersize=3, label=str(c))
        if log_y:
            ax.set_yscale("log")
        if monitor is not None and monitor in loss_cols:
            vals = df[monitor].to_numpy(dtype=np.float64)
            if np.isfinite(vals).any():
                best = int(np.nanargmin(vals))
                ax.axvline(
                    epoch[best],
                    color=GUIDE_COLOR,
                    linestyle=":",
                    label=f"best {monitor}: {format_value(float(vals[best]))} "
                    f"(epoch {epoch[best]:g})",
                )
        ax.set_xlabel(epoch_column)
        ax.set_ylabel("loss")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles, labels = ax.get_legend_handles_labels()
        if lr_cols:
            ax.tick_params(which="both", right=False)
            ax2 = ax.twinx()
            for c in lr_cols:
                lr = df[c].to_numpy(dtype=np.float64)
                ax2.plot(epoch, lr, color="0.45", linestyle="--", linewidth=1.3, label=str(c))
                lr_f = lr[np.isfinite(lr)]
                if lr_f.size and np.all(lr_f > 0):
                    ax2.set_yscale("log")
            ax2.set_ylabel("learning rate", color="0.35")
            ax2.tick_params(which="both", direction="in", left=False, top=False, colors="0.35")
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, loc="upper right", fontsize=10)
        ax.set_title("training history", loc="left")
        return save_png(fig, out_dir, filename or "training_history")


# --------------------------------------------------------------------------- PDF / report


def _png_pixels(path: Path) -> np.ndarray:
    """The 8-bit pixels of a PNG file (Pillow, a dependency of matplotlib; no float copy)."""
    from PIL import Image

    with Image.open(path) as im:
        # colour pixels as they are; any other mode (grey, palette) as RGBA, not colour-mapped
        return np.asarray(im if im.mode in ("RGB", "RGBA") else im.convert("RGBA"))


def write_pdf(
    figures_or_pngs: Sequence[Figure | PathLike],
    path: PathLike,
    *,
    title: str = "baler_ext evaluation",
) -> Path:
    """Write one multi-page PDF with one page per figure or PNG file.

    Figures are saved as vector pages; PNG files are embedded with their own pixels
    (not resampled), scaled to fit one page size for every page
    (:data:`PDF_PAGE_SIZE`, A4 landscape). The PDF is written to a
    temporary file next to ``path`` and moved into place (atomic).

    Raises
    ------
    InputDataError
        A PNG path does not exist.
    ValueError
        ``figures_or_pngs`` is empty.

    Returns
    -------
    Path
        ``path``.
    """
    matplotlib_agg()
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    items = list(figures_or_pngs)
    if not items:
        raise ValueError("write_pdf needs at least one figure or PNG")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for item in items:
        if not isinstance(item, Figure) and not Path(item).is_file():
            raise InputDataError(f"cannot add {item} to the PDF: no such file")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, default_file_mode())
    os.close(fd)
    try:
        with PdfPages(tmp_name, metadata={"Title": title, "Creator": "baler_ext"}) as pdf:
            for item in items:
                if isinstance(item, Figure):
                    item.set_size_inches(*PDF_PAGE_SIZE)
                    pdf.savefig(item)
                    continue
                img = _png_pixels(Path(item))
                height, width = img.shape[:2]
                with hep_figure(figsize=PDF_PAGE_SIZE) as fig:
                    # one page size for every page: the image scaled to fit, centred
                    page_w, page_h = PDF_PAGE_SIZE
                    scale = min(page_w / width, page_h / height)
                    w, h = width * scale / page_w, height * scale / page_h
                    ax = fig.add_axes(((1 - w) / 2, (1 - h) / 2, w, h))
                    # "none": the PNG's own pixels go into the PDF unresampled (the viewer
                    # scales them), half the time and half the bytes of resampling them
                    ax.imshow(img, interpolation="none")
                    ax.set_axis_off()
                    pdf.savefig(fig, dpi=max(PNG_DPI, int(width / (w * page_w))))
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    log.info("wrote %d page(s) to %s", len(items), target)
    return target


def plot_summary(
    metrics: Mapping[str, Any],
    out_dir: PathLike,
    *,
    flagged: Sequence[str] = (),
    filename: str | None = None,
) -> Path:
    """One page of text: the per-column table, the cut changes, the ratios and the flags.

    Returns
    -------
    Path
        ``<out_dir>/summary.png``.
    """
    from baler_ext.evaluation.metrics import summary_table

    lines = [f"{metrics.get('n_rows', '?')} rows, {len(metrics.get('columns', []))} columns", ""]
    corr = metrics.get("correlation") or {}
    if corr.get("max_abs_diff_pair"):
        lines = [
            lines[0],
            f"largest correlation change: {corr['max_abs_diff']:.3g} "
            f"({' vs '.join(corr['max_abs_diff_pair'])})",
            "",
        ]
    lines += summary_table(metrics).splitlines()
    cuts = metrics.get("cuts") or []
    if cuts:
        lines += ["", f"{'cut':<20} original  decompressed  change ± paired σ   lost  gained"]
        for c in cuts:
            lines.append(
                f"{c['cut'][:20]:<20} {c['n_original']:>8}  {c['n_decompressed']:>12}  "
                f"{c['delta']:>+6} ± {c['sigma_paired']:<6.1f}({c['n_sigma_paired']:.1f}σ)"
                f" {c['lost']:>5} {c['gained']:>7}"
            )
    ratios = (metrics.get("compression") or {}).get("ratios") or {}
    if ratios:
        lines += [
            "",
            "compression: "
            + ", ".join(f"{k} = {v:.3g}" for k, v in ratios.items() if isinstance(v, int | float)),
        ]
    lines += [
        "",
        "flagged for a closer look (comb, broken bound or a cut moved > 2σ): "
        + (", ".join(flagged) if flagged else "none"),
    ]
    with hep_figure(figsize=PDF_PAGE_SIZE) as fig:
        fig.text(0.03, 0.97, "evaluation summary", fontsize=16, va="top", ha="left")
        size = float(np.clip(560.0 / max(len(lines), 1), 5.5, 10.0))
        fig.text(
            0.03, 0.92, "\n".join(lines), family="monospace", fontsize=size, va="top", ha="left"
        )
        # cropped: long lines (the ratios) may run past the page width
        return save_png(fig, out_dir, filename or "summary")


def plot_overview(
    original: pd.DataFrame,
    reconstructed: pd.DataFrame,
    columns: Sequence[str],
    out_dir: PathLike,
    *,
    flagged: Sequence[str] = (),
    bins: int = 40,
    filename: str | None = None,
) -> Path:
    """Original vs decompressed histogram of every column on one page (flagged titles in red).

    Returns
    -------
    Path
        ``<out_dir>/overview.png``.
    """
    n = max(len(columns), 1)
    ncol = min(5, n)
    nrow = math.ceil(n / ncol)
    from matplotlib.ticker import MaxNLocator

    with hep_figure(figsize=(PDF_PAGE_SIZE[0] * 1.4, PDF_PAGE_SIZE[1] * 1.4)) as fig:
        grid = fig.add_gridspec(
            nrow, ncol, left=0.05, right=0.98, bottom=0.07, top=0.97, wspace=0.3, hspace=0.45
        )
        # one axes per column only (empty cells of the last row cost a layout and a draw)
        axes = [fig.add_subplot(grid[i // ncol, i % ncol]) for i in range(max(len(columns), 1))]
        for ax, col in zip(axes, columns, strict=False):
            x = original[col].to_numpy(dtype=np.float64, na_value=np.nan)
            xh = reconstructed[col].to_numpy(dtype=np.float64, na_value=np.nan)
            edges = robust_edges(x, bins)
            ax.stairs(
                np.histogram(x[np.isfinite(x)], edges)[0],
                edges,
                color=ORIGINAL_COLOR,
                linewidth=1.4,
                label="original",
            )
            ax.stairs(
                np.histogram(xh[np.isfinite(xh)], edges)[0],
                edges,
                color=RECONSTRUCTED_COLOR,
                linewidth=1.2,
                linestyle="--",
                label="decompressed",
            )
            ax.set_xlabel(axis_label(col), fontsize=10)
            ax.minorticks_off()  # many small panels: major ticks only (and a fast layout)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(4))
            ax.tick_params(labelsize=8)
            ax.yaxis.get_offset_text().set_fontsize(8)
            if col in flagged:
                ax.set_title("flagged", fontsize=9, color=RECONSTRUCTED_COLOR, loc="right")
        if not columns:
            axes[0].set_axis_off()
        axes[0].legend(fontsize=8, loc="upper right")
        return save_png(fig, out_dir, filename or "overview", tight=False)


def _current_plot(png: PathLike | None, source: PathLike) -> Path | None:
    """``png`` when it exists and is not older than ``source`` (the file it plots), else None."""
    if png is None:
        return None
    path = Path(png)
    try:
        return path if path.stat().st_mtime >= Path(source).stat().st_mtime else None
    except OSError:
        return None


def write_report(
    original: pd.DataFrame,
    reconstructed: pd.DataFrame,
    columns: Sequence[str],
    out_dir: PathLike,
    *,
    metrics: Mapping[str, Any] | None = None,
    bounds: Mapping[str, tuple[str, float]] | None = None,
    latent: Any = None,
    latent_color: Any = None,
    latent_color_label: str = "",
    sizes: Mapping[str, int] | None = None,
    ratios: Mapping[str, float] | None = None,
    history_csv: PathLike | None = None,
    history_png: PathLike | None = None,
    pdf_name: str = "evaluation.pdf",
    plots: str = "all",
    flagged: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluation plots for a pair of tables, as PNGs plus one PDF.

    ``plots = "all"``: compression breakdown (if ``sizes``/``ratios``), training
    history (if ``history_csv``), correlations, anomaly scores, latent corner and
    PCA (if ``latent``), then histogram and residuals of every column.
    ``plots = "summary"``: a summary page (:func:`plot_summary`, which states the
    largest correlation change), the compression breakdown, training history, one
    overview page of every column
    (:func:`plot_overview`), and histogram and residuals of the ``flagged``
    columns only. A tqdm progress bar counts the plots.

    ``history_png`` is a plot of ``history_csv`` that :func:`plot_training_history` drew
    before (the train stage's ``loss.png``): when it is at least as new as the CSV it is
    copied as ``training_history.png`` instead of being drawn again (the same function
    of the same file gives the same picture).

    Returns
    -------
    dict
        ``metrics`` (computed with :func:`evaluate_tables` unless given),
        ``pngs`` (list of paths) and ``pdf`` (path).
    """
    from collections.abc import Callable

    from tqdm import tqdm

    if plots not in ("summary", "all"):
        raise ValueError(f"plots = {plots!r}: use 'summary' or 'all'")
    if metrics is None:
        metrics = evaluate_tables(original, reconstructed, columns, bounds)
    out = Path(out_dir)
    jobs: list[Callable[[], Path | None]] = []
    if plots == "summary":
        jobs.append(lambda: plot_summary(metrics, out, flagged=flagged))
    if sizes or ratios:
        jobs.append(lambda: plot_compression(sizes or {}, ratios or {}, out))
    if history_csv is not None and Path(history_csv).is_file():

        def history() -> Path | None:
            drawn = _current_plot(history_png, history_csv)
            if drawn is not None:
                import shutil

                out.mkdir(parents=True, exist_ok=True)
                return Path(shutil.copyfile(drawn, out / "training_history.png"))
            try:
                return plot_training_history(history_csv, out)
            except InputDataError as exc:
                log.warning("training history not plotted: %s", exc)
                return None

        jobs.append(history)
    corr = metrics["correlation"]
    if plots == "all":
        jobs.append(
            lambda: plot_correlations(
                corr["original"], corr["reconstructed"], metrics["columns"], out
            )
        )
        jobs.append(lambda: plot_anomaly_scores(metrics["anomaly_scores"], out))
        if latent is not None and len(latent):
            jobs.append(
                lambda: plot_latent_corner(
                    latent, out, color=latent_color, color_label=latent_color_label
                )
            )
            jobs.append(
                lambda: plot_latent_pca(
                    latent, out, color=latent_color, color_label=latent_color_label
                )
            )
    else:
        jobs.append(lambda: plot_overview(original, reconstructed, columns, out, flagged=flagged))
    detailed = list(columns) if plots == "all" else [c for c in columns if c in flagged]
    for col in detailed:

        def pair(c: str = col) -> tuple[np.ndarray, np.ndarray]:
            return (
                original[c].to_numpy(dtype=np.float64, na_value=np.nan),
                reconstructed[c].to_numpy(dtype=np.float64, na_value=np.nan),
            )

        jobs.append(partial(lambda c: plot_histogram(*pair(c), c, out), col))
        jobs.append(partial(lambda c: plot_residuals(*pair(c), c, out), col))
    pngs: list[Path] = []
    for job in tqdm(jobs, desc="evaluation plots", unit="plot", disable=not progress, leave=False):
        path = job()
        if path is not None:
            pngs.append(path)
    pdf = write_pdf(pngs, out / pdf_name)
    return {"metrics": metrics, "pngs": pngs, "pdf": pdf}
