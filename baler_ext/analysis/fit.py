"""Binned extended maximum-likelihood fit of a mass peak on a smooth background.

Model (expected counts, integrated over each bin :math:`[x_i, x_{i+1}]`):

.. math::
    \\nu_i = N_s\\,[F_s(x_{i+1}) - F_s(x_i)] + N_b\\,[F_b(x_{i+1}) - F_b(x_i)],

with :math:`F_s`, :math:`F_b` the cdfs of the peak and background shapes
normalised on the fit range (:mod:`baler_ext.analysis.shapes`) and
:math:`N_s`, :math:`N_b` the yields inside the range. The cost is
``iminuit.cost.ExtendedBinnedNLL`` in its scaled-cdf form (the model returns
the expected cumulative counts at the bin edges); it equals the Poisson
likelihood-ratio (Baker–Cousins) statistic

.. math:: \\chi^2_\\lambda = 2\\sum_i \\big[\\nu_i - n_i + n_i\\ln(n_i/\\nu_i)\\big],

which is asymptotically :math:`\\chi^2`-distributed with
``ndf = bins − free parameters`` and is what :attr:`FitResult.chi2` reports
(the Pearson :math:`\\sum (n_i-\\nu_i)^2/\\nu_i` is reported alongside as
``chi2_pearson``). References: S. Baker and R. D. Cousins, Nucl. Instrum. Meth.
221 (1984) 437; F. James, *MINUIT Reference Manual*, CERN D506; iminuit docs.

Starting values come from the data histogram (:func:`estimate_start`), never
from constants. The fit runs MIGRAD (retried with SIMPLEX and strategy 2 when
invalid), then HESSE, then optionally MINOS. A failed fit raises
:class:`~baler_ext.errors.FitError`; it never returns numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from iminuit import Minuit
from iminuit.cost import ExtendedBinnedNLL
from scipy.stats import chi2 as chi2_dist

from baler_ext.analysis.shapes import (
    BackgroundShape,
    HistEstimate,
    PeakShape,
    get_background,
    get_peak,
)
from baler_ext.analysis.spec import AnalysisSpec
from baler_ext.errors import FitError

log = logging.getLogger(__name__)

SIGNAL = "n_sig"
BACKGROUND = "n_bkg"


# --------------------------------------------------------------------------- result


def jsonable(value: Any) -> Any:
    """Recursively convert to plain JSON types; non-finite floats become None (strict JSON)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class FitResult:
    """Outcome of a successful peak fit (a failed fit raises FitError instead).

    Attributes
    ----------
    peak, background
        Registered shape names.
    fit_range, unit
        Fit window and unit of the mass.
    mass, mass_err
        Fitted peak position μ and its HESSE error.
    width, width_err
        The peak's main width and its HESSE error (propagated from the log-width
        parameter): σ for ``gauss`` and ``crystal_ball``, Γ (FWHM) for
        ``breit_wigner``, the FWHM for ``voigt``. ``width_name`` says which.
    width_name
        ``"sigma"``, ``"Gamma"`` or ``"fwhm"``.
    widths
        Every width of the shape as ``name -> [value, error]`` (for ``voigt``:
        ``fwhm``, ``sigma``, ``gamma`` (half width) and ``Gamma`` = 2γ).
    yields, yield_errors
        ``{"signal": N_s, "background": N_b}`` inside the fit range and errors.
    chi2, ndf
        Baker–Cousins Poisson deviance over all bins, and bins − free parameters.
    chi2_pearson
        Pearson χ² over all bins, for comparison.
    valid
        MIGRAD valid, HESSE covariance accurate, and no shape parameter within half an
        error of a limit (a yield at zero is allowed).
    edm
        Estimated distance to minimum.
    n_entries, sum_weights
        Entries inside the fit range (unweighted count) and their sum of weights.
    parameters
        Every MINUIT parameter: ``name -> {"value", "error", "minos"}``
        (``minos`` is ``[lower, upper]`` or None).
    edges, counts, variances
        The fitted histogram (sum of weights and sum of squared weights per bin).
    mass_minos, width_minos
        Asymmetric MINOS errors ``[lower, upper]`` when requested and available.
    p_value
        :math:`P(\\chi^2_{ndf} \\ge \\chi^2)` of the Baker–Cousins deviance.
    at_limit
        Parameters within half an error of a MINUIT limit.
    quality, quality_notes
        ``"good"``, ``"poor"`` or ``"failed"`` and the reasons (see
        :func:`baler_ext.analysis.quality.assess`); filled in by :func:`fit_peak`.
    """

    peak: str
    background: str
    fit_range: list[float]
    unit: str
    mass: float
    mass_err: float
    width: float
    width_err: float
    width_name: str
    widths: dict[str, list[float]]
    yields: dict[str, float]
    yield_errors: dict[str, float]
    chi2: float
    ndf: int
    chi2_pearson: float
    valid: bool
    edm: float
    n_entries: int
    sum_weights: float
    parameters: dict[str, dict[str, Any]]
    edges: list[float] = field(repr=False)
    counts: list[float] = field(repr=False)
    variances: list[float] = field(repr=False)
    mass_minos: list[float] | None = None
    width_minos: list[float] | None = None
    p_value: float = math.nan
    at_limit: list[str] = field(default_factory=list)
    quality: str = "good"
    quality_notes: list[str] = field(default_factory=list)

    @property
    def chi2_ndf(self) -> float:
        """χ²/ndf (NaN when ndf ≤ 0)."""
        return self.chi2 / self.ndf if self.ndf > 0 else math.nan

    def values(self) -> dict[str, float]:
        """MINUIT parameter values by name."""
        return {k: float(v["value"]) for k, v in self.parameters.items()}

    def expected(self, edges: np.ndarray | None = None) -> np.ndarray:
        """Expected counts of the fitted model in the bins ``edges`` (default: the fit's)."""
        xe = np.asarray(self.edges if edges is None else edges, dtype=np.float64)
        model = _make_model(get_peak(self.peak), get_background(self.background), *self.fit_range)
        names = parameter_names(get_peak(self.peak), get_background(self.background))
        vals = self.values()
        return np.diff(model(xe, *(vals[n] for n in names)))

    def density(self, x: np.ndarray, component: str = "total") -> np.ndarray:
        """Fitted model in counts per unit of x: ``"total"``, ``"signal"`` or ``"background"``."""
        pk, bk = get_peak(self.peak), get_background(self.background)
        lo, hi = self.fit_range
        vals = self.values()
        x = np.asarray(x, dtype=np.float64)
        sig = vals[SIGNAL] * pk.pdf(x, lo, hi, *(vals[n] for n in pk.params))
        bkg = vals[BACKGROUND] * bk.pdf(x, lo, hi, *(vals[n] for n in bk.params))
        return {"total": sig + bkg, "signal": sig, "background": bkg}[component]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable mapping (non-finite numbers become None); includes ``chi2_ndf``."""
        out = jsonable(asdict(self))
        out["chi2_ndf"] = jsonable(self.chi2_ndf)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitResult:
        """Inverse of :meth:`to_dict` (None numbers come back as NaN)."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in (
            "mass",
            "mass_err",
            "width",
            "width_err",
            "chi2",
            "chi2_pearson",
            "edm",
            "p_value",
        ):
            if kwargs.get(key) is None:
                kwargs[key] = math.nan
        return cls(**kwargs)


