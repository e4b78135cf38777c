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

from baler_ext.codec.entropy import get_coder
from baler_ext.codec.residuals import EPS_PRED, ColumnCoder, resolve_bounds
from baler_ext.config import CompressionConfig
from baler_ext.errors import ConfigError, ContainerError
from baler_ext.model_store import TrainedModel

log = logging.getLogger(__name__)

MODE_REGISTRY: dict[str, type[CompressionMode]] = {}

LATENT_DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def register_mode(name: str) -> Callable[[type[CompressionMode]], type[CompressionMode]]:
    """Class decorator registering a compression mode under ``name``."""

    def decorator(cls: type[CompressionMode]) -> type[CompressionMode]:
        MODE_REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorator


def get_mode(name: str) -> type[CompressionMode]:
    try:
        return MODE_REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown compression.mode '{name}'; valid modes: {', '.join(MODE_REGISTRY)}"
        ) from None


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
    """

    bounded = True

    def __init__(self, trained: TrainedModel, cfg: CompressionConfig, device: torch.device):
        super().__init__(trained, cfg, device)
        self.decoder64 = copy.deepcopy(self.model).to(torch.float64).eval()
        self.columns = list(trained.normaliser.columns)
        self.bits = cfg.latent_bits or 8
        self.coder_name = cfg.entropy_coder
        self.coders: list[ColumnCoder] = []
        self.stats: dict[str, dict[str, float]] = {}

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
        self.coders = [ColumnCoder(b, m, column_dtypes.get(c) == "float32")
                       for c, b, m in zip(self.columns, bounds, self._magnitudes(), strict=True)]
        for c, coder in zip(self.columns, self.coders, strict=True):
            if coder.kind == "raw":
                log.warning("column '%s': bound %s is too tight for float64 arithmetic; its "
                            "values are stored verbatim", c, coder.bound.to_dict())
        self.stats = {c: {"max_abs_error": 0.0, "max_error_over_bound": 0.0, "exceptions": 0}
                      for c in self.columns if c not in self.skip}

    def header(self) -> dict:
        return {"latent_bits": self.bits, "entropy_coder": self.coder_name,
                "eps_pred": EPS_PRED,
                "columns": {c: coder.settings()
                            for c, coder in zip(self.columns, self.coders, strict=True)},
                "skip": sorted(self.skip), "stats": self.stats}

    def load_header(self, settings: dict[str, Any]) -> None:
        try:
            self.bits = settings["latent_bits"]
            self.coder_name = settings["entropy_coder"]
            self.coders = [ColumnCoder.from_settings(settings["columns"][c])
                           for c in self.columns]
            self.skip = set(settings["skip"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ContainerError(f"the bounded-mode settings in the header are incomplete "
                                 f"({exc!r}); the file is damaged") from None

    def section_level(self, name: str) -> int | None:
        return 1 if name.endswith("/bits") else None

    def predict(self, zq: np.ndarray) -> np.ndarray:
        """The float64 prediction of the full matrix from the dequantised latent."""
        x = run_batched(self.decoder64.decode, zq, torch.float64, self.device)
        if len(zq) == 0:
            x = np.empty((0, len(self.trained.normaliser.active)))
        return self.trained.normaliser.inverse(x)

    def encode(self, values: np.ndarray) -> dict[str, np.ndarray]:
        coder = get_coder(self.coder_name)
        codes, lo, step = quantise_latent(self.latent(values), self.bits)
        out: dict[str, np.ndarray] = {"latent/lo": lo, "latent/step": step}
        for j in range(codes.shape[1]):
            for key, arr in coder.encode(codes[:, j]).items():
                out[f"latent/{j}/{key}"] = arr
        pred = self.predict(dequantise_latent(codes, lo, step))
        for i, (c, col) in enumerate(zip(self.columns, self.coders, strict=True)):
            if c in self.skip:
                continue
            res = col.encode(values[:, i], pred[:, i])
            for key, arr in coder.encode(res.codes).items():
                out[f"res/{c}/{key}"] = arr
            if res.sign is not None:
                out[f"res/{c}/sign"] = res.sign
            if res.exc_index.size:
                out[f"res/{c}/exc_idx"] = res.exc_index
                out[f"res/{c}/exc_val"] = res.exc_value
            st = self.stats[c]
            st["max_abs_error"] = max(st["max_abs_error"], res.max_err)
            st["max_error_over_bound"] = max(st["max_error_over_bound"], res.max_ratio)
            st["exceptions"] += int(res.exc_index.size)
        return out

    @staticmethod
    def _group(sections: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: v for k, v in sections.items() if k.startswith(prefix)}

    def decode(self, sections: dict[str, np.ndarray], n_rows: int,
               perturb: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Restore the chunk; ``perturb`` (tests only) alters the prediction first."""
        coder = get_coder(self.coder_name)
        try:
            lo, step = sections["latent/lo"], sections["latent/step"]
            codes = np.stack([coder.decode(self._group(sections, f"latent/{j}/"), n_rows)
                              for j in range(lo.size)], axis=1) if n_rows else \
                np.zeros((0, lo.size), np.int64)
            pred = self.predict(dequantise_latent(codes, lo, step))
            if perturb is not None:
                pred = perturb(pred)
            out = np.empty_like(pred)
            empty_i, empty_f = np.zeros(0, np.uint32), np.zeros(0)
            for i, (c, col) in enumerate(zip(self.columns, self.coders, strict=True)):
                if c in self.skip:
                    out[:, i] = pred[:, i]
                    continue
                g = self._group(sections, f"res/{c}/")
                k = coder.decode(g, n_rows)
                out[:, i] = col.decode(k, g.get("sign"), g.get("exc_idx", empty_i),
                                       g.get("exc_val", empty_f), pred[:, i])
        except KeyError as exc:
            raise ContainerError(f"section {exc} is missing from a chunk; the file is "
                                 "damaged") from None
        return out
