"""Exact relations between columns, used as predictors of derived columns (bounded mode).

Many HEP tables carry columns that are exact functions of others: the Cartesian momentum
of a jet from :math:`(p_T, \\eta, \\phi)`, its energy from :math:`(p_T, \\eta, m)`, and
fractions that sum to one. The bounded mode decodes the *independent* columns first and
then predicts each *derived* column from the already **decoded** values through its
relation; the residual of the derived column against that prediction is only the
propagated error of its inputs, which costs far fewer bits than an autoencoder residual.

Relations (``kind``: target = f(inputs))::

    px           px     = pt cos(phi)                       polar inputs
    py           py     = pt sin(phi)
    pz           pz     = pt sinh(eta)
    energy       energy = hypot(mass, pt cosh(eta))
    pt_xy        pt     = hypot(px, py)                      Cartesian inputs
    phi_xy       phi    = atan2(py, px)
    eta_xyz      eta    = asinh(pz / hypot(px, py))
    energy_xyzm  energy = hypot(mass, hypot(px, py, pz))
    sum          target = total - sum(inputs)          (total = 1: fractions)

Which direction is used (``[compression] relations``): ``polar`` codes pt, eta, phi, mass
and derives px, py, pz, energy; ``cartesian`` codes px, py, pz, mass and derives pt, phi,
eta, energy; ``auto`` prefers Cartesian inputs where both are possible — on the boosted
top jets at P1 the derived columns then cost 3.6 instead of 8.6 bits per jet and the
whole kinematic block 33.0 instead of 36.4 (static histograms; ``benchmarks/bench_learned.py``),
because a 1 GeV bound on px, py, pz pins pt, phi and eta far more tightly than their own
bounds do.

Columns get *roles* (``pt``, ``eta``, ``phi``, ``mass``, ``energy``, ``px``, ``py``,
``pz``) by name: a column whose lower-cased name is one of :data:`ROLE_ALIASES`, or ends
with ``_<alias>`` / ``.<alias>`` (NanoAOD style ``Jet_pt``), takes that role within its
prefix group (``Jet_``); ``[compression] relation_roles`` ({column = role}) overrides or
adds roles. Sum-to-one groups are found from the data: every pair or triple of columns
whose values sum to 1. With ``relations = "auto"`` a candidate is kept only when it
holds on the chunk it is detected on to within :data:`TOLERANCE` (relative); the chosen
relations are written to the container header, so decompress applies exactly the same
predictors whatever the data. Whether a relation holds affects only the size, never the
bound: the residual coder verifies every value.

**Drift.** The decoded inputs may differ on another device by a known per-value amount
:math:`\\delta` (see :mod:`baler_ext.codec.residuals`). :func:`predict` returns with each
prediction an upper bound :math:`d` on its own difference across devices, propagated to
first order through the relation with a factor 2 and a libm/rounding allowance of
:math:`10^{-14}` relative, e.g. for ``px``:
:math:`d = 2(\\delta_{p_T} + (|p_T| + \\delta_{p_T})\\,\\delta_\\phi) + 10^{-14}(|p_T| + |p|)`.
The residual coder verifies each derived value with this :math:`d`.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from baler_ext.errors import ConfigError, ContainerError

log = logging.getLogger(__name__)

#: role -> accepted column names (lower case), also as a suffix after ``_`` or ``.``
ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    "pt": ("pt",),
    "eta": ("eta",),
    "phi": ("phi",),
    "mass": ("mass", "m"),
    "energy": ("energy", "e"),
    "px": ("px",),
    "py": ("py",),
    "pz": ("pz",),
}
#: kind -> (target role, input roles)
KINEMATIC: dict[str, tuple[str, tuple[str, ...]]] = {
    "px": ("px", ("pt", "phi")),
    "py": ("py", ("pt", "phi")),
    "pz": ("pz", ("pt", "eta")),
    "energy": ("energy", ("pt", "eta", "mass")),
    "pt_xy": ("pt", ("px", "py")),
    "phi_xy": ("phi", ("px", "py")),
    "eta_xyz": ("eta", ("px", "py", "pz")),
    "energy_xyzm": ("energy", ("px", "py", "pz", "mass")),
}
#: the relations of each direction (``[compression] relations``)
DIRECTIONS: dict[str, tuple[str, ...]] = {
    "polar": ("px", "py", "pz", "energy"),
    "cartesian": ("pt_xy", "phi_xy", "eta_xyz", "energy_xyzm"),
}
#: a relation must hold to this relative precision on the detection chunk
TOLERANCE = 1e-9
_ROUND = 1e-14


@dataclass(frozen=True)
class Relation:
    """``target`` = f(``inputs``) of ``kind`` (inputs keyed by role, or a list for sums)."""

    kind: str
    target: str
    inputs: tuple[str, ...]
    total: float = 1.0

    def to_dict(self) -> dict:
        d: dict = {"kind": self.kind, "target": self.target, "inputs": list(self.inputs)}
        if self.kind == "sum":
            d["total"] = self.total
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Relation:
        try:
            rel = cls(
                str(d["kind"]),
                str(d["target"]),
                tuple(str(c) for c in d["inputs"]),
                float(d.get("total", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContainerError(
                f"a relation in the header is malformed ({exc!r}); the file is damaged"
            ) from None
        n = len(KINEMATIC[rel.kind][1]) if rel.kind in KINEMATIC else None
        if (rel.kind != "sum" and n is None) or (n is not None and len(rel.inputs) != n):
            raise ContainerError(f"unknown relation {d!r} in the header; upgrade baler_ext")
        return rel


def role_of(column: str) -> tuple[str, str] | None:
    """``(prefix, role)`` of a column by its name, or None."""
    low = column.lower()
    for role, aliases in ROLE_ALIASES.items():
        for a in aliases:
            if low == a:
                return "", role
            m = re.fullmatch(rf"(.*[_.]){re.escape(a)}", low)
            if m:
                return column[: len(m.group(1))], role
    return None


def candidates(
    columns: Sequence[str], roles: dict[str, str] | None = None, preference: str = "auto"
) -> list[Relation]:
    """Kinematic relations whose roles are all present within one prefix group, the
    preferred direction first (``auto``: Cartesian, then polar; ``polar`` / ``cartesian``:
    that direction only)."""
    roles = roles or {}
    for col, role in roles.items():
        if col not in columns:
            raise ConfigError(
                f"'compression.relation_roles.{col}': no compressed column "
                f"'{col}'; compressed columns: {', '.join(columns)}"
            )
        if role not in ROLE_ALIASES:
            raise ConfigError(
                f"'compression.relation_roles.{col}' = '{role}': valid roles "
                f"are {', '.join(ROLE_ALIASES)}"
            )
    groups: dict[str, dict[str, str]] = {}
    for c in columns:
        pr = ("", roles[c]) if c in roles else role_of(c)
        if pr is not None:
            groups.setdefault(pr[0], {}).setdefault(pr[1], c)
    kinds = {"polar": DIRECTIONS["polar"], "cartesian": DIRECTIONS["cartesian"]}.get(
        preference, DIRECTIONS["cartesian"] + DIRECTIONS["polar"]
    )
    out = []
    for group in groups.values():
        for kind in kinds:
            target, ins = KINEMATIC[kind]
            if target in group and all(r in group for r in ins):
                out.append(Relation(kind, group[target], tuple(group[r] for r in ins)))
    return out


def _holds(target: np.ndarray, pred: np.ndarray) -> bool:
    ok = np.isfinite(target)
    if not ok.any():
        return False
    with np.errstate(all="ignore"):
        scale = np.abs(target[ok]).max() + 1e-300
        dev = np.abs(target[ok] - pred[ok])
    return bool(np.all(dev <= TOLERANCE * (np.abs(target[ok]) + 1e-6 * scale)))


def detect(
    values: np.ndarray,
    columns: Sequence[str],
    usable: set[str],
    roles: dict[str, str] | None = None,
    max_rows: int = 20000,
    preference: str = "auto",
) -> list[Relation]:
    """The relations that hold on ``values`` (rows x columns), in decoding order.

    Only columns in ``usable`` take part. No derived column is an input of another
    relation, so decoding all independent columns first and then the derived ones in
    list order is always possible.
    """
    x = values[:max_rows]
    idx = {c: i for i, c in enumerate(columns)}
    chosen: list[Relation] = []
    targets: set[str] = set()
    inputs_used: set[str] = set()

    def take(rel: Relation) -> None:
        chosen.append(rel)
        targets.add(rel.target)
        inputs_used.update(rel.inputs)

    for rel in candidates(columns, roles, preference):
        if rel.target not in usable or not all(c in usable for c in rel.inputs):
            continue
        if rel.target in targets or rel.target in inputs_used or set(rel.inputs) & targets:
            continue
        cols = {c: x[:, idx[c]] for c in (rel.target, *rel.inputs)}
        pred, _ = predict(rel, cols, {c: np.zeros(len(x)) for c in cols})
        if _holds(cols[rel.target], pred):
            take(rel)
    # sum-to-one groups of 2 or 3 columns with values in [0, 1]
    unit = [
        c
        for c in columns
        if c in usable
        and c not in targets
        and c not in inputs_used
        and len(x)
        and np.all((x[:, idx[c]] >= -1e-9) & (x[:, idx[c]] <= 1 + 1e-9))
    ]
    for size in (2, 3):
        for combo in itertools.combinations(unit, size):
            if any(c in targets or c in inputs_used for c in combo):
                continue
            s = np.sum([x[:, idx[c]] for c in combo], axis=0)
            if np.all(np.abs(s - 1.0) <= 1e-12 * len(combo)):
                take(Relation("sum", combo[-1], tuple(combo[:-1]), 1.0))
    for rel in chosen:
        log.info("relation predictor: %s = %s(%s)", rel.target, rel.kind, ", ".join(rel.inputs))
    return chosen


def value(
    rel: Relation, v: dict[str, np.ndarray], cache: dict[Any, Any] | None = None
) -> np.ndarray:
    """The prediction of ``rel.target`` from the decoded inputs ``v`` (the one place it is
    computed: the encoder's :func:`predict` and the decoder share it, so on one machine
    both get the same bits).

    ``cache``: a dict kept for one chunk (``ChunkState.cache``) in which the hypotenuses
    that several Cartesian relations share are computed once (:func:`_hypot`); ``v``
    must then be that chunk's decoded columns, which never change once decoded.
    """
    return _value(rel, v, cache)[0]


def _hypot(
    cache: dict[Any, Any] | None, v: dict[str, np.ndarray], names: tuple[str, ...]
) -> np.ndarray:
    """:math:`\\rho = \\mathrm{hypot}(p_x, p_y)` (two ``names``) or
    :math:`\\mathrm{hypot}(\\rho, p_z)` (three), the same bits as computing it in place,
    kept read-only in ``cache``: ``pt_xy``, ``eta_xyz`` and ``energy_xyzm`` all need
    :math:`\\rho`, and the last two :math:`|p|`."""
    key = ("relations/hypot", *names)
    out = cache.get(key) if cache is not None else None
    if out is None:
        if len(names) == 2:
            out = np.hypot(v[names[0]], v[names[1]])
        else:
            out = np.hypot(_hypot(cache, v, names[:2]), v[names[2]])
        if cache is not None:
            out.flags.writeable = False
            cache[key] = out
    return out


def _value(
    rel: Relation, v: dict[str, np.ndarray], cache: dict[Any, Any] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`value`, and :math:`\\rho = \\mathrm{hypot}(p_x, p_y)` for the relations from
    Cartesian inputs that compute it on the way (None otherwise), for their drift."""
    with np.errstate(all="ignore"):
        if rel.kind == "sum":
            ins = [v[c] for c in rel.inputs]
            return (
                rel.total - np.sum(ins, axis=0) if ins else np.full_like(v[rel.target], 1.0)
            ), None
        if rel.kind in ("px", "py"):
            pt, phi = v[rel.inputs[0]], v[rel.inputs[1]]
            return pt * (np.cos(phi) if rel.kind == "px" else np.sin(phi)), None
        if rel.kind == "pz":
            return v[rel.inputs[0]] * np.sinh(v[rel.inputs[1]]), None
        if rel.kind == "energy":
            pt, eta, m = (v[c] for c in rel.inputs)
            return np.hypot(m, pt * np.cosh(eta)), None
        if rel.kind in ("pt_xy", "phi_xy", "eta_xyz", "energy_xyzm"):
            px, py = v[rel.inputs[0]], v[rel.inputs[1]]
            if rel.kind == "phi_xy":
                return np.arctan2(py, px), None
            rho = _hypot(cache, v, rel.inputs[:2])
            if rel.kind == "pt_xy":
                return rho, rho
            pz = v[rel.inputs[2]]
            if rel.kind == "eta_xyz":
                return np.arcsinh(pz / rho), rho
            return np.hypot(v[rel.inputs[3]], _hypot(cache, v, rel.inputs[:3])), rho
    raise ContainerError(f"unknown relation kind '{rel.kind}'; upgrade baler_ext")


