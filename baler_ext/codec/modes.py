"""Compression modes, registered by name (``[compression] mode``).

A mode turns a chunk's float matrix into named array sections and back. It gets the
trained model, the config's ``[compression]`` section and the device. Nothing here
imports torch: the ``latent`` mode and the ``autoencoder`` predictor import it when they
are used, so the classical bounded path and the learned probability model run without it.
"""

from __future__ import annotations

import decimal
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from baler_ext.codec import dither, relations
from baler_ext.codec.entropy import CODER_REGISTRY, narrowest
from baler_ext.codec.predictors import ChunkState
from baler_ext.codec.predictors.autoencoder import (
    AutoencoderPredictor,
    dequantise_latent,
    quantise_latent,
    run_batched,
)
from baler_ext.codec.predictors.centre import CentrePredictor, median_of_finite
from baler_ext.codec.predictors.linear import LinearPredictor
from baler_ext.codec.predictors.relation import RelationPredictor
from baler_ext.codec.probability import learned as lrn
from baler_ext.codec.probability.static import StaticModel, sections_under
from baler_ext.codec.relations import Relation
from baler_ext.codec.residuals import EPS_PRED, ColumnCoder, ColumnCodes, resolve_bounds
from baler_ext.config import CompressionConfig
from baler_ext.errors import ConfigError, ContainerError
from baler_ext.registry import Registry

log = logging.getLogger(__name__)

MODE_REGISTRY: Registry[type[CompressionMode]] = Registry("compression.mode", name_attr="name")

#: margin fraction of the bounded mode's column coders, see ColumnCoder (costs ~1e-4 bit)
DERIVED_MARGIN = 1e-4

#: rows on which ``latent_policy = "auto"`` decides whether a chunk keeps the latent
#: (chunks under four times as many rows are coded both ways)
DECIDE_ROWS = 8192
#: (1.3) the learned path's code streams: every learned column's uint32 words in coding
#: order, and per modelled column its word count + 1 (0: the column is coded statically)
PACKED_BITS = "lrn/bits"
PACKED_WORDS = "lrn/words"

LATENT_DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16}

__all__ = [
    "MODE_REGISTRY",
    "BoundedMode",
    "ChunkContext",
    "CompressionMode",
    "LatentMode",
    "dequantise_latent",
    "get_mode",
    "quantise_latent",
    "register_mode",
    "run_batched",
]


def register_mode(name: str) -> Callable[[type[CompressionMode]], type[CompressionMode]]:
    """Class decorator registering a compression mode under ``name``."""
    return MODE_REGISTRY.register(name)


def get_mode(name: str) -> type[CompressionMode]:
    """The compression mode class registered as ``name``."""
    return MODE_REGISTRY.get(name)


@dataclass
class ChunkContext:
    """What a mode may know about a chunk besides its float matrix.

    ``first`` marks the rows that start an event (objects of one event are consecutive);
    None when the rows have no event structure. ``integers`` are the integer columns
    stored losslessly in the same file, one value per row (see
    :func:`baler_ext.codec.events.row_integers`). Encoder and decoder must pass the same.
    """

    first: np.ndarray | None = None
    integers: dict[str, np.ndarray] | None = None


def _need(a: np.ndarray | None) -> np.ndarray:
    """``a``, which the chunk's sections must have provided."""
    if a is None:
        raise ContainerError("a chunk lacks the prediction its sections need; the file is damaged")
    return a


class CompressionMode:
    """Base class: ``encode`` a chunk to sections, ``decode`` them back."""

    name: str = ""
    #: whether the mode itself keeps every column within a bound (then columns that were
    #: constant in training need no lossless copy)
    bounded: bool = False

    def __init__(self, trained: Any, cfg: CompressionConfig, device: Any = None):
        self.trained = trained
        self.cfg = cfg
        self.device = device
        self.skip: set[str] = set()
        self._ae: AutoencoderPredictor | None = None

    @property
    def autoencoder(self) -> AutoencoderPredictor:
        """The autoencoder predictor (loads torch and the weights on first use)."""
        if self._ae is None:
            self._ae = AutoencoderPredictor(self.trained, self.device or "cpu")
        return self._ae

    def configure(self, column_dtypes: dict[str, str], lossless: set[str]) -> None:
        """Compress side: the columns' output dtypes and the columns stored verbatim (a mode
        that can keep values bit-exact itself also takes ``exact``: column -> sentinels)."""
        self.skip = set(lossless)

    def load_header(self, settings: dict[str, Any]) -> None:
        """Decompress side: restore the settings :meth:`header` wrote."""

    def section_level(self, name: str) -> int | None:
        """zstd level for section ``name`` (None: the configured level)."""
        return None

    def encode(
        self, values: np.ndarray, context: ChunkContext | None = None
    ) -> dict[str, np.ndarray]:
        """Full float64 matrix of a chunk -> named arrays to store."""
        raise NotImplementedError

    def decode(
        self, sections: dict[str, np.ndarray], n_rows: int, context: ChunkContext | None = None
    ) -> np.ndarray:
        """Stored arrays -> full float64 matrix of the chunk."""
        raise NotImplementedError

    def header(self) -> dict:
        """Mode settings written to the container header."""
        return {}

    def features(self) -> list[str]:
        """Container features a reader needs for this mode's sections (header ``features``)."""
        return []

    def needs_autoencoder(self) -> bool:
        """Whether decoding what this mode wrote runs the autoencoder's decoder."""
        return True

    def reconstruction(self) -> np.ndarray | None:
        """What the chunk of the last :meth:`encode` decodes to, when the encoder already
        knows it bit for bit (the columns in ``skip`` are left 0: they are stored
        losslessly beside); None when only a decode can tell."""
        return None


