"""The ``autoencoder`` predictor: the trained autoencoder's reconstruction (needs torch).

The encoder quantises the latent of each row per chunk
(:math:`\\Delta_j = (\\max_j z - \\min_j z) / (2^{b} - 1)`,
:math:`c = \\mathrm{rint}((z - \\min_j z) / \\Delta_j)`), stores the codes, and both sides
predict every column from the *dequantised* latent :math:`\\hat z = \\min_j z + c\\Delta_j`
through the float64 decoder, so the predictions agree up to floating-point drift, which
the residual coder's margin absorbs (:mod:`baler_ext.codec.residuals`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from baler_ext.codec.predictors import Predictor, register_predictor
from baler_ext.devices import resolve_device


def run_batched(
    fn: Callable[[Any], Any], x: np.ndarray, dtype: Any, device: Any, batch_size: int = 65536
) -> np.ndarray:
    """Apply ``fn`` to ``x`` in batches on ``device`` without gradients; float64 numpy."""
    import torch

    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[start : start + batch_size], dtype=dtype, device=device)
            outs.append(fn(xb).to("cpu", torch.float64).numpy())
    if not outs:
        return np.empty((0, 0))
    return np.concatenate(outs)


def quantise_latent(z: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform ``bits``-bit quantiser per latent dimension over the chunk's range.

    Non-finite latents become 0. Returns ``(codes, lo, step)``.
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


@register_predictor("autoencoder")
class AutoencoderPredictor(Predictor):
    """The float64 decoder's output from the dequantised latent, for all columns at once
    (:meth:`predict_all`); ``trained`` is a :class:`~baler_ext.model_store.TrainedModel`."""

    name = "autoencoder"

    def __init__(self, trained: Any, device: Any) -> None:
        import torch

        self.trained = trained
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = trained.model.to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype
        self.decoder64 = copy.deepcopy(self.model).to(torch.float64).eval()

    def latent(self, values: np.ndarray) -> np.ndarray:
        """The latent of ``values`` (full matrix, raw units) as float64."""
        z = self.trained.normaliser.transform(values)
        return run_batched(self.model.encode, z, self.dtype, self.device)

    def predict_all(self, zq: np.ndarray) -> np.ndarray:
        """The float64 prediction of the full matrix from the dequantised latent."""
        import torch

        x = run_batched(self.decoder64.decode, zq, torch.float64, self.device)
        if len(zq) == 0:
            x = np.empty((0, len(self.trained.normaliser.active)))
        return self.trained.normaliser.inverse(x)