def predict(
    rel: Relation,
    v: dict[str, np.ndarray],
    drift: dict[str, np.ndarray],
    cache: dict[Any, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Prediction of ``rel.target`` from decoded inputs ``v`` (:func:`value`), and its
    cross-device drift.

    ``drift[c]`` bounds how much the decoded ``v[c]`` may differ on another device;
    ``cache`` as in :func:`value`.
    Returns ``(p, d)``; non-finite entries make the residual coder store the value verbatim.
    """
    p, rho = _value(rel, v, cache)
    with np.errstate(all="ignore"):
        if rel.kind == "sum":
            ins = [v[c] for c in rel.inputs]
            if len(ins) in (1, 2):  # the sums detect() finds: the same bits, fewer arrays
                d = np.array(drift[rel.inputs[0]], np.float64)
                rnd = np.abs(ins[0])
                if len(ins) == 2:
                    d += drift[rel.inputs[1]]
                    rnd += np.abs(ins[1])
                d *= 2.0
                rnd += abs(rel.total)
                rnd *= 1e-15 * (len(ins) + 1)
                d += rnd
                return p, d
            d = 2 * np.sum([drift[c] for c in rel.inputs], axis=0) + 1e-15 * (len(ins) + 1) * (
                abs(rel.total) + np.sum(np.abs(ins), axis=0)
            )
            return p, d
        if rel.kind in ("px", "py"):
            pt = v[rel.inputs[0]]
            dpt, dphi = drift[rel.inputs[0]], drift[rel.inputs[1]]
            d = 2 * (dpt + (np.abs(pt) + dpt) * dphi) + _ROUND * (np.abs(pt) + np.abs(p))
            return p, d
        if rel.kind == "pz":
            pt, eta = v[rel.inputs[0]], v[rel.inputs[1]]
            dpt, deta = drift[rel.inputs[0]], drift[rel.inputs[1]]
            ae = np.abs(eta) + deta
            d = 2 * (dpt * np.sinh(ae) + (np.abs(pt) + dpt) * np.cosh(ae) * deta) + _ROUND * (
                np.abs(pt) * np.cosh(eta) + np.abs(p)
            )
            return p, d
        if rel.kind == "energy":
            pt, eta, m = (v[c] for c in rel.inputs)
            dpt, deta, dm = (drift[c] for c in rel.inputs)
            ae = np.abs(eta) + deta
            d = 2 * (dm + np.cosh(ae) * dpt + (np.abs(pt) + dpt) * np.sinh(ae) * deta) + _ROUND * (
                np.abs(m) + np.abs(pt) * np.cosh(eta) + np.abs(p)
            )
            return p, d
        return p, _drift_cartesian(rel, p, v, drift, rho, cache)


def _drift_cartesian(
    rel: Relation,
    p: np.ndarray,
    v: dict[str, np.ndarray],
    drift: dict[str, np.ndarray],
    rho: np.ndarray | None = None,
    cache: dict[Any, Any] | None = None,
) -> np.ndarray:
    """Drift of the relations from Cartesian inputs. With :math:`\\rho = \\mathrm{hypot}(p_x,
    p_y)` (``rho``: already computed by :func:`_value`), :math:`\\delta\\rho \\le \\delta p_x
    + \\delta p_y` and :math:`\\rho_- = \\rho - \\delta\\rho`: :math:`|\\Delta\\phi| \\le
    \\delta\\rho / \\rho_-`,
    :math:`|\\Delta\\eta| \\le (\\delta p_z + |p_z| \\delta\\rho / \\rho_-) / |P|_-`,
    :math:`|\\Delta E| \\le \\delta m + \\delta p_x + \\delta p_y + \\delta p_z`, each
    doubled, plus the rounding allowance. Where the inputs' drift could carry
    :math:`\\phi` across the branch cut of atan2 (:math:`p_x < 0`, :math:`|p_y| \\le
    \\delta p_y`) or :math:`\\rho_- \\le 0`, the drift is infinite and the value is
    stored verbatim.
    """
    px, py = v[rel.inputs[0]], v[rel.inputs[1]]
    dpx, dpy = drift[rel.inputs[0]], drift[rel.inputs[1]]
    drho = dpx + dpy
    if rel.kind == "pt_xy":
        return 2 * drho + _ROUND * (np.hypot(px, py) if rho is None else rho)
    if rel.kind == "energy_xyzm":
        dpz, dm = drift[rel.inputs[2]], drift[rel.inputs[3]]
        rnd = np.abs(p)
        rnd += np.abs(v[rel.inputs[3]])
        rnd *= _ROUND
        d = dm + drho
        d += dpz
        d *= 2
        d += rnd
        return d
    if rho is None:
        rho = np.hypot(px, py)
    rho_lo = rho - drho
    ok = rho_lo > 0
    # the same quotients as np.where(ok, a / np.where(ok, b, 1.0), inf), without the
    # discarded ones
    d = 2 * drho if rel.kind == "phi_xy" else None
    if rel.kind == "phi_xy":
        assert d is not None
        np.divide(d, rho_lo, out=d, where=ok)
        d[~ok] = np.inf
        cut = np.abs(px)
        cut *= _ROUND
        cut += 2 * dpy
        cut = np.abs(py) <= cut
        cut &= px < 0
        d[cut] = np.inf
    else:  # eta_xyz
        pz, dpz = v[rel.inputs[2]], drift[rel.inputs[2]]
        mom_lo = np.subtract(_hypot(cache, v, rel.inputs[:3]), drho)
        mom_lo -= dpz
        ok &= mom_lo > 0
        d = np.abs(pz)
        d *= drho
        np.divide(d, rho_lo, out=d, where=ok)
        d += dpz
        d *= 2
        np.divide(d, mom_lo, out=d, where=ok)
        d[~ok] = np.inf
    rnd = np.abs(p)
    rnd += 1
    rnd *= _ROUND
    d += rnd
    return d
