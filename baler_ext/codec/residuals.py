"""Error-bounded residual quantisation with a guarantee that survives another device.

Given a value :math:`x` and the decoder's prediction :math:`p` of it, a column coder
stores an integer :math:`k` (entropy-coded elsewhere) such that the reconstruction
:math:`\\hat x` satisfies the column's bound :math:`|x - \\hat x| \\le B(x)`, where
:math:`B(x) = b` (``abs``) or :math:`B(x) = r\\,|x|` (``rel``).

Absolute bound, step :math:`s = 2(b - m)`::

    k = rint((x - p) / s),          x_hat = p + k * s

Relative bound, coded in the log domain (the sign and zeros coded separately in
``sign``: 0 positive, 1 negative, 2 exact zero). With :math:`a = \\ln(1 + r)` and
:math:`q = \\ln \\max(|p|, f)` (floor :math:`f = 10^{-3} M`), step :math:`s = 2(a - m)`::

    k = rint((ln|x| - q) / s),      x_hat = sign * exp(q + k * s)

so :math:`|\\hat x / x - 1| \\le e^{s/2} - 1 < r`. Zeros are exact; negative values keep
their sign; a relative bound on 0 is 0 and is met exactly.

**The guarantee.** The decompressing device computes a prediction :math:`p'` that may
differ from the compressing device's :math:`p` (another BLAS, CUDA vs CPU, batch
size). The prediction is always evaluated in float64, and we assume
:math:`|p' - p| \\le D(p) = \\varepsilon (|p| + M)` with :math:`\\varepsilon` =
:data:`EPS_PRED` = 1e-10 (float64 MLPs disagree by ~1e-15 relative; this is ~1e5 times
that) and :math:`M` the column's magnitude (:math:`|\\mu| + 8\\sigma` of the training data).
At compress time every value is reconstructed by the same code the decoder runs and
*verified with that slack*: abs columns need
:math:`|x - \\hat x| + 1.01 D(p) + 2\\,\\mathrm{ulp}(\\hat x) \\le b`; rel columns need
:math:`|x - \\hat x| + |\\hat x| (1.01 D_{\\log}(p) + 10^{-15}) + 2\\,\\mathrm{ulp}(\\hat x) \\le
r|x|` with :math:`D_{\\log}(p) = D(p) / \\max(|p|, f) + 10^{-15}(|q| + 1)`; float32
output columns add one float32 ulp. Any value that fails, or that is non-finite,
subnormal-small, huge, or has a non-finite prediction, is an *exception*: its exact
float64 bits are stored with its row index and restored verbatim. Hence every
decompressed value meets its bound whenever the decoding device's prediction is within
:math:`D(p)` of the compressing one's. The margin :math:`m` in the step makes such
failures rare: :math:`m = f b + 4\\varepsilon M` (abs),
:math:`m = f a + 2\\varepsilon(1 + 10^3) + 10^{-14}` (rel), with :math:`f` =
``margin_fraction`` (:math:`10^{-6}` by default; the bounded mode uses :math:`10^{-4}`
since format 1.1, because predictions from decoded columns drift more: see ``encode``'s
``d`` argument, which replaces :math:`D(p)` by the caller's own drift bound). When
:math:`m \\ge b/2` (a bound too tight for float64 arithmetic) the column is stored
verbatim (``kind = "raw"``).

**Dither** (format 1.2, :mod:`baler_ext.codec.dither`). With a dither offset
:math:`u \\in [-\\tfrac12, \\tfrac12)` per value the codes become
:math:`k = \\mathrm{rint}(t - u)` and the reconstruction uses :math:`k + u` in place of
:math:`k` (abs: :math:`\\hat x = p + (k + u) s`; rel: :math:`\\ln|\\hat x| = q + (k + u) s`).
The error bound and its verification are unchanged (the verification runs the exact
decode path, offsets included); the errors become uniform and independent of the value,
so a constant prediction no longer restores a column on a comb of grid values.
A negative zero is stored verbatim (as an exception), so it comes back as −0.0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from baler_ext.errors import ConfigError, ContainerError
from baler_ext.registry import suggest

EPS_PRED = 1e-10
FLOOR_FRACTION = 1e-3
_MAX_CODE = 2.0**40
_HUGE = 1e300
_ULP32 = 2.0**-23


@dataclass(frozen=True)
class Bound:
    """A per-value error bound: ``kind`` is ``"abs"`` or ``"rel"``."""

    kind: str
    value: float

    def limit(self, x: np.ndarray) -> np.ndarray:
        """:math:`B(x)`: the largest allowed :math:`|x - \\hat x|` per value."""
        if self.kind == "abs":
            return np.full(x.shape, self.value)
        return self.value * np.abs(x)

    def to_dict(self) -> dict[str, float]:
        return {self.kind: self.value}


def resolve_bounds(spec: dict[str, dict[str, float]], columns: list[str]) -> list[Bound]:
    """One :class:`Bound` per column from ``[compression] bounds``.

    Raises
    ------
    ConfigError
        When a named column is not among ``columns`` (with a did-you-mean).
    """
    for name in spec:
        if name != "default" and name not in columns:
            raise ConfigError(
                f"'compression.bounds.{name}': no compressed column '{name}'"
                f"{suggest(name, columns)}; compressed columns: {', '.join(columns)}"
            )
    out = []
    for c in columns:
        ((kind, value),) = spec.get(c, spec["default"]).items()
        out.append(Bound(kind, float(value)))
    return out


@dataclass
class ColumnCodes:
    """What one column of one chunk stores."""

    codes: np.ndarray
    sign: np.ndarray | None
    exc_index: np.ndarray
    exc_value: np.ndarray
    max_err: float
    max_ratio: float
    #: the decoded values (exceptions restored) and a bound on how much each may differ
    #: when decoded on another device (0 for exceptions); inputs of relation predictors
    decoded: np.ndarray | None = None
    drift: np.ndarray | None = None


_EXPONENT = np.uint64(0x7FF0000000000000)
_NEG_ZERO = np.int64(np.iinfo(np.int64).min)  # the bits of -0.0


def _twice_spacing(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:math:`2\\,|\\mathrm{spacing}(x)|` of the float64 array ``x``, exactly (into ``out``,
    a float64 array of the same shape, when given).

    From the bits: for a normal :math:`x` with exponent :math:`e` it is
    :math:`2^{e - 51}`, for zero and subnormals :math:`2^{-1073}` (the smallest spacing,
    doubled), as ``2 * np.abs(np.spacing(x))`` gives, some ten times faster. Infinite and
    NaN entries give ``inf`` (``np.spacing``: NaN); the encoder stores those verbatim.
    """
    x = np.ascontiguousarray(x, np.float64)
    s = np.empty(x.shape) if out is None else out
    np.bitwise_and(x.view(np.uint64), _EXPONENT, out=s.view(np.uint64))  # 2**e, 0: subnormal
    s *= 2.0**-51
    np.maximum(s, 2.0**-1073, out=s)
    return s