# --------------------------------------------------------------------------- histogram & start


def histogram(
    values: np.ndarray, spec: AnalysisSpec, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Histogram ``values`` in ``spec.fit_range`` with ``spec.bins`` equal bins.

    Returns
    -------
    edges, counts, variances, values_in, weights_in
        Bin edges; sum of weights and of squared weights per bin; the finite
        values inside the range and their weights (ones when unweighted).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    w = np.ones_like(values) if weights is None else np.asarray(weights, np.float64).ravel()
    if w.shape != values.shape:
        raise FitError(f"got {w.size} weights for {values.size} values; pass one weight per value")
    lo, hi = spec.lo, spec.hi
    keep = np.isfinite(values) & np.isfinite(w) & (values >= lo) & (values <= hi)
    v, w = values[keep], w[keep]
    edges = np.linspace(lo, hi, spec.bins + 1)
    counts, _ = np.histogram(v, bins=edges, weights=w)
    variances, _ = np.histogram(v, bins=edges, weights=w * w)
    return edges, counts.astype(np.float64), variances.astype(np.float64), v, w


def _weighted_median(v: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(v)
    cw = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cw, 0.5 * cw[-1])])


def _half_max_crossing(smooth: np.ndarray, k: int, half: float, step: int) -> float | None:
    """Fractional bin index where ``smooth`` first drops below ``half`` walking from ``k``."""
    i = k
    while 0 <= i + step < smooth.size:
        j = i + step
        if smooth[j] < half:
            # linear interpolation between bins i and j
            frac = (smooth[i] - half) / max(smooth[i] - smooth[j], 1e-300)
            return i + step * frac
        i = j
    return None


