"""The ``relation`` predictor: an exact relation of already decoded columns.

The relations themselves (kinematics, sums to one) and their drift bounds are in
:mod:`baler_ext.codec.relations`.
"""

from __future__ import annotations

import numpy as np

from baler_ext.codec import relations
from baler_ext.codec.predictors import ChunkState, Prediction, Predictor, register_predictor
from baler_ext.codec.relations import Relation


@register_predictor("relation")
class RelationPredictor(Predictor):
    """Predict ``relation.target`` from its decoded inputs (no side information)."""

    name = "relation"

    def __init__(self, relation: Relation) -> None:
        self.relation = relation

    def predict(
        self, column: str, side: dict[str, np.ndarray], state: ChunkState, with_drift: bool = True
    ) -> Prediction:
        v = {c: state.decoded[c] for c in self.relation.inputs}
        if not with_drift:
            return relations.value(self.relation, v, state.cache), None
        p, d = relations.predict(self.relation, v, {c: state.drift[c] for c in v}, state.cache)
        return p, d
