"""Autoencoder models; importing this package registers every model family."""

from baler_ext.models import aae, sae, vae, vqvae, wae  # noqa: F401
from baler_ext.models.base import Autoencoder, build_model, latent_size
from baler_ext.models.registry import MODEL_REGISTRY, model_class, register_model

__all__ = [
    "MODEL_REGISTRY",
    "Autoencoder",
    "build_model",
    "latent_size",
    "model_class",
    "register_model",
]
