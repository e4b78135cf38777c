"""Predictors of the bounded mode: what value each column is expected to take.

A predictor gives, per value of one column of one chunk, a prediction :math:`p` and a
bound :math:`d` on how much the decoding device's :math:`p` may differ from the encoding
device's (``None``: the default :math:`\\varepsilon(|p| + M)` of
:mod:`baler_ext.codec.residuals`). The column's residual coder then stores the integer
codes that reconstruct the value within its bound *whatever* the prediction, so a
predictor decides the size of the file, never its correctness.

Each predictor is one small class registered by name (one file each):

``centre``
    a constant per column (:mod:`.centre`): the chunk's median, or the anchor of the
    learned probability model (whose codes then lie on one fixed grid);
``linear``
    least squares on the columns decoded before it (:mod:`.linear`);
``relation``
    an exact relation of already decoded columns (:mod:`.relation`);
``autoencoder``
    the trained autoencoder's reconstruction from its quantised latent
    (:mod:`.autoencoder`; the only one that needs torch, imported on first use).

The encoder calls :meth:`Predictor.fit` (which returns the side information to store,
named relative to the column) and then :meth:`Predictor.predict`; the decoder calls
:meth:`Predictor.predict` with the stored side information.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from baler_ext.registry import Registry

#: the cache key of the shared zero drift (see :meth:`ChunkState.add`)
_NO_DRIFT = "state/no-drift"


@dataclass
class ChunkState:
    """What the predictors of one chunk may use: the columns decoded so far (and how much
    each may drift on another device), in decoding order."""

    n_rows: int
    decoded: dict[str, np.ndarray] = field(default_factory=dict)
    drift: dict[str, np.ndarray] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    #: per-predictor work kept between the columns of the chunk (e.g. the linear
    #: predictor's feature matrix, grown by one block per decoded column)
    cache: dict[str, Any] = field(default_factory=dict)

    def add(self, column: str, values: np.ndarray | None, drift: np.ndarray | None = None) -> None:
        """Record a decoded column; without ``drift`` (the decoder, and exact values) it
        may not drift at all: one read-only array of zeros shared by such columns."""
        if values is None:
            raise ValueError(f"column '{column}' has no decoded values")
        self.decoded[column] = values
        if drift is None:
            drift = self.cache.get(_NO_DRIFT)
            if drift is None or len(drift) != len(values):
                drift = self.cache[_NO_DRIFT] = np.zeros(len(values))
                drift.flags.writeable = False
        self.drift[column] = drift
        self.order.append(column)


Prediction = tuple[np.ndarray, np.ndarray | None]


class Predictor:
    """Base class (see the module docstring)."""

    name: str = ""

    def fit(self, column: str, x: np.ndarray, state: ChunkState) -> dict[str, np.ndarray]:
        """Encoder only: side information for predicting ``x`` (default: none)."""
        return {}

    def predict(
        self, column: str, side: dict[str, np.ndarray], state: ChunkState, with_drift: bool = True
    ) -> Prediction:
        """The prediction of ``column`` and its drift bound (``with_drift=False``: the
        decoder, which needs no drift, may skip computing it)."""
        raise NotImplementedError


PREDICTOR_REGISTRY: Registry[type[Predictor]] = Registry("compression.predictor", name_attr="name")


def register_predictor(name: str) -> Callable[[type[Predictor]], type[Predictor]]:
    """Class decorator registering a predictor under ``name``."""
    return PREDICTOR_REGISTRY.register(name)
