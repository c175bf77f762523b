"""Zip (and .nupkg, .jar, wheels...) extraction with hostile-input checks; runs in the sandbox.

The archive's structure is read and checked by ``zipcheck`` (central directory against
local headers, prepended bytes, NUL in names, overlapping members); members are then
decompressed here (stored, deflate, bzip2), their sizes and CRC-32 checked as bytes are
written. Nothing per member is heavier than one small tuple, so a zip of 200,000 tiny
members costs what its bytes cost.
"""

from __future__ import annotations

import bz2
import stat
import zlib
from pathlib import Path
from typing import BinaryIO

from verifier.errors import LimitExceededError, MalformedInputError
from verifier.unpack import registry, zipcheck
from verifier.unpack.limits import Limits
from verifier.unpack.result import Extraction
from verifier.unpack.sink import Sink, SourceError, StopExtraction

_MAX_LINK = 4096
_CHUNK = 1 << 20
_SMALL = 64 << 10  # members compressed to this or less are read and inflated in one call
STORED, DEFLATED, BZIP2 = 0, 8, 12
_METHODS = {STORED: "stored", DEFLATED: "deflate", BZIP2: "bzip2"}


class ZipReader:
    name = "zip"

    def sniff(self, head: bytes, filename: str) -> bool:
        return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")

    def extract(self, src: str, dest: str, limits: Limits) -> Extraction:
        try:
            layout = zipcheck.scan(src, limits.max_members)
        except OSError as e:
            raise MalformedInputError(f"not a readable zip archive: {e}") from None
        sink = Sink(
            dest, limits, stream_compressed=Path(src).stat().st_size, pack=limits.pack_members
        )
        for p in layout.problems:
            sink.problem(p.member, p.message)
        with open(src, "rb") as fh:
            try:
                for entry in layout.entries:
                    _extract_one(fh, entry, sink)
            except StopExtraction:
                pass
        return sink.result()


class _Member:
    """The decompressed bytes of one member, checked against its declared size and CRC."""

    def __init__(self, fh: BinaryIO, e: zipcheck.ZipEntry) -> None:
        self.fh = fh
        self.e = e
        self.left = e.compressed
        self.pos = e.data_offset
        self.out = 0
        self.crc = 0
        self.done = False
        self.dec: zlib._Decompress | bz2.BZ2Decompressor | None = None
        if e.method == DEFLATED:
            self.dec = zlib.decompressobj(-15)
        elif e.method == BZIP2:
            self.dec = bz2.BZ2Decompressor()

    def _raw(self, n: int) -> bytes:
        if self.left <= 0:
            return b""
        self.fh.seek(self.pos)
        data = self.fh.read(min(n, self.left))
        if not data:
            raise EOFError("member data truncated")
        self.left -= len(data)
        self.pos += len(data)
        return data

    def read(self, n: int = -1, /) -> bytes:
        n = _CHUNK if n < 0 else max(1, n)
        if self.out == 0 and not self.done and self.e.compressed <= _SMALL and n >= self.e.size:
            return self._whole()
        while not self.done:
            dec = self.dec
            if dec is None:  # stored
                data = self._raw(n)
                if data:
                    return self._count(data)
            elif isinstance(dec, bz2.BZ2Decompressor):
                if not dec.eof:
                    raw = self._raw(_CHUNK) if dec.needs_input else b""
                    if dec.needs_input and not raw:
                        raise EOFError("bzip2 stream truncated")
                    out = dec.decompress(raw, n)
                    if out:
                        return self._count(out)
                    continue
            elif not dec.eof:
                buf = dec.unconsumed_tail or self._raw(_CHUNK)
                if not buf:
                    raise EOFError("deflate stream truncated")
                out = dec.decompress(buf, n)
                if out:
                    return self._count(out)
                continue
            self._finish()
        return b""

    def _whole(self) -> bytes:
        """A small member in one go (most members of a big zip): one read, one inflate."""
        raw = self._raw(self.e.compressed) if self.e.compressed else b""
        if len(raw) < self.e.compressed:
            raise EOFError("member data truncated")
        dec = self.dec
        if dec is None:
            data = raw
        else:
            data = dec.decompress(raw, self.e.size + 1)
            if not dec.eof:
                raise EOFError("compressed stream truncated or longer than declared")
        self.dec = None
        self.left = 0
        out = self._count(data) if data else b""
        self._finish()
        return out

    def _count(self, data: bytes) -> bytes:
        self.out += len(data)
        if self.out > self.e.size:
            raise ValueError(f"member inflates past its declared {self.e.size} bytes")
        self.crc = zlib.crc32(data, self.crc)
        return data

    def _finish(self) -> None:
        self.done = True
        if self.out != self.e.size:
            raise ValueError(f"member has {self.out} bytes, its header says {self.e.size}")
        if self.crc != self.e.crc:
            raise ValueError(f"bad CRC-32 ({self.crc:08x}, header says {self.e.crc:08x})")


def _extract_one(fh: BinaryIO, e: zipcheck.ZipEntry, sink: Sink) -> None:
    raw = e.name
    # '\\' separates only in a name from an MS-DOS/Windows host without '/', as unzip reads it
    dos = e.create_system == 0 and "/" not in raw
    is_dir = (raw.replace("\\", "/") if dos else raw).endswith("/") or stat.S_ISDIR(e.mode)
    name = sink.name(raw, is_dir=is_dir, backslash_sep=dos)
    if name is None:
        return
    try:
        if is_dir:
            sink.mkdir(name)
            return
        if e.flags & 0x1:
            sink.problem(raw, "encrypted entry")
            return
        if e.method not in _METHODS:
            sink.problem(raw, f"unsupported compression method {e.method}")
            return
        if stat.S_ISLNK(e.mode):
            _symlink(fh, e, name, sink)
            return
        sink.admit_file(raw)
        sink.write(name, _Member(fh, e), e.compressed)
    except StopExtraction:
        raise
    except SourceError as e2:
        sink.problem(raw, f"cannot read entry: {e2}")
    except (MalformedInputError, LimitExceededError) as e2:
        sink.problem(raw, e2.message)
    except (zlib.error, OSError, EOFError, ValueError) as e2:
        sink.problem(raw, f"cannot read entry: {e2}")


def _symlink(fh: BinaryIO, e: zipcheck.ZipEntry, name: str, sink: Sink) -> None:
    """Symlinks are recorded, never created (the parent checks them with the whole layer)."""
    if e.size > _MAX_LINK:
        sink.problem(e.name, "symlink target too long")
        return
    m = _Member(fh, e)
    data = b""
    while True:
        chunk = m.read(_MAX_LINK + 1)
        if not chunk:
            break
        data += chunk
    sink.link(e.name, name, data.decode("utf-8", "surrogateescape"))


registry.register(ZipReader(), priority=10)
