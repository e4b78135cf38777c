"""Per-branch error bounds from glob patterns and named precision policies.

``[compression] bounds`` maps a column name *or a glob pattern* to one bound:
``{abs = x}`` (absolute), ``{rel = x}`` (relative) or ``{bits = n}`` (keep ``n`` float32
mantissa bits, i.e. the precision of NanoAOD's ``precision = n``). ``default`` applies to
every column no pattern matches. ``[compression] policy`` names a built-in set of
patterns (:data:`POLICIES`) that the config's own entries extend and override.

Which pattern wins
    An exact name beats every glob; among globs the *most specific* wins, i.e. the one
    with the most literal (non-wildcard) characters; at equal specificity an entry of the
    config beats one of the policy, and otherwise the first listed wins.

Mantissa bits as a relative bound
    NanoAOD stores a float with ``precision = n`` by rounding its float32 mantissa to
    ``n`` bits (CMSSW ``DataFormats/Math/interface/libminifloat.h``,
    ``MiniFloatConverter::reduceMantissaToNbitsRounding``; :func:`round_mantissa`).
    For :math:`x \\in [2^e, 2^{e+1})` the rounding error is at most
    :math:`2^{e-n-1} \\le 2^{-(n+1)} |x|`, so ``{bits = n}`` is the relative bound
    :math:`2^{-(n+1)}` (10 bits: 4.9e-4, 12 bits: 1.2e-4, 6 bits: 7.8e-3). ``n = 23`` is
    full float32 precision (:math:`2^{-24}`, half a float32 ulp).

The ``nanoaod`` policy (see docs/precision.md for the sources)
    From CMSSW ``PhysicsTools/NanoAOD/python``: ``common_cff.py`` (``P4Vars``: ``eta``
    and ``phi`` 12 bits, ``mass`` 10 bits, ``pt`` full precision), ``jets_cff.py``
    (``jetTable.variables.pt.precision = 10``, "jets are not as precise as muons"; the
    b-tag discriminators, ``qgl`` and ``puIdDisc`` 10 bits; the energy fractions
    ``chHEF``, ``neHEF``, ``chEmEF``, ``neEmEF``, ``muEF`` 6 bits), ``electrons_cff.py``
    (``pfRelIso04_all`` 10 bits). Every other float keeps full float32 precision, as
    NanoAOD's default ``precision = -1`` does. Files that store Cartesian momenta (the
    CMS tutorial's ``Jet_Px``, ``Jet_E``) get the precision of their collection's ``pt``.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from baler_ext.errors import ConfigError
from baler_ext.registry import suggest

log = logging.getLogger(__name__)

#: float32 has 23 explicit mantissa bits; keeping all of them is full precision
FULL_BITS = 23
WILDCARDS = "*?["


def bits_to_rel(bits: int) -> float:
    """Relative bound of rounding a float32 mantissa to ``bits`` bits: :math:`2^{-(bits+1)}`."""
    return 2.0 ** -(int(bits) + 1)


def rel_to_bits(rel: float) -> int:
    """The fewest mantissa bits whose rounding stays within the relative bound ``rel``."""
    bits = 0
    while bits < FULL_BITS and bits_to_rel(bits) > rel:
        bits += 1
    return bits


def round_mantissa(x: np.ndarray, bits: int) -> np.ndarray:
    """``x`` as float32 with its mantissa rounded to nearest at ``bits`` bits.

    The NanoAOD reduction: add half of the dropped part, then clear the dropped bits
    (a carry moves into the exponent, which is the correct rounding); NaN and inf are
    kept.
    """
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    shift = FULL_BITS - int(bits)
    if shift <= 0:
        return x32.copy()
    raw = x32.view(np.uint32).astype(np.uint64)
    mask = np.uint64(0xFFFFFFFF ^ ((1 << shift) - 1))
    rounded = ((raw + np.uint64(1 << (shift - 1))) & mask).astype(np.uint32).view(np.float32)
    return np.where(np.isfinite(x32), rounded, x32)


def _nanoaod() -> dict[str, dict[str, int]]:
    full = {"bits": FULL_BITS}
    jet = {"bits": 10}
    p: dict[str, dict[str, int]] = {
        # common_cff.py, P4Vars
        "*_eta": {"bits": 12},
        "*_phi": {"bits": 12},
        "*_mass": {"bits": 10},
        "*_pt": full,
        # jets_cff.py
        "*Jet*_pt": jet,
        "*Jet*_btag*": jet,
        "*Jet*_qgl": jet,
        "*Jet*_puIdDisc": jet,
        "*Jet*_*EF": {"bits": 6},
        # electrons_cff.py (and the tutorial's Muon_Iso, Photon_Iso)
        "*_pfRelIso*": {"bits": 10},
        "*_Iso": {"bits": 10},
        "default": full,
    }
    for comp in ("Px", "Py", "Pz", "E", "px", "py", "pz", "energy"):  # Cartesian momenta
        p[f"*Jet*_{comp}"] = jet
        p[f"*_{comp}"] = full
    return p


#: built-in precision policies (``[compression] policy``)
POLICIES: dict[str, dict[str, dict[str, Any]]] = {"none": {}, "nanoaod": _nanoaod()}


@dataclass(frozen=True)
class Resolved:
    """The bound one column received and the pattern (and its origin) that gave it."""

    bound: dict[str, float]
    pattern: str
    origin: str

    def to_dict(self) -> dict[str, Any]:
        return {"bound": self.bound, "pattern": self.pattern, "origin": self.origin}

    def header_entry(self, column: str) -> dict[str, Any]:
        """As stored in a container's ``precision`` (format 1.4): ``pattern`` left out
        when it is the column's own name and ``origin`` when it is ``config``
        (:func:`precision_from_header` fills them in)."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if not (k == "pattern" and v == column) and not (k == "origin" and v == "config")
        }


