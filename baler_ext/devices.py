"""Which torch device a config's ``device = "auto" | "cpu" | "cuda" | ...`` means.

Its own module so that anything needing a device (training, the autoencoder predictor
of the codec, the rate and evaluate stages) can ask without importing the training
loop; torch is imported inside the function, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baler_ext.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error.

    Raises
    ------
    ConfigError
        When ``cuda`` is asked for and no CUDA GPU is available.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use cpu")
    return torch.device(name)