@register_mode("latent")
class LatentMode(CompressionMode):
    """Baler-compatible: store the latent only, cast to ``latent_dtype``; no error bound."""

    def encode(
        self, values: np.ndarray, context: ChunkContext | None = None
    ) -> dict[str, np.ndarray]:
        z = self.autoencoder.latent(values)
        return {"latent": z.astype(LATENT_DTYPES[self.cfg.latent_dtype])}

    def decode(
        self, sections: dict[str, np.ndarray], n_rows: int, context: ChunkContext | None = None
    ) -> np.ndarray:
        z = sections["latent"].astype(np.float64).reshape(n_rows, -1)
        ae = self.autoencoder
        x = run_batched(ae.model.decode, z, ae.dtype, ae.device)
        if len(z) == 0:
            x = np.empty((0, len(self.trained.normaliser.active)))
        return self.trained.normaliser.inverse(x)

    def header(self) -> dict:
        return {"latent_dtype": self.cfg.latent_dtype}


def ceil_significant(x: float, digits: int = 4) -> float:
    """``x`` rounded *up* to ``digits`` significant decimal digits: a header's measured
    errors stay upper bounds, and their JSON costs a few characters instead of 17.

    The decimal is rounded up exactly (``decimal``); the float parsed from it is the one
    nearest that decimal, which is no smaller than ``x`` (rounding is monotone and ``x``
    is a float not above the decimal)."""
    if not math.isfinite(x) or x == 0:
        return float(x)
    d = decimal.Decimal(x)
    q = decimal.Decimal(1).scaleb(d.adjusted() - digits + 1)
    return float(d.quantize(q, rounding=decimal.ROUND_CEILING))


def exception_gaps(rows: np.ndarray) -> np.ndarray:
    """The rows of a column's exceptions (ascending) as gaps, in the narrowest unsigned
    dtype: :math:`g_0 = r_0`, :math:`g_i = r_i - r_{i-1} - 1` (section ``exc_gap``).

    Dense exceptions such as a sentinel in 62 % of the CMS jets' b-tags cost ~1 bit
    each this way after zstd, against ~5 as uint32 rows (``exc_idx``, format 1.2)."""
    gaps = np.diff(rows.astype(np.int64), prepend=-1) - 1
    if gaps.size and int(gaps.min()) < 0:
        raise ValueError("exception rows must be strictly ascending")
    return narrowest(gaps)


def exception_rows(group: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
    """The exception rows of one column's sections: ``exc_gap`` (written since the
    ``bounded-exception-gaps`` feature) or ``exc_idx`` (older files)."""
    if "exc_gap" in group and "exc_idx" in group:
        raise ContainerError("a column has both exception gaps and rows; the file is damaged")
    if "exc_gap" not in group:
        return group.get("exc_idx", np.zeros(0, np.uint32))
    gaps = group["exc_gap"]
    if gaps.dtype.kind != "u" or gaps.ndim != 1 or (gaps.size and int(gaps.max()) >= n_rows):
        raise ContainerError("a column's exception gaps are malformed; the file is damaged")
    return np.cumsum(gaps.astype(np.int64) + 1) - 1


@dataclass
class _Encoded:
    sections: dict[str, np.ndarray]
    results: dict[str, ColumnCodes]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.sections.values())


