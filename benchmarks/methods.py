"""The compressors compared by ``benchmarks/run.py``, behind one small registry.

Every method is a class with ``compress(table, bounds) -> bytes`` and
``decompress(blob) -> ndarray`` (rows x columns, float64). Lossy per-column references
take the same max-error bounds as baler_ext's bounded mode and *verify every value*
after a full decode (rounded to the column's stored dtype); when a value misses its
bound the column is re-encoded with a tighter setting until all values pass
(``tighten-until-met``). Optional packages (blosc2, numcodecs, pysz, zfpy, uproot for
ROOT) are imported inside the methods, so a missing one only disables that method.
"""

from __future__ import annotations

import io
import json
import math
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import Table, bound_of

METHODS: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; valid: {', '.join(sorted(METHODS))}")
    return METHODS[name]


# ----------------------------------------------------------------------------- framing
def pack(frames: list[bytes], meta: dict) -> bytes:
    """``[u32 header length][json header: meta + frame lengths][frames...]``."""
    head = json.dumps({"meta": meta, "lengths": [len(f) for f in frames]}).encode()
    return struct.pack("<I", len(head)) + head + b"".join(frames)


def unpack(blob: bytes) -> tuple[list[bytes], dict]:
    (n,) = struct.unpack_from("<I", blob)
    head = json.loads(blob[4 : 4 + n])
    frames, pos = [], 4 + n
    for length in head["lengths"]:
        frames.append(blob[pos : pos + length])
        pos += length
    return frames, head["meta"]


def _zstd(data: bytes, level: int = 19) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level).compress(data)


def _unzstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(data)


def _blosc(data: np.ndarray, bitshuffle: bool) -> bytes:
    import blosc2

    blosc2.set_nthreads(1)
    flt = blosc2.Filter.BITSHUFFLE if bitshuffle else blosc2.Filter.SHUFFLE
    return blosc2.compress2(
        np.ascontiguousarray(data).tobytes(),
        typesize=data.dtype.itemsize,
        clevel=9,
        codec=blosc2.Codec.ZSTD,
        filters=[flt],
    )


def _unblosc(data: bytes) -> bytes:
    import blosc2

    return blosc2.decompress2(data)


class Method:
    """Base class: a compressor of a table's float columns."""

    name = "base"
    family = "lossless"  # lossless | root | lossy | baler_ext | baler
    bounded = False  # verifies the max-error bounds

    def __init__(self, **params: object) -> None:
        self.params = params

    def compress(self, table: Table, bounds: dict) -> bytes:
        raise NotImplementedError

    def decompress(self, blob: bytes) -> np.ndarray:
        raise NotImplementedError


# ----------------------------------------------------------------------------- lossless
class _Columnar(Method):
    """Each column's bytes compressed separately (columnar, like Parquet or a TTree)."""

    dtype = "float64"

    def code(self, arr: np.ndarray) -> bytes:
        raise NotImplementedError

    def uncode(self, data: bytes) -> bytes:
        raise NotImplementedError

    def compress(self, table: Table, bounds: dict) -> bytes:
        self._shape = table.values.shape
        frames = [
            self.code(np.ascontiguousarray(table.values[:, j].astype(self.dtype)))
            for j in range(table.values.shape[1])
        ]
        return pack(frames, {"rows": table.rows, "dtype": self.dtype})

    def decompress(self, blob: bytes) -> np.ndarray:
        frames, meta = unpack(blob)
        cols = [np.frombuffer(self.uncode(f), dtype=meta["dtype"]) for f in frames]
        return np.stack(cols, axis=1).astype(np.float64)


def _lossless(name: str, dtype: str, coder: str) -> None:
    class M(_Columnar):
        family = "lossless"

        def code(self, arr: np.ndarray) -> bytes:
            if coder == "zstd":
                return _zstd(arr.tobytes())
            return _blosc(arr, coder == "bitshuffle")

        def uncode(self, data: bytes) -> bytes:
            return _unzstd(data) if coder == "zstd" else _unblosc(data)

    M.dtype = dtype
    M.__name__ = M.__qualname__ = f"Lossless_{name}"
    register(name)(M)


