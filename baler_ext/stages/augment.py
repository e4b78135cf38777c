"""Symmetry augmentation of the rate model's training rows (``rate.augment``).

A collider's physics is invariant under a rotation about the beam axis and under the
reflection :math:`z \\to -z` of the whole event. The learned probability model must learn
from a finite training split that the distribution of a jet's substructure does not depend
on its azimuth, and that its momentum depends on it only through the rotation of the
previous jet of the event; every copy of the training events rotated by a random angle
:math:`\\alpha_e` (one per event) and reflected with probability 1/2 is a new, equally
likely sample of the same distribution:

.. math::

    p_x' = p_x\\cos\\alpha_e - p_y\\sin\\alpha_e,\\quad
    p_y' = p_x\\sin\\alpha_e + p_y\\cos\\alpha_e,\\quad
    \\phi' = \\mathrm{wrap}(\\phi + \\alpha_e),\\quad
    (p_z', \\eta') = \\pm(p_z, \\eta).

Every other column is left as it is. The copies only enter the training split; the
validation split, the quantisation grid (anchored at the original rows' medians) and the
relations stay those of the data. Compress never sees a copy, so the bound and the file's
decodability do not depend on this; a table with a column that turns with the jets but
carries no kinematic name (a second azimuth, say) only loses rate.

This is the data augmentation by the symmetry group of the problem that equivariant
models build in (e.g. Bogatskiy et al., "Lorentz group equivariant neural network for
particle physics", ICML 2020); here it is applied to the training rows of an otherwise
unconstrained MADE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from baler_ext.codec.relations import KINEMATIC, Relation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kinematics:
    """Column indices of the kinematic roles a relation names (None: absent)."""

    px: int | None = None
    py: int | None = None
    pz: int | None = None
    phi: int | None = None
    eta: int | None = None

    @property
    def rotates(self) -> bool:
        """Whether an azimuthal rotation is defined (both transverse components, or phi)."""
        return (self.px is not None and self.py is not None) or self.phi is not None

    @property
    def reflects(self) -> bool:
        return self.pz is not None or self.eta is not None

    def indices(self) -> list[int]:
        return [i for i in (self.px, self.py, self.pz, self.phi, self.eta) if i is not None]


def kinematics(relations: list[Relation], columns: list[str]) -> Kinematics:
    """The kinematic columns, by the roles of the detected kinematic relations (a name
    alone is not trusted: the relation shows the column is the momentum component)."""
    roles: dict[str, str] = {}
    for rel in relations:
        if rel.kind not in KINEMATIC:
            continue
        target_role, input_roles = KINEMATIC[rel.kind]
        roles.setdefault(target_role, rel.target)
        for role, col in zip(input_roles, rel.inputs, strict=True):
            roles.setdefault(role, col)
    index = {c: i for i, c in enumerate(columns)}

    def at(role: str) -> int | None:
        col = roles.get(role)
        return index.get(col) if col is not None else None

    return Kinematics(at("px"), at("py"), at("pz"), at("phi"), at("eta"))


def augmented_copies(
    values: np.ndarray,
    first: np.ndarray | None,
    kin: Kinematics,
    copies: int,
    seed: int,
    frozen: np.ndarray | None = None,
) -> np.ndarray:
    """``copies`` rotated and reflected copies of ``values`` (rows, columns), stacked.

    Parameters
    ----------
    values
        The training matrix (float64).
    first
        The rows that start an event (None: every row is its own event): all rows of an
        event turn by the same angle.
    kin
        The kinematic columns (:func:`kinematics`).
    copies
        How many copies.
    seed
        Seed of the angles and reflections.
    frozen
        Rows copied unchanged (a non-finite or sentinel kinematic value: turning it
        would invent values the data cannot have).
    """
    n = len(values)
    if first is None:
        event = np.arange(n)
    else:
        starts = np.asarray(first, bool).copy()
        if n:
            starts[0] = True
        event = np.cumsum(starts) - 1
    n_events = int(event[-1]) + 1 if n else 0
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(copies):
        x = values.copy()
        alpha = rng.uniform(-np.pi, np.pi, n_events)[event] if kin.rotates else None
        sign = np.where(rng.random(n_events) < 0.5, -1.0, 1.0)[event] if kin.reflects else None
        if alpha is not None:
            if kin.px is not None and kin.py is not None:
                c, s = np.cos(alpha), np.sin(alpha)
                px, py = values[:, kin.px], values[:, kin.py]
                x[:, kin.px] = px * c - py * s
                x[:, kin.py] = px * s + py * c
            if kin.phi is not None:
                x[:, kin.phi] = np.angle(np.exp(1j * (values[:, kin.phi] + alpha)))
        if sign is not None:
            for j in (kin.pz, kin.eta):
                if j is not None:
                    x[:, j] = sign * values[:, j]
        if frozen is not None and frozen.any():
            x[frozen] = values[frozen]
        out.append(x)
    return np.concatenate(out) if out else values[:0].copy()
