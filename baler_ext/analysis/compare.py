"""Compare the fits before and after compression, and write the analysis report.

Statistical error of a shift
----------------------------
The original and decompressed samples hold the *same events*, so the two fits
are strongly positively correlated and the true statistical error of
:math:`\\Delta = x_\\mathrm{after} - x_\\mathrm{before}` is smaller than either
fit error. Without a per-event bootstrap the correlation is unknown, so the
shift error is the quadrature sum

.. math:: \\sigma_\\Delta = \\sqrt{\\sigma_\\mathrm{before}^2 + \\sigma_\\mathrm{after}^2},

which is **conservative** (an upper bound for non-negative correlation): a
shift that is significant with it is certainly significant.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baler_ext.analysis.fit import FitResult, jsonable
from baler_ext.analysis.spec import AnalysisSpec

log = logging.getLogger(__name__)

#: Colours of the two samples in plots: original (black points), decompressed (coloured step).
COLOURS: tuple[str, str] = ("black", "tab:red")

MINUS = "\u2212"


@dataclass
class Comparison:
    """Shifts of mass and width caused by compression (after − before).

    Attributes
    ----------
    delta_mass, delta_mass_err
        :math:`\\mu_\\mathrm{after} - \\mu_\\mathrm{before}` and its error (quadrature sum).
    delta_width, delta_width_err
        The same for the main width (``width_name``).
    mass_shift_sigma, width_shift_sigma
        :math:`|\\Delta| / \\sigma_\\Delta` (NaN when the error is zero).
    width_name, unit, quantity
        Which width, the unit and the name of the fitted quantity (``"top mass"``).
    both_valid
        Both fits are ``valid``.
    """

    delta_mass: float
    delta_mass_err: float
    delta_width: float
    delta_width_err: float
    mass_shift_sigma: float
    width_shift_sigma: float
    width_name: str
    unit: str
    quantity: str
    both_valid: bool

    def verdict(self) -> str:
        """One line, e.g.
        ``compression moved the top mass by −0.08 ± 0.17 GeV (0.5σ) and the width by
        +0.05 ± 0.20 GeV (0.3σ)``.
        """
        mass = _format_shift(self.delta_mass, self.delta_mass_err, self.mass_shift_sigma)
        width = _format_shift(self.delta_width, self.delta_width_err, self.width_shift_sigma)
        line = (
            f"compression moved the {self.quantity} by {mass[0]} {self.unit} ({mass[1]}) "
            f"and the width by {width[0]} {self.unit} ({width[1]})"
        )
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable mapping (non-finite numbers become None) with the verdict."""
        out = jsonable(asdict(self))
        out["verdict"] = self.verdict()
        return out


def _decimals(err: float) -> int:
    """Decimals that show two significant digits of ``err`` (0 to 6)."""
    if not math.isfinite(err) or err <= 0:
        return 2
    return int(min(max(1 - math.floor(math.log10(err)), 0), 6))


def _signed(value: float, decimals: int) -> str:
    text = f"{abs(value):.{decimals}f}"
    if float(text) == 0.0:
        return f"+{text}"
    return f"{MINUS if value < 0 else '+'}{text}"


def _format_shift(value: float, err: float, nsigma: float) -> tuple[str, str]:
    d = _decimals(err)
    shift = f"{_signed(value, d)} \u00b1 {err:.{d}f}"
    sig = f"{nsigma:.1f}\u03c3" if math.isfinite(nsigma) else "n/a \u03c3"
    return shift, sig


def _nsigma(delta: float, err: float) -> float:
    return abs(delta) / err if err > 0 and math.isfinite(err) else math.nan