def estimate_start(
    edges: np.ndarray, counts: np.ndarray, values: np.ndarray, weights: np.ndarray
) -> HistEstimate:
    """Robust starting estimates from the data.

    * position: maximum of the histogram smoothed with a (1,2,3,2,1)/9 kernel,
      refined to the weighted median of the entries within ± HWHM of it;
    * FWHM: where the smoothed histogram crosses half the peak height above a
      baseline (the mean of the minima left and right of the maximum);
    * background: a straight line fitted to the side bands (bins more than
      1.5 FWHM from the peak), integrated over the range; the signal yield is
      the remainder (each yield kept within 2–98 % of the total).
    """
    lo, hi = float(edges[0]), float(edges[-1])
    bw = float(edges[1] - edges[0])
    centers = 0.5 * (edges[1:] + edges[:-1])
    kernel = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0
    padded = np.pad(counts, 2, mode="edge")
    smooth = np.convolve(padded, kernel, mode="valid")
    k = int(np.argmax(smooth))
    left_min = float(smooth[: k + 1].min())
    right_min = float(smooth[k:].min())
    baseline = 0.5 * (left_min + right_min)
    half = baseline + 0.5 * (smooth[k] - baseline)
    left = _half_max_crossing(smooth, k, half, -1)
    right = _half_max_crossing(smooth, k, half, +1)
    if left is None and right is None:
        hw_left = hw_right = 0.25 * (hi - lo)
    else:
        hw_left = (k - left) * bw if left is not None else (right - k) * bw  # type: ignore[operator]
        hw_right = (right - k) * bw if right is not None else hw_left
    hw_left = float(np.clip(hw_left, 0.5 * bw, 0.5 * (hi - lo)))
    hw_right = float(np.clip(hw_right, 0.5 * bw, 0.5 * (hi - lo)))
    fwhm = hw_left + hw_right
    mode = float(centers[k])
    window = (values >= mode - hw_left) & (values <= mode + hw_right)
    position = _weighted_median(values[window], weights[window]) if window.any() else mode

    total = float(counts.sum())
    side = np.abs(centers - position) > 1.5 * fwhm
    if side.sum() < 4:
        side = np.abs(centers - position) > 0.75 * fwhm
    if side.sum() >= 2:
        coef = np.polyfit(centers[side], counts[side], 1 if side.sum() >= 4 else 0)
        bkg_counts = np.clip(np.polyval(coef, centers), 0.0, None)
    else:
        bkg_counts = np.full_like(counts, baseline)
    n_bkg = float(np.clip(bkg_counts.sum(), 0.02 * total, 0.98 * total))
    return HistEstimate(
        lo=lo,
        hi=hi,
        edges=edges,
        counts=counts,
        position=position,
        fwhm=fwhm,
        n_signal=total - n_bkg,
        n_background=n_bkg,
        background_counts=bkg_counts,
        left_spread=hw_left,
        right_spread=hw_right,
    )


# --------------------------------------------------------------------------- model


def parameter_names(peak: PeakShape, background: BackgroundShape) -> list[str]:
    """MINUIT parameter names: yields, then the peak's, then the background's."""
    return [SIGNAL, BACKGROUND, *peak.params, *background.params]


