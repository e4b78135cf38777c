"""Per-chunk content digest of the *decoded* values (container format 1.2).

Compress records a digest of what every chunk decodes to in the chunk's header entry: in
bounded mode the encoder's own reconstruction (each value rebuilt by the decoder's
functions from the prediction, codes, dither, exceptions and sentinels the decoder
will have; with ``compression.verify`` the chunk is also decoded through the mode
decoder and must give the same bits), otherwise the mode decoder's output;
decompress recomputes it after decoding and refuses a mismatch. A crafted, buggy or
drifting decode therefore fails with :class:`~baler_ext.errors.ContainerError` instead
of returning wrong numbers (the CRCs only show that the bytes are the ones written;
anyone can recompute them).

The digest has three parts:

``xxh3`` (written since the ``digest-xxh3`` feature) or ``blake2b`` (older files, still read)
    A 128-bit hash of the decoded float64 matrix (lossless columns included), the
    chunk's ``counts`` and ``passthrough`` bytes and the header entries that shape the
    output (:func:`output_context`: names, dtypes, layout), keyed by the chunk's
    position: XXH3-128 (:func:`xxhash.xxh3_128`) of the matrix column by column (the
    bounded decoder's column-major output, hashed without a copy) or BLAKE2b-128
    (:func:`hashlib.blake2b`) of it row by row; the other parts alike. On the
    machine and library versions that compressed the file the decode is bit-identical,
    and this is the whole check. The key names the algorithm of both hashes
    (:data:`ALGORITHMS`). XXH3 is not cryptographic, and need not be: the digest is
    not keyed by a secret (anyone who can alter a file can recompute either hash), it
    tells a wrong decode from the recorded one; any change of the decoded bits, or of
    the hashed bytes, changes a 128-bit hash of good dispersion except with probability
    about :math:`2^{-128}`. It hashes the 10.6 MB of the shared jets in 0.3 ms against
    BLAKE2b's 13 ms (an eighth of the classical decode before the change).
``stable``
    The same algorithm's hash of what is bit-identical on *every* platform: which
    values are finite, the non-finite values, the lossless columns, ``counts``,
    ``passthrough`` and the output context (computed on decode only when the exact
    hash differs).
``sketch``
    Two random projections per column of the finite values scaled by the column's
    largest magnitude :math:`M_j`:
    :math:`s_{kj} = \\sum_i w_{ki}\\, x_{ij} / M_j`, :math:`w_{ki} \\sim N(0, 1)` from a
    fixed seed. Decoding on another device or BLAS moves the model's prediction in its
    last bits (the bounded mode's margins keep every value within its bound all the
    same), so there the exact hash differs. The header's ``decode_platform`` records
    where compress decoded (:func:`platform_fingerprint`, compared by :func:`same_platform`):
    on that platform the exact hash
    must match; on another one the chunk is accepted when ``stable`` matches and every
    :math:`|s'_{kj} - s_{kj}| \\le \\tau = 8\\,\\varepsilon \\sqrt{n} + 10^{-12}
    \\sum_i |w_{ki}|` with :math:`\\varepsilon = 10^{-9}`. A drift :math:`\\delta` that
    does not depend on the weights moves :math:`s_{kj}` by a normal variable of standard
    deviation :math:`\\lVert\\delta\\rVert_2 / M_j`; when that is at most
    :math:`\\varepsilon\\sqrt{n}` (every value within :math:`\\varepsilon M_j`, or a
    fraction of float32 values rounding the other way), 8 of them are exceeded with
    probability 10⁻¹⁵. :math:`\\varepsilon` is 10 times the bounded mode's assumed
    prediction drift ``EPS_PRED`` (10⁻¹⁰; real devices differ by ~10⁻¹⁵); the last term
    covers the summation order. A single value changed by :math:`\\delta` moves :math:`s_{kj}` by
    :math:`w_{ki}\\delta/M_j`: for 10⁵ rows, changes above about 3·10⁻⁶ of the column's
    largest magnitude are caught. Only the exact hash catches smaller ones, which is why
    it is required on the compressing platform. Since format 1.4 the header stores
    :math:`q_{kj} = \\mathrm{round}(s_{kj} / 2^e)` with the largest :math:`2^e \\le
    \\min_k \\tau_k / 4` (``{"exp": e, "q": [...]}``, about 4 B a value instead of
    base64 float64); the check then allows :math:`\\tau + 2^{e-1}`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import xxhash

#: seed of the projection weights (fixed: both sides must draw the same ones)
SEED = 0xBA1E
SKETCHES = 2
DIGEST_SIZE = 16
#: drift of a decoded value between platforms, relative to its column's largest magnitude
DRIFT = 1e-9
#: standard deviations of a projection's drift that are tolerated
SIGMAS = 8.0
#: summation-order allowance, relative to the sum of the weights' magnitudes
SUM_ERROR = 1e-12


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


def _blake2b(salt: bytes) -> _Hash:
    return hashlib.blake2b(salt, digest_size=DIGEST_SIZE)


def _xxh3(salt: bytes) -> _Hash:
    h = xxhash.xxh3_128()
    h.update(salt)
    return h


#: digest key -> the hash of both digests (started with the chunk's salt); the first is
#: what compress writes (header feature :data:`FEATURE`)
ALGORITHMS: dict[str, Callable[[bytes], _Hash]] = {"xxh3": _xxh3, "blake2b": _blake2b}
#: the algorithm compress writes
WRITTEN = "xxh3"
#: the algorithms that hash the matrix column by column (the others: row by row)
COLUMN_MAJOR = frozenset({"xxh3"})
#: the header feature of files whose digests use :data:`WRITTEN` (older readers, which
#: know only ``blake2b``, refuse them with "upgrade" instead of calling them damaged)
FEATURE = "digest-xxh3"


def platform_fingerprint(device: Any) -> dict[str, Any]:
    """What a decode's last bits depend on: library versions, CPU kind and SIMD level and
    the device (CUDA: its name). Equal fingerprints decode bit-identically.

    The thread count is left out: it would make containers written by dask workers
    (one thread each) differ from local ones. On the 78,238 shared jets, latent,
    bounded-with-latent and model-free decodes with 1 and 2 threads were bit-identical;
    should another BLAS split its sums by thread, the strict check fails loudly.
    """
    import sys

    host = _host_fingerprint()
    out: dict[str, Any] = {**host, "cpu": _features_digest(host["cpu"]), "device": str(device)}
    if getattr(device, "type", "") == "cuda" and "torch" in sys.modules:
        out["device"] = sys.modules["torch"].cuda.get_device_name(device)
    return out


def _features_digest(features: Sequence[str]) -> str:
    """The fingerprint's ``cpu`` (format 1.4): BLAKE2b-64 of the sorted CPU features, 16
    hex digits instead of the ~150 B of their list (which files before 1.4 hold)."""
    return hashlib.blake2b(",".join(features).encode(), digest_size=8).hexdigest()


def same_platform(recorded: Any, device: Any) -> bool:
    """Whether the header's ``decode_platform`` is this process's on ``device`` (then a
    decode must be bit-identical); a fingerprint of before 1.4, with the CPU features
    listed, is compared in that form."""
    now = platform_fingerprint(device)
    if isinstance(recorded, Mapping) and isinstance(recorded.get("cpu"), list):
        now["cpu"] = list(_host_fingerprint()["cpu"])
    return bool(recorded == now)


@functools.cache
def _host_fingerprint() -> dict[str, Any]:
    """The part of :func:`platform_fingerprint` that cannot change within a process
    (reading the torch version from its metadata costs 2 ms; decompress asks per file)."""
    import platform
    from importlib import metadata

    try:  # the version without importing torch (the learned and classical paths run without it)
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 / 1
    features = core._multiarray_umath.__cpu_features__
    return {
        "numpy": np.__version__,
        "torch": torch_version,
        "machine": platform.machine(),
        "cpu": tuple(sorted(k for k, v in features.items() if v)),
    }


#: header keys that shape the output file (names, dtypes, structure) besides the values
OUTPUT_KEYS = ("columns", "column_dtypes", "layout", "arrow_schema")


def output_context(header: Mapping[str, Any]) -> bytes:
    """Canonical bytes of what the header says the output looks like (:data:`OUTPUT_KEYS`);
    part of every chunk's digest, so that a renamed branch or changed dtype fails too."""
    return json.dumps(
        {k: header.get(k) for k in OUTPUT_KEYS}, sort_keys=True, separators=(",", ":")
    ).encode()