for _dt in ("float64", "float32"):
    _s = "f64" if _dt == "float64" else "f32"
    _lossless(f"zstd19_{_s}", _dt, "zstd")
    _lossless(f"blosc2_shuffle_{_s}", _dt, "shuffle")
    _lossless(f"blosc2_bitshuffle_{_s}", _dt, "bitshuffle")


class _Root(Method):
    """A flat TTree written by uproot in each column's stored dtype; the size is the file's."""

    family = "root"
    algorithm = "ZLIB"
    level = 9

    def compress(self, table: Table, bounds: dict) -> bytes:
        import uproot

        self._names = table.names
        comp = getattr(uproot, self.algorithm)(self.level)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "t.root"
            with uproot.recreate(path, compression=comp) as f:
                f["jets"] = {
                    n: table.values[:, j].astype(table.dtypes[j]) for j, n in enumerate(table.names)
                }
            return path.read_bytes()

    def decompress(self, blob: bytes) -> np.ndarray:
        import uproot

        with uproot.open(io.BytesIO(blob)) as f:
            arrays = f["jets"].arrays(self._names, library="np")
        return np.stack([arrays[n].astype(np.float64) for n in self._names], axis=1)


for _alg, _lvl in (("ZLIB", 9), ("LZMA", 9), ("ZSTD", 19)):
    register(f"root_{_alg.lower()}")(
        type(f"Root_{_alg}", (_Root,), {"algorithm": _alg, "level": _lvl})
    )


# ----------------------------------------------------------------------------- lossy, bounded
class _Bounded(Method):
    """A per-column lossy coder with a tighten-until-met loop on every value.

    ``encode_column(x, kind, bound, step)`` returns bytes for tightening step ``step``
    (0 = nominal setting, larger = tighter); the loop decodes, rounds to the stored
    dtype and checks ``|x - y| <= bound`` (abs) or ``<= bound * |x|`` (rel) on every value.
    """

    family = "lossy"
    bounded = True
    max_steps = 40

    def encode_column(self, x: np.ndarray, kind: str, bound: float, step: int) -> bytes:
        raise NotImplementedError

    def decode_column(self, data: bytes, rows: int) -> np.ndarray:
        raise NotImplementedError

    def compress(self, table: Table, bounds: dict) -> bytes:
        frames, steps = [], []
        for j, c in enumerate(table.names):
            x = table.values[:, j]
            kind, b = bound_of(bounds, c)
            lim = b if kind == "abs" else b * np.abs(x)
            for step in range(self.max_steps):
                data = self.encode_column(x, kind, b, step)
                y = self.decode_column(data, table.rows)
                if table.dtypes[j] == "float32":
                    y = y.astype(np.float32).astype(np.float64)
                if np.all(np.abs(y - x) <= lim):
                    break
            else:
                raise RuntimeError(
                    f"{self.name}: column {c} misses its bound after "
                    f"{self.max_steps} tightening steps"
                )
            frames.append(data)
            steps.append(step)
        self.tightening_steps = dict(zip(table.names, steps, strict=True))
        return pack(frames, {"rows": table.rows})

    def decompress(self, blob: bytes) -> np.ndarray:
        frames, meta = unpack(blob)
        return np.stack([self.decode_column(f, meta["rows"]) for f in frames], axis=1)


