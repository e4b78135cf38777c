"""Shared plot style of baler_ext.

Matplotlib is imported lazily: importing :mod:`baler_ext` (or this module) never
imports it. The first call of :func:`matplotlib_agg` selects the non-interactive
``Agg`` backend (unless :mod:`matplotlib.pyplot` was already imported by the
caller, in which case the caller's backend is left alone: switching it would
close the caller's open figures). Plots are drawn on :class:`matplotlib.figure.Figure`
objects created directly, not through :mod:`matplotlib.pyplot`, so no global
figure registry grows while a report is written.

The style is one mplhep style for every plot of the package (evaluation,
analysis, workflow tables): :mod:`mplhep`'s ROOT style (a core dependency) with
ticks inside on all four sides, minor ticks, fonts of at least 11 pt, no legend
frame, and fixed colours: the original data is always :data:`ORIGINAL_COLOR`
(black) and the decompressed data always :data:`RECONSTRUCTED_COLOR`.

:func:`units_for` guesses the unit of a column from its name (``pt``, ``Jet_pt``,
``MET`` -> GeV; ``phi`` -> rad; ``eta`` and fractions -> dimensionless),
:func:`latex_name` looks the name up in one small table of known columns
(:data:`KNOWN_COLUMNS`: ``pt`` -> :math:`p_{T}`, ``eta`` -> :math:`\\eta`,
``tau3`` -> :math:`\\tau_{3}`, ...; a collection prefix such as ``Jet_`` is kept as
a word) and falls back to the raw name, and :func:`axis_label` joins them into an
axis label such as ``"$p_{T}$ [GeV]"``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

#: Colour of the original (uncompressed) data in every plot.
ORIGINAL_COLOR = "black"
#: Colour of the decompressed data in every plot.
RECONSTRUCTED_COLOR = "#d62728"
#: Colour of residual distributions.
RESIDUAL_COLOR = "#1f77b4"
#: Colour of response distributions.
RESPONSE_COLOR = "#2ca02c"
#: Colour of auxiliary lines (quantile markers, reference lines).
GUIDE_COLOR = "0.45"
#: Colormap of signed quantities centred on zero (correlation differences).
DIVERGING_CMAP = "RdBu_r"
#: Colormap of continuous colour-coded quantities.
SEQUENTIAL_CMAP = "viridis"
#: Resolution of the written PNG files.
PNG_DPI = 130

#: Name tokens whose unit is GeV (matched case-insensitively against the whole
#: name and against its last ``_``/``.``/space separated token).
GEV_TOKENS: frozenset[str] = frozenset(
    {"pt", "mass", "m", "energy", "e", "px", "py", "pz", "met", "et", "ht", "mt", "sumet"}
)
#: Name tokens whose unit is rad.
RAD_TOKENS: frozenset[str] = frozenset({"phi"})
#: Name endings of dimensionless fractions (checked before the unit tokens).
FRACTION_SUFFIXES: tuple[str, ...] = ("frac", "fraction", "ratio")

#: LaTeX names of known columns (lower-case keys; matched after a collection prefix).
KNOWN_COLUMNS: dict[str, str] = {
    "pt": r"$p_{T}$",
    "eta": r"$\eta$",
    "phi": r"$\phi$",
    "mass": r"$m$",
    "m": r"$m$",
    "energy": r"$E$",
    "e": r"$E$",
    "px": r"$p_{x}$",
    "py": r"$p_{y}$",
    "pz": r"$p_{z}$",
    "met": r"$E_{T}^{\mathrm{miss}}$",
    "ht": r"$H_{T}$",
    "tau1": r"$\tau_{1}$",
    "tau2": r"$\tau_{2}$",
    "tau3": r"$\tau_{3}$",
    "tau21": r"$\tau_{21}$",
    "tau32": r"$\tau_{32}$",
    "n_constituents": r"$N_{\mathrm{const}}$",
    "n_charged": r"$N_{\mathrm{ch}}$",
    "charged_frac": "charged fraction",
    "photon_frac": "photon fraction",
    "neutral_hadron_frac": "neutral-hadron fraction",
    "lead_pt_frac": r"leading $p_{T}$ fraction",
    "girth": "girth",
    "ptd": r"$p_{T}D$",
}

_SPLIT = re.compile(r"[_.\s/:-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

_MPL_READY = False


def units_for(column: str) -> str:
    """Guess the physical unit of a column from its name.

    The name is lower-cased and split on ``_``, ``.``, ``-``, ``/``, ``:`` and
    spaces; the last token decides (so ``Jet_pt``, ``FatJet.mass`` and ``MET``
    work like ``pt``, ``mass`` and ``met``).

    Parameters
    ----------
    column
        Column name.

    Returns
    -------
    str
        ``"GeV"`` for momenta, masses and energies (tokens in :data:`GEV_TOKENS`:
        pt, mass, m, energy, e, px, py, pz, met, et, ht, mt, sumet), ``"rad"`` for
        phi, and ``""`` for anything else, including eta, counts and fractions
        (names ending in ``frac``, ``fraction`` or ``ratio``, e.g. ``lead_pt_frac``).
    """
    name = column.strip().lower()
    tokens = [t for t in _SPLIT.split(name) if t]
    if not tokens:
        return ""
    last = tokens[-1]
    if last.endswith(FRACTION_SUFFIXES):
        return ""
    if last in GEV_TOKENS:
        return "GeV"
    if last in RAD_TOKENS:
        return "rad"
    return ""


def latex_name(column: str) -> str:
    """The column's name for plots: its LaTeX name when known, else the raw name.

    ``"pt"`` -> ``"$p_{T}$"``; ``"Jet_pt"`` and ``"FatJet.tau3"`` keep their prefix as a
    word (``"Jet $p_{T}$"``, ``"FatJet $\\tau_{3}$"``); unknown names come back unchanged.
    """
    key = column.strip().lower()
    if key in KNOWN_COLUMNS:
        return KNOWN_COLUMNS[key]
    parts = re.split(r"[_.]", column.strip(), maxsplit=1)
    if len(parts) == 2 and parts[1].lower() in KNOWN_COLUMNS:
        return f"{parts[0]} {KNOWN_COLUMNS[parts[1].lower()]}"
    return column


def axis_label(column: str, what: str | None = None, scale_exp: int = 0) -> str:
    """Axis label of a column with its unit, e.g. ``"$p_{T}$ [GeV]"``.

    Parameters
    ----------
    column
        Column name.
    what
        Optional quantity appended to the name, e.g. ``"residual"`` gives
        ``"pt residual [GeV]"``.
    scale_exp
        Power of ten the plotted values were divided by (see
        :func:`engineering_exponent`); ``-3`` gives ``"pt residual [10^-3 GeV]"``
        (as mathtext).

    Returns
    -------
    str
        ``"<name>[ <what>] [<scale> <unit>]"`` with the name from :func:`latex_name`,
        without brackets when there is neither unit nor scale.
    """
    name = latex_name(column)
    text = name if not what else f"{name} {what}"
    return with_unit(text, units_for(column), scale_exp)


def with_unit(text: str, unit: str = "", scale_exp: int = 0) -> str:
    """``text [10^scale_exp unit]``, leaving out what is empty (``"x"``, ``"x [GeV]"``)."""
    parts = []
    if scale_exp:
        parts.append(f"$10^{{{scale_exp}}}$")
    if unit:
        parts.append(unit)
    return f"{text} [{' '.join(parts)}]" if parts else text


def engineering_exponent(max_abs: float, low: int = -1, high: int = 4) -> int:
    """Multiple of 3 to divide axis values by so that tick labels stay short.

    0 when ``10**low <= max_abs < 10**high`` (or ``max_abs`` is 0 or not finite);
    otherwise ``3 * floor(log10(max_abs) / 3)``, e.g. ``0.0058 -> -3``,
    ``0.05 -> -3``, ``0.5 -> 0``, ``78238 -> 3``.
    """
    if not (np.isfinite(max_abs) and max_abs > 0):
        return 0
    e = int(np.floor(np.log10(max_abs)))
    if low <= e < high:
        return 0
    return 3 * int(np.floor(e / 3))


def safe_filename(name: str) -> str:
    """File-name-safe version of a column name (runs of other characters become ``_``)."""
    cleaned = _UNSAFE.sub("_", name).strip("._")
    return cleaned or "column"


def matplotlib_agg() -> ModuleType:
    """Import matplotlib and select the ``Agg`` backend (once); return the module.

    The backend is only switched when :mod:`matplotlib.pyplot` has not been
    imported yet, so an interactive session keeps its backend and its figures.
    """
    global _MPL_READY
    import matplotlib

    if not _MPL_READY:
        if "matplotlib.pyplot" not in sys.modules:
            matplotlib.use("Agg")
        _MPL_READY = True
    return matplotlib


def style_rc() -> dict[str, Any]:
    """The rcParams of the baler_ext plot style: mplhep's ROOT style with the settings above."""
    import mplhep

    rc: dict[str, Any] = dict(mplhep.style.ROOT)
    rc.update(
        {
            "font.size": 12,
            "axes.titlesize": 13,
            "axes.labelsize": 13,
            "xtick.labelsize": 11,
            "ytick.labelsize": 11,
            "legend.fontsize": 11,
            "figure.titlesize": 14,
            "xtick.direction": "in",
            "ytick.direction": "in",
            "xtick.top": True,
            "ytick.right": True,
            "xtick.minor.visible": True,
            "ytick.minor.visible": True,
            "xtick.major.size": 6.0,
            "ytick.major.size": 6.0,
            "xtick.minor.size": 3.0,
            "ytick.minor.size": 3.0,
            "axes.linewidth": 1.0,
            "lines.linewidth": 1.6,
            "legend.frameon": False,
            "axes.formatter.limits": (-3, 5),
            "axes.formatter.use_mathtext": True,
            "image.cmap": SEQUENTIAL_CMAP,
            "figure.dpi": 100,
            "savefig.dpi": PNG_DPI,
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
        }
    )
    return rc


