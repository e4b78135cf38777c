"""Unit guesses, axis labels and the shared style of baler_ext.plotting."""

from __future__ import annotations

import numpy as np
import pytest

from baler_ext.plotting import (
    KNOWN_COLUMNS,
    ORIGINAL_COLOR,
    RECONSTRUCTED_COLOR,
    axis_label,
    engineering_exponent,
    latex_name,
    safe_filename,
    style_rc,
    subsample_indices,
    units_for,
)


@pytest.mark.parametrize(
    ("column", "unit"),
    [
        ("pt", "GeV"),
        ("PT", "GeV"),
        ("Jet_pt", "GeV"),
        ("FatJet.mass", "GeV"),
        ("mass", "GeV"),
        ("energy", "GeV"),
        ("Muon_E", "GeV"),
        ("e", "GeV"),
        ("px", "GeV"),
        ("py", "GeV"),
        ("pz", "GeV"),
        ("MET", "GeV"),
        ("MET_pt", "GeV"),
        ("phi", "rad"),
        ("Jet_phi", "rad"),
        ("eta", ""),
        ("Jet_eta", ""),
        ("lead_pt_frac", ""),
        ("charged_frac", ""),
        ("ptd", ""),
        ("n_constituents", ""),
        ("top_matched", ""),
        ("", ""),
    ],
)
def test_units_for(column: str, unit: str) -> None:
    assert units_for(column) == unit


def test_axis_label() -> None:
    assert axis_label("pt") == "$p_{T}$ [GeV]"
    assert axis_label("eta") == r"$\eta$"
    assert axis_label("phi", "residual") == r"$\phi$ residual [rad]"
    assert axis_label("pt", scale_exp=-3) == "$p_{T}$ [$10^{-3}$ GeV]"
    assert axis_label("eta", scale_exp=3) == r"$\eta$ [$10^{3}$]"
    assert axis_label("my_weird_col") == "my_weird_col"


@pytest.mark.parametrize(
    ("column", "label"),
    [
        ("pt", "$p_{T}$"),
        ("Jet_pt", "Jet $p_{T}$"),
        ("FatJet.tau3", r"FatJet $\tau_{3}$"),
        ("tau3", r"$\tau_{3}$"),
        ("TAU2", r"$\tau_{2}$"),
        ("n_constituents", r"$N_{\mathrm{const}}$"),
        ("something_else", "something_else"),
    ],
)
def test_latex_names(column: str, label: str) -> None:
    assert latex_name(column) == label


def test_latex_names_render() -> None:
    """Every label of the table is valid mathtext (a typo would fail only when drawing)."""
    from matplotlib.mathtext import MathTextParser

    parser = MathTextParser("agg")
    for label in KNOWN_COLUMNS.values():
        parser.parse(label)


def test_engineering_exponent() -> None:
    assert engineering_exponent(0.0058) == -3
    assert engineering_exponent(0.05) == -3
    assert engineering_exponent(0.5) == 0
    assert engineering_exponent(5000.0) == 0
    assert engineering_exponent(78_238.0) == 3
    assert engineering_exponent(0.0) == 0
    assert engineering_exponent(float("nan")) == 0


def test_style_is_hep_like() -> None:
    rc = style_rc()
    assert rc["xtick.direction"] == rc["ytick.direction"] == "in"
    assert rc["xtick.top"] and rc["ytick.right"]
    assert min(rc[k] for k in ("font.size", "xtick.labelsize", "legend.fontsize")) >= 11
    assert ORIGINAL_COLOR == "black" and RECONSTRUCTED_COLOR != ORIGINAL_COLOR


def test_subsample_is_reproducible_and_bounded() -> None:
    a = subsample_indices(1_000_000, 20_000, seed=3)
    b = subsample_indices(1_000_000, 20_000, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.size == 20_000 and np.unique(a).size == 20_000 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(subsample_indices(10, 20_000), np.arange(10))


def test_safe_filename() -> None:
    assert safe_filename("Jet/pt (GeV)") == "Jet_pt_GeV"
    assert safe_filename("///") == "column"
