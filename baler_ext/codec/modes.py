"""Compression modes, registered by name (``[compression] mode``).

A mode turns a chunk's float matrix into named array sections and back. It gets
the trained model, the config's ``[compression]`` section and the device.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from baler_ext.codec import relations
from baler_ext.codec.entropy import get_coder
from baler_ext.codec.relations import Relation
from baler_ext.codec.residuals import EPS_PRED, ColumnCoder, ColumnCodes, resolve_bounds
from baler_ext.config import CompressionConfig
from baler_ext.errors import ContainerError
from baler_ext.model_store import TrainedModel
from baler_ext.registry import Registry

log = logging.getLogger(__name__)

MODE_REGISTRY: Registry[type[CompressionMode]] = Registry("compression.mode", name_attr="name")

#: margin fraction of the bounded mode's column coders, see ColumnCoder (costs ~1e-4 bit)
DERIVED_MARGIN = 1e-4
#: the no-latent path fits a linear predictor only with this many rows per coefficient
MIN_ROWS_PER_FEATURE = 8
#: rows used to fit the linear predictor of a column (evenly spaced)
FIT_ROWS = 8192
#: ridge strength of that fit, relative to the mean diagonal of the Gram matrix
RIDGE = 1e-6

LATENT_DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def register_mode(name: str) -> Callable[[type[CompressionMode]], type[CompressionMode]]:
    """Class decorator registering a compression mode under ``name``."""
    return MODE_REGISTRY.register(name)


def get_mode(name: str) -> type[CompressionMode]:
    """The compression mode class registered as ``name``."""
    return MODE_REGISTRY.get(name)


@torch.no_grad()
def run_batched(fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, dtype: torch.dtype,
                device: torch.device, batch_size: int = 65536) -> np.ndarray:
    """Apply ``fn`` to ``x`` in batches on ``device``; return float64 numpy."""
    outs = []
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[start : start + batch_size], dtype=dtype, device=device)
        outs.append(fn(xb).to("cpu", torch.float64).numpy())
    if not outs:
        return np.empty((0, 0))
    return np.concatenate(outs)


class CompressionMode:
    """Base class: ``encode`` a normalised chunk to sections, ``decode`` them back."""

    name: str = ""
    #: whether the mode itself keeps every column within a bound (then columns that were
    #: constant in training need no lossless copy)
    bounded: bool = False

    def __init__(self, trained: TrainedModel, cfg: CompressionConfig, device: torch.device):
        self.trained = trained
        self.cfg = cfg
        self.device = device
        self.model = trained.model.to(device).eval()
        self.dtype = next(self.model.parameters()).dtype
        self.skip: set[str] = set()

    def configure(self, column_dtypes: dict[str, str], lossless: set[str]) -> None:
        """Compress side: the columns' output dtypes and the columns stored verbatim."""
        self.skip = set(lossless)

    def load_header(self, settings: dict[str, Any]) -> None:
        """Decompress side: restore the settings :meth:`header` wrote."""

    def section_level(self, name: str) -> int | None:
        """zstd level for section ``name`` (None: the configured level)."""
        return None

    def encode(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Full float64 matrix of a chunk -> named arrays to store."""
        raise NotImplementedError

    def decode(self, sections: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
        """Stored arrays -> full float64 matrix of the chunk."""
        raise NotImplementedError

    def header(self) -> dict:
        """Mode settings written to the container header."""
        return {}

    def features(self) -> list[str]:
        """Container features a reader needs for this mode's sections (header ``features``)."""
        return []

    def latent(self, values: np.ndarray) -> np.ndarray:
        """The latent of ``values`` (full matrix) as float64."""
        z = self.trained.normaliser.transform(values)
        return run_batched(self.model.encode, z, self.dtype, self.device)

    def reconstruct(self, latent: np.ndarray) -> np.ndarray:
        """Decoder output for ``latent``, inverse-normalised to the full matrix."""
        x = run_batched(self.model.decode, latent, self.dtype, self.device)
        if len(latent) == 0:
            x = np.empty((0, len(self.trained.normaliser.active)))
        return self.trained.normaliser.inverse(x)


@register_mode("latent")
class LatentMode(CompressionMode):
    """Baler-compatible: store the latent only, cast to ``latent_dtype``; no error bound."""

    def encode(self, values: np.ndarray) -> dict[str, np.ndarray]:
        z = self.latent(values)
        return {"latent": z.astype(LATENT_DTYPES[self.cfg.latent_dtype])}

    def decode(self, sections: dict[str, np.ndarray], n_rows: int) -> np.ndarray:
        z = sections["latent"].astype(np.float64).reshape(n_rows, -1)
        return self.reconstruct(z)

    def header(self) -> dict:
        return {"latent_dtype": self.cfg.latent_dtype}


def quantise_latent(z: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform ``bits``-bit quantiser per latent dimension over the chunk's range.

    :math:`\\Delta_j = (\\max_j z - \\min_j z) / (2^{bits} - 1)`,
    :math:`c = \\mathrm{rint}((z - \\min_j z) / \\Delta_j)`; non-finite latents become 0.
    Returns ``(codes, lo, step)``.
    """
    z = np.where(np.isfinite(z), z, 0.0)
    if len(z) == 0:
        return np.zeros(z.shape, np.int64), np.zeros(z.shape[1]), np.ones(z.shape[1])
    lo, hi = z.min(axis=0), z.max(axis=0)
    step = (hi - lo) / (2**bits - 1)
    step = np.where((step > 0) & np.isfinite(step), step, 1.0)
    codes = np.rint((z - lo) / step).astype(np.int64)
    return codes, lo, step


def dequantise_latent(codes: np.ndarray, lo: np.ndarray, step: np.ndarray) -> np.ndarray:
    """:math:`\\hat z = \\min_j z + c\\,\\Delta_j` (identical on every device)."""
    return lo + codes.astype(np.float64) * step


@register_mode("bounded")
class BoundedMode(CompressionMode):
    """Quantised, entropy-coded latent plus residuals that keep every value within its bound.

    The decoder's prediction :math:`p` of each value is computed in float64 from the
    *dequantised* latent (the same numbers on both sides); :class:`ColumnCoder` codes
    :math:`x` against :math:`p` within the column's bound with a margin that absorbs
    device/BLAS differences in :math:`p`, verifies each value through the exact decode
    path, and stores failures verbatim. See :mod:`baler_ext.codec.residuals`.

    Two predictor stages (format 1.1):

    * **latent policy** (``[compression] latent_policy``): per chunk the mode codes the
      independent columns against the autoencoder's prediction *and* against the chunk's
      per-column median (``pred/centre``, no latent stored) and keeps the smaller
      (``auto``), or always uses one (``always`` / ``never``). The latent is not free: when
      the model's prediction saves fewer residual bits than the latent costs, ``auto``
      drops it.
    * **relations** (``[compression] relations``, :mod:`baler_ext.codec.relations`):
      derived columns (px, py, pz, energy, the last of a sum-to-one group) are predicted
      from the already *decoded* independent columns; their residual coder verifies each
      value with the propagated cross-device drift of that prediction.
    """

    bounded = True

    def __init__(self, trained: TrainedModel, cfg: CompressionConfig, device: torch.device):
        super().__init__(trained, cfg, device)
        self.decoder64 = copy.deepcopy(self.model).to(torch.float64).eval()
        self.columns = list(trained.normaliser.columns)
        self.bits = cfg.latent_bits or 8
        self.coder_name = cfg.entropy_coder
        self.policy = cfg.latent_policy
        self.coders: list[ColumnCoder] = []
        self.stats: dict[str, dict[str, float]] = {}
        #: None until detected on the first chunk (compress) or read from the header
        self.relations: list[Relation] | None = None
        self.latent_chunks = 0
        self.chunks = 0

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

    def configure(self, column_dtypes: dict[str, str], lossless: set[str]) -> None:
        super().configure(column_dtypes, lossless)
        bounds = resolve_bounds(self.cfg.bounds, self.columns)
        # every column may be predicted from decoded columns (relations, linear stack),
        # whose predictions drift more across devices than the model's: wider margin
        self.coders = [ColumnCoder(b, m, column_dtypes.get(c) == "float32", DERIVED_MARGIN)
                       for c, b, m in zip(self.columns, bounds, self._magnitudes(), strict=True)]
        for c, coder in zip(self.columns, self.coders, strict=True):
            if coder.kind == "raw":
                log.warning("column '%s': bound %s is too tight for float64 arithmetic; its "
                            "values are stored verbatim", c, coder.bound.to_dict())
        self.stats = {c: {"max_abs_error": 0.0, "max_error_over_bound": 0.0, "exceptions": 0}
                      for c in self.columns if c not in self.skip}
        self.relations = [] if self.cfg.relations == "none" else None
        if self.cfg.relations != "none":
            relations.candidates(self.columns, self.cfg.relation_roles)  # validate roles

    def _setup_relations(self, values: np.ndarray) -> None:
        """Detect the relations on the first chunk."""
        usable = {c for c, col in zip(self.columns, self.coders, strict=True)
                  if c not in self.skip and col.kind != "raw"}
        self.relations = relations.detect(values, self.columns, usable, self.cfg.relation_roles)

    def header(self) -> dict:
        return {"latent_bits": self.bits, "entropy_coder": self.coder_name,
                "eps_pred": EPS_PRED, "latent_policy": self.policy,
                "latent_chunks": self.latent_chunks,
                "relations": [r.to_dict() for r in self.relations or []],
                "columns": {c: coder.settings()
                            for c, coder in zip(self.columns, self.coders, strict=True)},
                "skip": sorted(self.skip), "stats": self.stats}

    def features(self) -> list[str]:
        return ["bounded-latent-policy", "bounded-relations"]

    def load_header(self, settings: dict[str, Any]) -> None:
        try:
            self.bits = settings["latent_bits"]
            self.coder_name = settings["entropy_coder"]
            self.coders = [ColumnCoder.from_settings(settings["columns"][c])
                           for c in self.columns]
            self.skip = set(settings["skip"])
            self.relations = [Relation.from_dict(r) for r in settings.get("relations", [])]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ContainerError(f"the bounded-mode settings in the header are incomplete "
                                 f"({exc!r}); the file is damaged") from None
        for rel in self.relations:
            if any(c not in self.columns or c in self.skip for c in (rel.target, *rel.inputs)):
                raise ContainerError(f"relation {rel.to_dict()} names unknown columns; the "
                                     "file is damaged")

    def section_level(self, name: str) -> int | None:
        # range-coded bits are incompressible; signs are nearly constant (level 3 is as
        # small as 19 there, several times faster)
        if name.endswith("/bits"):
            return 1
        return 3 if name.endswith("/sign") else None

    def predict(self, zq: np.ndarray) -> np.ndarray:
        """The float64 prediction of the full matrix from the dequantised latent."""
        x = run_batched(self.decoder64.decode, zq, torch.float64, self.device)
        if len(zq) == 0:
            x = np.empty((0, len(self.trained.normaliser.active)))
        return self.trained.normaliser.inverse(x)

    @staticmethod
    def centre(values: np.ndarray) -> np.ndarray:
        """Per-column median of the finite values (0 where none): the model-free prediction."""
        out = np.zeros(values.shape[1])
        for j in range(values.shape[1]):
            v = values[:, j]
            v = v[np.isfinite(v)]
            if v.size:
                out[j] = float(np.median(v))
        return out

    def _features(self, decoded: dict[str, np.ndarray], previous: list[str],
                  drift: dict[str, np.ndarray] | None = None, rows: slice = slice(None)
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """Design matrix [1, f, f^2 per previous column], f = decoded / magnitude, and
        (with ``drift``) a bound on how much each entry may differ on another device."""
        n = len(decoded[previous[0]][rows])
        cols, dcols = [np.ones(n)], [np.zeros(n)]
        with np.errstate(all="ignore"):
            for c in previous:
                scale = self.coders[self.columns.index(c)].magnitude
                v = decoded[c][rows]
                usable = np.isfinite(v) & (np.abs(v) < 1e300)
                f = np.where(usable, v, 0.0) / scale
                cols += [f, f * f]
                if drift is not None:
                    df = np.where(usable, drift[c][rows], 0.0) / scale
                    dcols += [df, (2 * np.abs(f) + df) * df]
        a = np.column_stack(cols)
        return a, (np.column_stack(dcols) if drift is not None else None)

    def _fit_linear(self, x: np.ndarray, decoded: dict[str, np.ndarray],
                    previous: list[str]) -> np.ndarray:
        """Least-squares coefficients of ``x`` on the features of the decoded columns
        (fitted on at most :data:`FIT_ROWS` evenly spaced rows)."""
        rows = slice(None, None, max(1, len(x) // FIT_ROWS))
        a, _ = self._features(decoded, previous, rows=rows)
        x = x[rows]
        ok = np.isfinite(x) & (np.abs(x) < 1e300)
        beta = np.zeros(a.shape[1])
        if ok.sum() >= a.shape[1]:
            # ridge normal equations: small coefficients keep the drift bound small when
            # features are (nearly) collinear
            a, x = a[ok], x[ok]
            # einsum, not BLAS: multi-threaded BLAS on tiny products is slow under load
            gram = np.einsum("ij,ik->jk", a, a)
            gram[np.diag_indices_from(gram)] += RIDGE * (np.trace(gram) / len(gram) + 1e-300)
            with np.errstate(all="ignore"):
                try:
                    sol = np.linalg.solve(gram, np.einsum("ij,i->j", a, x))
                except np.linalg.LinAlgError:
                    sol = beta
            if np.all(np.isfinite(sol)):
                beta = sol
        return beta

    def _linear(self, beta: np.ndarray, decoded: dict[str, np.ndarray], previous: list[str],
                drift: dict[str, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Prediction ``A @ beta`` and (with ``drift``) its cross-device drift bound
        :math:`d = 2 \\sum_j |\\beta_j| \\delta A_j + 10^{-15} J \\sum_j |\\beta_j A_j|`."""
        a, da = self._features(decoded, previous, drift)
        if beta.shape != (a.shape[1],):
            raise ContainerError("a linear predictor has the wrong number of coefficients; "
                                 "the file is damaged")
        with np.errstate(all="ignore"):
            p = np.einsum("ij,j->i", a, beta)
            if da is None:
                return p, None
            # any summation order errs by at most J u sum|beta_j a_j| (u = 1.1e-16)
            d = 2 * np.einsum("ij,j->i", da, np.abs(beta)) + 1e-15 * a.shape[1] * np.einsum(
                "ij,j->i", np.abs(a), np.abs(beta))
        return p, d

    def _derived(self) -> set[str]:
        return {r.target for r in self.relations or []}

    def _encode_with(self, values: np.ndarray, use_latent: bool
                     ) -> tuple[dict[str, np.ndarray], dict[str, ColumnCodes]]:
        coder = get_coder(self.coder_name)
        out: dict[str, np.ndarray] = {}
        if use_latent:
            codes, lo, step = quantise_latent(self.latent(values), self.bits)
            out.update({"latent/lo": lo, "latent/step": step})
            for j in range(codes.shape[1]):
                for key, arr in coder.encode(codes[:, j]).items():
                    out[f"latent/{j}/{key}"] = arr
            pred = self.predict(dequantise_latent(codes, lo, step))
        else:
            centre = self.centre(values)
            out["pred/centre"] = centre
            pred = np.broadcast_to(centre, values.shape)
        derived = self._derived()
        results: dict[str, ColumnCodes] = {}
        decoded: dict[str, np.ndarray] = {}
        drift: dict[str, np.ndarray] = {}
        previous: list[str] = []

        def put(c: str, res: ColumnCodes) -> None:
            for key, arr in coder.encode(res.codes).items():
                out[f"res/{c}/{key}"] = arr
            if res.sign is not None:
                out[f"res/{c}/sign"] = res.sign
            if res.exc_index.size:
                out[f"res/{c}/exc_idx"] = res.exc_index
                out[f"res/{c}/exc_val"] = res.exc_value
            results[c] = res
            decoded[c], drift[c] = res.decoded, res.drift

        for i, (c, col) in enumerate(zip(self.columns, self.coders, strict=True)):
            if c in self.skip or c in derived:
                continue
            if use_latent or not previous or len(values) < MIN_ROWS_PER_FEATURE * (
                    1 + 2 * len(previous)):
                put(c, col.encode(values[:, i], pred[:, i]))
            else:
                beta = self._fit_linear(values[:, i], decoded, previous)
                p, d = self._linear(beta, decoded, previous, drift)
                out[f"lin/{c}"] = beta
                put(c, col.encode(values[:, i], p, d))
            previous.append(c)
        for rel in self.relations or []:
            i = self.columns.index(rel.target)
            p, d = relations.predict(rel, decoded, drift)
            put(rel.target, self.coders[i].encode(values[:, i], p, d))
        return out, results

    def encode(self, values: np.ndarray) -> dict[str, np.ndarray]:
        if self.relations is None:
            self._setup_relations(values)
        options = []
        if self.policy in ("auto", "always") and not (self.policy == "auto" and len(values) == 0):
            options.append(self._encode_with(values, True))
        if self.policy in ("auto", "never"):
            options.append(self._encode_with(values, False))
        out, results = min(options, key=lambda o: sum(a.nbytes for a in o[0].values()))
        self.chunks += 1
        self.latent_chunks += int("latent/lo" in out)
        for c, res in results.items():
            st = self.stats[c]
            st["max_abs_error"] = max(st["max_abs_error"], res.max_err)
            st["max_error_over_bound"] = max(st["max_error_over_bound"], res.max_ratio)
            st["exceptions"] += int(res.exc_index.size)
        return out

    @staticmethod
    def _group(sections: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: v for k, v in sections.items() if k.startswith(prefix)}

    def decode(self, sections: dict[str, np.ndarray], n_rows: int,
               perturb: Callable[[np.ndarray], np.ndarray] | None = None,
               perturb_relation: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
               ) -> np.ndarray:
        """Restore the chunk.

        ``perturb`` (tests only) alters the model/centre prediction first;
        ``perturb_relation(p, d)`` (tests only) alters each relation prediction ``p``
        within its own drift allowance ``d`` (the drift of the decoded inputs themselves
        follows from ``perturb``).
        """
        coder = get_coder(self.coder_name)
        try:
            if "latent/lo" in sections:
                lo, step = sections["latent/lo"], sections["latent/step"]
                codes = np.stack([coder.decode(self._group(sections, f"latent/{j}/"), n_rows)
                                  for j in range(lo.size)], axis=1) if n_rows else \
                    np.zeros((0, lo.size), np.int64)
                pred = self.predict(dequantise_latent(codes, lo, step))
            else:
                centre = sections["pred/centre"]
                if centre.shape != (len(self.columns),):
                    raise ContainerError("the chunk's centre prediction has the wrong shape; "
                                         "the file is damaged")
                pred = np.repeat(centre[None, :], n_rows, axis=0)
            if perturb is not None:
                pred = perturb(pred)
            out = np.empty_like(pred)
            empty_i, empty_f = np.zeros(0, np.uint32), np.zeros(0)
            derived = self._derived()

            def restore(i: int, c: str, p: np.ndarray) -> None:
                g = self._group(sections, f"res/{c}/")
                k = coder.decode(g, n_rows)
                out[:, i] = self.coders[i].decode(k, g.get("sign"), g.get("exc_idx", empty_i),
                                                  g.get("exc_val", empty_f), p)

            previous: list[str] = []
            for i, c in enumerate(self.columns):
                if c in self.skip:
                    out[:, i] = pred[:, i]
                elif c not in derived:
                    if f"lin/{c}" in sections:
                        v = {name: out[:, self.columns.index(name)] for name in previous}
                        p, _ = self._linear(sections[f"lin/{c}"], v, previous)
                        if perturb_relation is not None:
                            _, d = self._linear(sections[f"lin/{c}"], v, previous,
                                                {name: np.zeros(n_rows) for name in previous})
                            p = perturb_relation(p, d)
                    else:
                        p = pred[:, i]
                    restore(i, c, p)
                    previous.append(c)
            for rel in self.relations or []:
                v = {c: out[:, self.columns.index(c)] for c in rel.inputs}
                if perturb_relation is None:
                    p, _ = relations.predict(rel, v, {c: np.zeros(n_rows) for c in v})
                else:
                    p, d = relations.predict(rel, v, {c: np.zeros(n_rows) for c in v})
                    p = perturb_relation(p, d)
                restore(self.columns.index(rel.target), rel.target, p)
        except KeyError as exc:
            raise ContainerError(f"section {exc} is missing from a chunk; the file is "
                                 "damaged") from None
        return out