def _make_model(
    peak: PeakShape, background: BackgroundShape, lo: float, hi: float
) -> Callable[..., np.ndarray]:
    n_peak = len(peak.params)

    def scaled_cdf(xe: np.ndarray, *par: float) -> np.ndarray:
        n_sig, n_bkg = par[0], par[1]
        pp, bp = par[2 : 2 + n_peak], par[2 + n_peak :]
        cum = n_sig * peak.cdf(xe, lo, hi, *pp) + n_bkg * background.cdf(xe, lo, hi, *bp)
        per_bin = np.diff(cum)
        floor = 1e-12 * max(abs(n_sig) + abs(n_bkg), 1.0)
        if not np.all(per_bin > floor):
            # a polynomial background may dip below zero: keep every bin positive
            per_bin = np.maximum(np.nan_to_num(per_bin, nan=floor), floor)
            cum = np.r_[0.0, np.cumsum(per_bin)]
        return cum

    return scaled_cdf


def _width_of(peak: Any, name: str, params: np.ndarray) -> float:
    """The width ``name`` of ``peak`` at ``params`` (for error propagation)."""
    return float(peak.widths(params)[name])


def _propagate(
    func: Callable[[dict[str, float]], float],
    values: dict[str, float],
    names: list[str],
    cov: np.ndarray,
) -> float:
    """Linear error propagation :math:`\\sqrt{J C J^T}` with a central-difference Jacobian."""
    jac = np.zeros(len(names))
    for i, name in enumerate(names):
        h = 1e-6 * max(1.0, abs(values[name]))
        up, down = dict(values), dict(values)
        up[name] += h
        down[name] -= h
        jac[i] = (func(up) - func(down)) / (2 * h)
    return float(math.sqrt(max(jac @ cov @ jac, 0.0)))


def _at_limit(value: float, error: float, lower: float | None, upper: float | None) -> bool:
    """Whether a parameter is within half its error of a limit (iminuit's own criterion).

    HESSE errors of such a parameter are unreliable.
    """
    lb = lower if lower is not None else -math.inf
    ub = upper if upper is not None else math.inf
    return bool(min(value - lb, ub - value) < 0.5 * error)


def _limits(
    peak: PeakShape, background: BackgroundShape, lo: float, hi: float, bin_width: float
) -> dict[str, tuple[float | None, float | None]]:
    """MINUIT limits of every parameter: yields ≥ 0, then the shapes' own limits."""
    limits: dict[str, tuple[float | None, float | None]] = {
        SIGNAL: (0.0, None),
        BACKGROUND: (0.0, None),
    }
    limits.update(peak.limits(lo, hi, bin_width))
    limits.update(background.limits(lo, hi, bin_width))
    return limits


# --------------------------------------------------------------------------- fit