@register_mode("bounded")
class BoundedMode(CompressionMode):
    """Every value within its bound: predictor + quantiser + probability model per column.

    Per chunk, each column is coded by a short plan (:meth:`plan`):

    * **learned** (format 1.2, when the trained model has a learned probability model and
      ``probability_model`` is not ``static``): every *independent* column is predicted
      by a constant anchor (``centre``), so its codes lie on one fixed, dithered grid,
      and the codes are entropy-coded with the rate-trained integer MADE
      (:mod:`baler_ext.codec.probability.learned`) in the model's coding order, or with
      a static histogram where that is smaller for the chunk; *derived* columns are
      predicted by their ``relation`` and coded with a static histogram;
    * **classical**: independent columns are predicted by the ``autoencoder``
      (``latent_policy``: per chunk the smaller of with/without latent), or else by the
      ``centre`` for the first column and a ``linear`` fit on the columns decoded before
      it for the rest; derived columns by their ``relation``; every stream with a static
      histogram.

    The decoder's prediction may differ from the encoder's by floating-point drift; the
    residual coder (:class:`~baler_ext.codec.residuals.ColumnCoder`) verifies every value
    with that drift and stores failures verbatim, so the bound never depends on the
    predictor nor on the probability model. With ``dither`` (default) the quantiser is
    subtractively dithered (:mod:`baler_ext.codec.dither`).
    """

    bounded = True

    def __init__(self, trained: Any, cfg: CompressionConfig, device: Any = None):
        super().__init__(trained, cfg, device)
        self.columns = list(trained.normaliser.columns)
        self.bits = cfg.latent_bits or 8
        self.coder_name = cfg.entropy_coder
        self.policy = cfg.latent_policy
        self.dither = bool(getattr(cfg, "dither", True))
        self.coders: list[ColumnCoder] = []
        self.stats: dict[str, dict[str, float]] = {}
        self.exact: dict[str, np.ndarray] = {}
        #: None until detected on the first chunk (compress) or read from the header
        self.relations: list[Relation] | None = None
        self.learned: lrn.LearnedModel | None = None
        #: escaped learned codes inside their streams (1.3) or in ``esc`` sections (1.2)
        self.inline_escapes = True
        self.latent_chunks = 0
        self.learned_chunks = 0
        self.chunks = 0
        #: the last encoded chunk's per-column results and row count (reconstruction)
        self._last: tuple[dict[str, ColumnCodes], int] | None = None
        self._dither_rows = -1
        self._dither: dict[str, np.ndarray] = {}
        choice = getattr(cfg, "probability_model", "auto")
        if choice != "static":
            self.learned = getattr(trained, "learned", None)
            if choice == "learned" and self.learned is None:
                raise ConfigError(
                    'compression.probability_model = "learned", but the trained '
                    "model has no learned probability model; retrain with "
                    "rate.enabled = true (--mode train)"
                )

    # -- set-up ------------------------------------------------------------------------
    def _magnitudes(self) -> list[float]:
        norm = self.trained.normaliser
        stats = dict(zip(norm.active, zip(norm.shift, norm.scale, strict=True), strict=True))
        out = []
        for c in self.columns:
            if c in norm.constants:
                out.append(abs(norm.constants[c]) or 1.0)
            else:
                shift, scale = stats[c]
                out.append(abs(shift) + 8 * abs(scale))
        return out

    def configure(
        self,
        column_dtypes: dict[str, str],
        lossless: set[str],
        exact: dict[str, np.ndarray] | None = None,
    ) -> None:
        """As the base class; values of a column equal to one of its ``exact`` values
        (sentinels such as -1 or -999) are stored bit-exact."""
        super().configure(column_dtypes, lossless)
        self.exact = {
            c: np.asarray(v, np.float64) for c, v in (exact or {}).items() if c in self.columns
        }
        bounds = resolve_bounds(self.cfg.bounds, self.columns)
        # every column may be predicted from decoded columns (relations, linear stack),
        # whose predictions drift more across devices than the model's: wider margin
        self.coders = [
            ColumnCoder(b, m, column_dtypes.get(c) == "float32", DERIVED_MARGIN)
            for c, b, m in zip(self.columns, bounds, self._magnitudes(), strict=True)
        ]
        for c, coder in zip(self.columns, self.coders, strict=True):
            if coder.kind == "raw":
                log.warning(
                    "column '%s': bound %s is too tight for float64 arithmetic; its "
                    "values are stored verbatim",
                    c,
                    coder.bound.to_dict(),
                )
        self.stats = {
            c: {"max_abs_error": 0.0, "max_error_over_bound": 0.0, "exceptions": 0}
            for c in self.columns
            if c not in self.skip
        }
        self.relations = [] if self.cfg.relations == "none" else None
        if self.cfg.relations != "none":
            relations.candidates(self.columns, self.cfg.relation_roles)  # validate roles
        if self.learned is not None and not self._learned_usable(bounds):
            self.learned = None

    def _learned_usable(self, bounds: list) -> bool:
        model = self.learned
        assert model is not None
        trained_bounds = model.settings.get("bounds", {})
        now = {c: b.to_dict() for c, b in zip(self.columns, bounds, strict=True)}
        if any(now.get(c) != trained_bounds.get(c) for c in model.columns):
            log.warning(
                "the learned probability model was trained for other bounds; coding "
                "with static histograms (retrain with --mode train to use it)"
            )
            return False
        if model.settings.get("dither", self.dither) != self.dither:
            log.warning(
                "the learned probability model was trained with dither %s and is used "
                "with dither %s: still exact, but larger (retrain to match)",
                model.settings.get("dither"),
                self.dither,
            )
        if any(c in self.skip or c not in self.columns for c in model.columns):
            log.warning(
                "the learned probability model covers columns stored losslessly "
                "here; coding with static histograms"
            )
            return False
        rels = [Relation.from_dict(r) for r in model.settings.get("relations", [])]
        if self.cfg.relations != "none":
            self.relations = [
                r for r in rels if r.target not in self.skip and not set(r.inputs) & self.skip
            ]
        return True

    def _setup_relations(self, values: np.ndarray) -> None:
        """Detect the relations on the first chunk."""
        usable = {
            c
            for c, col in zip(self.columns, self.coders, strict=True)
            if c not in self.skip and col.kind != "raw"
        }
        self.relations = relations.detect(
            values,
            self.columns,
            usable,
            self.cfg.relation_roles,
            preference=getattr(self.cfg, "relations", "auto"),
        )

    def header(self) -> dict:
        h = {
            "latent_bits": self.bits,
            "entropy_coder": self.coder_name,
            "eps_pred": EPS_PRED,
            "latent_policy": self.policy,
            "latent_chunks": self.latent_chunks,
            "dither": self.dither,
            "relations": [r.to_dict() for r in self.relations or []],
            "columns": {
                c: coder.settings() for c, coder in zip(self.columns, self.coders, strict=True)
            },
            "skip": sorted(self.skip),
            "stats": {
                c: {k: ceil_significant(v) if k != "exceptions" else v for k, v in st.items()}
                for c, st in self.stats.items()
            },
        }
        if self.learned is not None:
            h["learned"] = {
                "model_hash": self.trained.hash,
                "chunks": self.learned_chunks,
                "order": self.learned.columns,
                "event_context": self.learned.event_context,
                "latent": bool(self.learned.latent),
                # 1.3: escapes inside the streams, the streams packed in one section
                "escapes": "inline" if self.inline_escapes else "section",
            }
        return h

    def needs_autoencoder(self) -> bool:
        return self.latent_chunks > 0

    def features(self) -> list[str]:
        out = ["bounded-latent-policy", "bounded-relations", "bounded-exception-gaps"]
        if self.dither:
            out.append("bounded-dither")
        if self.learned is not None:
            out.append("bounded-learned")
        return out

    def load_header(self, settings: dict[str, Any]) -> None:
        try:
            self.bits = settings["latent_bits"]
            self.coder_name = settings["entropy_coder"]
            self.coders = [ColumnCoder.from_settings(settings["columns"][c]) for c in self.columns]
            self.skip = set(settings["skip"])
            self.relations = [Relation.from_dict(r) for r in settings.get("relations", [])]
            self.dither = bool(settings.get("dither", False))
            learned_info = settings.get("learned")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ContainerError(
                f"the bounded-mode settings in the header are incomplete "
                f"({exc!r}); the file is damaged"
            ) from None
        if self.coder_name not in CODER_REGISTRY:
            # a name read from a file is a property of the file, not of the config
            raise ContainerError(
                f"the file was coded with entropy coder {self.coder_name!r}, which this "
                f"version does not have (known: {', '.join(CODER_REGISTRY.names())}); the "
                "file is damaged or from a newer version"
            )
        for rel in self.relations:
            if any(c not in self.columns or c in self.skip for c in (rel.target, *rel.inputs)):
                raise ContainerError(
                    f"relation {rel.to_dict()} names unknown columns; the file is damaged"
                )
        if learned_info is None:
            self.learned = None
        else:
            model = getattr(self.trained, "learned", None)
            if model is None or learned_info.get("order") != model.columns:
                raise ContainerError(
                    "the file was coded with a learned probability model "
                    "that this project's model does not have; decompress "
                    "it with the model that compressed it"
                )
            self.learned = model
            # absent before 1.3: every escaped value sits in its column's ``esc`` section
            escapes = learned_info.get("escapes", "section")
            if escapes not in ("inline", "section"):
                raise ContainerError(
                    f"the learned streams' escapes are stored as {escapes!r}, which this "
                    "version does not know; the file is damaged or from a newer version"
                )
            self.inline_escapes = escapes == "inline"

    def section_level(self, name: str) -> int | None:
        # range-coded bits are incompressible; signs are nearly constant (level 3 is as
        # small as 19 there, several times faster)
        if name.endswith("/bits"):
            return 1
        return 3 if name.endswith("/sign") else None

    # -- the per-column plan --------------------------------------------------------------
    def _derived(self) -> set[str]:
        return {r.target for r in self.relations or []}

    def independent(self) -> list[str]:
        """Columns coded without a relation, in the model's coding order when learned."""
        derived = self._derived()
        cols = [
            c
            for c, coder in zip(self.columns, self.coders, strict=True)
            if c not in self.skip and c not in derived
        ]
        if self.learned is not None:
            order = [c for c in self.learned.columns if c in cols]
            return order + [c for c in cols if c not in order]
        return cols

    def plan(
        self, use_latent: bool = False, learned: bool | None = None
    ) -> list[tuple[str, str, str]]:
        """What each coded column uses: ``(column, predictor, probability model)``.

        ``learned`` defaults to whether a learned probability model is in use.
        """
        learned = self.learned is not None if learned is None else learned
        out = []
        for i, c in enumerate(self.independent()):
            if learned and self.learned is not None and c in self.learned.columns:
                out.append((c, "centre", "learned"))
            elif use_latent:
                out.append((c, "autoencoder", "static"))
            else:
                out.append((c, "centre" if i == 0 else "linear", "static"))
        modelled = set(self.learned.columns) if learned and self.learned is not None else set()
        out += [
            (r.target, "relation", "learned" if r.target in modelled else "static")
            for r in self.relations or []
        ]
        return out

    def _offsets(self, n: int, column: str) -> np.ndarray | None:
        """The column's dither offsets for a chunk of ``n`` rows, kept for the chunk
        (the encoder and a verifying decode share them: one chunk's worth of memory)."""
        if not self.dither:
            return None
        if self._dither_rows != n:
            self._dither_rows, self._dither = n, {}
        u = self._dither.get(column)
        if u is None:
            u = self._dither[column] = dither.offsets(n, self.columns.index(column))
            u.flags.writeable = False
        return u

    def _code(self, c: str, x: np.ndarray, p: np.ndarray, d: np.ndarray | None) -> ColumnCodes:
        i = self.columns.index(c)
        res = self.coders[i].encode(x, p, d, self._offsets(len(x), c))
        ex = self.exact.get(c)
        if ex is not None and ex.size and len(x):
            keep = np.isin(x, ex)
            keep[res.exc_index.astype(np.int64)] = False
            if keep.any():  # sentinels: stored verbatim, bit-exact
                rows = np.flatnonzero(keep)
                res.codes[rows] = 0
                if res.sign is not None:
                    res.sign[rows] = 0
                order = np.argsort(
                    np.concatenate([res.exc_index, rows.astype(np.uint32)]), kind="stable"
                )
                res.exc_index = np.concatenate([res.exc_index, rows.astype(np.uint32)])[order]
                res.exc_value = np.concatenate([res.exc_value, x[rows]])[order]
                assert res.decoded is not None and res.drift is not None
                res.decoded[rows] = x[rows]
                res.drift[rows] = 0.0
        return res

    def _code_static(
        self,
        out: dict[str, np.ndarray],
        results: dict[str, ColumnCodes],
        state: ChunkState,
        static: StaticModel,
        c: str,
        x: np.ndarray,
        p: np.ndarray,
        d: np.ndarray | None,
    ) -> None:
        """Quantise column ``c`` against ``p``, code its codes with a static histogram,
        store the sections and add the decoded column to ``state``."""
        res = self._code(c, x, p, d)
        for key, arr in static.encode(res.codes).items():
            out[f"res/{c}/{key}"] = arr
        self._put_extras(out, c, res)
        results[c] = res
        state.add(c, res.decoded, res.drift)

    @staticmethod
    def _put_extras(out: dict[str, np.ndarray], c: str, res: ColumnCodes) -> None:
        if res.sign is not None and res.sign.any():  # (1.3) all positive: no section
            out[f"res/{c}/sign"] = res.sign
        if res.exc_index.size:
            out[f"res/{c}/exc_gap"] = exception_gaps(res.exc_index)
            out[f"res/{c}/exc_val"] = res.exc_value

    # -- encode ----------------------------------------------------------------------------
    def _encode_classical(self, values: np.ndarray, use_latent: bool) -> _Encoded:
        static = StaticModel(self.coder_name)
        out: dict[str, np.ndarray] = {}
        state = ChunkState(len(values))
        results: dict[str, ColumnCodes] = {}
        pred_all: np.ndarray | None = None
        centre = CentrePredictor()
        linear = LinearPredictor(
            {c: col.magnitude for c, col in zip(self.columns, self.coders, strict=True)}
        )
        if use_latent:
            ae = self.autoencoder
            codes, lo, step = quantise_latent(ae.latent(values), self.bits)
            out.update({"latent/lo": lo, "latent/step": step})
            out.update(static.encode_columns(codes, "latent"))
            pred_all = ae.predict_all(dequantise_latent(codes, lo, step))
        else:
            out["pred/centre"] = np.array(
                [median_of_finite(values[:, i]) for i in range(values.shape[1])]
            )
        for c, predictor, _ in self.plan(use_latent, learned=False):
            i = self.columns.index(c)
            x = values[:, i]
            d = None
            if predictor == "autoencoder":
                assert pred_all is not None
                p = pred_all[:, i]
            elif predictor == "centre":
                p, _ = centre.predict(c, {"centre": out["pred/centre"][i : i + 1]}, state)
            elif predictor == "linear" and LinearPredictor.usable(len(x), len(state.order)):
                side = linear.fit(c, x, state)
                out[f"lin/{c}"] = side["beta"]
                p, d = linear.predict(c, side, state)
            elif predictor == "linear":
                p, _ = centre.predict(c, {"centre": out["pred/centre"][i : i + 1]}, state)
            else:
                rel = next(r for r in self.relations or [] if r.target == c)
                p, d = RelationPredictor(rel).predict(c, {}, state)
            self._code_static(out, results, state, static, c, x, p, d)
        return _Encoded(out, results)

    def _latent_pays(self, values: np.ndarray) -> bool | None:
        """``latent_policy = "auto"``: whether the chunk is smaller with the latent,
        decided by coding both ways on :data:`DECIDE_ROWS` evenly spaced rows (the full
        chunk is then coded once); ``None`` for chunks too small to sample, which are
        coded both ways."""
        n = len(values)
        if n < 4 * DECIDE_ROWS:
            return None
        sample = values[:: n // DECIDE_ROWS]
        with_latent = self._encode_classical(sample, True).nbytes
        return with_latent < self._encode_classical(sample, False).nbytes

    def latent_codes(self, values: np.ndarray) -> np.ndarray | None:
        """The learned model's latent side information of ``values`` (fixed grid)."""
        assert self.learned is not None
        spec = self.learned.latent
        if not spec:
            return None
        z = self.autoencoder.latent(values)
        lo, step = np.asarray(spec["lo"]), np.asarray(spec["step"])
        top = (1 << int(spec["bits"])) - 1
        with np.errstate(invalid="ignore"):
            zc = np.rint((np.where(np.isfinite(z), z, lo) - lo) / step)
        return np.clip(zc, 0, top).astype(np.int64)

    def learned_codes(
        self, values: np.ndarray
    ) -> tuple[np.ndarray, dict[str, ColumnCodes], np.ndarray]:
        """Codes of the learned model's columns (rows, D): the independent ones on their
        fixed dithered grids (anchored at the model's anchors), then the derived ones as
        residuals of their relations; the per-column results and the anchors. The train
        stage computes its training codes with this very function."""
        assert self.learned is not None
        model = self.learned
        anchors = np.asarray(model.settings["anchors"], np.float64)
        state = ChunkState(len(values))
        results = {}
        relation_of = {r.target: r for r in self.relations or []}
        for j, c in enumerate(model.columns):
            x = values[:, self.columns.index(c)]
            if j < anchors.size:
                res = self._code(c, x, np.full(len(x), anchors[j]), None)
            else:
                p, d = RelationPredictor(relation_of[c]).predict(c, {}, state)
                res = self._code(c, x, p, d)
            results[c] = res
            state.add(c, res.decoded, res.drift)
        codes = (
            np.stack([results[c].codes for c in model.columns], axis=1)
            if model.columns
            else np.zeros((len(values), 0), np.int64)
        )
        return codes, results, anchors

    def learned_dither(self, n_rows: int) -> np.ndarray | None:
        """The dither offsets of the learned model's columns, (rows, D)."""
        assert self.learned is not None
        if not self.dither:
            return None
        if not self.learned.columns:
            return np.zeros((n_rows, 0))
        return np.stack([_need(self._offsets(n_rows, c)) for c in self.learned.columns], axis=1)

    def aux_matrix(self, n_rows: int, context: ChunkContext | None) -> np.ndarray | None:
        """The learned model's auxiliary integer columns of a chunk, (rows, A)."""
        assert self.learned is not None
        names = self.learned.aux_names
        if not names:
            return None
        have = (context.integers if context is not None else None) or {}
        missing = [c for c in names if c not in have]
        if missing:
            raise ContainerError(
                f"the learned probability model takes the integer columns "
                f"{missing} as context, but they are not in the data; "
                "retrain with --mode train"
            )
        return (
            np.stack([have[c] for c in names], axis=1)
            if n_rows
            else np.zeros((0, len(names)), np.int64)
        )

    def _encode_learned(self, values: np.ndarray, context: ChunkContext | None) -> _Encoded:
        assert self.learned is not None
        model = self.learned
        static = StaticModel(self.coder_name)
        out: dict[str, np.ndarray] = {}
        codes, results, anchors = self.learned_codes(values)
        centre = np.array([median_of_finite(values[:, i]) for i in range(values.shape[1])])
        for j, a in enumerate(anchors):
            centre[self.columns.index(model.columns[j])] = a
        out["pred/centre"] = centre
        zc = self.latent_codes(values)
        if zc is not None:
            out.update(static.encode_columns(zc, "ctx/z"))
        first = context.first if context is not None else None
        streams = lrn.encode_codes(
            model,
            codes,
            first,
            zc,
            self.learned_dither(len(values)),
            self.aux_matrix(len(values), context),
            self.inline_escapes,
        )
        state = ChunkState(len(values))
        packed: list[np.ndarray] = []
        words = np.full(len(model.columns), -1, np.int64)  # -1: coded statically
        for j, c in enumerate(model.columns):
            alt = static.encode(codes[:, j])
            if StaticModel.nbytes(streams[j]) <= StaticModel.nbytes(alt):
                if self.inline_escapes:  # 1.3: one section of every column's words
                    packed.append(streams[j]["bits"])
                    words[j] = streams[j]["bits"].size
                else:
                    for key, arr in streams[j].items():
                        out[f"lrn/{c}/{key}"] = arr
            else:
                for key, arr in alt.items():
                    out[f"res/{c}/{key}"] = arr
            self._put_extras(out, c, results[c])
            state.add(c, results[c].decoded, results[c].drift)
        if self.inline_escapes:
            out[PACKED_BITS] = (
                np.concatenate(packed).astype(np.uint32) if packed else np.zeros(0, np.uint32)
            )
            out[PACKED_WORDS] = narrowest(words + 1)  # 0: static, else words + 1
        for c, predictor, prob in self.plan():
            if predictor != "relation" or prob == "learned":
                continue
            i = self.columns.index(c)
            rel = next(r for r in self.relations or [] if r.target == c)
            p, d = RelationPredictor(rel).predict(c, {}, state)
            self._code_static(out, results, state, static, c, values[:, i], p, d)
        return _Encoded(out, results)

    def encode(
        self, values: np.ndarray, context: ChunkContext | None = None
    ) -> dict[str, np.ndarray]:
        if self.relations is None:
            self._setup_relations(values)
        if self.learned is not None:
            chosen = self._encode_learned(values, context)
            self.learned_chunks += 1
        else:
            latent = self._latent_pays(values) if self.policy == "auto" else None
            options = []
            if latent is not False and self.policy in ("auto", "always") and len(values):
                options.append(self._encode_classical(values, True))
            if latent is not True and self.policy in ("auto", "never"):
                options.append(self._encode_classical(values, False))
            if not options:  # an empty chunk under "always"
                options.append(self._encode_classical(values, self.policy == "always"))
            chosen = min(options, key=lambda o: o.nbytes)
            self.latent_chunks += int("latent/lo" in chosen.sections)
        self.chunks += 1
        self._last = (chosen.results, len(values))
        for c, res in chosen.results.items():
            st = self.stats[c]
            st["max_abs_error"] = max(st["max_abs_error"], res.max_err)
            st["max_error_over_bound"] = max(st["max_error_over_bound"], res.max_ratio)
            st["exceptions"] += int(res.exc_index.size)
        return chosen.sections

    def reconstruction(self) -> np.ndarray | None:
        """The last chunk as the encoder reconstructed it: each column's
        :attr:`ColumnCodes.decoded`, computed by the decoder's own functions
        (``ColumnCoder._reconstruct`` on the same prediction, exceptions and sentinels
        written back), so decoding the chunk on this machine gives these bits."""
        if self._last is None:
            return None
        results, n = self._last
        out = np.zeros((n, len(self.columns)), order="F")  # as decode() returns it
        for i, c in enumerate(self.columns):
            res = results.get(c)
            if res is not None and res.decoded is not None:
                out[:, i] = res.decoded
            elif c not in self.skip:
                return None
        return out

    # -- decode ----------------------------------------------------------------------------
    _group = staticmethod(sections_under)

    def _restore(
        self, g: dict[str, np.ndarray], c: str, k: np.ndarray, p: np.ndarray, n_rows: int
    ) -> np.ndarray:
        """Column ``c`` from its codes ``k``, its sections ``g`` (``res/<c>/``) and ``p``."""
        i = self.columns.index(c)
        return self.coders[i].decode(
            k,
            g.get("sign"),
            exception_rows(g, n_rows),
            g.get("exc_val", np.zeros(0)),
            p,
            self._offsets(n_rows, c),
        )

    def decode(
        self, sections: dict[str, np.ndarray], n_rows: int, context: ChunkContext | None = None
    ) -> np.ndarray:
        """Restore the chunk (``context`` must equal the encoder's)."""
        static = StaticModel(self.coder_name)
        # column-major: each decoded column is written whole (8 ms less than the strided
        # columns of a row-major matrix on the shared jets), the writers read whole
        # columns, and the digest (XXH3) hashes the columns in turn
        out = np.zeros((n_rows, len(self.columns)), order="F")
        state = ChunkState(n_rows)
        try:
            pred_all = None
            centre = None
            if "latent/lo" in sections:
                lo, step = sections["latent/lo"], sections["latent/step"]
                codes = static.decode_columns(sections, "latent", lo.size, n_rows)
                pred_all = self.autoencoder.predict_all(dequantise_latent(codes, lo, step))
            else:
                centre = sections["pred/centre"]
                if centre.shape != (len(self.columns),):
                    raise ContainerError(
                        "the chunk's centre prediction has the wrong shape; the file is damaged"
                    )
            learned_codes = None
            if self.learned is not None:
                learned_codes = self._decode_learned(sections, n_rows, context)
            linear = LinearPredictor(
                {c: col.magnitude for c, col in zip(self.columns, self.coders, strict=True)}
            )
            for c in self.skip:
                i = self.columns.index(c)
                out[:, i] = pred_all[:, i] if pred_all is not None else _need(centre)[i]
            for c, predictor, prob in self.plan(pred_all is not None):
                i = self.columns.index(c)
                g = self._group(sections, f"res/{c}/")
                if prob == "learned":
                    model = self.learned
                    assert learned_codes is not None and model is not None
                    k = learned_codes[:, model.columns.index(c)]
                else:
                    k = static.decode(g, n_rows)
                if predictor == "relation":
                    rel = next(r for r in self.relations or [] if r.target == c)
                    p, _ = RelationPredictor(rel).predict(c, {}, state, with_drift=False)
                elif predictor == "autoencoder":
                    p = _need(pred_all)[:, i]
                elif f"lin/{c}" in sections:
                    p, _ = linear.predict(
                        c, {"beta": sections[f"lin/{c}"]}, state, with_drift=False
                    )
                else:
                    p, _ = CentrePredictor().predict(
                        c, {"centre": _need(centre)[i : i + 1]}, state, with_drift=False
                    )
                x = self._restore(g, c, k, p, n_rows)
                out[:, i] = x
                # the contiguous column, as the encoder's state holds it: the predictors
                # after it read it whole (a column of the row-major matrix is strided)
                state.add(c, x)
        except KeyError as exc:
            raise ContainerError(
                f"section {exc} is missing from a chunk; the file is damaged"
            ) from None
        return out

    def _learned_streams(
        self, sections: dict[str, np.ndarray], d: int
    ) -> list[dict[str, np.ndarray]]:
        """Each modelled column's stream sections (empty: coded statically): 1.3 cuts
        :data:`PACKED_BITS` by :data:`PACKED_WORDS`, 1.2 has ``lrn/<col>/`` sections."""
        assert self.learned is not None
        if not self.inline_escapes:
            return [self._group(sections, f"lrn/{c}/") for c in self.learned.columns]
        if PACKED_BITS not in sections or PACKED_WORDS not in sections:
            raise ContainerError("a chunk lacks its learned code streams; the file is damaged")
        bits = np.asarray(sections[PACKED_BITS]).reshape(-1)
        words = np.asarray(sections[PACKED_WORDS]).reshape(-1)
        if words.dtype.kind != "u":
            raise ContainerError("a chunk's learned stream lengths are not counts; damaged file")
        words = words.astype(np.int64) - 1
        # (a crafted uint64 count above 2^63 wraps below -1)
        if words.size != d or np.any(words < -1) or int(words[words > 0].sum()) != bits.size:
            raise ContainerError(
                "a chunk's learned stream lengths do not match its words; the file is damaged"
            )
        ends = np.cumsum(np.maximum(words, 0))
        return [
            {"bits": bits[e - n : e]} if n >= 0 else {}
            for n, e in zip(words.tolist(), ends.tolist(), strict=True)
        ]

    def _decode_learned(
        self, sections: dict[str, np.ndarray], n_rows: int, context: ChunkContext | None
    ) -> np.ndarray:
        model = self.learned
        assert model is not None
        static = StaticModel(self.coder_name)
        zc = None
        if model.latent:
            zc = static.decode_columns(sections, "ctx/z", model.n_latent, n_rows)
        known: dict[int, np.ndarray] = {}
        streams = self._learned_streams(sections, len(model.columns))
        for j, c in enumerate(model.columns):
            if not streams[j]:
                g_static = {
                    k: v
                    for k, v in self._group(sections, f"res/{c}/").items()
                    if k not in ("sign", "exc_idx", "exc_gap", "exc_val")
                }
                known[j] = static.decode(g_static, n_rows)
        first = context.first if context is not None else None
        return lrn.decode_codes(
            model,
            streams,
            n_rows,
            first,
            zc,
            known,
            self.learned_dither(n_rows),
            self.aux_matrix(n_rows, context),
            self.inline_escapes,
        )
