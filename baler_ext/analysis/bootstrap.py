r"""Paired bootstrap: the statistical error of a shift caused by compression.

The original and the decompressed samples hold the **same events**, so a fitted
quantity :math:`x` (mass, width, AUC, ...) fluctuates almost identically in both,
and the error of the shift :math:`\Delta = x_\mathrm{after} - x_\mathrm{before}`
is far smaller than either fit's own error (the quadrature sum of the two is a
loose upper bound). The paired bootstrap (B. Efron, *Ann. Statist.* 7 (1979) 1;
B. Efron and R. Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 6)
measures it directly:

1. the resampling unit is the **event** (``analysis.event_column`` when the
   table has it; otherwise the row), so that objects of one event stay together;
2. replica :math:`r` draws :math:`G` events with replacement from the :math:`G`
   events of the data (a multinomial count :math:`c_{rg}` per event); every row
   of event :math:`g` enters **both** samples with weight :math:`c_{rg}` — the
   *same* resampled events on both sides;
3. both samples are histogrammed (one ``bincount`` per sample: the bin of every
   value is computed once) and **both are refitted**
   (:class:`~baler_ext.analysis.fit.Refitter`: the nominal fit's values as start,
   MIGRAD only), giving :math:`\Delta_r`;
4. :math:`\sigma_\Delta^\mathrm{paired} = \mathrm{std}_r(\Delta_r)` (``ddof=1``).

Each shift is then reported in units of that paired :math:`\sigma` *and* in units
of the original fit's statistical error :math:`\sigma_\mathrm{stat}` (its HESSE
error): the first says whether compression moved the result beyond what the
events' own fluctuations allow, the second how large the move is compared to the
measurement's precision. Replicas in which a fit fails are left out and counted.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from baler_ext.analysis.fit import FitResult, Refitter, jsonable

log = logging.getLogger(__name__)

Values = dict[str, float]


@dataclass
class PairedSample:
    """The values of one sample and, per value, the index of its event (``0..n_groups-1``)."""

    values: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        self.groups = np.asarray(self.groups, dtype=np.int64)
        if self.values.shape != self.groups.shape:
            raise ValueError(f"got {self.groups.size} event indices for {self.values.size} values")


def group_indices(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Map the event keys of both samples onto one index ``0..G-1`` (the resampling units).

    Returns
    -------
    before_idx, after_idx, n_groups
    """
    keys, inverse = np.unique(np.r_[np.asarray(before), np.asarray(after)], return_inverse=True)
    n = len(before)
    return inverse[:n].astype(np.int64), inverse[n:].astype(np.int64), int(keys.size)


class PairedStatistic(ABC):
    """Quantities computed on both samples, nominally and on weighted replicas."""

    #: Names of the quantities (keys of the dicts returned).
    names: tuple[str, ...] = ()

    @abstractmethod
    def nominal(self) -> tuple[Values, Values]:
        """(before, after) values on the data."""

    @abstractmethod
    def stat_errors(self) -> Values:
        """Statistical error of each quantity in the original sample (NaN if unknown)."""

    @abstractmethod
    def replica(self, counts: np.ndarray) -> tuple[Values, Values] | None:
        """(before, after) on the replica with event multiplicities ``counts``; None if failed."""


class FitShifts(PairedStatistic):
    """Mass and width of the peak fit, refitted on both samples of every replica."""

    names = ("mass", "width")

    def __init__(
        self, before_fit: FitResult, after_fit: FitResult, before: PairedSample, after: PairedSample
    ) -> None:
        self.fits = (before_fit, after_fit)
        self.refit = (Refitter(before_fit), Refitter(after_fit))
        edges = np.asarray(before_fit.edges, dtype=np.float64)
        self.n_bins = edges.size - 1
        self.binned: list[tuple[np.ndarray, np.ndarray]] = []
        for sample in (before, after):
            b = np.searchsorted(edges, sample.values, side="right") - 1
            b[sample.values == edges[-1]] = self.n_bins - 1  # closed upper edge
            inside = (b >= 0) & (b < self.n_bins) & np.isfinite(sample.values)
            self.binned.append((b[inside], sample.groups[inside]))

    def nominal(self) -> tuple[Values, Values]:
        b, a = self.fits
        return {"mass": b.mass, "width": b.width}, {"mass": a.mass, "width": a.width}

    def stat_errors(self) -> Values:
        return {"mass": self.fits[0].mass_err, "width": self.fits[0].width_err}

    def replica(self, counts: np.ndarray) -> tuple[Values, Values] | None:
        out = []
        for (bins, groups), refit in zip(self.binned, self.refit, strict=True):
            hist = np.bincount(bins, weights=counts[groups], minlength=self.n_bins)
            fitted = refit.fit(hist)
            if fitted is None:
                return None
            out.append({"mass": fitted["mass"], "width": fitted["width"]})
        return out[0], out[1]


