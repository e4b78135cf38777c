"""The fitted variable: a column, a per-object invariant mass, or an event-level combination.

The functions here are applied identically to the original and to the
decompressed table. All work is vectorised with numpy.

Invariant mass of a 4-vector (natural units, metric (+,-,-,-)):

.. math:: m = \\sqrt{E^2 - p_x^2 - p_y^2 - p_z^2},

and from (pT, η, φ, m): :math:`p_x = p_T\\cos\\varphi`, :math:`p_y = p_T\\sin\\varphi`,
:math:`p_z = p_T\\sinh\\eta`, :math:`E = \\sqrt{p_T^2\\cosh^2\\eta + m^2}`.
Rounding (or a lossy compressor) can make :math:`m^2` slightly negative; such
values are clipped to 0 and counted in the log.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from baler_ext.analysis.selection import selection_mask
from baler_ext.analysis.spec import AnalysisSpec
from baler_ext.errors import ConfigError

log = logging.getLogger(__name__)

#: Fraction of clipped negative m² entries above which a warning (not info) is logged.
NEGATIVE_M2_WARN_FRACTION = 0.01


def ptetaphim_to_pxpypze(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Convert (pT, η, φ, m) to Cartesian (px, py, pz, E).

    Notes
    -----
    :math:`p_x = p_T\\cos\\varphi,\\ p_y = p_T\\sin\\varphi,\\ p_z = p_T\\sinh\\eta,\\
    E = \\sqrt{(p_T\\cosh\\eta)^2 + m^2}`. A negative input mass is treated as
    :math:`m^2 = -|m|^2` (the ROOT ``TLorentzVector`` convention for space-like vectors).
    """
    pt, eta, phi, m = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi, m))
    px = pt * np.cos(phi)
    py = pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    p = pt * np.cosh(eta)
    energy = np.sqrt(np.maximum(p * p + np.sign(m) * m * m, 0.0))
    return px, py, pz, energy


def invariant_mass(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, energy: np.ndarray, *, what: str = "mass"
) -> np.ndarray:
    """Invariant mass :math:`\\sqrt{\\max(E^2 - |\\vec p|^2, 0)}` of Cartesian 4-vectors.

    Negative :math:`m^2` (from rounding or lossy compression) is clipped to 0; the
    number clipped is logged (warning when more than 1 % of the entries).

    Parameters
    ----------
    px, py, pz, energy
        Arrays of equal length.
    what
        Name used in the log message.

    Returns
    -------
    numpy.ndarray
        The masses; NaN where an input is NaN.
    """
    px, py, pz, energy = (np.asarray(a, dtype=np.float64) for a in (px, py, pz, energy))
    m2 = (energy - np.sqrt(px * px + py * py + pz * pz)) * (
        energy + np.sqrt(px * px + py * py + pz * pz)
    )
    negative = m2 < 0
    n_neg = int(np.count_nonzero(negative))
    if n_neg:
        frac = n_neg / max(m2.size, 1)
        level = logging.WARNING if frac > NEGATIVE_M2_WARN_FRACTION else logging.INFO
        log.log(
            level,
            "%s: clipped %d negative m^2 values (%.3g%% of %d) to 0",
            what,
            n_neg,
            100 * frac,
            m2.size,
        )
        m2 = np.where(negative, 0.0, m2)
    return np.sqrt(m2)