def fit_peak(
    values: np.ndarray, spec: AnalysisSpec, weights: np.ndarray | None = None
) -> FitResult:
    """Fit ``spec.peak`` + ``spec.background`` to ``values`` in ``spec.fit_range``.

    Parameters
    ----------
    values
        The mass values (any that are non-finite or outside the range are ignored).
    spec
        Fit range, bins, shapes, MINOS switch, minimum number of entries.
    weights
        Optional per-value weights; the histogram then holds sums of weights and the
        cost uses the Bohm–Zech scaled Poisson likelihood of iminuit.

    Returns
    -------
    FitResult
        Mass, width, yields, χ², validity, ... (see :class:`FitResult`).

    Raises
    ------
    FitError
        Fewer than ``spec.min_entries`` entries in the range; MIGRAD found no valid
        minimum; the covariance is not positive definite; or the peak position or
        width ran to a limit of its allowed range.
    ConfigError
        Unknown shape names.
    """
    peak = get_peak(spec.peak)
    background = get_background(spec.background)
    lo, hi = spec.lo, spec.hi
    edges, counts, variances, v_in, w_in = histogram(values, spec, weights)
    n_entries = int(v_in.size)
    label = f"{spec.peak}+{spec.background} fit in [{lo:g}, {hi:g}] {spec.unit}"
    if n_entries < spec.min_entries:
        raise FitError(
            f"{label}: only {n_entries} entries in the range (need at least "
            f"{spec.min_entries}); widen analysis.fit_range or loosen analysis.selection"
        )
    if float(counts.sum()) <= 0:
        raise FitError(f"{label}: the sum of weights in the range is not positive")

    est = estimate_start(edges, counts, v_in, w_in)
    names = parameter_names(peak, background)
    start: dict[str, float] = {SIGNAL: est.n_signal, BACKGROUND: est.n_background}
    start.update(peak.start(est))
    start.update(background.start(est))
    limits = _limits(peak, background, lo, hi, est.bin_width)
    for name, (a, b) in limits.items():
        # start strictly inside the limits
        if a is not None and b is not None:
            margin = 1e-3 * (b - a)
            start[name] = float(np.clip(start[name], a + margin, b - margin))
        elif a is not None:
            start[name] = max(start[name], a + 1e-3 * max(abs(start[name]), 1.0))
    log.debug("%s: start values %s", label, start)

    weighted = weights is not None
    n = np.stack([counts, variances], axis=-1) if weighted else counts
    model = _make_model(peak, background, lo, hi)
    cost = ExtendedBinnedNLL(n, edges, model, name=names)
    m = Minuit(cost, *(start[name] for name in names), name=names)
    for name, lim in limits.items():
        m.limits[name] = lim
    total = float(counts.sum())
    for name in names:
        if name in (SIGNAL, BACKGROUND):
            m.errors[name] = max(math.sqrt(max(start[name], 1.0)), 1e-3 * total)
        elif name == "mu":
            m.errors[name] = max(0.1 * est.fwhm, 0.1 * est.bin_width)
        elif name.startswith("log_"):
            m.errors[name] = 0.1
        else:
            m.errors[name] = max(0.1 * abs(start[name]), 0.05)

    with np.errstate(all="ignore"):
        m.migrad()
        if not m.valid:
            log.info("%s: MIGRAD invalid, retrying with SIMPLEX and strategy 2", label)
            m.strategy = 2
            m.simplex()
            m.migrad()
        if not m.valid:
            raise FitError(
                f"{label}: MIGRAD found no valid minimum (edm={m.fmin.edm:.3g}); try another "
                "analysis.peak/background, a narrower fit_range or fewer bins"
            )
        m.hesse()
    fmin = m.fmin
    if not fmin.is_valid or fmin.hesse_failed:
        raise FitError(
            f"{label}: the minimum is not valid after HESSE (edm={fmin.edm:.3g}); try another "
            "analysis.peak/background, a narrower fit_range or fewer bins"
        )
    if (
        not fmin.has_covariance
        or not fmin.has_posdef_covar
        or fmin.has_made_posdef_covar
        or m.covariance is None
    ):
        raise FitError(
            f"{label}: the covariance matrix is not positive definite; the fit is "
            "ill-defined, try a simpler background or another peak shape"
        )
    errors = np.array(m.errors)
    if not np.all(np.isfinite(errors)) or not np.all(np.isfinite(np.array(m.values))):
        raise FitError(f"{label}: the fit returned non-finite values or errors")
    at_limit = [
        p.name for p in m.params if _at_limit(p.value, p.error, p.lower_limit, p.upper_limit)
    ]
    log_widths = [p for p in peak.params if p.startswith("log_")]
    critical = ["mu", peak.width_param] if peak.width_param else ["mu"]
    if all(p in at_limit for p in log_widths):
        critical.extend(log_widths)
    for name in critical:
        if name in at_limit:
            what = "peak position" if name == "mu" else f"width ({name.removeprefix('log_')})"
            raise FitError(
                f"{label}: the {what} ran to the limit of its allowed range; the data show "
                "no resolvable peak there, check fit_range/bins or the peak shape"
            )
    if at_limit:
        log.warning(
            "%s: parameters within half an error of a limit (their errors are unreliable): %s",
            label,
            ", ".join(at_limit),
        )

    vals = {name: float(m.values[name]) for name in names}
    errs = {name: float(m.errors[name]) for name in names}
    minos: dict[str, list[float]] = {}
    if spec.minos:
        targets = ["mu", *(p for p in peak.params if p.startswith("log_"))]
        for name in targets:
            try:
                m.minos(name)
                me = m.merrors[name]
                if me.is_valid:
                    minos[name] = [float(me.lower), float(me.upper)]
                else:
                    log.warning("%s: MINOS for %s is not valid; keeping HESSE errors", label, name)
            except RuntimeError as exc:  # pragma: no cover - iminuit internal failure
                log.warning("%s: MINOS for %s failed (%s)", label, name, exc)

    # derived widths with propagated errors
    peak_names_ = list(peak.params)
    idx = [names.index(p) for p in peak_names_]
    cov_peak = np.array(m.covariance)[np.ix_(idx, idx)]
    width_values = peak.widths(vals)
    widths: dict[str, list[float]] = {}
    for wname, wval in width_values.items():
        werr = _propagate(partial(_width_of, peak, wname), vals, peak_names_, cov_peak)
        widths[wname] = [float(wval), werr]
    main = peak.width_name
    width, width_err = widths[main]
    width_minos = None
    if peak.width_param is not None and peak.width_param in minos:
        lo_m, up_m = minos[peak.width_param]
        theta = vals[peak.width_param]
        width_minos = [math.exp(theta + lo_m) - width, math.exp(theta + up_m) - width]

    expected = np.diff(model(edges, *(vals[name] for name in names)))
    nz = counts > 0
    chi2 = float(
        2.0
        * np.sum(
            expected
            - counts
            + np.where(nz, counts * np.log(np.where(nz, counts, 1.0) / expected), 0.0)
        )
    )
    chi2_pearson = float(np.sum((counts - expected) ** 2 / expected))
    ndf = int(spec.bins - m.nfit)
    # a yield at zero is a physical boundary (e.g. a pure-signal sample), not a failure
    shape_at_limit = [p for p in at_limit if p not in (SIGNAL, BACKGROUND)]
    valid = bool(fmin.is_valid and fmin.has_accurate_covar and not shape_at_limit)

    parameters = {
        name: {"value": vals[name], "error": errs[name], "minos": minos.get(name)} for name in names
    }
    result = FitResult(
        peak=spec.peak,
        background=spec.background,
        fit_range=[lo, hi],
        unit=spec.unit,
        mass=vals["mu"],
        mass_err=errs["mu"],
        width=width,
        width_err=width_err,
        width_name=main,
        widths=widths,
        yields={"signal": vals[SIGNAL], "background": vals[BACKGROUND]},
        yield_errors={"signal": errs[SIGNAL], "background": errs[BACKGROUND]},
        chi2=chi2,
        ndf=ndf,
        chi2_pearson=chi2_pearson,
        valid=valid,
        edm=float(fmin.edm),
        n_entries=n_entries,
        sum_weights=float(w_in.sum()),
        parameters=parameters,
        edges=edges.tolist(),
        counts=counts.tolist(),
        variances=variances.tolist(),
        mass_minos=minos.get("mu"),
        width_minos=width_minos,
        p_value=float(chi2_dist.sf(chi2, ndf)) if ndf > 0 else math.nan,
        at_limit=at_limit,
    )
    from baler_ext.analysis.quality import assess

    result.quality, result.quality_notes = assess(result, spec.min_p_value)
    if errs[SIGNAL] > 0 and vals[SIGNAL] < 3.0 * errs[SIGNAL]:
        log.warning(
            "%s: the peak is not significant (signal yield %.0f ± %.0f); the mass and width "
            "describe a fluctuation",
            label,
            vals[SIGNAL],
            errs[SIGNAL],
        )
    log.info(
        "%s: mass = %.3f ± %.3f %s, %s = %.3f ± %.3f %s, chi2/ndf = %.1f/%d, valid = %s, "
        "quality = %s",
        label,
        result.mass,
        result.mass_err,
        spec.unit,
        main,
        width,
        width_err,
        spec.unit,
        chi2,
        ndf,
        valid,
        result.quality,
    )
    return result


