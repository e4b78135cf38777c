"""Compare the fits before and after compression, and write the analysis report.

Statistical error of a shift
----------------------------
The original and decompressed samples hold the *same events*, so the two fits
are strongly positively correlated and the true statistical error of
:math:`\\Delta = x_\\mathrm{after} - x_\\mathrm{before}` is much smaller than either
fit error. It is measured with the paired bootstrap of
:mod:`baler_ext.analysis.bootstrap` (events resampled, both samples refitted on
every replica). Each shift is reported with that paired :math:`\\sigma`, in units
of it, and in units of the original fit's statistical (HESSE) error. Without a
bootstrap (``analysis.bootstrap_replicas = 0``) the error falls back to the
quadrature sum :math:`\\sqrt{\\sigma_\\mathrm{before}^2 + \\sigma_\\mathrm{after}^2}`,
which is **conservative** (an upper bound for non-negative correlation).

Fit quality
-----------
Both fits are graded by :func:`baler_ext.analysis.quality.assess`; a poor or
failed reference fit is named in the verdict (with the best-fitting alternative
shapes when known), since a shift measured with a model that does not describe
the data is not a clean measure of the compression.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from baler_ext.analysis.bootstrap import PairedShift, n_sigma
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
        :math:`\\mu_\\mathrm{after} - \\mu_\\mathrm{before}` and its error (paired
        bootstrap, or the quadrature sum; ``error_method`` says which).
    delta_width, delta_width_err
        The same for the main width (``width_name``).
    mass_shift_sigma, width_shift_sigma
        :math:`|\\Delta| / \\sigma_\\Delta` (NaN when the error is zero).
    mass_shift_stat, width_shift_stat
        :math:`|\\Delta|` in units of the original fit's statistical error.
    width_name, unit, quantity
        Which width, the unit and the name of the fitted quantity (``"top mass"``).
    both_valid
        Both fits are ``valid``.
    error_method
        ``"paired bootstrap (N replicas over events|rows)"`` or ``"quadrature sum"``.
    reference_quality, decompressed_quality
        Grades of the two fits (``good``/``poor``/``failed``).
    quality_notes
        Why a fit is not good, prefixed with the sample.
    suggestion
        Better-fitting shapes for a poor reference fit, when found.
    shifts
        Every paired shift (mass, width, tagger quantities) as dicts.
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
    mass_shift_stat: float = math.nan
    width_shift_stat: float = math.nan
    error_method: str = "quadrature sum"
    reference_quality: str = "good"
    decompressed_quality: str = "good"
    quality_notes: list[str] = field(default_factory=list)
    suggestion: str | None = None
    shifts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def quality(self) -> str:
        """The worse of the two fits' grades."""
        order = ("good", "poor", "failed")
        return max(self.reference_quality, self.decompressed_quality, key=order.index)

    def verdict(self) -> str:
        """One line, e.g.
        ``compression moved the top mass by −0.024 ± 0.034 GeV (0.7σ paired, 0.15 σ_stat)
        and the width by +0.096 ± 0.055 GeV (1.7σ paired, 0.54 σ_stat)``, followed by
        a warning when a fit is poor or failed.
        """
        paired = "paired" if self.error_method.startswith("paired") else "quadrature"
        mass = _format_shift(self.delta_mass, self.delta_mass_err, self.mass_shift_sigma)
        width = _format_shift(self.delta_width, self.delta_width_err, self.width_shift_sigma)
        mstat = _stat_units(self.mass_shift_stat)
        wstat = _stat_units(self.width_shift_stat)
        line = (
            f"compression moved the {self.quantity} by {mass[0]} {self.unit} "
            f"({mass[1]} {paired}{mstat}) and the width by {width[0]} {self.unit} "
            f"({width[1]} {paired}{wstat})"
        )
        if self.reference_quality != "good":
            why = "; ".join(
                n.removeprefix("original: ")
                for n in self.quality_notes
                if n.startswith("original: ")
            )
            line += (
                f"; but the reference fit is {self.reference_quality} ({why}), so the "
                "shifts are measured with a model that does not describe the data"
            )
            if self.suggestion:
                line += f": try {self.suggestion}"
        if self.decompressed_quality != "good":
            line += f"; the decompressed fit is {self.decompressed_quality}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable mapping (non-finite numbers become None) with the verdict."""
        out = jsonable(asdict(self))
        out["quality"] = self.quality
        out["verdict"] = self.verdict()
        return out


