"""Entropy coders of integer code streams, registered by name (``[compression] entropy_coder``).

A coder turns one 1-D ``int64`` stream (the quantised residuals of one column in one
chunk, or one latent dimension) into named arrays that the container stores, and back.

``zstd``
    The floor: zigzag map :math:`u = 2k` for :math:`k \\ge 0`, :math:`u = -2k - 1` for
    :math:`k < 0`, cast to the narrowest unsigned dtype that holds ``max(u)``; the
    container's zstd frame does the entropy coding.
``range``
    An adaptive range coder (``constriction``, R. Bamler) with a static categorical
    model fitted per stream: the symbol alphabet is the window
    :math:`[a, a + K)` of code values (:math:`K \\le` :data:`MAX_ALPHABET`) plus one escape
    symbol; the model is the integer count of each symbol, stored beside the bits so the
    decoder rebuilds the identical model (probabilities are ``counts / sum`` in float64
    on both sides, and constriction's quantisation of them is deterministic). Codes
    outside the window are coded as the escape symbol and stored verbatim in ``esc``.
    The cost is :math:`-\\sum_i \\log_2 \\hat P(k_i)` bits plus the count table.
    When escaping costs more than splitting (a wide, flat stream such
    as a column coded without a model prediction), the stream is split instead: with a
    shift :math:`s` the high part :math:`(k - a) \\gg s` is coded with the categorical
    model (no escapes) and the low :math:`s` bits with a uniform model
    (``head = [a, K, s]``; files without ``s`` have :math:`s = 0`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from baler_ext.errors import ContainerError
from baler_ext.registry import Registry

CODER_REGISTRY: Registry[type[IntCoder]] = Registry("compression.entropy_coder", name_attr="name")

MAX_ALPHABET = 4095


def register_coder(name: str) -> Callable[[type[IntCoder]], type[IntCoder]]:
    """Class decorator registering an integer coder under ``name``."""
    return CODER_REGISTRY.register(name)


def get_coder(name: str) -> IntCoder:
    """An instance of the coder registered as ``name``."""
    return CODER_REGISTRY.get(name)()


def zigzag(k: np.ndarray) -> np.ndarray:
    """Signed -> unsigned: 0, -1, 1, -2, 2, ... -> 0, 1, 2, 3, 4, ..."""
    k = k.astype(np.int64)
    return ((k << 1) ^ (k >> 63)).astype(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.uint64)
    return ((u >> np.uint64(1)).astype(np.int64)) ^ -((u & np.uint64(1)).astype(np.int64))


def narrowest(u: np.ndarray) -> np.ndarray:
    """``u`` (unsigned) in the narrowest unsigned dtype that holds its maximum."""
    top = int(u.max()) if u.size else 0
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return u.astype(dt)
    return u.astype(np.uint64)


class IntCoder:
    """Base class: ``encode`` an int64 stream to named arrays, ``decode`` them back."""

    name: str = ""

    def encode(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def decode(self, arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
        raise NotImplementedError


@register_coder("zstd")
class ZstdCoder(IntCoder):
    """Zigzag + narrowest unsigned dtype; the container's zstd frame codes it."""

    def encode(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        return {"z": narrowest(zigzag(codes))}

    def decode(self, arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
        out = unzigzag(arrays["z"])
        if out.size != n:
            raise ContainerError("a code stream has the wrong length; the file is damaged")
        return out


@register_coder("range")
class RangeCoder(IntCoder):
    """constriction's range coder with a per-stream categorical model and an escape."""

    def encode(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        import constriction

        codes = np.asarray(codes, np.int64)  # only read
        if codes.size == 0:
            return {"head": np.zeros(2, np.int64)}
        lo, hi = int(codes.min()), int(codes.max())
        shift = 0
        windowed = hi - lo + 1 > MAX_ALPHABET  # else every code is in [lo, hi]: no escapes
        if windowed:
            centre = int(np.median(codes))
            wlo = max(lo, centre - MAX_ALPHABET // 2)
            held = (codes >= wlo) & (codes < wlo + MAX_ALPHABET)
            outside = codes.size - np.count_nonzero(held)
            shift = max(0, (hi - lo).bit_length() - 12)
            while ((hi - lo) >> shift) + 1 > MAX_ALPHABET:
                shift += 1
            if codes.size * shift < 64 * outside:  # low bits cost less than escapes
                return self._encode_split(codes, lo, hi, shift)
            # the window shrunk to the codes it holds: the same escapes, a smaller count
            # table and a shorter search per decoded symbol (a relation residual that wraps
            # by 2 pi, say, has a few codes far out and the rest within a handful of bins);
            # every code outside the window lies outside [lo, hi], so the escapes are ~held
            inside = codes[held]
            lo, hi = int(inside.min()), int(inside.max())
        k = hi - lo + 1
        sym = codes - lo
        escaped = ~held if windowed else None
        if escaped is not None:
            sym[escaped] = k
        counts = np.bincount(sym, minlength=k + 1).astype(np.uint32)
        out = {"head": np.array([lo, k], np.int64), "counts": narrowest(counts)}
        if escaped is not None and escaped.any():  # absent when unused (docs/FORMAT.md)
            out["esc"] = codes[escaped]
        if counts.max() == codes.size:  # a single symbol: nothing to code
            return out
        model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(sym.astype(np.int32), model)
        out["bits"] = enc.get_compressed()
        return out

    @staticmethod
    def _encode_split(codes: np.ndarray, lo: int, hi: int, shift: int) -> dict[str, np.ndarray]:
        import constriction

        u = codes - lo
        high, low = u >> shift, u & ((1 << shift) - 1)
        k = ((hi - lo) >> shift) + 1
        counts = np.bincount(high, minlength=k + 1).astype(np.uint32)
        enc = constriction.stream.queue.RangeEncoder()
        if counts.max() != codes.size:
            enc.encode(
                high.astype(np.int32),
                constriction.stream.model.Categorical(counts / counts.sum(), perfect=False),
            )
        for off in range(0, shift, 16):  # constriction's uniform model takes <= 24 bits
            width = min(16, shift - off)
            enc.encode(
                ((low >> off) & ((1 << width) - 1)).astype(np.int32),
                constriction.stream.model.Uniform(1 << width),
            )
        return {
            "head": np.array([lo, k, shift], np.int64),
            "counts": narrowest(counts),
            "bits": enc.get_compressed(),
        }

    def decode(self, arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
        import constriction

        if n == 0:
            return np.zeros(0, np.int64)
        head = [int(v) for v in arrays["head"]]
        if len(head) == 3 and head[2] > 0:
            return self._decode_split(arrays, n, *head)
        if len(head) not in (2, 3):
            raise ContainerError("a code stream's head is malformed; the file is damaged")
        lo, k = head[:2]
        counts = arrays["counts"].astype(np.uint64)
        if counts.size != k + 1 or int(counts.sum()) != n:
            raise ContainerError(
                "a code stream's model does not match its length; the file is damaged"
            )
        if "bits" not in arrays:
            sym = np.full(n, int(np.argmax(counts)), np.int64)
        else:
            model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
            dec = constriction.stream.queue.RangeDecoder(arrays["bits"].astype(np.uint32))
            sym = dec.decode(model, n)  # int32: compared before the one widening copy
        escaped = sym == k
        n_escaped = int(np.count_nonzero(escaped))
        esc = arrays.get("esc", np.zeros(0, np.int64)).astype(np.int64)
        if n_escaped != esc.size:
            raise ContainerError("a code stream's escapes do not match; the file is damaged")
        out = sym.astype(np.int64)
        out += lo
        if n_escaped:
            out[escaped] = esc
        return out

    @staticmethod
    def _decode_split(
        arrays: dict[str, np.ndarray], n: int, lo: int, k: int, shift: int
    ) -> np.ndarray:
        import constriction

        counts = arrays["counts"].astype(np.uint64)
        if (
            counts.size != k + 1
            or int(counts.sum()) != n
            or not 0 < shift < 40
            or "bits" not in arrays
        ):
            raise ContainerError(
                "a code stream's model does not match its length; the file is damaged"
            )
        dec = constriction.stream.queue.RangeDecoder(arrays["bits"].astype(np.uint32))
        if counts.max() == n:
            high = np.full(n, int(np.argmax(counts)), np.int64)
        else:
            high = dec.decode(
                constriction.stream.model.Categorical(counts / counts.sum(), perfect=False), n
            ).astype(np.int64)
        low = np.zeros(n, np.int64)
        for off in range(0, shift, 16):
            width = min(16, shift - off)
            low |= (
                dec.decode(constriction.stream.model.Uniform(1 << width), n).astype(np.int64) << off
            )
        return lo + (high << shift) + low