def compare_fits(before: FitResult, after: FitResult, quantity: str = "top mass") -> Comparison:
    """Shifts of mass and width from ``before`` (original) to ``after`` (decompressed).

    The error of each shift is the quadrature sum of the two fit errors,
    conservative because both samples hold the same events (see the module
    docstring).

    Raises
    ------
    ValueError
        When the two fits report different kinds of width (different peak shapes).
    """
    if before.width_name != after.width_name:
        raise ValueError(
            f"cannot compare a {before.width_name} with a {after.width_name}: "
            "fit both samples with the same peak shape"
        )
    dm = after.mass - before.mass
    dm_err = math.hypot(before.mass_err, after.mass_err)
    dw = after.width - before.width
    dw_err = math.hypot(before.width_err, after.width_err)
    comparison = Comparison(
        delta_mass=dm,
        delta_mass_err=dm_err,
        delta_width=dw,
        delta_width_err=dw_err,
        mass_shift_sigma=_nsigma(dm, dm_err),
        width_shift_sigma=_nsigma(dw, dw_err),
        width_name=before.width_name,
        unit=before.unit,
        quantity=quantity,
        both_valid=bool(before.valid and after.valid),
    )
    log.debug("%s", comparison.verdict())  # the stage reports it (stdout)
    return comparison


# --------------------------------------------------------------------------- report


def _cell(value: float, err: float) -> str:
    d = _decimals(err)
    return f"{value:.{d}f} \u00b1 {err:.{d}f}"