def _stat_units(value: float) -> str:
    return f", {value:.2f} σ_stat" if math.isfinite(value) else ""


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


def compare_fits(
    before: FitResult,
    after: FitResult,
    quantity: str = "top mass",
    paired: Mapping[str, PairedShift] | None = None,
    error_method: str | None = None,
    suggestion: str | None = None,
) -> Comparison:
    """Shifts of mass and width from ``before`` (original) to ``after`` (decompressed).

    Parameters
    ----------
    before, after
        The two fits.
    quantity
        Name of the fitted quantity in the verdict.
    paired
        Paired-bootstrap shifts (:func:`baler_ext.analysis.bootstrap.paired_bootstrap`)
        holding ``"mass"`` and ``"width"``; without them (or with NaN paired errors)
        the error of each shift is the conservative quadrature sum of the fit errors.
    error_method
        Description of the paired errors for the report (default: from ``paired``).
    suggestion
        Better-fitting shapes for a poor reference fit (shown in the verdict).

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
    dw = after.width - before.width
    use_paired = (
        paired is not None
        and "mass" in paired
        and "width" in paired
        and math.isfinite(paired["mass"].sigma_paired)
        and math.isfinite(paired["width"].sigma_paired)
    )
    if use_paired:
        assert paired is not None
        dm_err, dw_err = paired["mass"].sigma_paired, paired["width"].sigma_paired
        method = error_method or f"paired bootstrap ({paired['mass'].replicas} replicas)"
    else:
        dm_err = math.hypot(before.mass_err, after.mass_err)
        dw_err = math.hypot(before.width_err, after.width_err)
        method = "quadrature sum"
    notes = [f"original: {n}" for n in before.quality_notes]
    notes += [f"decompressed: {n}" for n in after.quality_notes]
    comparison = Comparison(
        delta_mass=dm,
        delta_mass_err=dm_err,
        delta_width=dw,
        delta_width_err=dw_err,
        mass_shift_sigma=n_sigma(dm, dm_err),
        width_shift_sigma=n_sigma(dw, dw_err),
        width_name=before.width_name,
        unit=before.unit,
        quantity=quantity,
        both_valid=bool(before.valid and after.valid),
        mass_shift_stat=n_sigma(dm, before.mass_err),
        width_shift_stat=n_sigma(dw, before.width_err),
        error_method=method,
        reference_quality=before.quality,
        decompressed_quality=after.quality,
        quality_notes=notes,
        suggestion=suggestion,
        shifts={k: v.to_dict() for k, v in (paired or {}).items()},
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
        f"| sample | mass ± err [{unit}] | width ({wname}) ± err [{unit}] | χ²/ndf | p-value "
        "| EDM | at limit | entries | valid | quality |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, fit in zip(labels, (before, after), strict=True):
        lines.append(
            f"| {label} | {_cell(fit.mass, fit.mass_err)} | {_cell(fit.width, fit.width_err)} "
            f"| {fit.chi2:.1f}/{fit.ndf} = {fit.chi2_ndf:.2f} | {fit.p_value:.2g} "
            f"| {fit.edm:.2g} | {', '.join(fit.at_limit) or '—'} | {fit.n_entries} "
            f"| {'yes' if fit.valid else 'no'} | {fit.quality} |"
        )
    lines += ["", f"**Verdict:** {comparison.verdict()}.", ""]
    if comparison.shifts:
        lines += [
            "## Shifts with paired errors",
            "",
            f"Errors: {comparison.error_method}. σ_paired is the spread of the shift over "
            "the replicas; σ_stat is the original measurement's statistical error.",
            "",
            "| quantity | original | decompressed | shift | σ_paired | shift/σ_paired "
            "| shift/σ_stat | corr. | failed replicas |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, sh in comparison.shifts.items():
            sp = sh["sigma_paired"] if sh["sigma_paired"] is not None else math.nan
            d = _decimals(sp)
            lines.append(
                f"| {name} | {sh['before']:.{d + 1}f} | {sh['after']:.{d + 1}f} "
                f"| {_signed(sh['delta'], d + 1)} | {sp:.{d + 1}f} "
                f"| {_num(sh['n_sigma_paired'], 1)} | {_num(sh['n_sigma_stat'], 2)} "
                f"| {_num(sh['correlation'], 3)} | {sh['failed']} |"
            )
        lines += [
            "",
            "Method: every replica draws the events (or rows, without an event column) with "
            "replacement; the *same* drawn events fill both the original and the decompressed "
            "histogram, and both are refitted (MIGRAD from the nominal values). The standard "
            "deviation of the replica shifts is σ_paired: it contains only what compression "
            "did, not the events' common fluctuation, so it is much smaller than either fit's "
            "error.",
            "",
        ]
    else:
        lines += [
            "Shift errors are the quadrature sum of the two fit errors: conservative, "
            "since both samples hold the same events.",
            "",
        ]
    if comparison.quality_notes:
        lines += ["## Fit quality", ""] + [f"- {n}" for n in comparison.quality_notes] + [""]
        if comparison.suggestion:
            lines += [
                f"Best-fitting alternative for the reference sample: {comparison.suggestion}.",
                "",
            ]
    if not comparison.both_valid:
        lines += ["⚠ At least one fit is not fully valid (see analysis.json).", ""]
    return "\n".join(lines)


def _num(value: Any, decimals: int) -> str:
    return (
        f"{value:.{decimals}f}"
        if isinstance(value, int | float) and math.isfinite(value)
        else "n/a"
    )


def write_report(
    out_dir: str | Path,
    before: FitResult,
    after: FitResult,
    comparison: Comparison,
    spec: AnalysisSpec,
    labels: Sequence[str] = ("original", "decompressed"),
    extra: dict[str, Any] | None = None,
    plot: bool = True,
    notes: str | None = None,
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
    notes
        A further line for the markdown report (e.g. the tagger check's verdict).

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
        "shift_error_definition": comparison.error_method,
    }
    if extra:
        payload["extra"] = jsonable(extra)
    paths = {"json": out / "analysis.json", "markdown": out / "analysis.md"}
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", "utf-8")
    text = markdown_report(before, after, comparison, spec, labels)
    if notes:
        text += f"\n## Tagger check\n\n{notes}\n"
    paths["markdown"].write_text(text, encoding="utf-8")
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
    :math:`(n_i - \\nu_i)/\\sqrt{\\mathrm{var}_i}` of each sample against its own fit
    (y range symmetric, 3 to 10). Drawn in the package's one plot style
    (:func:`baler_ext.plotting.hep_figure`, mplhep), without pyplot.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from baler_ext.plotting import PNG_DPI, hep_figure

    path = Path(path)
    with hep_figure(figsize=(8.0, 7.0)) as fig:
        _draw_comparison(fig, before, after, comparison, labels, xlabel)
        fig.savefig(path, format="png", dpi=PNG_DPI, bbox_inches="tight")
    return path


def _draw_comparison(
    fig: Any,
    before: FitResult,
    after: FitResult,
    comparison: Comparison | None,
    labels: Sequence[str],
    xlabel: str,
) -> None:
    top, bottom = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
    )
    unit = before.unit
    lo, hi = before.fit_range
    x = np.linspace(lo, hi, 600)
    handles: list[Any] = []
    worst = 0.0
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
        worst = max(worst, float(np.max(np.abs(pulls), initial=0.0)))
        if i == 0:
            bottom.errorbar(centres, pulls, yerr=1.0, fmt="o", ms=3, color=colour)
        else:
            bottom.stairs(pulls, edges, color=colour, lw=1.2)
    top.set_ylabel(f"entries / {bw:g} {unit}")
    top.set_xlim(lo, hi)
    # headroom above the peak so that the legend never covers data
    peak = max(float(np.max(np.asarray(f.counts))) for f in (before, after))
    top.set_ylim(0, 1.5 * peak)
    top.legend(handles=handles, fontsize=9, loc="upper right", frameon=False)
    if comparison is not None:
        import textwrap

        top.set_title("\n".join(textwrap.wrap(comparison.verdict(), 110)), fontsize=7, loc="left")
    bottom.axhline(0.0, color="grey", lw=0.8)
    for level in (-2.0, 2.0):
        bottom.axhline(level, color="grey", lw=0.5, ls=":")
    bottom.set_ylabel("pull")
    bottom.set_xlabel(f"{xlabel} [{unit}]")
    lim = float(np.clip(1.2 * worst, 3.0, 10.0))
    bottom.set_ylim(-lim, lim)