@dataclass
class PairedShift:
    """One quantity before and after compression, its shift and the shift's errors.

    Attributes
    ----------
    name
        ``"mass"``, ``"width"``, ``"auc"``, ...
    before, after, delta
        Nominal values and ``after − before``.
    sigma_paired
        Standard deviation of the replica shifts (NaN without a bootstrap).
    sigma_stat
        Statistical error of the original measurement (the fit's HESSE error, or
        the bootstrap spread of the original value when there is no fit error).
    n_sigma_paired, n_sigma_stat
        :math:`|\\Delta|` in units of each.
    sigma_before, sigma_after, correlation
        Bootstrap spreads of each sample's value and their correlation.
    replicas, failed
        Replicas used and replicas left out because a fit failed.
    """

    name: str
    before: float
    after: float
    delta: float
    sigma_paired: float
    sigma_stat: float
    n_sigma_paired: float
    n_sigma_stat: float
    sigma_before: float
    sigma_after: float
    correlation: float
    replicas: int
    failed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable mapping (non-finite numbers become None)."""
        return jsonable(asdict(self))


def n_sigma(delta: float, err: float) -> float:
    """:math:`|\\Delta|/\\sigma`; 0 for no shift at all (even with a zero error), NaN if unknown."""
    if delta == 0.0:
        return 0.0
    return abs(delta) / err if err > 0 and math.isfinite(err) else math.nan


def replica_counts(n_groups: int, n_replicas: int, seed: int) -> Iterator[np.ndarray]:
    """Multinomial event multiplicities of each replica, one array of ``n_groups`` at a time.

    Replica :math:`r` is :math:`n_\\mathrm{groups}` draws with replacement, counted
    per event (generated lazily, so memory does not grow with the replicas).
    """
    rng = np.random.default_rng(seed)
    for _ in range(n_replicas):
        yield np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)


def paired_bootstrap(
    statistics: Sequence[PairedStatistic],
    n_groups: int,
    n_replicas: int,
    seed: int = 2026,
    progress: bool = True,
) -> dict[str, PairedShift]:
    """Run the paired bootstrap of every statistic on the same replicas.

    Parameters
    ----------
    statistics
        What to compute on both samples (e.g. :class:`FitShifts`, a tagger ROC).
    n_groups
        Number of events (resampling units).
    n_replicas
        Replicas; 0 gives shifts with NaN paired errors.
    seed
        Seed of :func:`numpy.random.default_rng`.
    progress
        Show a tqdm progress bar on stderr.

    Returns
    -------
    dict
        ``{name: PairedShift}`` over the names of all statistics.
    """
    from tqdm import tqdm

    nominal = [s.nominal() for s in statistics]
    draws: list[dict[str, list[tuple[float, float]]]] = [
        {n: [] for n in s.names} for s in statistics
    ]
    failed = [0] * len(statistics)
    if n_replicas > 0:
        counts = replica_counts(n_groups, n_replicas, seed)
        for row in tqdm(
            counts,
            total=n_replicas,
            desc="paired bootstrap",
            unit="replica",
            disable=not progress,
            leave=False,
        ):
            for i, stat in enumerate(statistics):
                got = stat.replica(row)
                if got is None:
                    failed[i] += 1
                    continue
                for n in stat.names:
                    draws[i][n].append((got[0][n], got[1][n]))
    out: dict[str, PairedShift] = {}
    for i, stat in enumerate(statistics):
        before, after = nominal[i]
        stat_err = stat.stat_errors()
        for n in stat.names:
            d = np.asarray(draws[i][n], dtype=np.float64).reshape(-1, 2)
            ok = d.shape[0] >= 2
            sb = float(np.std(d[:, 0], ddof=1)) if ok else math.nan
            sa = float(np.std(d[:, 1], ddof=1)) if ok else math.nan
            sp = float(np.std(d[:, 1] - d[:, 0], ddof=1)) if ok else math.nan
            corr = (
                float(np.corrcoef(d[:, 0], d[:, 1])[0, 1]) if ok and sb > 0 and sa > 0 else math.nan
            )
            se = stat_err.get(n, math.nan)
            if not math.isfinite(se):
                se = sb
            delta = after[n] - before[n]
            out[n] = PairedShift(
                n,
                before[n],
                after[n],
                delta,
                sp,
                se,
                n_sigma(delta, sp),
                n_sigma(delta, se),
                sb,
                sa,
                corr,
                int(d.shape[0]),
                failed[i],
            )
        if failed[i]:
            log.warning(
                "paired bootstrap: %d of %d replicas of %s left out (a fit failed)",
                failed[i],
                n_replicas,
                "/".join(stat.names),
            )
    return out
