"""Peak and background shapes for the mass fit, kept in explicit registries.

Every shape is a probability density **normalised on the fit range**
:math:`[a, b]` and provides

* ``pdf(x, a, b, *params)``: the density, :math:`\\int_a^b \\mathrm{pdf} = 1`;
* ``cdf(x, a, b, *params)``: :math:`\\int_a^x \\mathrm{pdf}`, 0 at ``a`` and 1 at ``b``
  (closed form where one exists, otherwise Gauss–Legendre integration of the pdf,
  see :func:`numeric_cdf`);
* ``start(est)``: starting values estimated from the data histogram;
* ``limits(a, b, bin_width)``: parameter limits for MINUIT;
* ``at_points(x, a, b)``: the cdf at fixed points ``x`` (the bin edges of a fit) as a
  :class:`PointCdf`, with what does not depend on the parameters computed once and,
  for the closed forms, the analytic gradient with respect to the parameters (the
  paired bootstrap refits the same bins hundreds of times, see
  :class:`~baler_ext.analysis.fit.BinnedModel`).

Widths are parametrised by their logarithm (``log_sigma``, ``log_gamma``), so a
width :math:`e^{\\theta}` is positive by construction, and the log-width also
gets finite MINUIT limits. Peak shapes are registered with
:func:`register_peak`, background shapes with :func:`register_background`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar, cast

import numpy as np
from scipy import special

from baler_ext.registry import Registry

log = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548...

# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class HistEstimate:
    """Robust features of the data histogram used to start a fit.

    Attributes
    ----------
    lo, hi
        Fit range.
    edges, counts
        The histogram (counts are sums of weights).
    position
        Peak position: median of the entries in a window around the histogram maximum.
    fwhm
        Full width at half maximum of the peak above the estimated background.
    n_signal, n_background
        Yield estimates inside the range.
    background_counts
        Background estimate per bin (from a fit to the side bands).
    left_spread, right_spread
        Half widths at half maximum on each side of the peak (for asymmetric shapes).
    """

    lo: float
    hi: float
    edges: np.ndarray
    counts: np.ndarray
    position: float
    fwhm: float
    n_signal: float
    n_background: float
    background_counts: np.ndarray
    left_spread: float
    right_spread: float

    @property
    def centers(self) -> np.ndarray:
        """Bin centres."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def bin_width(self) -> float:
        """Width of one bin."""
        return float(self.edges[1] - self.edges[0])

    def sideband(self) -> np.ndarray:
        """Mask of the bins away from the peak (outside position ± 1.5 FWHM)."""
        far = np.abs(self.centers - self.position) > 1.5 * self.fwhm
        if far.sum() < 4:
            far = np.abs(self.centers - self.position) > 0.75 * self.fwhm
        if far.sum() < 4:
            far = np.ones_like(far)
        return far


# --------------------------------------------------------------------------- numerics

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(5)


def numeric_cdf(
    density: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    lo: float,
    hi: float,
    scale: float,
) -> tuple[np.ndarray, float]:
    """Cumulative integral of an unnormalised ``density`` from ``lo`` to each ``x``.

    The points ``x`` (clipped to ``[lo, hi]``) split the range into intervals; each
    is cut into pieces no longer than ``min(scale/2, (hi-lo)/200)`` and integrated
    with 5-point Gauss–Legendre quadrature (exact for polynomials of degree 9).

    Parameters
    ----------
    density
        Vectorised function of x (need not be normalised).
    x
        Where to evaluate the cumulative integral.
    lo, hi
        Integration range.
    scale
        Smallest feature size of ``density`` (e.g. its width).

    Returns
    -------
    cumulative, total
        :math:`\\int_{lo}^{x} f` at each ``x`` and :math:`\\int_{lo}^{hi} f`.
    """
    x = np.asarray(x, dtype=np.float64)
    pts, inverse = np.unique(np.clip(np.r_[lo, x.ravel(), hi], lo, hi), return_inverse=True)
    span = hi - lo
    h = max(min(scale / 2.0, span / 200.0), span / 20000.0)
    lengths = np.diff(pts)
    n_pieces = np.maximum(np.ceil(lengths / h).astype(np.int64), 1)
    owner = np.repeat(np.arange(lengths.size), n_pieces)
    first = np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
    k = np.arange(owner.size) - first
    step = lengths[owner] / n_pieces[owner]
    a = pts[owner] + k * step
    mid = a + 0.5 * step
    nodes = mid[:, None] + 0.5 * step[:, None] * _GL_NODES[None, :]
    piece = (density(nodes) * _GL_WEIGHTS[None, :]).sum(axis=1) * 0.5 * step
    per_interval = np.bincount(owner, weights=piece, minlength=lengths.size)
    cumulative = np.r_[0.0, np.cumsum(per_interval)]
    total = float(cumulative[-1])
    return cumulative[inverse[1:-1]].reshape(x.shape), total