#: the group entry keys a whole-file container's ``output_digest`` covers
GROUP_KEYS = ("name", "section", "model_hash", "columns", "branches", "rows", "entries", "chunks")


def groups_digest(header: Mapping[str, Any]) -> str:
    """The ``output_digest`` of a whole-file container's header: BLAKE2b of its output
    context (:func:`output_context`: the whole file's layout, schema and columns) and
    its groups, so that a header altered there fails as a damaged file (the inner
    containers' chunk digests cover only what each group restores)."""
    groups = [
        {k: g.get(k) for k in GROUP_KEYS} if isinstance(g, Mapping) else g
        for g in header.get("groups") or []
    ]
    blob = json.dumps(groups, sort_keys=True, separators=(",", ":")).encode()
    h = hashlib.blake2b(output_context(header), digest_size=DIGEST_SIZE)
    h.update(blob)
    return h.hexdigest()


def _salt(chunk: int) -> bytes:
    """The chunk's position, which starts both hashes (chunks swapped consistently in the
    index still fail)."""
    return chunk.to_bytes(8, "little", signed=True)


def _extra(counts: np.ndarray | None, passthrough: bytes, context: bytes) -> list[bytes]:
    return [
        np.ascontiguousarray(counts, "<i8").tobytes() if counts is not None else b"",
        passthrough,
        context,
    ]