@contextmanager
def hep_figure(**figure_kwargs: Any) -> Iterator[Figure]:
    """Context manager yielding a new :class:`~matplotlib.figure.Figure` in the baler_ext style.

    Create the axes and save the figure inside the ``with`` block (the style is
    an :func:`matplotlib.rc_context`). The figure is not registered with
    :mod:`matplotlib.pyplot`; it is cleared on exit so its artists are freed.
    """
    mpl = matplotlib_agg()
    from matplotlib.figure import Figure

    with mpl.rc_context(style_rc()):
        fig = Figure(**figure_kwargs)
        try:
            yield fig
        finally:
            fig.clear()


def save_png(fig: Figure, out_dir: str | Path, stem: str, tight: bool = True) -> Path:
    """Save ``fig`` as ``<out_dir>/<stem>.png`` (folder created if needed) and return the path.

    ``tight`` crops the page to its content (one more layout pass; figures with many
    axes that place them explicitly save faster without it).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe_filename(stem)}.png"
    fig.savefig(path, format="png", dpi=PNG_DPI, bbox_inches="tight" if tight else None)
    log.debug("wrote %s", path)
    return path


def subsample_indices(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` rows, drawn without replacement.

    Returns ``arange(n)`` when ``n <= max_points``; otherwise a reproducible
    random subset from :func:`numpy.random.default_rng` with ``seed``.
    """
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def format_value(value: float, unit: str = "", digits: int = 3) -> str:
    """Short human-readable number with an optional unit (``"1.23e-05 GeV"``, ``"nan"``)."""
    if value is None or not np.isfinite(value):
        text = "nan" if value is None or np.isnan(value) else ("inf" if value > 0 else "-inf")
    else:
        text = f"{value:.{digits}g}"
    return f"{text} {unit}" if unit else text