# --------------------------------------------------------------------------- cdf at fixed points


class PointCdf:
    """A shape's cdf at fixed points ``x`` as a function of its parameters.

    The generic form calls :meth:`Shape.cdf` and has no gradient; the closed-form
    shapes return subclasses that precompute what does not depend on the parameters
    and give :meth:`grad`. Values agree with :meth:`Shape.cdf` to rounding.

    Parameters
    ----------
    shape
        The shape.
    x
        The points (e.g. bin edges), inside ``[lo, hi]`` or clipped to it.
    lo, hi
        The fit range.
    """

    #: Whether :meth:`grad` is available.
    has_grad: ClassVar[bool] = False

    def __init__(self, shape: Shape, x: np.ndarray, lo: float, hi: float) -> None:
        self.shape = shape
        self.x = np.asarray(x, dtype=np.float64)
        self.lo, self.hi = float(lo), float(hi)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """The cdf at the points for parameters ``p``."""
        return self.shape.cdf(self.x, self.lo, self.hi, *p)

    def grad(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cdf and its derivatives ``d cdf / d p``, of shapes ``(n,)`` and ``(len(p), n)``."""
        raise NotImplementedError(f"{type(self.shape).__name__} has no analytic gradient")


class _TruncatedPointCdf(PointCdf):
    """Closed-form peak cdf truncated to the range, :math:`(F(x) - F(a)) / (F(b) - F(a))`.

    Subclasses give the untruncated :math:`F` and :math:`\\partial F/\\partial p` at the
    points with ``lo`` and ``hi`` appended (so one evaluation gives all three).
    """

    has_grad = True

    def __init__(self, shape: Shape, x: np.ndarray, lo: float, hi: float) -> None:
        super().__init__(shape, x, lo, hi)
        self.points = np.r_[np.clip(self.x, self.lo, self.hi), self.lo, self.hi]

    def _full(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _full_grad(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, p: np.ndarray) -> np.ndarray:
        c = self._full(p)
        c_lo, c_hi = c[-2], c[-1]
        return (c[:-2] - c_lo) / max(c_hi - c_lo, 1e-300)

    def grad(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, dc = self._full_grad(p)
        norm = c[-1] - c[-2]
        if not norm > 1e-300:
            norm = 1e-300
        value = (c[:-2] - c[-2]) / norm
        d_norm = dc[:, -1] - dc[:, -2]
        d_value = (dc[:, :-2] - dc[:, -2:-1]) / norm - value[None, :] * (d_norm / norm)[:, None]
        return value, d_value


class _GaussPointCdf(_TruncatedPointCdf):
    """Gaussian: :math:`F = \\Phi(z)`, :math:`z = (x-\\mu)/\\sigma`.

    :math:`\\partial_\\mu F = -\\varphi(z)/\\sigma`,
    :math:`\\partial_{\\ln\\sigma} F = -z\\varphi(z)`.
    """

    def _full(self, p: np.ndarray) -> np.ndarray:
        mu, log_sigma = p
        return special.ndtr((self.points - mu) / math.exp(log_sigma))

    def _full_grad(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, log_sigma = p
        s = math.exp(log_sigma)
        z = (self.points - mu) / s
        phi = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        return special.ndtr(z), np.stack([-phi / s, -z * phi])


class _BreitWignerPointCdf(_TruncatedPointCdf):
    """Breit–Wigner: :math:`F = 1/2 + \\arctan(u)/\\pi`, :math:`u = 2(x-M)/\\Gamma`.

    :math:`\\partial_M F = -2/(\\pi\\Gamma(1+u^2))`,
    :math:`\\partial_{\\ln\\Gamma} F = -u/(\\pi(1+u^2))`.
    """

    def _full(self, p: np.ndarray) -> np.ndarray:
        mu, log_gamma = p
        return 0.5 + np.arctan(2.0 * (self.points - mu) / math.exp(log_gamma)) / math.pi

    def _full_grad(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, log_gamma = p
        g = math.exp(log_gamma)
        u = 2.0 * (self.points - mu) / g
        du = 1.0 / (math.pi * (1.0 + u * u))
        return 0.5 + np.arctan(u) / math.pi, np.stack([-2.0 / g * du, -u * du])


class _PolyPointCdf(PointCdf):
    """Polynomial cdf :math:`A(t)/A(1)`, linear in the coefficients in numerator and denominator.

    With :math:`B_k(t) = (t^{k+1} - (-1)^{k+1})/(k+1)` computed once at the points,
    :math:`A(t) = t + 1 + \\sum_k c_k B_k(t)` and
    :math:`\\partial_{c_k} (A/I) = B_k(t)/I - A\\,B_k(1)/I^2`.
    """

    has_grad = True

    def __init__(self, shape: Shape, x: np.ndarray, lo: float, hi: float) -> None:
        super().__init__(shape, x, lo, hi)
        t = np.clip(_to_unit(self.x, self.lo, self.hi), -1.0, 1.0)
        degree = len(shape.params)
        self.base = t + 1.0
        ks = np.arange(1, degree + 1)
        self.terms = (t[None, :] ** (ks[:, None] + 1) - (-1.0) ** (ks[:, None] + 1)) / (
            ks[:, None] + 1
        )
        self.terms_at_one = (1.0 - (-1.0) ** (ks + 1)) / (ks + 1)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        c = np.asarray(p, dtype=np.float64)
        return (self.base + c @ self.terms) / (2.0 + float(c @ self.terms_at_one))

    def grad(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = np.asarray(p, dtype=np.float64)
        numerator = self.base + c @ self.terms
        integral = 2.0 + float(c @ self.terms_at_one)
        value = numerator / integral
        d_value = self.terms / integral - value[None, :] * (self.terms_at_one / integral)[:, None]
        return value, d_value


# --------------------------------------------------------------------------- base classes


class Shape:
    """A density normalised on the fit range with named parameters."""

    #: Registry name (set by the register decorators).
    name: ClassVar[str] = ""
    #: Parameter names, in the order ``pdf``/``cdf`` take them.
    params: ClassVar[tuple[str, ...]] = ()
    #: Whether :meth:`cdf` is a closed form (else numerical integration).
    closed_cdf: ClassVar[bool] = True

    def pdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        """Density normalised to 1 on ``[lo, hi]``."""
        raise NotImplementedError

    def cdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        """:math:`\\int_{lo}^{x}` pdf; 0 at ``lo``, 1 at ``hi``."""
        raise NotImplementedError

    def start(self, est: HistEstimate) -> dict[str, float]:
        """Starting values from the data histogram."""
        raise NotImplementedError

    def limits(self, lo: float, hi: float, bin_width: float) -> dict[str, tuple[float, float]]:
        """MINUIT limits (only for the parameters that need them)."""
        return {}

    def at_points(self, x: np.ndarray, lo: float, hi: float) -> PointCdf:
        """The cdf at the fixed points ``x`` as a function of the parameters (:class:`PointCdf`)."""
        return PointCdf(self, x, lo, hi)


class PeakShape(Shape):
    """A peak: the first parameter is its position ``mu``."""

    #: Name of the main width reported as ``FitResult.width``.
    width_name: ClassVar[str] = "sigma"
    #: The log-width parameter whose exponential is the main width (None if derived).
    width_param: ClassVar[str | None] = "log_sigma"

    def widths(self, values: dict[str, float]) -> dict[str, float]:
        """Physical widths from parameter values; the key :attr:`width_name` comes first."""
        raise NotImplementedError

    def scale(self, *p: float) -> float:
        """Smallest feature size (used for numerical integration)."""
        return 1.0

    def _log_width_limits(self, lo: float, hi: float, bin_width: float) -> tuple[float, float]:
        return (math.log(bin_width / 50.0), math.log(hi - lo))


class BackgroundShape(Shape):
    """A smooth background density."""


# --------------------------------------------------------------------------- registries

PEAKS: Registry[type[PeakShape]] = Registry("peak shape", name_attr="name")
BACKGROUNDS: Registry[type[BackgroundShape]] = Registry("background shape", name_attr="name")

P = TypeVar("P", bound=type[PeakShape])
B = TypeVar("B", bound=type[BackgroundShape])


def register_peak(name: str) -> Callable[[P], P]:
    """Class decorator adding a :class:`PeakShape` subclass to :data:`PEAKS` under ``name``."""
    # the registry's decorator returns the class it is given, so the subclass type is kept
    return cast(Callable[[P], P], PEAKS.register(name))


def register_background(name: str) -> Callable[[B], B]:
    """Class decorator adding a :class:`BackgroundShape` subclass to :data:`BACKGROUNDS`."""
    return cast(Callable[[B], B], BACKGROUNDS.register(name))


def peak_names() -> list[str]:
    """Registered peak shapes, in registration order."""
    return PEAKS.names()


def background_names() -> list[str]:
    """Registered background shapes, in registration order."""
    return BACKGROUNDS.names()


def get_peak(name: str) -> PeakShape:
    """The registered peak shape ``name``; ConfigError listing the valid names otherwise."""
    return PEAKS.get(name)()


def get_background(name: str) -> BackgroundShape:
    """The registered background shape ``name``; ConfigError listing the valid names otherwise."""
    return BACKGROUNDS.get(name)()


# --------------------------------------------------------------------------- peaks


def _truncate(
    cdf_full: Callable[[np.ndarray], np.ndarray], x: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    """(F(x) − F(lo)) / (F(hi) − F(lo)) for an untruncated cdf ``F``."""
    c = cdf_full(np.clip(np.asarray(x, dtype=np.float64), lo, hi))
    c_lo, c_hi = cdf_full(np.array([lo, hi]))
    return (c - c_lo) / max(c_hi - c_lo, 1e-300)


def _norm_on_range(cdf_full: Callable[[np.ndarray], np.ndarray], lo: float, hi: float) -> float:
    c_lo, c_hi = cdf_full(np.array([lo, hi]))
    return max(float(c_hi - c_lo), 1e-300)


@register_peak("gauss")
class Gauss(PeakShape):
    """Gaussian peak truncated to the fit range.

    .. math::
        f(x; \\mu, \\sigma) = \\frac{1}{N\\sqrt{2\\pi}\\sigma}
        \\exp\\left(-\\frac{(x-\\mu)^2}{2\\sigma^2}\\right),\\qquad
        \\sigma = e^{\\texttt{log\\_sigma}},

    with :math:`N = \\Phi((b-\\mu)/\\sigma) - \\Phi((a-\\mu)/\\sigma)` and
    :math:`\\Phi` the standard normal cdf (``scipy.special.ndtr``, the same
    function as ``scipy.stats.norm.cdf``). The reported width is σ.
    """

    params = ("mu", "log_sigma")
    width_name = "sigma"

    def pdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        mu, log_sigma = p
        s = math.exp(log_sigma)
        z = (np.asarray(x, dtype=np.float64) - mu) / s
        norm = _norm_on_range(lambda t: special.ndtr((t - mu) / s), lo, hi)
        return np.exp(-0.5 * z * z) / (math.sqrt(2.0 * math.pi) * s * norm)

    def cdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        mu, log_sigma = p
        s = math.exp(log_sigma)
        return _truncate(lambda t: special.ndtr((t - mu) / s), x, lo, hi)

    def at_points(self, x: np.ndarray, lo: float, hi: float) -> PointCdf:
        return _GaussPointCdf(self, x, lo, hi)

    def start(self, est: HistEstimate) -> dict[str, float]:
        return {"mu": est.position, "log_sigma": math.log(est.fwhm / FWHM_PER_SIGMA)}

    def limits(self, lo: float, hi: float, bin_width: float) -> dict[str, tuple[float, float]]:
        return {"mu": (lo, hi), "log_sigma": self._log_width_limits(lo, hi, bin_width)}

    def widths(self, values: dict[str, float]) -> dict[str, float]:
        sigma = math.exp(values["log_sigma"])
        return {"sigma": sigma, "fwhm": FWHM_PER_SIGMA * sigma}

    def scale(self, *p: float) -> float:
        return math.exp(p[1])


@register_peak("breit_wigner")
class BreitWigner(PeakShape):
    """Non-relativistic Breit–Wigner (Cauchy) peak truncated to the fit range.

    .. math::
        f(x; M, \\Gamma) = \\frac{1}{N}\\,\\frac{1}{\\pi}\\,
        \\frac{\\Gamma/2}{(x-M)^2 + \\Gamma^2/4},\\qquad
        F(x) = \\frac12 + \\frac1\\pi\\arctan\\frac{2(x-M)}{\\Gamma},

    with :math:`\\Gamma = e^{\\texttt{log\\_gamma}}` the full width at half maximum and
    :math:`N = F(b) - F(a)`. Reference: PDG, *Review of Particle Physics*,
    "Kinematics" (resonance line shapes); ``scipy.stats.cauchy`` with scale Γ/2.
    The reported width is Γ.
    """

    params = ("mu", "log_gamma")
    width_name = "Gamma"
    width_param = "log_gamma"

    @staticmethod
    def _full_cdf(mu: float, gamma: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda t: 0.5 + np.arctan(2.0 * (t - mu) / gamma) / math.pi

    def pdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        mu, log_gamma = p
        g = math.exp(log_gamma)
        d = np.asarray(x, dtype=np.float64) - mu
        norm = _norm_on_range(self._full_cdf(mu, g), lo, hi)
        return (0.5 * g / math.pi) / (d * d + 0.25 * g * g) / norm

    def cdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        mu, log_gamma = p
        return _truncate(self._full_cdf(mu, math.exp(log_gamma)), x, lo, hi)

    def at_points(self, x: np.ndarray, lo: float, hi: float) -> PointCdf:
        return _BreitWignerPointCdf(self, x, lo, hi)

    def start(self, est: HistEstimate) -> dict[str, float]:
        return {"mu": est.position, "log_gamma": math.log(est.fwhm)}

    def limits(self, lo: float, hi: float, bin_width: float) -> dict[str, tuple[float, float]]:
        return {"mu": (lo, hi), "log_gamma": self._log_width_limits(lo, hi, bin_width)}

    def widths(self, values: dict[str, float]) -> dict[str, float]:
        gamma = math.exp(values["log_gamma"])
        return {"Gamma": gamma, "fwhm": gamma}

    def scale(self, *p: float) -> float:
        return math.exp(p[1])


def voigt_fwhm(sigma: float, gamma_hwhm: float) -> float:
    """FWHM of a Voigt profile (Olivero & Longbothum approximation, accurate to 0.02 %).

    .. math:: f_V \\approx 0.5346 f_L + \\sqrt{0.2166 f_L^2 + f_G^2},\\quad
              f_L = 2\\gamma,\\ f_G = 2\\sqrt{2\\ln 2}\\,\\sigma.

    Reference: J. J. Olivero and R. L. Longbothum, J. Quant. Spectrosc. Radiat.
    Transfer 17 (1977) 233.
    """
    f_l = 2.0 * gamma_hwhm
    f_g = FWHM_PER_SIGMA * sigma
    return 0.5346 * f_l + math.sqrt(0.2166 * f_l * f_l + f_g * f_g)


@register_peak("voigt")
class Voigt(PeakShape):
    """Voigt peak (Gaussian ⊗ Cauchy) truncated to the fit range.

    .. math::
        V(x; \\mu, \\sigma, \\gamma) = \\int G(x'; \\sigma)\\, L(x - \\mu - x'; \\gamma)\\,dx'
        = \\frac{\\mathrm{Re}\\,w(z)}{\\sigma\\sqrt{2\\pi}},\\quad
        z = \\frac{x - \\mu + i\\gamma}{\\sigma\\sqrt2},

    with :math:`w` the Faddeeva function (``scipy.special.voigt_profile``),
    :math:`\\sigma = e^{\\texttt{log\\_sigma}}` the Gaussian resolution and
    :math:`\\gamma = e^{\\texttt{log\\_gamma}}` the Lorentzian **half** width
    (Γ = 2γ). No closed-form cdf: it is integrated numerically
    (:func:`numeric_cdf`). The reported width is the FWHM
    (:func:`voigt_fwhm`); σ, γ and Γ are reported too.
    """

    params = ("mu", "log_sigma", "log_gamma")
    width_name = "fwhm"
    width_param = None
    closed_cdf = False

    @staticmethod
    def _density(mu: float, sigma: float, gamma: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda t: special.voigt_profile(t - mu, sigma, gamma)

    def pdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        mu, log_sigma, log_gamma = p
        s, g = math.exp(log_sigma), math.exp(log_gamma)
        dens = self._density(mu, s, g)
        _, total = numeric_cdf(dens, np.array([hi]), lo, hi, max(s, g))
        x = np.asarray(x, dtype=np.float64)
        return dens(x) / max(total, 1e-300)

    def cdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        mu, log_sigma, log_gamma = p
        s, g = math.exp(log_sigma), math.exp(log_gamma)
        cum, total = numeric_cdf(self._density(mu, s, g), x, lo, hi, max(s, g))
        return cum / max(total, 1e-300)

    def start(self, est: HistEstimate) -> dict[str, float]:
        # split the observed FWHM evenly: f_G = f_L = FWHM / 1.64 gives f_V = FWHM
        part = est.fwhm / 1.6376
        return {
            "mu": est.position,
            "log_sigma": math.log(part / FWHM_PER_SIGMA),
            "log_gamma": math.log(part / 2.0),
        }

    def limits(self, lo: float, hi: float, bin_width: float) -> dict[str, tuple[float, float]]:
        lim = self._log_width_limits(lo, hi, bin_width)
        return {"mu": (lo, hi), "log_sigma": lim, "log_gamma": lim}

    def widths(self, values: dict[str, float]) -> dict[str, float]:
        sigma = math.exp(values["log_sigma"])
        gamma = math.exp(values["log_gamma"])
        return {
            "fwhm": voigt_fwhm(sigma, gamma),
            "sigma": sigma,
            "gamma": gamma,
            "Gamma": 2.0 * gamma,
        }

    def scale(self, *p: float) -> float:
        # the profile is smooth on the scale of its core width, at least max(sigma, gamma)
        return max(math.exp(p[1]), math.exp(p[2]))


@register_peak("crystal_ball")
class CrystalBall(PeakShape):
    """Crystal Ball peak (Gaussian core, power-law low-mass tail), truncated to the range.

    .. math::
        f(x) \\propto \\begin{cases}
        \\exp(-z^2/2), & z > -\\alpha\\\\
        A\\,(B - z)^{-n}, & z \\le -\\alpha
        \\end{cases},\\quad z = \\frac{x-\\mu}{\\sigma},\\
        A = \\left(\\frac{n}{\\alpha}\\right)^n e^{-\\alpha^2/2},\\
        B = \\frac{n}{\\alpha} - \\alpha,

    with :math:`\\sigma = e^{\\texttt{log\\_sigma}}`, ``alpha`` ∈ [0.2, 10] and
    ``n`` ∈ [1.05, 100]; pdf and cdf from ``scipy.stats.crystalball``
    (beta = α, m = n). Reference: T. Skwarnicki, PhD thesis, DESY F31-86-02 (1986).
    The reported width is σ. The tail parameters start from the peak asymmetry
    (α) and from n = 3, a conventional value.
    """

    params = ("mu", "log_sigma", "alpha", "n")
    width_name = "sigma"

    @staticmethod
    def _full_cdf(
        mu: float, s: float, alpha: float, n: float
    ) -> Callable[[np.ndarray], np.ndarray]:
        from scipy.stats import crystalball

        return lambda t: crystalball.cdf(t, alpha, n, loc=mu, scale=s)

    def pdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        from scipy.stats import crystalball

        mu, log_sigma, alpha, n = p
        s = math.exp(log_sigma)
        norm = _norm_on_range(self._full_cdf(mu, s, alpha, n), lo, hi)
        return crystalball.pdf(np.asarray(x, dtype=np.float64), alpha, n, loc=mu, scale=s) / norm

    def cdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        mu, log_sigma, alpha, n = p
        return _truncate(self._full_cdf(mu, math.exp(log_sigma), alpha, n), x, lo, hi)

    def start(self, est: HistEstimate) -> dict[str, float]:
        sigma = max(est.right_spread, 0.25 * est.fwhm) / math.sqrt(2.0 * math.log(2.0))
        # a longer left half-width means an earlier tail: smaller alpha
        ratio = est.right_spread / max(est.left_spread, 1e-12)
        alpha = float(np.clip(2.0 * ratio, 0.5, 5.0))
        return {"mu": est.position, "log_sigma": math.log(sigma), "alpha": alpha, "n": 3.0}

    def limits(self, lo: float, hi: float, bin_width: float) -> dict[str, tuple[float, float]]:
        return {
            "mu": (lo, hi),
            "log_sigma": self._log_width_limits(lo, hi, bin_width),
            "alpha": (0.2, 10.0),
            "n": (1.05, 100.0),
        }

    def widths(self, values: dict[str, float]) -> dict[str, float]:
        return {"sigma": math.exp(values["log_sigma"])}

    def scale(self, *p: float) -> float:
        return math.exp(p[1])


# --------------------------------------------------------------------------- backgrounds


def _to_unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` linearly onto ``[-1, 1]``."""
    return (2.0 * np.asarray(x, dtype=np.float64) - lo - hi) / (hi - lo)


class _Poly(BackgroundShape):
    """Polynomial background normalised on the fit range.

    With :math:`t = (2x - a - b)/(b - a) \\in [-1, 1]`,

    .. math::
        f(x) = \\frac{2}{(b-a)\\,I}\\Big(1 + \\sum_{k=1}^{N} c_k t^k\\Big),\\quad
        I = \\int_{-1}^{1}\\Big(1 + \\sum_k c_k t^k\\Big)dt
          = 2 + \\sum_{k\\,\\mathrm{even}} \\frac{2 c_k}{k+1},

    and the cdf is the analytic integral
    :math:`\\big[(t+1) + \\sum_k c_k (t^{k+1} - (-1)^{k+1})/(k+1)\\big] / I`.
    The coefficients are unbounded; the fit guards against a negative density
    by clipping the expected bin contents at a tiny positive value.
    """

    degree: ClassVar[int] = 0

    @staticmethod
    def _antiderivative(t: np.ndarray, c: tuple[float, ...]) -> np.ndarray:
        out = t + 1.0
        for k, ck in enumerate(c, start=1):
            out = out + ck * (t ** (k + 1) - (-1.0) ** (k + 1)) / (k + 1)
        return out

    def pdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        t = _to_unit(x, lo, hi)
        poly = np.ones_like(t)
        for k, ck in enumerate(p, start=1):
            poly = poly + ck * t**k
        integral = float(self._antiderivative(np.array(1.0), p))
        return 2.0 * poly / ((hi - lo) * integral)

    def cdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        t = np.clip(_to_unit(x, lo, hi), -1.0, 1.0)
        return self._antiderivative(t, p) / float(self._antiderivative(np.array(1.0), p))

    def at_points(self, x: np.ndarray, lo: float, hi: float) -> PointCdf:
        return _PolyPointCdf(self, x, lo, hi)

    def start(self, est: HistEstimate) -> dict[str, float]:
        if self.degree == 0:
            return {}
        side = est.sideband()
        t = _to_unit(est.centers, est.lo, est.hi)[side]
        y = est.counts[side]
        deg = min(self.degree, max(int(side.sum()) - 2, 0))
        coef = np.polynomial.polynomial.polyfit(t, y, deg) if deg > 0 else np.array([y.mean()])
        coef = np.r_[coef, np.zeros(self.degree + 1 - coef.size)]
        if coef[0] <= 0:
            return dict.fromkeys(self.params, 0.0)
        return {name: float(coef[k] / coef[0]) for k, name in enumerate(self.params, 1)}


@register_background("poly0")
class Poly0(_Poly):
    """Flat background :math:`f(x) = 1/(b-a)` (no parameters); see :class:`_Poly`."""

    degree = 0
    params = ()


@register_background("poly1")
class Poly1(_Poly):
    """Linear background :math:`\\propto 1 + c_1 t`; see :class:`_Poly`."""

    degree = 1
    params = ("c1",)


@register_background("poly2")
class Poly2(_Poly):
    """Quadratic background :math:`\\propto 1 + c_1 t + c_2 t^2`; see :class:`_Poly`."""

    degree = 2
    params = ("c1", "c2")


@register_background("poly3")
class Poly3(_Poly):
    """Cubic background :math:`\\propto 1 + c_1 t + c_2 t^2 + c_3 t^3`; see :class:`_Poly`."""

    degree = 3
    params = ("c1", "c2", "c3")


@register_background("exp")
class Exponential(BackgroundShape):
    """Exponential background normalised on the fit range.

    .. math::
        f(x; \\lambda) = \\frac{\\lambda\\, e^{\\lambda (x - a)}}{e^{\\lambda (b-a)} - 1},\\qquad
        F(x) = \\frac{e^{\\lambda (x-a)} - 1}{e^{\\lambda (b-a)} - 1},

    evaluated with ``expm1`` (and in the mirrored form for λ > 0) so that it is
    stable for any sign of λ and tends to the flat density as λ → 0. λ (``slope``,
    in 1/unit) is limited to :math:`|\\lambda|(b-a) \\le 50`.
    """

    params = ("slope",)

    @staticmethod
    def _cdf(u: np.ndarray, s: float) -> np.ndarray:
        """F for u = (x-a)/(b-a) in [0, 1] and s = λ(b−a)."""
        if abs(s) < 1e-9:
            return u.copy()
        if s < 0:
            return np.expm1(s * u) / math.expm1(s)
        # (e^{su} - 1)/(e^s - 1) divided through by e^s, so that it cannot overflow
        return (np.exp(s * (u - 1.0)) - math.exp(-s)) / -math.expm1(-s)

    def pdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        (slope,) = p
        span = hi - lo
        s = slope * span
        u = (np.asarray(x, dtype=np.float64) - lo) / span
        if abs(s) < 1e-9:
            return np.full_like(u, 1.0 / span)
        if s < 0:
            return s * np.exp(s * u) / (math.expm1(s) * span)
        return s * np.exp(s * (u - 1.0)) / (-math.expm1(-s) * span)

    def cdf(self, x: np.ndarray, lo: float, hi: float, *p: float) -> np.ndarray:
        (slope,) = p
        span = hi - lo
        u = np.clip((np.asarray(x, dtype=np.float64) - lo) / span, 0.0, 1.0)
        return self._cdf(u, slope * span)

    def start(self, est: HistEstimate) -> dict[str, float]:
        side = est.sideband()
        x = est.centers[side]
        y = est.counts[side]
        good = y > 0
        if good.sum() < 2:
            return {"slope": 0.0}
        slope, _ = np.polyfit(x[good], np.log(y[good]), 1, w=np.sqrt(y[good]))
        limit = 50.0 / (est.hi - est.lo)
        return {"slope": float(np.clip(slope, -0.9 * limit, 0.9 * limit))}

    def limits(self, lo: float, hi: float, bin_width: float) -> dict[str, tuple[float, float]]:
        limit = 50.0 / (hi - lo)
        return {"slope": (-limit, limit)}
