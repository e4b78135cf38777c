"""The ``.baler`` container: checksummed zstd frames with a JSON index.

Layout (all integers little-endian; specified in ``docs/FORMAT.md``)::

    preamble  : b"BALEREXT" | u16 major | u16 minor | u32 flags (0)
    sections  : zstd frames, one per (section name, chunk), each with the zstd
                content checksum (XXH64) and the content size
    index     : one zstd frame holding UTF-8 JSON {"header": {...}, "sections": [...]}
    trailer   : u64 index offset | u32 index length | u32 CRC-32 of the index frame
                | b"BALEREND"

Every section entry records its offset, length, CRC-32 of the compressed frame,
and for arrays the dtype and shape. A reader checks the magic numbers, the format
version and flags, the trailer, the index CRC, then validates the whole index against
its schema and caps (``docs/FORMAT.md``, "Validation") before anything the file
declares is allocated, and for each section it decodes the CRC, the frame's declared
size and the zstd checksum: a flipped byte, a truncated or a crafted file raises
:class:`~baler_ext.errors.ContainerError`. Each chunk's header entry also carries a
digest of its decoded values (:mod:`baler_ext.codec.digest`), which decompress checks.
Nothing is pickled: arrays are raw little-endian bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import zstandard

from baler_ext.codec.digest import FEATURE as DIGEST_FEATURE
from baler_ext.codec.digest import WRITTEN as WRITTEN_DIGEST
from baler_ext.codec.digest import groups_digest
from baler_ext.errors import BalerError, ContainerError

log = logging.getLogger(__name__)

MAGIC = b"BALEREXT"
END_MAGIC = b"BALEREND"
FORMAT_VERSION = (1, 4)
#: features a reader must understand to decode a file (header key ``features``, 1.1+);
#: a file that lists one this reader does not know is rejected with "upgrade"
KNOWN_FEATURES = frozenset(
    {
        "bounded-relations",
        "bounded-latent-policy",
        "bounded-dither",
        "bounded-learned",
        "bounded-exception-gaps",
        "groups",
        DIGEST_FEATURE,
    }
)
#: feature (and header ``mode``) of a whole-file container: its sections are complete
#: containers, one per structure group (``docs/FORMAT.md``, "Whole files")
GROUPS_FEATURE = "groups"
#: section-name prefix of a whole-file container's inner containers (``group:<name>``)
GROUP_PREFIX = "group:"
#: most groups a whole-file container may list
MAX_GROUPS = 4096
#: preamble flag bits a reader understands (none are defined yet: any set bit is refused)
KNOWN_FLAGS = 0
#: numpy dtypes a section may declare; anything else is refused before allocation
ALLOWED_DTYPES = frozenset(
    {"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"}
)
#: decoded bytes the array sections of a chunk may hold: per row, BYTES_PER_VALUE per
#: compressed column (the bounded mode needs at most ~21: residual words, sign,
#: exception index and value) and 8 per latent dimension; 8 per entry (counts); plus
#: SLACK for per-chunk models (range-coder symbol counts)
BYTES_PER_VALUE = 32
SLACK = 4 << 20
#: byte sections (Arrow IPC passthrough) and file-level sections (decoder weights) may
#: decode to at most MAX_EXPANSION times their stored length, plus SLACK
MAX_EXPANSION = 1024
#: values (rows x (columns + latent dimensions)) a chunk may declare: any number up to
#: MAX_VALUES_FREE, beyond that at most VALUES_PER_BYTE per byte of the file (a ratio of
#: 512 against float64; real files stay far below)
MAX_VALUES_FREE = 1 << 20
VALUES_PER_BYTE = 64
#: the index frame decodes to at most INDEX_EXPANSION times its length, and MAX_INDEX
INDEX_EXPANSION = 256
MAX_INDEX = 256 << 20
MAX_LATENT = 1 << 16
#: chunk header key of the content digest (see :mod:`baler_ext.codec.digest`)
DIGEST_KEY = "digest"
#: from this format version on every chunk must carry its digest
DIGEST_VERSION = (1, 2)
DECODER_PREFIX = "decoder/"
_SECTION_KEYS = frozenset(
    {"name", "chunk", "offset", "length", "crc32", "raw_size", "dtype", "shape"}
)
_SECTION_REQUIRED = frozenset({"name", "chunk", "offset", "length", "crc32", "raw_size"})
_PREAMBLE = struct.Struct("<8sHHI")
_TRAILER = struct.Struct("<QII8s")


def _cap(length: int, expansion: int, slack: int) -> int:
    return length * expansion + slack


@dataclass
class SectionInfo:
    """Where one section lies in the file and how to decode it."""

    name: str
    chunk: int
    offset: int
    length: int
    crc32: int
    raw_size: int
    dtype: str | None = None
    shape: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class ContainerWriter:
    """Stream sections into a container; the index is written by :meth:`close`.

    Parameters
    ----------
    fh
        A binary file opened for writing (the caller owns atomic renaming).
    level
        zstd compression level of every section.
    """

    def __init__(self, fh: BinaryIO, level: int = 19) -> None:
        self._fh = fh
        self._cctx = zstandard.ZstdCompressor(
            level=level, write_checksum=True, write_content_size=True
        )
        self._levels: dict[int, zstandard.ZstdCompressor] = {level: self._cctx}
        self._sections: list[SectionInfo] = []
        self._fh.write(_PREAMBLE.pack(MAGIC, *FORMAT_VERSION, 0))
        self._offset = _PREAMBLE.size

    def _frame(self, raw: bytes, level: int | None = None) -> tuple[int, int, int]:
        cctx = self._cctx if level is None else self._other_level(level)
        frame = cctx.compress(raw)
        offset = self._offset
        self._fh.write(frame)
        self._offset += len(frame)
        return offset, len(frame), zlib.crc32(frame)

    def _other_level(self, level: int) -> zstandard.ZstdCompressor:
        if level not in self._levels:
            self._levels[level] = zstandard.ZstdCompressor(
                level=level, write_checksum=True, write_content_size=True
            )
        return self._levels[level]

    def add_bytes(
        self, name: str, chunk: int, data: bytes, level: int | None = None
    ) -> SectionInfo:
        """Add an opaque byte section (e.g. an Arrow IPC stream); ``level`` as in
        :meth:`add_array`."""
        offset, length, crc = self._frame(data, level)
        info = SectionInfo(name, chunk, offset, length, crc, len(data))
        self._sections.append(info)
        return info

    def add_array(
        self, name: str, chunk: int, array: np.ndarray, level: int | None = None
    ) -> SectionInfo:
        """Add a numeric array as raw little-endian bytes with its dtype and shape.

        ``level`` overrides the zstd level for this section (e.g. 1 for bytes that an
        entropy coder already compressed); the frame format does not change.
        """
        arr = np.ascontiguousarray(array)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        offset, length, crc = self._frame(arr.tobytes(), level)
        info = SectionInfo(
            name, chunk, offset, length, crc, arr.nbytes, arr.dtype.str, list(arr.shape)
        )
        self._sections.append(info)
        return info

    def close(self, header: dict[str, Any]) -> dict[str, int]:
        """Write the index and trailer; return compressed bytes per section name.

        A header whose chunk digests use the algorithm :mod:`~baler_ext.codec.digest`
        writes gets its feature (``digest-xxh3``) added to ``features`` in the file.
        """
        header = _with_digest_feature(header)
        index = json.dumps(
            {"header": header, "sections": [s.to_dict() for s in self._sections]},
            separators=(",", ":"),
        ).encode()
        frame = self._cctx.compress(index)
        self._fh.write(frame)
        self._fh.write(_TRAILER.pack(self._offset, len(frame), zlib.crc32(frame), END_MAGIC))
        self._fh.flush()
        sizes: dict[str, int] = {
            "preamble+index+trailer": _PREAMBLE.size + len(frame) + _TRAILER.size
        }
        for s in self._sections:
            sizes[s.name] = sizes.get(s.name, 0) + s.length
        return sizes


def _with_digest_feature(header: dict[str, Any]) -> dict[str, Any]:
    """``header`` with :data:`DIGEST_FEATURE` in its ``features`` when a chunk's digest
    is of :data:`~baler_ext.codec.digest.WRITTEN` (a copy; the header otherwise as is)."""
    features = header.get("features", [])
    chunks = header.get("chunks") or []
    if DIGEST_FEATURE in features or not any(
        isinstance(m, dict) and WRITTEN_DIGEST in (m.get(DIGEST_KEY) or {}) for m in chunks
    ):
        return header
    return {**header, "features": [*features, DIGEST_FEATURE]}


@contextlib.contextmanager
def decode_errors(path: Path) -> Iterator[None]:
    """Turn every exception raised while decoding ``path`` into a one-line ContainerError
    naming it (a crafted file must never end in a traceback). Filesystem errors (an
    OSError with an errno) pass unchanged, other user errors get the file name; Ctrl-C
    passes."""
    try:
        yield
    except BalerError as exc:  # e.g. a registry's ConfigError for a crafted mode setting
        if str(path) in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from None
    except OSError as exc:
        if exc.errno is not None:  # the filesystem's (full disk, permissions)
            raise
        raise ContainerError(
            f"{path}: cannot be decoded ({type(exc).__name__}: {exc}); "
            "the file is damaged, recreate it with --mode compress"
        ) from None
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ContainerError(
            f"{path}: cannot be decoded ({type(exc).__name__}: {text}); the "
            "file is damaged, recreate it with --mode compress"
        ) from None


def _names(value: Any) -> bool:
    """Whether ``value`` is a list of distinct strings."""
    return (
        isinstance(value, list)
        and all(isinstance(v, str) for v in value)
        and len(set(value)) == len(value)
    )


def _is_int(value: Any, lo: int = 0, hi: int = 1 << 62) -> bool:
    """Whether ``value`` is a JSON integer (not a bool) in ``[lo, hi]``."""
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


class ContainerReader:
    """Read and verify a container written by :class:`ContainerWriter`.

    Opening validates the preamble, the trailer and the whole index against the
    schema of ``docs/FORMAT.md`` ("Validation") before anything the file declares is
    allocated; each section read checks its CRC-32, its zstd frame's declared size
    and its zstd checksum.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            raise ContainerError(f"{path} is a folder, not a compressed file")
        if not path.is_file():
            raise ContainerError(f"{path}: compressed file not found")
        self._fh = path.open("rb")
        try:
            self._read_index()
        except BaseException:
            self._fh.close()
            raise

    def _fail(self, what: str) -> ContainerError:
        return ContainerError(
            f"{self.path}: {what}; the file is damaged, recreate it with --mode compress"
        )

    def _read_index(self) -> None:
        size = self.path.stat().st_size
        self.file_size = size
        if size < _PREAMBLE.size + _TRAILER.size:
            raise self._fail("too short to be a baler_ext file (truncated?)")
        magic, major, minor, flags = _PREAMBLE.unpack(self._fh.read(_PREAMBLE.size))
        if magic != MAGIC:
            raise ContainerError(f"{self.path}: not a baler_ext compressed file (wrong magic)")
        if major > FORMAT_VERSION[0] or (major == FORMAT_VERSION[0] and minor > FORMAT_VERSION[1]):
            raise ContainerError(
                f"{self.path}: written in format {major}.{minor}, newer than this baler_ext "
                f"reads ({FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}); upgrade baler_ext"
            )
        if major < FORMAT_VERSION[0]:
            raise ContainerError(f"{self.path}: format {major}.{minor} is no longer supported")
        if flags & ~KNOWN_FLAGS:
            raise ContainerError(
                f"{self.path}: preamble flags {flags:#x} are not known to this "
                "baler_ext; the file is damaged or needs a newer baler_ext"
            )
        self.version = (major, minor)
        self._fh.seek(size - _TRAILER.size)
        offset, length, crc, end = _TRAILER.unpack(self._fh.read(_TRAILER.size))
        if end != END_MAGIC:
            raise self._fail("the end marker is missing (truncated?)")
        if offset < _PREAMBLE.size or offset + length + _TRAILER.size != size:
            raise self._fail("the index does not end where the trailer starts")
        self._fh.seek(offset)
        frame = self._fh.read(length)
        if zlib.crc32(frame) != crc:
            raise self._fail("the index checksum does not match")
        cap = min(_cap(length, INDEX_EXPANSION, 1 << 20), MAX_INDEX)
        raw = self._decompress(frame, "the index", cap)
        try:
            index = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise self._fail(f"the index cannot be decoded ({exc})") from None
        self._data_end = offset
        self._validate(index)

    def _decompress(self, frame: bytes, what: str, cap: int, raw_size: int | None = None) -> bytes:
        """Decode one zstd frame after checking the content size it declares: it must be
        present, equal ``raw_size`` (when given) and not exceed ``cap``."""
        try:
            declared = zstandard.get_frame_parameters(frame).content_size
        except zstandard.ZstdError as exc:
            raise self._fail(f"{what} is not a zstd frame ({exc})") from None
        if declared == zstandard.CONTENTSIZE_UNKNOWN:
            raise self._fail(f"{what} does not declare its decoded size")
        if raw_size is not None and declared != raw_size:
            raise self._fail(f"{what} declares {declared} decoded bytes, the index {raw_size}")
        if declared > cap:
            raise self._fail(
                f"{what} declares {declared} decoded bytes, more than the "
                f"{cap} a file of {self.file_size} bytes may hold there"
            )
        try:
            raw = zstandard.ZstdDecompressor().decompress(
                frame, max_output_size=cap, allow_extra_data=False
            )
        except zstandard.ZstdError as exc:
            raise self._fail(f"{what} cannot be decoded ({exc})") from None
        if len(raw) != declared:
            raise self._fail(f"{what} has the wrong size")
        return raw

    # --- the index schema (docs/FORMAT.md, "Validation") ---------------------------------

    def _validate(self, index: Any) -> None:
        if (
            not isinstance(index, dict)
            or not isinstance(index.get("header"), dict)
            or not isinstance(index.get("sections"), list)
        ):
            raise self._fail("the index is not {header, sections}")
        header = index["header"]
        self.header: dict[str, Any] = header
        features = header.get("features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise self._fail("the header's features are not a list of names")
        unknown = sorted(set(features) - KNOWN_FEATURES)
        if unknown:
            raise ContainerError(
                f"{self.path}: uses {', '.join(unknown)}, which this "
                "baler_ext cannot decode; upgrade baler_ext"
            )
        self._validate_header(header)
        self.sections = [self._section(s, i) for i, s in enumerate(index["sections"])]
        self._by_key: dict[tuple[str, int], SectionInfo] = {}
        for s in self.sections:
            if (s.name, s.chunk) in self._by_key:
                raise self._fail(f"section '{s.name}' of chunk {s.chunk} is listed twice")
            self._by_key[(s.name, s.chunk)] = s
        end = _PREAMBLE.size
        for s in sorted(self.sections, key=lambda s: s.offset):
            if s.offset < end:
                raise self._fail(f"section '{s.name}' of chunk {s.chunk} overlaps another")
            end = s.offset + s.length
        self._validate_chunks(header)
        if "groups" in header:
            wanted = {g["section"] for g in header["groups"]}
            for s in self.sections:
                if s.name not in wanted or s.chunk != -1 or s.dtype is not None:
                    raise self._fail(
                        f"section '{s.name}' of chunk {s.chunk} is not one of the "
                        "whole-file container's groups"
                    )
            missing = sorted(wanted - {s.name for s in self.sections})
            if missing:
                raise self._fail(f"the section '{missing[0]}' of a group is missing")

    def _validate_header(self, header: dict[str, Any]) -> None:
        columns = header.get("columns")
        if (
            not isinstance(columns, list)
            or not all(isinstance(c, str) for c in columns)
            or len(set(columns)) != len(columns)
        ):
            raise self._fail("the header's columns are not a list of distinct names")
        model = header.get("model")
        if (
            not isinstance(model, dict)
            or not isinstance(model.get("hash"), str)
            or not _is_int(model.get("latent_dim", 0), 0, MAX_LATENT)
        ):
            raise self._fail("the header's model entry is malformed")
        if not isinstance(header.get("mode"), str) or not isinstance(header.get("layout"), dict):
            raise self._fail("the header lacks its mode or layout")
        chunks = header.get("chunks")
        if not isinstance(chunks, list):
            raise self._fail("the header does not list the chunks")
        for i, meta in enumerate(chunks):
            if (
                not isinstance(meta, dict)
                or not _is_int(meta.get("rows"))
                or not _is_int(meta.get("entries"))
                or not isinstance(meta.get("lossless", []), list)
                or not all(c in columns for c in meta.get("lossless", []))
            ):
                raise self._fail(f"the header entry of chunk {i} is malformed")
            digest = meta.get(DIGEST_KEY)
            if digest is None and self.version >= DIGEST_VERSION:
                raise self._fail(f"chunk {i} has no content digest")
            if digest is not None and not isinstance(digest, dict):
                raise self._fail(f"the content digest of chunk {i} is malformed")
        if self._validate_groups(header):
            return
        if header.get("rows") != sum(m["rows"] for m in chunks) or header.get("entries") != sum(
            m["entries"] for m in chunks
        ):
            raise self._fail("the header's row or entry totals disagree with its chunks")

    def _validate_groups(self, header: dict[str, Any]) -> bool:
        """Check a whole-file container's ``groups`` (see :data:`GROUPS_FEATURE`); return
        whether the container is one."""
        groups = header.get("groups")
        grouped = GROUPS_FEATURE in header.get("features", [])
        if groups is None and not grouped:
            return False
        if (
            not grouped
            or header["mode"] != GROUPS_FEATURE
            or not isinstance(groups, list)
            or not 0 < len(groups) <= MAX_GROUPS
        ):
            raise self._fail(
                "the header's groups are malformed (a whole-file container has mode "
                "'groups', the feature 'groups' and a list of groups)"
            )
        names: set[str] = set()
        for i, g in enumerate(groups):
            if (
                not isinstance(g, dict)
                or not isinstance(g.get("name"), str)
                or not 0 < len(g["name"]) <= 256
                or g.get("section") != GROUP_PREFIX + g["name"]
                or not isinstance(g.get("model_hash"), str)
                or not _names(g.get("columns"))
                or not _names(g.get("branches"))
                or not all(_is_int(g.get(k)) for k in ("rows", "entries", "chunks"))
            ):
                raise self._fail(f"the header entry of group {i} is malformed")
            if g["name"] in names:
                raise self._fail(f"group '{g['name']}' is listed twice")
            names.add(g["name"])
        if [c for g in groups for c in g["columns"]] != header["columns"]:
            raise self._fail("the header's columns are not those of its groups")
        if header["chunks"]:
            raise self._fail("a whole-file container lists its chunks in its groups")
        if header.get("output_digest") != groups_digest(header):
            raise self._fail(
                "its header's layout, columns or groups do not match their digest (output_digest)"
            )
        if header.get("rows") != sum(g["rows"] for g in groups) or any(
            header.get("entries") != g["entries"] for g in groups
        ):
            raise self._fail("the header's row or entry totals disagree with its groups")
        return True

    def _section(self, entry: Any, i: int) -> SectionInfo:
        if (
            not isinstance(entry, dict)
            or not set(entry) <= _SECTION_KEYS
            or not _SECTION_REQUIRED <= set(entry)
        ):
            raise self._fail(f"index entry {i} is malformed")
        name, chunk = entry["name"], entry["chunk"]
        n_chunks = len(self.header["chunks"])
        if not isinstance(name, str) or not 0 < len(name) <= 512:
            raise self._fail(f"index entry {i} has no valid name")
        if not _is_int(chunk, -1, n_chunks - 1):
            raise self._fail(
                f"section '{name}' belongs to chunk {chunk!r}, not one of the {n_chunks} chunks"
            )
        if not (
            _is_int(entry["offset"], _PREAMBLE.size)
            and _is_int(entry["length"], 1)
            and entry["offset"] + entry["length"] <= self._data_end
        ):
            raise self._fail(f"section '{name}' lies outside the data")
        if not _is_int(entry["crc32"], 0, 0xFFFFFFFF) or not _is_int(entry["raw_size"]):
            raise self._fail(f"section '{name}' has a malformed checksum or size")
        dtype, shape = entry.get("dtype"), entry.get("shape")
        if (dtype is None) != (shape is None):
            raise self._fail(f"section '{name}' has a dtype without a shape or vice versa")
        if dtype is not None:
            if dtype not in ALLOWED_DTYPES:
                raise self._fail(
                    f"section '{name}' has the dtype {dtype!r}, not one of {sorted(ALLOWED_DTYPES)}"
                )
            if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(d) for d in shape):
                raise self._fail(f"section '{name}' has a malformed shape")
            if math.prod(shape) * np.dtype(dtype).itemsize != entry["raw_size"]:
                raise self._fail(
                    f"section '{name}': its shape {shape} and dtype {dtype} do "
                    f"not make its {entry['raw_size']} bytes"
                )
        return SectionInfo(**entry)

    def chunk_cap(self, chunk: int) -> int:
        """Most decoded bytes the array sections of ``chunk`` may hold together."""
        if chunk < 0:
            return _cap(self.file_size, MAX_EXPANSION, 0)
        meta = self.header["chunks"][chunk]
        return (
            meta["rows"]
            * (
                len(self.header["columns"]) * BYTES_PER_VALUE
                + self.header["model"].get("latent_dim", 0) * 8
            )
            + meta["entries"] * 8
            + SLACK
        )

    def _validate_chunks(self, header: dict[str, Any]) -> None:
        width = len(header["columns"]) + header["model"].get("latent_dim", 0)
        allowed = max(MAX_VALUES_FREE, VALUES_PER_BYTE * self.file_size)
        per_chunk: dict[int, int] = {}
        for s in self.sections:
            if s.dtype is not None:
                per_chunk[s.chunk] = per_chunk.get(s.chunk, 0) + s.raw_size
            elif s.raw_size > _cap(s.length, MAX_EXPANSION, SLACK):
                raise self._fail(
                    f"section '{s.name}' of chunk {s.chunk} declares {s.raw_size} "
                    f"bytes from {s.length} stored ones"
                )
        for i, meta in enumerate(header["chunks"]):
            if meta["rows"] * max(width, 1) > allowed:
                raise ContainerError(
                    f"{self.path}: chunk {i} declares {meta['rows']} rows of {width} values, "
                    f"more than {VALUES_PER_BYTE} per byte of this {self.file_size}-byte file "
                    "(a ratio above 512 against float64): refused as damaged or as a memory "
                    "bomb; if the file is genuine, recompress it with a data.chunk_size that "
                    f"keeps chunks at {MAX_VALUES_FREE // max(width, 1)} rows or fewer "
                    "(always accepted)"
                )
            dtypes = header.get("column_dtypes")
            dtypes = dtypes if isinstance(dtypes, dict) else {}
            for col in meta.get("lossless", []):
                lossless_sec = self._by_key.get((f"lossless:{col}", i))
                # float64, or (1.2) the column's stored dtype
                stored_dtype = dtypes.get(col)
                dtypes_ok = {"<f8", "<f4"} if stored_dtype in ("float32", "<f4") else {"<f8"}
                if (
                    lossless_sec is None
                    or lossless_sec.dtype not in dtypes_ok
                    or lossless_sec.shape != [meta["rows"]]
                ):
                    raise self._fail(f"chunk {i} lacks the values of its lossless column '{col}'")
            counts = self._by_key.get(("counts", i))
            if counts is not None:
                if counts.dtype != "<i8" or counts.shape != [meta["entries"]]:
                    raise self._fail(f"chunk {i}'s counts do not match its entries")
            elif header["layout"].get("collection") is not None:
                raise self._fail(f"chunk {i} lacks the object counts of its collection")
            elif meta["rows"] != meta["entries"]:
                raise self._fail(f"chunk {i} has {meta['rows']} rows but {meta['entries']} entries")
            if (
                meta["rows"]
                and not any(
                    s.chunk == i and not s.name.startswith(("lossless:", "counts", "passthrough"))
                    for s in self.sections
                )
                and set(meta.get("lossless", [])) != set(header["columns"])
            ):
                raise self._fail(f"chunk {i} has no compressed sections")
        for chunk, total in per_chunk.items():
            if total > self.chunk_cap(chunk):
                limit = (
                    "its rows can need"
                    if chunk >= 0
                    else f"a file of {self.file_size} bytes can hold"
                )
                raise self._fail(
                    f"the sections of chunk {chunk} declare {total} decoded "
                    f"bytes, more than {limit} ({self.chunk_cap(chunk)})"
                )
        embedded = header.get("decoder_embedded", False)
        has_decoder = any(s.name.startswith(DECODER_PREFIX) for s in self.sections)
        if bool(embedded) != has_decoder:
            raise self._fail("the header's decoder_embedded disagrees with the sections")

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has(self, name: str, chunk: int) -> bool:
        return (name, chunk) in self._by_key

    def _raw(self, info: SectionInfo) -> bytes:
        self._fh.seek(info.offset)
        frame = self._fh.read(info.length)
        if len(frame) != info.length:
            raise self._fail(f"section '{info.name}' is cut short (truncated?)")
        if zlib.crc32(frame) != info.crc32:
            raise self._fail(f"checksum mismatch in section '{info.name}' of chunk {info.chunk}")
        cap = (
            self.chunk_cap(info.chunk)
            if info.dtype is not None
            else _cap(info.length, MAX_EXPANSION, SLACK)
        )
        return self._decompress(
            frame, f"section '{info.name}' of chunk {info.chunk}", cap, info.raw_size
        )

    def _info(self, name: str, chunk: int) -> SectionInfo:
        info = self._by_key.get((name, chunk))
        if info is None:
            raise self._fail(f"section '{name}' of chunk {chunk} is missing")
        return info

    def read_bytes(self, name: str, chunk: int) -> bytes:
        """The bytes of section ``name`` of ``chunk``, verified."""
        return self._raw(self._info(name, chunk))

    def read_array(self, name: str, chunk: int) -> np.ndarray:
        """The array of section ``name`` of ``chunk``, verified."""
        info = self._info(name, chunk)
        if info.dtype is None or info.shape is None:
            raise self._fail(f"section '{name}' is not an array")
        return np.frombuffer(self._raw(info), dtype=np.dtype(info.dtype)).reshape(info.shape)

    def chunk_arrays(self, chunk: int) -> dict[str, np.ndarray]:
        """Every array section of ``chunk`` by name, verified."""
        return {
            s.name: self.read_array(s.name, chunk)
            for s in self.sections
            if s.chunk == chunk and s.dtype is not None
        }

    def verify(self, prefix: str = "") -> None:
        """Read and check every section whose name starts with ``prefix`` (all by
        default): CRC-32, declared size and zstd checksum."""
        for info in self.sections:
            if info.name.startswith(prefix):
                self._raw(info)

    def verify_decoder(self) -> None:
        """Check the embedded decoder sections (``decoder/<tensor>``), if any."""
        self.verify(DECODER_PREFIX)

    def section_sizes(self) -> dict[str, int]:
        """Compressed bytes per section name, plus the container's own overhead."""
        sizes: dict[str, int] = {}
        for s in self.sections:
            sizes[s.name] = sizes.get(s.name, 0) + s.length
        total = self.file_size
        sizes["preamble+index+trailer"] = total - sum(sizes.values())
        return sizes
