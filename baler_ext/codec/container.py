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
version, the trailer, the index CRC and, for each section it decodes, the CRC and
the zstd checksum: a flipped byte or a truncated file raises
:class:`~baler_ext.errors.ContainerError`; it is never decoded into garbage.
Nothing is pickled: arrays are raw little-endian bytes.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import zstandard

from baler_ext.errors import ContainerError

log = logging.getLogger(__name__)

MAGIC = b"BALEREXT"
END_MAGIC = b"BALEREND"
FORMAT_VERSION = (1, 1)
#: features a reader must understand to decode a file (header key ``features``, 1.1+);
#: a file that lists one this reader does not know is rejected with "upgrade"
KNOWN_FEATURES = frozenset({"bounded-relations", "bounded-latent-policy", "bounded-dither",
                            "bounded-learned"})
_PREAMBLE = struct.Struct("<8sHHI")
_TRAILER = struct.Struct("<QII8s")


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
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True,
                                              write_content_size=True)
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
            self._levels[level] = zstandard.ZstdCompressor(level=level, write_checksum=True,
                                                           write_content_size=True)
        return self._levels[level]

    def add_bytes(self, name: str, chunk: int, data: bytes,
                  level: int | None = None) -> SectionInfo:
        """Add an opaque byte section (e.g. an Arrow IPC stream); ``level`` as in
        :meth:`add_array`."""
        offset, length, crc = self._frame(data, level)
        info = SectionInfo(name, chunk, offset, length, crc, len(data))
        self._sections.append(info)
        return info

    def add_array(self, name: str, chunk: int, array: np.ndarray,
                  level: int | None = None) -> SectionInfo:
        """Add a numeric array as raw little-endian bytes with its dtype and shape.

        ``level`` overrides the zstd level for this section (e.g. 1 for bytes that an
        entropy coder already compressed); the frame format does not change.
        """
        arr = np.ascontiguousarray(array)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        offset, length, crc = self._frame(arr.tobytes(), level)
        info = SectionInfo(name, chunk, offset, length, crc, arr.nbytes, arr.dtype.str,
                           list(arr.shape))
        self._sections.append(info)
        return info

    def close(self, header: dict[str, Any]) -> dict[str, int]:
        """Write the index and trailer; return compressed bytes per section name."""
        index = json.dumps({"header": header,
                            "sections": [s.to_dict() for s in self._sections]}).encode()
        frame = self._cctx.compress(index)
        self._fh.write(frame)
        self._fh.write(_TRAILER.pack(self._offset, len(frame), zlib.crc32(frame), END_MAGIC))
        self._fh.flush()
        sizes: dict[str, int] = {"preamble+index+trailer": _PREAMBLE.size + len(frame)
                                 + _TRAILER.size}
        for s in self._sections:
            sizes[s.name] = sizes.get(s.name, 0) + s.length
        return sizes


class ContainerReader:
    """Read and verify a container written by :class:`ContainerWriter`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise ContainerError(f"{path}: compressed file not found")
        self._fh = path.open("rb")
        try:
            self._read_index()
        except BaseException:
            self._fh.close()
            raise
        self._dctx = zstandard.ZstdDecompressor()

    def _fail(self, what: str) -> ContainerError:
        return ContainerError(f"{self.path}: {what}; the file is damaged, recreate it with "
                              "--mode compress")

    def _read_index(self) -> None:
        size = self.path.stat().st_size
        if size < _PREAMBLE.size + _TRAILER.size:
            raise self._fail("too short to be a baler_ext file (truncated?)")
        magic, major, minor, _ = _PREAMBLE.unpack(self._fh.read(_PREAMBLE.size))
        if magic != MAGIC:
            raise ContainerError(f"{self.path}: not a baler_ext compressed file (wrong magic)")
        if major > FORMAT_VERSION[0]:
            raise ContainerError(
                f"{self.path}: written in format {major}.{minor}, newer than this baler_ext "
                f"reads ({FORMAT_VERSION[0]}.x); upgrade baler_ext"
            )
        if major < FORMAT_VERSION[0]:
            raise ContainerError(f"{self.path}: format {major}.{minor} is no longer supported")
        self.version = (major, minor)
        self._fh.seek(size - _TRAILER.size)
        offset, length, crc, end = _TRAILER.unpack(self._fh.read(_TRAILER.size))
        if end != END_MAGIC:
            raise self._fail("the end marker is missing (truncated?)")
        if offset + length + _TRAILER.size != size:
            raise self._fail("the index does not end where the trailer starts")
        self._fh.seek(offset)
        frame = self._fh.read(length)
        if zlib.crc32(frame) != crc:
            raise self._fail("the index checksum does not match")
        try:
            index = json.loads(zstandard.ZstdDecompressor().decompress(frame))
        except (zstandard.ZstdError, ValueError) as exc:
            raise self._fail(f"the index cannot be decoded ({exc})") from None
        self.header: dict[str, Any] = index["header"]
        unknown = sorted(set(self.header.get("features", [])) - KNOWN_FEATURES)
        if unknown:
            raise ContainerError(f"{self.path}: uses {', '.join(unknown)}, which this "
                                 "baler_ext cannot decode; upgrade baler_ext")
        self.sections = [SectionInfo(**s) for s in index["sections"]]
        self._by_key = {(s.name, s.chunk): s for s in self.sections}
        self._data_end = offset

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has(self, name: str, chunk: int) -> bool:
        return (name, chunk) in self._by_key

    def _raw(self, info: SectionInfo) -> bytes:
        if info.offset + info.length > self._data_end:
            raise self._fail(f"section '{info.name}' lies outside the data")
        self._fh.seek(info.offset)
        frame = self._fh.read(info.length)
        if zlib.crc32(frame) != info.crc32:
            raise self._fail(f"checksum mismatch in section '{info.name}' of chunk {info.chunk}")
        try:
            raw = self._dctx.decompress(frame)
        except zstandard.ZstdError as exc:
            raise self._fail(f"section '{info.name}' cannot be decoded ({exc})") from None
        if len(raw) != info.raw_size:
            raise self._fail(f"section '{info.name}' has the wrong size")
        return raw

    def read_bytes(self, name: str, chunk: int) -> bytes:
        """The bytes of section ``name`` of ``chunk``, verified."""
        return self._raw(self._by_key[(name, chunk)])

    def read_array(self, name: str, chunk: int) -> np.ndarray:
        """The array of section ``name`` of ``chunk``, verified."""
        info = self._by_key[(name, chunk)]
        if info.dtype is None or info.shape is None:
            raise self._fail(f"section '{name}' is not an array")
        return np.frombuffer(self._raw(info), dtype=np.dtype(info.dtype)).reshape(info.shape)

    def verify(self) -> None:
        """Read and check every section (CRC-32 and zstd checksum)."""
        for info in self.sections:
            self._raw(info)

    def section_sizes(self) -> dict[str, int]:
        """Compressed bytes per section name, plus the container's own overhead."""
        sizes: dict[str, int] = {}
        for s in self.sections:
            sizes[s.name] = sizes.get(s.name, 0) + s.length
        total = self.path.stat().st_size
        sizes["preamble+index+trailer"] = total - sum(sizes.values())
        return sizes