class _BitRound(_Bounded):
    """numcodecs ``BitRound`` (mantissa rounding, the NanoAOD practice) + a lossless coder.

    keepbits starts at the estimate from the bound (rel: ``ceil(-log2 r) - 1``; abs:
    ``ceil(log2(max|x| / a)) - 1``) and grows by one per tightening step. Rounded values
    with at most 23 kept bits are stored as float32 (exact), others as float64.
    """

    coder = "zstd"

    def encode_column(self, x: np.ndarray, kind: str, bound: float, step: int) -> bytes:
        from numcodecs import BitRound

        amax = float(np.max(np.abs(x))) if x.size else 0.0
        if kind == "rel":
            kb = math.ceil(-math.log2(bound)) - 1
        else:
            kb = math.ceil(math.log2(amax / bound)) - 1 if amax > 0 else 0
        kb = int(min(max(kb, 0) + step, 52))
        y = BitRound(keepbits=kb).encode(x.astype(np.float64)).view(np.float64)
        arr = y.astype(np.float32) if kb <= 23 and np.all(y.astype(np.float32) == y) else y
        body = _zstd(arr.tobytes()) if self.coder == "zstd" else _blosc(arr, True)
        return bytes([arr.dtype.itemsize, kb]) + body

    def decode_column(self, data: bytes, rows: int) -> np.ndarray:
        dt = np.float32 if data[0] == 4 else np.float64
        raw = _unzstd(data[2:]) if self.coder == "zstd" else _unblosc(data[2:])
        return np.frombuffer(raw, dtype=dt).astype(np.float64)


register("bitround_zstd")(type("BitRoundZstd", (_BitRound,), {"coder": "zstd"}))
register("bitround_blosc2")(type("BitRoundBlosc2", (_BitRound,), {"coder": "blosc2"}))


def _int_codes(q: np.ndarray) -> tuple[np.ndarray, int]:
    """Shift integer codes to start at 0 and store them in the smallest unsigned dtype."""
    lo = int(q.min()) if q.size else 0
    span = int(q.max()) - lo if q.size else 0
    dt = (
        np.uint8
        if span < 2**8
        else np.uint16
        if span < 2**16
        else np.uint32
        if span < 2**32
        else np.uint64
    )
    return (q - lo).astype(dt), lo


@register("quantise_zstd")
class Quantise(_Bounded):
    """Uniform per-column quantiser + zstd-19: step ``2a`` for abs bounds; for rel bounds
    the same on ``log|x|`` with step ``2 log(1 + r)`` (sign and zeros kept in the code).
    Each tightening step shrinks the step by 1 %."""

    def encode_column(self, x: np.ndarray, kind: str, bound: float, step: int) -> bytes:
        s = 0.99**step
        if kind == "abs":
            width = 2 * bound * s
            q = np.rint(x / width).astype(np.int64)
            codes, lo = _int_codes(q)
            head = {"k": "abs", "w": width, "lo": lo, "dt": codes.dtype.str}
        else:
            width = 2 * math.log1p(bound) * s
            nz = x != 0
            q = np.zeros(x.shape, np.int64)
            qa = np.rint(np.log(np.abs(x[nz])) / width).astype(np.int64)
            qmin = int(qa.min()) if qa.size else 0
            q[nz] = (qa - qmin + 1) * np.sign(x[nz]).astype(np.int64)
            codes, lo = _int_codes(q)
            head = {"k": "rel", "w": width, "lo": lo, "qmin": qmin, "dt": codes.dtype.str}
        h = json.dumps(head).encode()
        return struct.pack("<H", len(h)) + h + _zstd(codes.tobytes())

    def decode_column(self, data: bytes, rows: int) -> np.ndarray:
        (n,) = struct.unpack_from("<H", data)
        head = json.loads(data[2 : 2 + n])
        q = np.frombuffer(_unzstd(data[2 + n :]), dtype=head["dt"]).astype(np.int64) + head["lo"]
        if head["k"] == "abs":
            return q * head["w"]
        out = np.zeros(q.shape)
        nz = q != 0
        out[nz] = np.sign(q[nz]) * np.exp((np.abs(q[nz]) - 1 + head["qmin"]) * head["w"])
        return out