def markdown_report(
    before: FitResult,
    after: FitResult,
    comparison: Comparison,
    spec: AnalysisSpec,
    labels: Sequence[str] = ("original", "decompressed"),
) -> str:
    """The analysis summary as markdown: a table of both fits and the verdict."""
    unit = spec.unit
    wname = {"sigma": "σ", "Gamma": "Γ", "fwhm": "FWHM"}.get(before.width_name, before.width_name)
    lines = [
        f"# Physics impact: {spec.quantity}",
        "",
        f"Fit of `{spec.peak}` + `{spec.background}` in [{spec.lo:g}, {spec.hi:g}] {unit}, "
        f"{spec.bins} bins, binned extended maximum likelihood (iminuit); "
        "χ² is the Baker–Cousins Poisson deviance.",
        "",
        f"| sample | mass ± err [{unit}] | width ({wname}) ± err [{unit}] | χ²/ndf | entries "
        "| valid |",
        "|---|---|---|---|---|---|",
    ]
    for label, fit in zip(labels, (before, after), strict=True):
        lines.append(
            f"| {label} | {_cell(fit.mass, fit.mass_err)} | {_cell(fit.width, fit.width_err)} "
            f"| {fit.chi2:.1f}/{fit.ndf} = {fit.chi2_ndf:.2f} | {fit.n_entries} "
            f"| {'yes' if fit.valid else 'no'} |"
        )
    lines += [
        "",
        f"**Verdict:** {comparison.verdict()}.",
        "",
        "Shift errors are the quadrature sum of the two fit errors: conservative, since "
        "both samples hold the same events.",
    ]
    if not comparison.both_valid:
        lines += ["", "⚠ At least one fit is not fully valid (see analysis.json)."]
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: str | Path,
    before: FitResult,
    after: FitResult,
    comparison: Comparison,
    spec: AnalysisSpec,
    labels: Sequence[str] = ("original", "decompressed"),
    extra: dict[str, Any] | None = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``analysis.json``, ``analysis.md`` and (if ``plot``) ``analysis.png`` to ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder, created if missing.
    before, after
        Fits of the original and decompressed samples.
    comparison
        From :func:`compare_fits`.
    spec
        The analysis spec used (stored in the JSON).
    labels
        Names of the two samples.
    extra
        Additional JSON-serialisable items stored under ``"extra"`` (e.g. file names).
    plot
        Also draw the comparison plot.

    Returns
    -------
    dict
        ``{"json": path, "markdown": path, "plot": path}`` (``plot`` only if drawn).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "spec": spec.to_dict(),
        "labels": list(labels),
        "before": before.to_dict(),
        "after": after.to_dict(),
        "comparison": comparison.to_dict(),
        "verdict": comparison.verdict(),
        "chi2_definition": "Baker-Cousins Poisson deviance over all bins",
        "shift_error_definition": "quadrature sum of the two fit errors (conservative)",
    }
    if extra:
        payload["extra"] = jsonable(extra)
    paths = {"json": out / "analysis.json", "markdown": out / "analysis.md"}
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", "utf-8")
    paths["markdown"].write_text(
        markdown_report(before, after, comparison, spec, labels), encoding="utf-8"
    )
    if plot:
        paths["plot"] = plot_comparison(
            out / "analysis.png", before, after, comparison, labels, xlabel=spec.quantity
        )
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def plot_comparison(
    path: str | Path,
    before: FitResult,
    after: FitResult,
    comparison: Comparison | None = None,
    labels: Sequence[str] = ("original", "decompressed"),
    xlabel: str = "mass",
) -> Path:
    """Draw both histograms with their fitted curves and a pull panel; save as PNG.

    The original sample is drawn as black points with Poisson error bars, the
    decompressed one as a coloured step; each fitted curve in the same colour
    (dashed: background). The lower panel shows the pulls
    :math:`(n_i - \\nu_i)/\\sqrt{\\mathrm{var}_i}` of each sample against its own fit.
    Uses matplotlib's Agg canvas directly (no pyplot, no global backend change).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(7.0, 6.0), dpi=120)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
    )
    unit = before.unit
    lo, hi = before.fit_range
    x = np.linspace(lo, hi, 600)
    handles: list[Any] = []
    for i, (fit, label) in enumerate(zip((before, after), labels, strict=True)):
        colour = COLOURS[i]
        edges = np.asarray(fit.edges)
        counts = np.asarray(fit.counts)
        var = np.asarray(fit.variances)
        centres = 0.5 * (edges[1:] + edges[:-1])
        bw = float(edges[1] - edges[0])
        wname = {"sigma": "σ", "Gamma": "Γ", "fwhm": "FWHM"}.get(fit.width_name, fit.width_name)
        fit_label = (
            f"{label} fit: m = {_cell(fit.mass, fit.mass_err)}, "
            f"{wname} = {_cell(fit.width, fit.width_err)} {unit}"
        )
        if i == 0:
            data = top.errorbar(
                centres, counts, yerr=np.sqrt(var), fmt="o", ms=3, color=colour, label=label
            )
        else:
            data = top.stairs(counts, edges, color=colour, lw=1.5, label=label)
        (curve,) = top.plot(x, fit.density(x) * bw, color=colour, lw=1.2, label=fit_label)
        handles += [data, curve]
        top.plot(x, fit.density(x, "background") * bw, color=colour, lw=0.8, ls="--")
        expected = fit.expected()
        pulls = (counts - expected) / np.sqrt(np.where(var > 0, var, np.maximum(expected, 1.0)))
        if i == 0:
            bottom.errorbar(centres, pulls, yerr=1.0, fmt="o", ms=3, color=colour)
        else:
            bottom.stairs(pulls, edges, color=colour, lw=1.2)
    top.set_ylabel(f"entries / {bw:g} {unit}")
    top.set_xlim(lo, hi)
    # headroom above the peak so that the legend never covers data
    peak = max(float(np.max(np.asarray(f.counts))) for f in (before, after))
    top.set_ylim(0, 1.5 * peak)
    top.legend(handles=handles, fontsize=8, loc="upper right", frameon=False)
    if comparison is not None:
        top.set_title(comparison.verdict(), fontsize=8)
    bottom.axhline(0.0, color="grey", lw=0.8)
    for level in (-2.0, 2.0):
        bottom.axhline(level, color="grey", lw=0.5, ls=":")
    bottom.set_ylabel("pull")
    bottom.set_xlabel(f"{xlabel} [{unit}]")
    fig.savefig(path)
    return path
