"""An integer masked autoencoder (MADE) whose outputs are bit-identical on every machine.

MADE (Germain, Gregor, Murray & Larochelle, ICML 2015) turns an MLP into an
autoregressive model by masking its weights: each input, hidden unit and output gets a
*degree*, and a unit sees only units of lower or equal degree. Here the inputs are the
features of the codes of ``D`` columns in coding order (column at position :math:`i` has
degree :math:`i + 1`) and *context* features of degree 0 (the previous object of the
same event, a quantised latent); output :math:`i` sees only hidden units of degree
:math:`\\le i`, so the distribution of column :math:`i` depends on the context and on
the columns before it alone, and the decoder can rebuild it from what it has decoded.

**Exactness** (the integer-network approach of Ballé, Johnston & Minnen, ICLR 2019, in
the form "float64 GEMM on integer values"): weights, biases, inputs and activations are
integers, every layer computes

.. math::

    z = W a + b, \\qquad a' = \\min(\\max(\\lfloor z / 2^{Q} \\rfloor, 0), A_{max}),

and :func:`check_exact` proves before any use that every partial sum stays below
:math:`2^{53}`. Integer sums that small are exact in float64 in *any* order, so a
BLAS with another blocking, another thread count, a GPU or a decoder that evaluates the
units in another grouping (:class:`Incremental`) all produce the same integers. The
float64 training (:mod:`baler_ext.codec.probability.fit`) simulates exactly these
operations, so the trained network and this one agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from baler_ext.errors import ContainerError

#: fixed-point fraction bits of weights, biases and outputs
Q = 10
#: features are clipped to [-F_MAX, F_MAX]; activations to [0, A_MAX]
F_MAX = 1 << 14
A_MAX = 1 << 15
#: largest weight / bias magnitude the exactness proof accepts
W_MAX = float(1 << 24)
B_MAX = float(1 << 44)
_EXACT = float(1 << 53)


@dataclass
class IntMade:
    """The integer MADE: ``layers`` of (weights, biases) with hidden ``degrees``.

    Parameters
    ----------
    n_ctx
        Number of context inputs (degree 0).
    n_cols
        :math:`D`, the coded columns (inputs of degrees 1..D, ``n_out`` outputs each:
        location then scale for one logistic; for a mixture of :math:`K` the
        :math:`K` locations, the :math:`K` scales, then the :math:`K` weight logits).
    weights, biases
        Integer-valued float64 arrays; ``weights[l]`` has shape (units, inputs); masked
        entries are 0.
    degrees
        The degree of each hidden unit, per hidden layer (non-decreasing).
    n_out
        Outputs per column (2 for one logistic, :math:`3K` for a mixture of :math:`K`).
    """

    n_ctx: int
    n_cols: int
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    degrees: list[np.ndarray]
    n_out: int = 2
    _in_degree: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._in_degree = input_degrees(self.n_ctx, self.n_cols)
        check_exact(self)

    @property
    def n_in(self) -> int:
        return self.n_ctx + self.n_cols

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """All outputs at once (encoder): the ``n_out`` integer outputs of every column
        (e.g. ``(loc, scale)``), each (rows, D) int64."""
        out = self.forward_flat(x)
        return tuple(out[:, j :: self.n_out] for j in range(self.n_out))

    def forward_flat(self, x: np.ndarray) -> np.ndarray:
        """All outputs at once as one (rows, D * n_out) int64 matrix: column ``i``'s
        outputs are entries ``i * n_out .. (i + 1) * n_out - 1`` of a row."""
        a = np.asarray(x, np.float64)
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            a = activation(a @ w.T + b)
        out = a @ self.weights[-1].T + self.biases[-1]
        return out.astype(np.int64)

    def masks(self) -> list[np.ndarray]:
        """The MADE masks implied by the degrees (1 where a weight may be non-zero)."""
        return made_masks(self.n_ctx, self.n_cols, self.degrees, self.n_out)

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for storage (no pickle)."""
        shape = [self.n_ctx, self.n_cols] + ([self.n_out] if self.n_out != 2 else [])
        d: dict[str, np.ndarray] = {"shape": np.array(shape, np.int64)}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            d[f"w{i}"] = w.astype(np.int64)
            d[f"b{i}"] = b.astype(np.int64)
        for i, deg in enumerate(self.degrees):
            d[f"deg{i}"] = deg.astype(np.int64)
        return d

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> IntMade:
        try:
            shape = [int(v) for v in d["shape"]]
            if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] < 2):
                raise ValueError(f"shape {shape}")
            n_ctx, n_cols = shape[:2]
            n_out = shape[2] if len(shape) == 3 else 2
            n_layers = sum(1 for k in d if k.startswith("w"))
            weights = [np.asarray(d[f"w{i}"], np.float64) for i in range(n_layers)]
            biases = [np.asarray(d[f"b{i}"], np.float64) for i in range(n_layers)]
            degrees = [np.asarray(d[f"deg{i}"], np.int64) for i in range(n_layers - 1)]
        except (KeyError, ValueError, TypeError) as exc:
            raise ContainerError(
                f"the learned probability model is incomplete ({exc!r}); retrain with --mode train"
            ) from None
        return cls(n_ctx, n_cols, weights, biases, degrees, n_out)


def input_degrees(n_ctx: int, n_cols: int) -> np.ndarray:
    """Degree 0 for the context, :math:`i + 1` for the column at position :math:`i`."""
    return np.concatenate([np.zeros(n_ctx, np.int64), np.arange(1, n_cols + 1)])


