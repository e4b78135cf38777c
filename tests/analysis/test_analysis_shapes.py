"""Every registered shape is a normalised density on the fit range with a consistent cdf."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from baler_ext.analysis import get_background, get_peak
from baler_ext.analysis.shapes import numeric_cdf, voigt_fwhm
from baler_ext.errors import ConfigError

LO, HI = 120.0, 230.0

CASES = [
    ("peak", "gauss", (173.0, math.log(8.0))),
    ("peak", "gauss", (125.0, math.log(1.5))),
    ("peak", "breit_wigner", (173.0, math.log(10.0))),
    ("peak", "voigt", (173.0, math.log(6.0), math.log(4.0))),
    ("peak", "voigt", (150.0, math.log(0.3), math.log(2.0))),
    ("peak", "crystal_ball", (173.0, math.log(8.0), 1.5, 3.0)),
    ("background", "poly0", ()),
    ("background", "poly1", (-0.4,)),
    ("background", "poly2", (-0.3, 0.2)),
    ("background", "poly3", (-0.3, 0.2, 0.1)),
    ("background", "exp", (-0.02,)),
    ("background", "exp", (0.03,)),
    ("background", "exp", (1e-12,)),
    ("background", "exp", (50.0 / (HI - LO),)),
]


@pytest.mark.parametrize(("kind", "name", "params"), CASES)
def test_pdf_normalised_and_cdf_consistent(kind: str, name: str, params: tuple[float, ...]) -> None:
    shape = get_peak(name) if kind == "peak" else get_background(name)
    assert len(params) == len(shape.params)

    def pdf(x: float) -> float:
        return float(shape.pdf(np.array([x]), LO, HI, *params)[0])

    total, _ = integrate.quad(pdf, LO, HI, points=[173.0, 150.0, 125.0], limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)
    xs = np.array([LO, 130.0, 160.0, 173.0, 180.0, 200.0, HI])
    cdf = shape.cdf(xs, LO, HI, *params)
    assert cdf[0] == pytest.approx(0.0, abs=1e-12)
    assert cdf[-1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(cdf) >= 0)
    for x, c in zip(xs, cdf, strict=True):
        ref, _ = integrate.quad(pdf, LO, x, points=[p for p in (125.0, 150.0, 173.0) if p < x])
        assert c == pytest.approx(ref, abs=2e-6), (name, x)


def test_unknown_names() -> None:
    with pytest.raises(ConfigError, match="gauss, breit_wigner, voigt, crystal_ball"):
        get_peak("landau")
    with pytest.raises(ConfigError, match="poly0"):
        get_background("spline")


def test_numeric_cdf_of_gaussian() -> None:
    x = np.linspace(LO, HI, 12)
    cum, total = numeric_cdf(lambda t: np.exp(-0.5 * ((t - 173) / 2.0) ** 2), x, LO, HI, 2.0)
    assert total == pytest.approx(2.0 * math.sqrt(2 * math.pi), rel=1e-9)
    assert np.all(np.diff(cum) >= 0)


def test_voigt_fwhm_limits() -> None:
    assert voigt_fwhm(1.0, 1e-12) == pytest.approx(2.3548, rel=1e-3)
    assert voigt_fwhm(1e-12, 1.0) == pytest.approx(2.0, rel=1e-3)


@pytest.mark.parametrize(("kind", "name", "params"), CASES)
def test_cdf_at_points_matches_cdf_and_its_gradient(
    kind: str, name: str, params: tuple[float, ...]
) -> None:
    """The precomputed cdf of a fit's bin edges equals ``cdf``; its gradient, finite differences."""
    shape = get_peak(name) if kind == "peak" else get_background(name)
    edges = np.linspace(LO, HI, 23)
    at = shape.at_points(edges, LO, HI)
    p = np.asarray(params, dtype=np.float64)
    np.testing.assert_allclose(at(p), shape.cdf(edges, LO, HI, *params), rtol=1e-12, atol=1e-14)
    if not at.has_grad:
        with pytest.raises(NotImplementedError):
            at.grad(p)
        return
    value, grad = at.grad(p)
    np.testing.assert_allclose(value, at(p), rtol=1e-13, atol=1e-15)
    assert grad.shape == (p.size, edges.size)
    for i in range(p.size):
        h = 1e-6 * max(1.0, abs(p[i]))
        up, down = p.copy(), p.copy()
        up[i] += h
        down[i] -= h
        numeric = (at(up) - at(down)) / (2 * h)
        np.testing.assert_allclose(grad[i], numeric, rtol=1e-5, atol=1e-8)


def test_closed_form_shapes_have_gradients() -> None:
    edges = np.linspace(LO, HI, 5)
    for name in ("gauss", "breit_wigner"):
        assert get_peak(name).at_points(edges, LO, HI).has_grad
    for name in ("poly0", "poly1", "poly2", "poly3"):
        assert get_background(name).at_points(edges, LO, HI).has_grad