def precision_from_header(entries: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's ``precision`` with every key, whether it was written compact (1.4) or
    whole (before)."""
    return {
        c: {
            "bound": e["bound"],
            "pattern": e.get("pattern", c),
            "origin": e.get("origin", "config"),
        }
        for c, e in entries.items()
    }


def specificity(pattern: str) -> tuple[int, int]:
    """Sort key of a pattern: exact names first, then more literal characters."""
    literal = sum(1 for ch in pattern if ch not in WILDCARDS)
    return (0 if any(ch in pattern for ch in WILDCARDS) else 1, literal)


def to_abs_rel(spec: dict[str, Any]) -> dict[str, float]:
    """``{bits = n}`` -> ``{rel = 2^-(n+1)}``; ``abs``/``rel`` unchanged."""
    ((kind, value),) = spec.items()
    if kind == "bits":
        return {"rel": bits_to_rel(int(value))}
    return {kind: float(value)}


def matches(column: str, pattern: str) -> bool:
    """Whether ``pattern`` matches ``column``; an RNTuple's dotted name (``Jet.pt``) also
    matches as its NanoAOD spelling (``Jet_pt``), so one policy serves both."""
    return fnmatch.fnmatchcase(column, pattern) or (
        "." in column and fnmatch.fnmatchcase(column.replace(".", "_"), pattern)
    )


def resolve_precision(
    policy: str, bounds: dict[str, dict[str, Any]], columns: list[str]
) -> dict[str, Resolved]:
    """The bound of every column from ``policy`` plus the config's ``bounds``.

    Parameters
    ----------
    policy
        A name of :data:`POLICIES`.
    bounds
        ``[compression] bounds``: names or glob patterns (and ``default``) to one of
        ``{abs}``, ``{rel}``, ``{bits}``.
    columns
        The compressed columns.

    Returns
    -------
    dict
        Column -> :class:`Resolved`, in ``columns`` order.

    Raises
    ------
    ConfigError
        Unknown policy, or a plain name (no wildcard) that is not a compressed column.
    """
    if policy not in POLICIES:
        raise ConfigError(
            f"unknown compression.policy '{policy}'{suggest(policy, POLICIES)}; "
            f"valid: {', '.join(POLICIES)}"
        )
    entries: list[tuple[str, dict[str, Any], str, int]] = []
    for rank, (origin, table) in enumerate(
        (("policy " + policy, POLICIES[policy]), ("config", bounds))
    ):
        for pattern, spec in table.items():
            if pattern == "default":
                continue
            if (
                not any(ch in pattern for ch in WILDCARDS)
                and pattern not in columns
                and origin == "config"
            ):
                raise ConfigError(
                    f"'compression.bounds.{pattern}': no compressed column '{pattern}'"
                    f"{suggest(pattern, columns)}; use a glob pattern to match several"
                )
            entries.append((pattern, spec, origin, rank))
    default = (
        (bounds.get("default"), "config")
        if "default" in bounds
        else (POLICIES[policy].get("default"), "policy " + policy)
    )
    if default[0] is None:
        raise ConfigError(
            "'compression.bounds' needs a default entry, e.g. bounds = {default = {rel = 1e-3}}"
        )
    out: dict[str, Resolved] = {}
    for c in columns:
        matching = [e for e in entries if matches(c, e[0])]
        if matching:
            best = max(matching, key=lambda e: (*specificity(e[0]), e[3]))
            out[c] = Resolved(to_abs_rel(best[1]), best[0], best[2])
        else:
            out[c] = Resolved(to_abs_rel(default[0]), "default", default[1])
    unused = [
        e[0] for e in entries if e[2] == "config" and not any(matches(c, e[0]) for c in columns)
    ]
    if unused:
        log.info("compression.bounds patterns matching no compressed column: %s", ", ".join(unused))
    return out


#: float mantissa bits (explicit) per stored dtype
MANTISSA_BITS = {"float16": 10, "float32": 23, "float64": 52}


def is_lossless(bound: dict[str, float], dtype: str) -> bool:
    r"""Whether a relative ``bound`` allows no rounding at all for values of ``dtype``:
    :math:`r \le 2^{-(m+1)}`, half an ulp of an ``m``-bit mantissa."""
    ((kind, value),) = bound.items()
    bits = MANTISSA_BITS.get(dtype)
    return kind == "rel" and bits is not None and value <= bits_to_rel(bits)


def explicit_bounds(resolved: dict[str, Resolved]) -> dict[str, dict[str, float]]:
    """The per-column ``{column: {abs|rel: x}, "default": ...}`` dict the codec resolves.

    Every column is named, so the ``default`` entry (required by the codec) is never used;
    it repeats the first column's bound.
    """
    out = {c: dict(r.bound) for c, r in resolved.items()}
    out["default"] = next(iter(out.values())) if out else {"rel": 1e-3}
    return out