def made_masks(
    n_ctx: int, n_cols: int, degrees: list[np.ndarray], n_out: int = 2
) -> list[np.ndarray]:
    """MADE masks: a hidden unit of degree :math:`m` sees units of degree :math:`\\le m`;
    the ``n_out`` outputs of column :math:`i` see hidden units of degree :math:`\\le i`."""
    prev = input_degrees(n_ctx, n_cols)
    out = []
    for deg in degrees:
        out.append((deg[:, None] >= prev[None, :]).astype(np.float64))
        prev = deg
    out_deg = np.repeat(np.arange(n_cols), n_out)
    out.append((out_deg[:, None] >= prev[None, :]).astype(np.float64))
    return out


def activation(z: np.ndarray) -> np.ndarray:
    """:math:`\\min(\\max(\\lfloor z / 2^Q \\rfloor, 0), A_{max})` (exact: a power-of-two
    scaling of an integer). Works in place on ``z``, a fresh product."""
    z *= 2.0**-Q
    np.floor(z, out=z)
    np.maximum(z, 0.0, out=z)
    return np.minimum(z, A_MAX, out=z)


def check_exact(net: IntMade) -> None:
    """Refuse a network whose integer sums could leave float64's exact range.

    Checks shapes, the masks (masked weights must be 0), that every weight and bias is an
    integer within :data:`W_MAX` / :data:`B_MAX`, and that
    :math:`\\sum_j |W_{ij}| \\max|a_j| + |b_i| < 2^{53}` for every unit.
    """
    prev_units, bound = net.n_in, float(F_MAX)
    if len(net.weights) != len(net.biases) or len(net.degrees) != len(net.weights) - 1:
        raise ContainerError("the learned probability model's layers are inconsistent")
    masks = net.masks()
    for i, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        units = net.n_out * net.n_cols if i == len(net.weights) - 1 else len(net.degrees[i])
        if w.shape != (units, prev_units) or b.shape != (units,):
            raise ContainerError(
                f"layer {i} of the learned probability model has shape "
                f"{w.shape}, expected {(units, prev_units)}"
            )
        if i < len(net.degrees) and np.any(np.diff(net.degrees[i]) < 0):
            raise ContainerError("the learned probability model's degrees are not sorted")
        if not (np.all(np.isfinite(w)) and np.all(w == np.rint(w)) and np.all(b == np.rint(b))):
            raise ContainerError("the learned probability model has non-integer weights")
        if np.any(np.abs(w) > W_MAX) or np.any(np.abs(b) > B_MAX):
            raise ContainerError("the learned probability model's weights are out of range")
        if np.any(w[masks[i] == 0] != 0):
            raise ContainerError("the learned probability model violates its masks")
        worst = np.abs(w).sum(axis=1) * bound + np.abs(b)
        if np.any(worst >= _EXACT):
            raise ContainerError(
                "the learned probability model could leave float64's exact integer range"
            )
        prev_units, bound = units, float(A_MAX)


class Incremental:
    """Decoder-side evaluation, one column at a time.

    At step :math:`i` the units of degree :math:`i` of every hidden layer are computed
    from the inputs (context and columns :math:`< i`) and units already known; the
    outputs of column :math:`i` follow. Every unit is computed once, so decoding all
    columns costs one forward pass; the sums are exact integers, so the values equal
    :meth:`IntMade.forward`'s bit for bit whatever the grouping.
    """

    def __init__(self, net: IntMade, x: np.ndarray) -> None:
        self.net = net
        self.x = x
        # column-major: the prefix of known units is one contiguous block for the GEMM
        self.hidden = [np.zeros((len(x), len(d)), order="F") for d in net.degrees]
        # degrees are sorted: the units of degree i are a slice, the units of degree <= i
        # a prefix, so every product below works on views of contiguous blocks (``x`` is
        # best column-major too)
        prev = [net._in_degree, *net.degrees]
        self._known = [np.searchsorted(d, np.arange(net.n_cols), side="right") for d in prev]
        self._lo = [np.searchsorted(d, np.arange(net.n_cols), side="left") for d in net.degrees]

    def outputs(self, i: int, used: tuple[int, ...] | None = None) -> tuple[np.ndarray, ...]:
        """The integer outputs of column ``i`` (e.g. ``(loc, scale)``); ``x``'s columns of
        degree <= i must be set. With ``used``, only those outputs are computed (the
        others are returned as zeros: a column coded elsewhere needs none, a column coded
        with one logistic two); the hidden units of degree ``i`` always are."""
        net = self.net
        inputs = self.x
        for layer in range(len(net.degrees)):
            a, b = self._lo[layer][i], self._known[layer + 1][i]
            k = self._known[layer][i]
            if b > a:
                self.hidden[layer][:, a:b] = activation(
                    inputs[:, :k] @ net.weights[layer][a:b, :k].T + net.biases[layer][a:b]
                )
            inputs = self.hidden[layer]
        k = self._known[-1][i]
        if used is None:
            used = tuple(range(net.n_out))
        n = len(self.x)
        if not used:
            return tuple(np.zeros(n, np.int64) for _ in range(net.n_out))
        rows = net.n_out * i + np.asarray(used, np.int64)
        out = (inputs[:, :k] @ net.weights[-1][rows, :k].T + net.biases[-1][rows]).astype(np.int64)
        got = dict(zip(used, out.T, strict=True))
        return tuple(got[j] if j in got else np.zeros(n, np.int64) for j in range(net.n_out))