class _LogTransformed(_Bounded):
    """An absolute-error coder (SZ3, ZFP) on ``x`` for abs bounds and on ``log|x|`` with
    tolerance ``log(1 + r)`` for rel bounds (signs and zeros stored losslessly, zstd);
    each tightening step shrinks the tolerance by 10 %."""

    def code_abs(self, x: np.ndarray, tol: float) -> bytes:
        raise NotImplementedError

    def uncode_abs(self, data: bytes, rows: int) -> np.ndarray:
        raise NotImplementedError

    def encode_column(self, x: np.ndarray, kind: str, bound: float, step: int) -> bytes:
        s = 0.9**step
        if kind == "abs":
            return b"A" + self.code_abs(np.ascontiguousarray(x, np.float64), bound * s)
        neg, zero = x < 0, x == 0
        lx = np.log(np.where(zero, 1.0, np.abs(x)))
        side = _zstd(np.packbits(np.concatenate([neg, zero])).tobytes())
        body = self.code_abs(np.ascontiguousarray(lx), math.log1p(bound) * s)
        return b"R" + struct.pack("<I", len(side)) + side + body

    def decode_column(self, data: bytes, rows: int) -> np.ndarray:
        if data[:1] == b"A":
            return self.uncode_abs(data[1:], rows)
        (n,) = struct.unpack_from("<I", data, 1)
        bits = np.unpackbits(np.frombuffer(_unzstd(data[5 : 5 + n]), np.uint8))[: 2 * rows]
        neg, zero = bits[:rows].astype(bool), bits[rows:].astype(bool)
        y = np.exp(self.uncode_abs(data[5 + n :], rows))
        y[neg] *= -1
        y[zero] = 0.0
        return y


@register("sz3")
class SZ3(_LogTransformed):
    """SZ3 (``pysz``) in ABS error-bound mode, one 1-D array per column."""

    def code_abs(self, x: np.ndarray, tol: float) -> bytes:
        from pysz import sz, szConfig, szErrorBoundMode

        cfg = szConfig(x.shape)
        cfg.errorBoundMode = szErrorBoundMode.ABS
        cfg.absErrorBound = tol
        out, _ = sz.compress(x, cfg)
        return out.tobytes()

    def uncode_abs(self, data: bytes, rows: int) -> np.ndarray:
        from pysz import sz

        y, _ = sz.decompress(np.frombuffer(data, np.uint8), np.float64, (rows,))
        return np.array(y, dtype=np.float64)


@register("zfp")
class ZFP(_LogTransformed):
    """ZFP (``zfpy``) in fixed-accuracy mode, one 1-D array per column."""

    def code_abs(self, x: np.ndarray, tol: float) -> bytes:
        import zfpy

        return zfpy.compress_numpy(x, tolerance=tol)

    def uncode_abs(self, data: bytes, rows: int) -> np.ndarray:
        import zfpy

        return np.array(zfpy.decompress_numpy(data), dtype=np.float64)


# ----------------------------------------------------------------------------- optional deps
OPTIONAL = {
    "blosc2_shuffle_f64": "blosc2",
    "blosc2_bitshuffle_f64": "blosc2",
    "blosc2_shuffle_f32": "blosc2",
    "blosc2_bitshuffle_f32": "blosc2",
    "bitround_zstd": "numcodecs",
    "bitround_blosc2": "numcodecs",
    "sz3": "pysz",
    "zfp": "zfpy",
}


def available(name: str) -> tuple[bool, str]:
    """Whether a method's optional package imports; ``(ok, reason)``."""
    import importlib

    mods = [OPTIONAL[name]] if name in OPTIONAL else []
    if name == "bitround_blosc2":
        mods.append("blosc2")
    for mod in mods:
        try:
            importlib.import_module(mod)
        except Exception as exc:
            return (
                False,
                f"{mod} not importable ({type(exc).__name__}: {exc}); pip install -e '.[bench]'",
            )
    return True, ""