def _update_extra(h: _Hash, extra: Sequence[bytes]) -> bytes:
    for part in extra:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def _exact(algorithm: str, chunk: int, values: np.ndarray, extra: Sequence[bytes]) -> bytes:
    """The exact digest: the matrix's little-endian float64 bytes (``xxh3``: column by
    column, ``blake2b``: row by row), then the length-prefixed ``extra`` parts."""
    h = ALGORITHMS[algorithm](_salt(chunk))
    # the matrix's own buffer when it is already in that order (the bounded decoder's
    # output is column-major), else a copy in it
    if algorithm in COLUMN_MAJOR:
        matrix = np.asfortranarray(values, "<f8").T  # C-ordered: the columns in turn
    else:
        matrix = np.ascontiguousarray(values, "<f8")
    h.update(matrix.reshape(-1).data)
    return _update_extra(h, extra)


def _stable(
    algorithm: str,
    chunk: int,
    values: np.ndarray,
    lossless: Sequence[int],
    extra: Sequence[bytes],
) -> bytes:
    """The platform-stable digest (see the module docstring)."""
    h = ALGORITHMS[algorithm](_salt(chunk))
    finite = np.isfinite(values)
    h.update(np.packbits(finite).tobytes())
    h.update(np.ascontiguousarray(values[~finite], "<f8").tobytes())
    for j in lossless:
        h.update(np.ascontiguousarray(values[:, j], "<f8").tobytes())
    return _update_extra(h, extra)