def _columns(data: pd.DataFrame, names: list[str], what: str) -> list[np.ndarray]:
    missing = [c for c in names if c not in data.columns]
    if missing:
        import difflib

        hint = difflib.get_close_matches(missing[0], [str(c) for c in data.columns], n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ConfigError(f"{what}: the table has no column '{missing[0]}'{extra}")
    return [data[c].to_numpy(dtype=np.float64) for c in names]


def _cartesian(data: pd.DataFrame, columns: list[str], kind: str) -> list[np.ndarray]:
    values = _columns(data, columns, "analysis.p4_columns")
    if kind == "ptetaphim":
        return list(ptetaphim_to_pxpypze(*values))
    if kind == "pxpypze":
        return values
    raise ConfigError(f"4-vector layout '{kind}' is unknown; use 'ptetaphim' or 'pxpypze'")


def event_combination_mass(
    event: np.ndarray,
    order: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    energy: np.ndarray,
    n_objects: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Invariant mass of the sum of the ``n_objects`` leading objects of each event.

    Rows are sorted by (event, −order) with a stable sort; the first ``n_objects``
    rows of each event are summed with :func:`numpy.add.reduceat`. Events with
    fewer than ``n_objects`` rows are skipped. NaN in ``order`` ranks last.

    Returns
    -------
    masses, events
        One mass per kept event and the event id it belongs to (ascending).
    """
    event = np.asarray(event)
    order = np.asarray(order, dtype=np.float64)
    if event.size == 0:
        return np.empty(0), event[:0]
    idx = np.lexsort((-order, event))
    ev = event[idx]
    starts = np.flatnonzero(np.r_[True, ev[1:] != ev[:-1]])
    counts = np.diff(np.r_[starts, ev.size])
    rank = np.arange(ev.size) - np.repeat(starts, counts)
    keep_event = counts >= n_objects
    take = (rank < n_objects) & np.repeat(keep_event, counts)
    rows = idx[take]
    seg = np.arange(int(keep_event.sum())) * n_objects
    if seg.size == 0:
        return np.empty(0), event[:0]
    sums = [
        np.add.reduceat(np.asarray(a, dtype=np.float64)[rows], seg) for a in (px, py, pz, energy)
    ]
    masses = invariant_mass(*sums, what=f"{n_objects}-object mass")
    return masses, ev[starts[keep_event]]


def _combine_events(
    data: pd.DataFrame, spec: AnalysisSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`event_combination_mass` with the columns of ``spec``.

    Objects are ranked by :attr:`AnalysisSpec.order_column`, or by
    :math:`p_T = \\sqrt{p_x^2 + p_y^2}` of the p4 when it is None. Returns the masses, the
    event id of each mass and the event id of every row.
    """
    event = _columns(data, [spec.event_column], "analysis.event_column")[0]
    px, py, pz, energy = _cartesian(data, list(spec.p4_columns), spec.p4_kind)
    order = (
        np.hypot(px, py)
        if spec.order_column is None
        else _columns(data, [spec.order_column], "analysis.order_by")[0]
    )
    masses, events = event_combination_mass(event, order, px, py, pz, energy, spec.n_objects)
    log.info("combined the %d leading objects of %d events", spec.n_objects, masses.size)
    return masses, events, event


def compute_mass(data: pd.DataFrame, spec: AnalysisSpec) -> np.ndarray:
    """The fitted variable of ``data`` per ``spec`` (no selection applied).

    Parameters
    ----------
    data
        One row per object (jet, ...).
    spec
        ``variable`` picks the method: ``column``, ``p4_ptetaphim``, ``p4_pxpypze``
        or ``event_combination``.

    Returns
    -------
    numpy.ndarray
        One value per row, or per event with at least ``n_objects`` rows.

    Raises
    ------
    ConfigError
        Unknown variable or missing column.
    """
    if spec.variable == "column":
        return _columns(data, [spec.column], "analysis.column")[0]
    if spec.variable in ("p4_ptetaphim", "p4_pxpypze"):
        kind = spec.variable.removeprefix("p4_")
        return invariant_mass(*_cartesian(data, list(spec.p4_columns), kind), what="mass")
    if spec.variable == "event_combination":
        return _combine_events(data, spec)[0]
    raise ConfigError(
        f"analysis.variable = '{spec.variable}' is unknown; use one of: column, "
        "p4_ptetaphim, p4_pxpypze, event_combination"
    )


def analysis_values(data: pd.DataFrame, spec: AnalysisSpec) -> np.ndarray:
    """Apply ``spec.selection`` to the rows of ``data``, then compute the fitted variable.

    This is the one entry point the analyse stage calls for the original and for
    the decompressed table, so both are treated identically. Non-finite values
    are dropped.

    Returns
    -------
    numpy.ndarray
        The finite values of the variable (not yet restricted to ``fit_range``).
    """
    return analysis_values_and_keys(data, spec, np.arange(len(data)))[0]


def analysis_values_and_keys(
    data: pd.DataFrame, spec: AnalysisSpec, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`analysis_values` and, per value, the resampling key of its event.

    Parameters
    ----------
    data
        One row per object.
    spec
        The analysis spec.
    keys
        One key per row of ``data``: the event it belongs to (or the row number);
        for ``variable = 'event_combination'`` the event column itself is used.

    Returns
    -------
    values, keys
        The finite values of the variable and the key of each.
    """
    keys = np.asarray(keys)
    if len(keys) != len(data):
        raise ValueError(f"got {len(keys)} keys for {len(data)} rows")
    if spec.selection:
        mask = selection_mask(data, spec.selection)
        log.info("selection keeps %d of %d rows", int(mask.sum()), len(mask))
        data, keys = data.loc[mask], keys[mask]
    if spec.variable == "event_combination":
        values, events, event = _combine_events(data, spec)
        # the event's key: that of its first row (all rows of an event share it)
        _, first = np.unique(event, return_index=True)
        keys = keys[first[np.searchsorted(np.unique(event), events)]]
    else:
        values = compute_mass(data, spec)
    finite = np.isfinite(values)
    if not finite.all():
        log.warning("dropped %d non-finite values of the fitted variable", int((~finite).sum()))
        values, keys = values[finite], keys[finite]
    return values, keys
