"""The ``[analysis]`` section of a project configuration.

:class:`AnalysisSpec` says which variable to fit (a column, a per-object invariant
mass, or the invariant mass of the leading objects of each event), which rows to
keep, and how to fit it (range, bins, peak and background shapes).

The same spec is applied identically to the original and to the decompressed
table, so any difference between the two fits is caused by the compression.

Every field has a default and a one-line ``metadata["doc"]``; the configuration
loader validates TOML values against the annotations generically, so only the
types ``str``, ``int``, ``float``, ``bool``, ``list[str]``, ``list[float]`` and
``X | None`` are used.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from baler_ext.errors import ConfigError

log = logging.getLogger(__name__)

#: Values accepted by :attr:`AnalysisSpec.variable`.
VARIABLES: tuple[str, ...] = ("column", "p4_ptetaphim", "p4_pxpypze", "event_combination")
#: Values accepted by :attr:`AnalysisSpec.p4_kind`.
P4_KINDS: tuple[str, ...] = ("ptetaphim", "pxpypze")
#: Values accepted by :attr:`AnalysisSpec.tagger_signal`.
TAGGER_SIGNAL: tuple[str, ...] = ("low", "high")


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass
class AnalysisSpec:
    """How to obtain and fit the mass peak that measures the physics impact of compression.

    Examples
    --------
    The boosted-top jets table, fitting the jet-mass column::

        [analysis]
        variable = "column"
        column = "mass"
        selection = ["pt > 400", "abs(eta) < 2"]
        fit_range = [120.0, 230.0]
        peak = "gauss"
        background = "poly1"

    A trijet mass from a one-row-per-jet table::

        [analysis]
        variable = "event_combination"
        p4_columns = ["pt", "eta", "phi", "mass"]
        p4_kind = "ptetaphim"
        event_column = "event"
        n_objects = 3
        order_by = "pt"   # the default: the pt of p4_columns (e.g. Jet_pt)
    """

    variable: str = field(
        default="column",
        metadata=_doc(
            "'column' (fit `column`), 'p4_ptetaphim' or 'p4_pxpypze' (per-row mass of "
            "`p4_columns`), or 'event_combination' (mass of each event's leading objects)"
        ),
    )
    column: str = field(
        default="mass", metadata=_doc("column fitted directly when variable = 'column'")
    )
    p4_columns: list[str] = field(
        default_factory=lambda: ["pt", "eta", "phi", "mass"],
        metadata=_doc(
            "the four 4-vector columns, in the order (pt, eta, phi, m) or (px, py, pz, E)"
        ),
    )
    p4_kind: str = field(
        default="ptetaphim",
        metadata=_doc(
            "layout of `p4_columns` for variable = 'event_combination': 'ptetaphim' or 'pxpypze'"
        ),
    )
    event_column: str = field(
        default="event",
        metadata=_doc(
            "column that groups rows into events (variable = 'event_combination'); "
            "in a jagged file without it, each entry is an event"
        ),
    )
    n_objects: int = field(
        default=3,
        metadata=_doc(
            "number of leading objects per event summed into the combination; "
            "events with fewer are skipped"
        ),
    )
    order_by: str | None = field(
        default=None,
        metadata=_doc(
            "column that ranks objects within an event, largest first; default: "
            "their pt (the pt of `p4_columns`, e.g. Jet_pt, or sqrt(px^2 + py^2))"
        ),
    )
    selection: list[str] = field(
        default_factory=list,
        metadata=_doc(
            "cuts on rows, combined with AND, e.g. ['pt > 400', 'abs(eta) < 2']; "
            "applied before the mass is computed"
        ),
    )
    fit_range: list[float] = field(
        default_factory=lambda: [120.0, 230.0],
        metadata=_doc("[low, high] edges of the fitted mass window, in `unit`"),
    )
    bins: int = field(default=55, metadata=_doc("number of equal-width bins in `fit_range`"))
    peak: str = field(
        default="gauss",
        metadata=_doc("peak shape: 'gauss', 'breit_wigner', 'voigt' or 'crystal_ball'"),
    )
    background: str = field(
        default="poly1",
        metadata=_doc("background shape: 'poly0', 'poly1', 'poly2', 'poly3' or 'exp'"),
    )
    minos: bool = field(
        default=False, metadata=_doc("also compute asymmetric MINOS errors (slower)")
    )
    min_entries: int = field(
        default=50,
        metadata=_doc("fewest entries inside `fit_range` for which a fit is attempted"),
    )
    unit: str = field(default="GeV", metadata=_doc("unit of the mass, used in reports"))
    quantity: str = field(
        default="top mass",
        metadata=_doc("name of the fitted quantity in the verdict, e.g. 'top mass', 'W mass'"),
    )
    min_p_value: float = field(
        default=1e-3,
        metadata=_doc(
            "a fit whose chi2 p-value is below this is graded 'poor' (see docs: fit-quality gates)"
        ),
    )
    bootstrap_replicas: int = field(
        default=200,
        metadata=_doc(
            "paired bootstrap replicas (events resampled, both samples refitted) "
            "for the errors of the shifts; 0 = quadrature sum of the fit errors"
        ),
    )
    bootstrap_seed: int = field(default=2026, metadata=_doc("seed of the bootstrap resampling"))
    tagger_score: str = field(
        default="",
        metadata=_doc(
            "tagger check: a column or an expression of columns, e.g. 'tau3/tau2'; "
            "empty = no tagger check"
        ),
    )
    tagger_truth: str = field(
        default="",
        metadata=_doc(
            "tagger check: the truth flag column (non-zero = signal), e.g. 'top_matched'"
        ),
    )
    tagger_signal: str = field(
        default="high",
        metadata=_doc("tagger check: 'low' if signal has low scores (e.g. tau3/tau2), else 'high'"),
    )
    tagger_background_rejection: float = field(
        default=10.0,
        metadata=_doc(
            "tagger check: background rejection 1/eff_b at which the signal efficiency is compared"
        ),
    )

    # ------------------------------------------------------------------ helpers
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisSpec:
        """Build and validate a spec from a plain mapping (e.g. a parsed TOML table).

        Raises
        ------
        ConfigError
            For an unknown key or a bad value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            import difflib

            hint = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(
                f"[analysis] has unknown key '{unknown[0]}'{extra}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        spec = cls(**data)
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON/TOML-serialisable mapping."""
        return asdict(self)

    @property
    def lo(self) -> float:
        """Lower edge of the fit range."""
        return float(self.fit_range[0])

    @property
    def hi(self) -> float:
        """Upper edge of the fit range."""
        return float(self.fit_range[1])

    @property
    def order_column(self) -> str | None:
        r"""The column ranking objects: :attr:`order_by`, by default the pt of the p4.

        With ``p4_kind = 'ptetaphim'`` the default is ``p4_columns[0]`` (the pt column
        whatever its prefix: ``pt``, ``Jet_pt``, ...); with ``'pxpypze'`` it is None,
        and objects are ranked by :math:`p_T = \sqrt{p_x^2 + p_y^2}` of the p4 columns.
        """
        if self.order_by:
            return self.order_by
        return self.p4_columns[0] if self.p4_kind == "ptetaphim" else None

    def required_columns(self) -> list[str]:
        """Columns the analysis reads (for reading only what is needed).

        Returns
        -------
        list of str
            Sorted, without duplicates: the mass inputs and every column named in
            :attr:`selection`.
        """
        from baler_ext.analysis.selection import cut_columns

        cols: set[str] = set()
        if self.variable == "column":
            cols.add(self.column)
        else:
            cols.update(self.p4_columns)
        if self.variable == "event_combination":
            cols.add(self.event_column)
            if self.order_column is not None:
                cols.add(self.order_column)
        for cut in self.selection:
            cols.update(cut_columns(cut))
        if self.tagger_score:
            cols.update(cut_columns(self.tagger_score))
            cols.add(self.tagger_truth)
        return sorted(cols)

    def validate(self) -> None:
        """Check every value; raise :class:`ConfigError` with a one-line fix for the first bad one.

        Raises
        ------
        ConfigError
            Unknown variable/peak/background/p4_kind (the message lists the valid
            ones), a fit range that is not increasing, fewer than 5 bins, a bad
            selection expression, and so on.
        """
        from baler_ext.analysis.selection import validate_cut
        from baler_ext.analysis.shapes import background_names, peak_names

        if self.variable not in VARIABLES:
            raise ConfigError(
                f"analysis.variable = '{self.variable}' is unknown; use one of: "
                f"{', '.join(VARIABLES)}"
            )
        if self.variable == "column" and not self.column:
            raise ConfigError("analysis.column is empty; name the column to fit, e.g. 'mass'")
        if self.variable != "column":
            if len(self.p4_columns) != 4 or not all(self.p4_columns):
                raise ConfigError(
                    f"analysis.p4_columns must name exactly 4 columns, got {self.p4_columns!r}; "
                    "e.g. ['pt', 'eta', 'phi', 'mass'] or ['px', 'py', 'pz', 'energy']"
                )
            if len(set(self.p4_columns)) != 4:
                raise ConfigError(
                    f"analysis.p4_columns repeats a column: {self.p4_columns!r}; "
                    "name four different columns"
                )
        if self.variable == "event_combination":
            if self.p4_kind not in P4_KINDS:
                raise ConfigError(
                    f"analysis.p4_kind = '{self.p4_kind}' is unknown; use one of: "
                    f"{', '.join(P4_KINDS)}"
                )
            if not self.event_column or self.order_by == "":
                raise ConfigError(
                    "analysis.event_column and analysis.order_by must name columns "
                    "for variable = 'event_combination'"
                )
            if self.n_objects < 1:
                raise ConfigError(
                    f"analysis.n_objects = {self.n_objects} must be at least 1 (e.g. 3 for a "
                    "trijet mass)"
                )
        if len(self.fit_range) != 2:
            raise ConfigError(
                f"analysis.fit_range must be [low, high], got {self.fit_range!r}; "
                "e.g. [120.0, 230.0]"
            )
        lo, hi = (float(v) for v in self.fit_range)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError(
                f"analysis.fit_range {self.fit_range!r} must be finite numbers, e.g. [120.0, 230.0]"
            )
        if not lo < hi:
            raise ConfigError(
                f"analysis.fit_range {self.fit_range!r} is not increasing; give [low, high] "
                "with low < high"
            )
        if self.bins < 5:
            raise ConfigError(
                f"analysis.bins = {self.bins} is too few for a peak fit; use at least 5 "
                "(e.g. 55 for 2 GeV bins in 120-230 GeV)"
            )
        if self.bins > 100_000:
            raise ConfigError(f"analysis.bins = {self.bins} is absurdly many; use at most 100000")
        if self.peak not in peak_names():
            raise ConfigError(
                f"analysis.peak = '{self.peak}' is unknown; use one of: {', '.join(peak_names())}"
            )
        if self.background not in background_names():
            raise ConfigError(
                f"analysis.background = '{self.background}' is unknown; use one of: "
                f"{', '.join(background_names())}"
            )
        if self.min_entries < 1:
            raise ConfigError(
                f"analysis.min_entries = {self.min_entries} must be at least 1 (default 50)"
            )
        for cut in self.selection:
            validate_cut(cut)
        if not 0.0 <= self.min_p_value < 1.0:
            raise ConfigError(
                f"analysis.min_p_value = {self.min_p_value} must be in [0, 1), e.g. 0.001"
            )
        if self.bootstrap_replicas < 0 or 0 < self.bootstrap_replicas < 20:
            raise ConfigError(
                f"analysis.bootstrap_replicas = {self.bootstrap_replicas}: use 0 (no bootstrap) "
                "or at least 20 (default 200)"
            )
        if self.tagger_score or self.tagger_truth:
            if not (self.tagger_score and self.tagger_truth):
                raise ConfigError(
                    "analysis.tagger_score and analysis.tagger_truth go together; set both "
                    "(e.g. 'tau3/tau2' and 'top_matched') or neither"
                )
            validate_cut(self.tagger_score)
            if self.tagger_signal not in TAGGER_SIGNAL:
                raise ConfigError(
                    f"analysis.tagger_signal = '{self.tagger_signal}' is unknown; use 'low' "
                    "or 'high'"
                )
            if not self.tagger_background_rejection > 1.0:
                raise ConfigError(
                    f"analysis.tagger_background_rejection = "
                    f"{self.tagger_background_rejection} must be > 1, e.g. 10"
                )
