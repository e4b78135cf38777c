"""A simulated other device for the codec tests.

The decompressing machine may compute every floating-point prediction slightly
differently (another BLAS, GPU, libm). ``another_device`` patches the predictors so that
decoding sees the worst drift the codec allows: the model/centre predictions move by the
assumed :math:`\\varepsilon(|p| + M)` and each relation or linear prediction by its own
stated drift bound. No hook for this lives in production code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from baler_ext.codec.predictors.autoencoder import AutoencoderPredictor
from baler_ext.codec.predictors.centre import CentrePredictor
from baler_ext.codec.predictors.linear import LinearPredictor
from baler_ext.codec.predictors.relation import RelationPredictor
from baler_ext.codec.residuals import EPS_PRED


@pytest.fixture(scope="session")
def another_device() -> Callable:
    """``with another_device(mode, sign, rel_sign): mode.decode(...)``."""

    @contextmanager
    def patch(mode, sign: float, rel_sign: float | None = None) -> Iterator[None]:
        mags = {c: coder.magnitude for c, coder in zip(mode.columns, mode.coders, strict=True)}
        mag_vec = np.array([mags[c] for c in mode.columns])
        centre, predict_all = CentrePredictor.predict, AutoencoderPredictor.predict_all

        def shifted(p: np.ndarray, m) -> np.ndarray:
            with np.errstate(all="ignore"):
                return p + sign * EPS_PRED * (np.abs(p) + m)

        def centre_other(self, column, side, state, with_drift=True):
            p, d = centre(self, column, side, state, with_drift)
            return shifted(p, mags[column]), d

        def ae_other(self, zq):
            return shifted(predict_all(self, zq), mag_vec)

        with pytest.MonkeyPatch.context() as m:
            m.setattr(CentrePredictor, "predict", centre_other)
            m.setattr(AutoencoderPredictor, "predict_all", ae_other)
            if rel_sign is not None:
                for cls in (RelationPredictor, LinearPredictor):
                    original = cls.predict

                    def other(self, column, side, state, with_drift=True, _orig=original):
                        p, d = _orig(self, column, side, state, True)
                        with np.errstate(all="ignore"):
                            return p + rel_sign * d, d

                    m.setattr(cls, "predict", other)
            yield

    return patch