# --------------------------------------------------------------------------- fast refits


class BinnedModel:
    """Expected counts per bin of ``n_sig`` · peak + ``n_bkg`` · background on fixed edges.

    The same function as the model :func:`fit_peak` gives ``ExtendedBinnedNLL``
    (the scaled cdf differenced over the bins, every bin kept above a tiny positive
    floor), with the shapes' cdfs evaluated through :meth:`Shape.at_points
    <baler_ext.analysis.shapes.Shape.at_points>`, so that what does not depend on the
    parameters (the edges mapped onto each shape's variable, the polynomial terms) is
    computed once. When both shapes have closed-form cdfs, :meth:`grad` gives the
    analytic gradient of the expected counts.

    Parameters
    ----------
    peak, background
        The shapes.
    lo, hi
        The fit range.
    edges
        The bin edges.
    """

    def __init__(
        self, peak: PeakShape, background: BackgroundShape, lo: float, hi: float, edges: np.ndarray
    ) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.names = parameter_names(peak, background)
        self.n_peak = len(peak.params)
        self.peak_cdf = peak.at_points(self.edges, lo, hi)
        self.background_cdf = background.at_points(self.edges, lo, hi)
        self.has_grad = self.peak_cdf.has_grad and self.background_cdf.has_grad

    def _split(self, par: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
        par = np.asarray(par, dtype=np.float64)
        return float(par[0]), float(par[1]), par[2 : 2 + self.n_peak], par[2 + self.n_peak :]

    @staticmethod
    def _floor(n_sig: float, n_bkg: float) -> float:
        return 1e-12 * max(abs(n_sig) + abs(n_bkg), 1.0)

    def expected(self, par: np.ndarray) -> np.ndarray:
        """Expected counts per bin at the parameters ``par`` (in :attr:`names` order)."""
        n_sig, n_bkg, pp, bp = self._split(par)
        cum = n_sig * self.peak_cdf(pp) + n_bkg * self.background_cdf(bp)
        per_bin = np.diff(cum)
        floor = self._floor(n_sig, n_bkg)
        if not np.all(per_bin > floor):
            # a polynomial background may dip below zero: keep every bin positive
            per_bin = np.maximum(np.nan_to_num(per_bin, nan=floor), floor)
        return per_bin

    def grad(self, par: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected counts per bin and their derivatives, shapes ``(bins,)`` and ``(npar, bins)``.

        Bins held at the floor have zero derivatives.
        """
        n_sig, n_bkg, pp, bp = self._split(par)
        fs, dfs = self.peak_cdf.grad(pp)
        fb, dfb = self.background_cdf.grad(bp)
        d_cum = np.concatenate([fs[None, :], fb[None, :], n_sig * dfs, n_bkg * dfb])
        per_bin = np.diff(n_sig * fs + n_bkg * fb)
        d_per_bin = np.diff(d_cum, axis=1)
        floor = self._floor(n_sig, n_bkg)
        if not np.all(per_bin > floor):
            low = ~(per_bin > floor)
            per_bin = np.maximum(np.nan_to_num(per_bin, nan=floor), floor)
            d_per_bin[:, low] = 0.0
        return per_bin, d_per_bin


class PoissonDeviance:
    """Baker–Cousins deviance :math:`2\\sum_i [\\nu_i - n_i + n_i \\ln(n_i/\\nu_i)]` of counts.

    The cost :func:`fit_peak` minimises (``ExtendedBinnedNLL``, unweighted), written
    for one :class:`BinnedModel` whose counts can be replaced (:meth:`set_counts`), so
    that one :class:`~iminuit.Minuit` object serves every replica of a bootstrap.
    Called with the parameter array; :meth:`grad` is its analytic gradient when the
    model has one.
    """

    #: MINUIT's errordef for a deviance (2 × negative log-likelihood).
    errordef = 1.0

    def __init__(self, model: BinnedModel, counts: np.ndarray) -> None:
        self.model = model
        self.set_counts(counts)

    def set_counts(self, counts: np.ndarray) -> None:
        """Use ``counts`` (one number per bin) from now on."""
        n = np.asarray(counts, dtype=np.float64).copy()
        self.n = n
        positive = n > 0
        self._n_log_n = float(np.sum(n[positive] * np.log(n[positive])))
        self._n_sum = float(n.sum())

    def __call__(self, par: np.ndarray) -> float:
        nu = self.model.expected(par)
        return 2.0 * (float(nu.sum()) - self._n_sum + self._n_log_n - float(self.n @ np.log(nu)))

    def grad(self, par: np.ndarray) -> np.ndarray:
        """:math:`2\\sum_i (1 - n_i/\\nu_i)\\,\\partial\\nu_i/\\partial p`."""
        nu, d_nu = self.model.grad(par)
        return 2.0 * (d_nu @ (1.0 - self.n / nu))


class Refitter:
    """Refit the model of a nominal fit to other histograms on the same bins, quickly.

    Used by the paired bootstrap (:mod:`baler_ext.analysis.bootstrap`): every
    replica histogram is fitted with the nominal fit's shapes, limits and bins,
    starting from the nominal parameter values with the nominal HESSE errors as
    step sizes, with MIGRAD at strategy 0 and no HESSE (only the central values
    are needed; their spread over the replicas *is* the error). A replica whose
    MIGRAD is invalid is retried once at strategy 1; if it is still invalid, or
    the peak position or width ran to a limit, :meth:`fit` returns None and the
    caller counts the replica as failed.

    The cost is the same Poisson deviance as the nominal fit's
    (:class:`PoissonDeviance` of a :class:`BinnedModel`: the parts of the model that
    do not change between replicas are computed once, and one
    :class:`~iminuit.Minuit` object is reset and reused for every replica); with
    closed-form shapes MIGRAD gets the analytic gradient, otherwise it differentiates
    numerically. Both converge to the same minimum within MIGRAD's tolerance
    (EDM < 2·10⁻⁴), far inside the replicas' spread.

    Parameters
    ----------
    nominal
        The fit whose model, bins and parameter values are reused.
    """

    def __init__(self, nominal: FitResult) -> None:
        self.peak = get_peak(nominal.peak)
        self.background = get_background(nominal.background)
        self.edges = np.asarray(nominal.edges, dtype=np.float64)
        lo, hi = nominal.fit_range
        self.names = parameter_names(self.peak, self.background)
        self.model = BinnedModel(self.peak, self.background, lo, hi, self.edges)
        bin_width = float(self.edges[1] - self.edges[0])
        self.limits = _limits(self.peak, self.background, lo, hi, bin_width)
        vals = nominal.values()
        self.start = [vals[n] for n in self.names]
        self.steps = [max(float(nominal.parameters[n]["error"]), 1e-6) for n in self.names]
        self.critical = {"mu", *(p for p in self.peak.params if p.startswith("log_"))}
        # the position and log-width parameters checked against their limits after a fit
        self._critical = [
            (i, *self.limits.get(n, (None, None)), abs(self.steps[i]))
            for i, n in enumerate(self.names)
            if n in self.critical
        ]
        self.cost = PoissonDeviance(self.model, np.asarray(nominal.counts, dtype=np.float64))
        self.minuit = Minuit(
            self.cost,
            np.asarray(self.start, dtype=np.float64),
            name=self.names,
            grad=self.cost.grad if self.model.has_grad else False,
        )
        for name, lim in self.limits.items():
            self.minuit.limits[name] = lim
        self.minuit.errors = self.steps

    def fit(self, counts: np.ndarray) -> dict[str, float] | None:
        """Fit ``counts`` (one number per nominal bin); ``{"mass", "width", ...}`` or None.

        Returns
        -------
        dict or None
            ``mass``, every width of the peak shape (``sigma``, ``fwhm``, ...) and
            ``width`` (the main one), or None when the fit failed.
        """
        self.cost.set_counts(counts)
        m = self.minuit
        m.reset()
        m.strategy = 0
        with np.errstate(all="ignore"):
            m.migrad()
            if not m.valid:
                m.strategy = 1
                m.migrad()
        if not m.valid:
            return None
        values = np.array(m.values)
        for i, lower, upper, error in self._critical:
            if _at_limit(float(values[i]), error, lower, upper):
                return None
        vals = {name: float(v) for name, v in zip(self.names, values, strict=True)}
        widths = self.peak.widths(vals)
        return {"mass": vals["mu"], "width": widths[self.peak.width_name], **widths}