class ColumnCoder:
    """Quantise one column's values against a prediction, within its bound.

    Parameters
    ----------
    bound
        The column's bound.
    magnitude
        :math:`M`, the column's typical magnitude (> 0).
    float32
        Whether the column is written back as float32 (the cast is part of decoding).
    margin_fraction
        The part of the half-step kept as margin (:math:`10^{-6}`; derived columns use
        :math:`10^{-4}` since their predictions drift more across devices).
    """

    def __init__(
        self, bound: Bound, magnitude: float, float32: bool = False, margin_fraction: float = 1e-6
    ) -> None:
        self.bound = bound
        self.margin_fraction = float(margin_fraction)
        self.magnitude = float(magnitude) if magnitude > 0 and math.isfinite(magnitude) else 1.0
        self.float32 = float32
        self.floor = FLOOR_FRACTION * self.magnitude
        if bound.kind == "abs":
            margin = self.margin_fraction * bound.value + 4 * EPS_PRED * self.magnitude
            half = bound.value
        else:
            half = math.log1p(bound.value)
            margin = self.margin_fraction * half + 2 * EPS_PRED * (1 + 1 / FLOOR_FRACTION) + 1e-14
        self.kind = bound.kind if margin < 0.5 * half else "raw"
        self.step = 2 * (half - margin) if self.kind != "raw" else 0.0

    def settings(self) -> dict:
        """What the decoder needs besides the arrays (stored in the header)."""
        d = {
            "bound": self.bound.to_dict(),
            "kind": self.kind,
            "step": self.step,
            "magnitude": self.magnitude,
            "float32": self.float32,
        }
        if self.margin_fraction != 1e-6:
            d["margin_fraction"] = self.margin_fraction
        return d

    @classmethod
    def from_settings(cls, d: dict) -> ColumnCoder:
        ((kind, value),) = d["bound"].items()
        coder = cls(
            Bound(kind, value), d["magnitude"], d["float32"], d.get("margin_fraction", 1e-6)
        )
        if coder.kind != d["kind"] or coder.step != d["step"]:
            raise ContainerError(
                "the quantisation settings in the header are inconsistent; "
                "the file is damaged or from an incompatible baler_ext"
            )
        return coder

    def _log_pred(self, p: np.ndarray, abs_p: np.ndarray | None = None) -> np.ndarray:
        """:math:`q = \\ln \\max(|p|, f)` (``abs_p``: :math:`|p|` when already at hand)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            q = np.maximum(np.abs(p) if abs_p is None else abs_p, self.floor)
            return np.log(q, out=q)

    def _reconstruct(
        self,
        k: np.ndarray,
        sign: np.ndarray | None,
        p: np.ndarray,
        u: np.ndarray | None = None,
        q: np.ndarray | None = None,
    ) -> np.ndarray:
        """:math:`\\hat x` from codes, prediction and dither offsets: the exact decode path
        (``q``: :meth:`_log_pred` of ``p`` when the caller has it). Each step is one
        in-place float64 operation, so the encoder and the decoder get the same bits."""
        with np.errstate(invalid="ignore", over="ignore"):
            # float64(k) + u in one pass (k is cast per element first: the same bits as
            # k.astype(np.float64) followed by x += u)
            x = k.astype(np.float64) if u is None else np.add(k, u, dtype=np.float64)
            if self.kind == "abs":
                x *= self.step
                x += p
            elif self.kind == "rel":
                x *= self.step
                x += self._log_pred(p) if q is None else q
                np.exp(x, out=x)
                if sign is not None:  # (1.3) absent: every value positive
                    np.negative(x, out=x, where=sign == 1)
                    x[sign == 2] = 0.0
            else:
                x = np.zeros_like(p)
            if self.float32:
                x = x.astype(np.float32).astype(np.float64)
        return x

    def encode(
        self, x: np.ndarray, p: np.ndarray, d: np.ndarray | None = None, u: np.ndarray | None = None
    ) -> ColumnCodes:
        """Codes for ``x`` given the prediction ``p`` (both float64, same shape).

        ``d`` bounds per value how much the decoding device's prediction may differ from
        ``p``; default :math:`D(p) = \\varepsilon (|p| + M)` (the model's prediction).
        ``u`` are the dither offsets (None: no dither).
        """
        # contiguous copies: x is usually a column of a row-major chunk, and read often.
        # Each full-length temporary costs more to map than to fill, so the few work
        # arrays below are reused (their roles are named where they change).
        x = np.ascontiguousarray(x, np.float64)
        p = np.ascontiguousarray(p, np.float64)
        n = x.size
        rel = self.kind == "rel"
        sign = zero = q = None
        with np.errstate(all="ignore"):
            ax = np.abs(x)
            # |p|; for abs and raw columns t, the scaled residual, after the validity test
            ap = t = np.abs(p)
            # huge values or predictions could overflow on another device: verbatim
            if rel:
                valid = ax < _HUGE
                valid &= ap < _HUGE
            else:  # |x| is not needed again (np.maximum propagates NaN)
                valid = np.maximum(ax, ap, out=ax) < _HUGE
            if self.kind == "abs":
                np.subtract(x, p, out=t)
                t /= self.step
            elif rel:
                neg = x < 0
                zero = ~(neg | (x > 0))
                sign = neg.astype(np.uint8)
                sign[zero] = 2
                floored = np.maximum(ap, self.floor)
                q = np.log(floored)  # the decoder's _log_pred(p)
                t = np.log(ax)
                t -= q
                t /= self.step
                t[zero] = 0.0
            else:
                t = np.zeros(n)
                valid[:] = False
            if u is not None:
                t -= u
            err = np.empty(n) if rel else ax  # work array: |t| here, |x - xh| below
            valid &= np.abs(t, out=err) < _MAX_CODE
            # a negative zero is kept verbatim so that its sign survives
            valid &= x.view(np.int64) != _NEG_ZERO
            if not valid.all():
                t[~valid] = 0.0
            k = np.rint(t, out=t).astype(np.int64)
            xh = self._reconstruct(k, sign, p, u, q)
            np.subtract(x, xh, out=err)
            np.abs(err, out=err)
            own_d = True  # whether d is this call's array (and may become the drift)
            if d is None and not rel:
                d = np.abs(p)
                d += self.magnitude
                d *= EPS_PRED
            elif d is None:
                d = np.add(ap, self.magnitude, out=ap)  # |p| is not needed again
                d *= EPS_PRED
            else:
                d = np.asarray(d, np.float64)
                finite = np.isfinite(d)
                own_d = not finite.all()
                if own_d:
                    d = np.where(finite, d, np.inf)
            slack = _twice_spacing(xh, out=t)  # t is spent
            if self.float32:
                slack += _ULP32 * np.abs(xh)
            if self.kind == "abs":
                drift = np.multiply(d, 1.01, out=d if own_d else None)
                drift += slack
                ok = np.add(err, drift, out=slack) <= self.bound.value
            elif self.kind == "raw":  # every value verbatim
                drift = np.zeros(n)
                ok = np.zeros(n, bool)
            else:
                assert q is not None and zero is not None
                dlog = np.divide(d, floored, out=floored)
                np.abs(q, out=q)
                q += 1
                q *= 1e-15
                dlog += q
                dlog *= 1.01
                dlog += 1e-15
                drift = np.abs(xh)
                drift *= dlog
                drift += slack
                limit = np.multiply(ax, self.bound.value, out=q)  # = bound.limit(x)
                ok = np.add(err, drift, out=slack) <= limit
                ok |= zero
                drift[zero] = 0.0
            ok &= valid
            if not math.isfinite(self.bound.value):
                # with a finite bound, a non-finite xh or drift already fails the test
                # above (zeros, which pass it, have xh = drift = 0)
                ok &= np.isfinite(xh)
                ok &= np.isfinite(drift)
        exc = np.flatnonzero(~ok)
        k[exc] = 0
        if sign is not None:
            sign[exc] = 0
        err[exc] = 0.0
        max_err = float(err.max()) if n else 0.0
        if not n:
            max_ratio = 0.0
        elif self.kind == "abs":
            # division by a positive constant is monotone: the max of the ratios is the
            # ratio of the max, bit for bit
            max_ratio = max_err / self.bound.value if self.bound.value > 0 else 0.0
        else:
            if not rel:
                limit = self.bound.limit(x)
            with np.errstate(all="ignore"):
                ratio = np.divide(err, limit, out=np.zeros(n), where=limit > 0)
            max_ratio = float(ratio.max())
        x_exc = x[exc]
        xh[exc] = x_exc
        drift[exc] = 0.0
        return ColumnCodes(k, sign, exc.astype(np.uint32), x_exc, max_err, max_ratio, xh, drift)

    def decode(
        self,
        k: np.ndarray,
        sign: np.ndarray | None,
        exc_index: np.ndarray,
        exc_value: np.ndarray,
        p: np.ndarray,
        u: np.ndarray | None = None,
    ) -> np.ndarray:
        """:math:`\\hat x` from stored codes, exceptions, the (local) prediction and the
        dither offsets ``u`` (None: the file was written without dither)."""
        if exc_index.size and int(exc_index.max()) >= p.size:
            raise ContainerError("an exception index lies outside its chunk; the file is damaged")
        x = self._reconstruct(k, sign, np.asarray(p, np.float64), u)
        x[exc_index.astype(np.int64)] = exc_value
        return x
