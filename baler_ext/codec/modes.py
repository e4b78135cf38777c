"""Compression modes, registered by name (``[compression] mode``).

A mode turns a chunk's float matrix into named array sections and back. It gets
the trained model, the config's ``[compression]`` section and the device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from baler_ext.config import CompressionConfig
from baler_ext.errors import ConfigError
from baler_ext.model_store import TrainedModel

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

    def __init__(self, trained: TrainedModel, cfg: CompressionConfig, device: torch.device):
        self.trained = trained
        self.cfg = cfg
        self.device = device
        self.model = trained.model.to(device).eval()
        self.dtype = next(self.model.parameters()).dtype

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