def _sketch(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The projections ``s`` (SKETCHES x columns) and the sums of the weights' ``|w|``."""
    n = len(values)
    w = np.random.default_rng(SEED).standard_normal((SKETCHES, n))
    with np.errstate(all="ignore"):
        x = np.where(np.isfinite(values), values, 0.0)
        scale = np.abs(x).max(axis=0) if n else np.zeros(values.shape[1])
        scale = np.where(scale > 0, scale, 1.0)
        s = w @ (x / scale)
    return s, np.abs(w).sum(axis=1)


def chunk_digest(
    chunk: int,
    values: np.ndarray,
    counts: np.ndarray | None,
    passthrough: bytes,
    lossless: Sequence[int],
    context: bytes = b"",
) -> dict[str, Any]:
    """The digest of one decoded chunk, as stored in its header entry.

    Parameters
    ----------
    chunk
        The chunk's position in the file.
    values
        The decoded ``(rows, columns)`` float64 matrix, lossless columns filled in.
    counts
        The chunk's objects per entry (jagged collections), or None.
    passthrough
        The bytes of its ``passthrough`` section (empty when it has none).
    lossless
        Indices of the columns stored verbatim.
    context
        :func:`output_context` of the file's header.
    """
    extra = _extra(counts, passthrough, context)
    s, wsum = _sketch(values)
    # the sketch as integers of a power-of-two step at most a quarter of the smallest
    # tolerance (format 1.4; before, base64 of its float64s): s / 2^e is exact, so
    # rounding moves each projection by at most 2^(e-1), which the check adds
    _, top = math.frexp(float(_tolerance(len(values), wsum).min()) / 4)
    exp = top - 1
    return {
        WRITTEN: _exact(WRITTEN, chunk, values, extra).hex(),
        "stable": _stable(WRITTEN, chunk, values, lossless, extra).hex(),
        "sketch": {"exp": exp, "q": [int(q) for q in np.rint(np.ldexp(s, -exp)).reshape(-1)]},
    }


def _tolerance(n: int, wsum: np.ndarray) -> np.ndarray:
    """Each projection's allowed drift for ``n`` rows (module docstring), per sketch."""
    return SIGMAS * DRIFT * np.sqrt(n) + SUM_ERROR * wsum


#: the largest integer a stored sketch may hold (exact in float64)
_MAX_Q = 1 << 53


def _recorded_sketch(sketch: Any) -> tuple[np.ndarray, float]:
    """A recorded sketch and the rounding it carries: ``{"exp", "q"}`` (1.4+) or the base64
    of its float64s (before); ValueError/TypeError when malformed."""
    if isinstance(sketch, str):
        return np.frombuffer(base64.b64decode(sketch, validate=True), "<f8"), 0.0
    exp, q = sketch["exp"], sketch["q"]
    if (
        type(exp) is not int
        or not -1074 <= exp <= 1023
        or not isinstance(q, list)
        or not all(type(v) is int and abs(v) <= _MAX_Q for v in q)
    ):
        raise ValueError("its sketch is not a power-of-two exponent and a list of integers")
    return np.ldexp(np.array(q, dtype=np.float64), exp), math.ldexp(1.0, exp - 1)


def check_digest(
    recorded: dict[str, Any],
    chunk: int,
    values: np.ndarray,
    counts: np.ndarray | None,
    passthrough: bytes,
    lossless: Sequence[int],
    strict: bool,
    context: bytes = b"",
) -> bool:
    """Compare a decoded chunk with its recorded digest.

    With ``strict`` (decoded on the platform that compressed the file) the values must
    be bit-identical; otherwise they may differ within cross-platform drift.

    Returns
    -------
    bool
        True when bit-identical, False when it differs only by cross-platform drift.

    Raises
    ------
    ValueError
        Naming what differs (the caller adds the file name).
    """
    try:
        if not isinstance(recorded, Mapping):
            raise TypeError("not an object")
        (algorithm,) = [a for a in ALGORITHMS if a in recorded]
        want_exact = bytes.fromhex(recorded[algorithm])
        want_stable = bytes.fromhex(recorded["stable"])
        want_s, rounding = _recorded_sketch(recorded["sketch"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"its content digest is malformed ({exc!r})") from None
    extra = _extra(counts, passthrough, context)
    if _exact(algorithm, chunk, values, extra) == want_exact:
        return True
    if strict:
        raise ValueError(
            "its decoded values differ from those recorded at compress time, on the same platform"
        )
    if _stable(algorithm, chunk, values, lossless, extra) != want_stable:
        raise ValueError(
            "its decoded values differ from those recorded at compress time "
            "(non-finite values, lossless columns, counts or passthrough)"
        )
    s, wsum = _sketch(values)
    if want_s.shape != (s.size,):
        raise ValueError("its content digest has the wrong size")
    tol = np.broadcast_to(_tolerance(len(values), wsum)[:, None] + rounding, s.shape)
    diff = np.abs(s - want_s.reshape(s.shape))
    if not np.all(diff <= tol):  # NaN (a digest of NaNs) fails too
        j = int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf).max(axis=0)))
        raise ValueError(
            f"its decoded values differ from those recorded at compress time "
            f"(column {j}: a projection moved by {float(diff[:, j].max()):.3g} "
            f"of the column's largest value, {float(tol[:, j].max()):.3g} allowed)"
        )
    return False
