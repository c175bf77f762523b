"""Tar (plain, gz, bz2, xz) extraction with hostile-input checks; runs in the sandbox.

Members are read in stream mode and written by ``Sink``; ``tarfile`` never writes. Only
regular files and directories are extracted: symlinks and hard links are recorded, never
created (the parent checks them with the whole layer, ``links.py``; a hard link must name a
member extracted before it, as GNU tar requires), devices and FIFOs are problems.
"""

from __future__ import annotations

import bz2
import lzma
import tarfile
import zlib
from pathlib import Path

from verifier.errors import LimitExceededError, MalformedInputError
from verifier.unpack import registry
from verifier.unpack.limits import Limits
from verifier.unpack.result import Extraction
from verifier.unpack.sink import Sink, SourceError, StopExtraction

_BLOCK = 512
_BZ2_NAMES = (".tar.bz2", ".tbz2", ".tbz", ".tb2")
_TRAILER_SCAN = 64 << 20  # bytes after the end-of-archive marker that are checked


class _TarFile(tarfile.TarFile):
    """Remembers the last header block read: tarfile ends quietly on a truncated or
    corrupt header after the first one, and this tells that apart from a clean end."""

    last_block: bytes = b""


class _Header(tarfile.TarInfo):
    @classmethod
    def fromtarfile(cls, tarfile: tarfile.TarFile) -> _Header:
        # the same three steps as TarInfo.fromtarfile, keeping the block
        buf = tarfile.fileobj.read(_BLOCK)
        if isinstance(tarfile, _TarFile):
            tarfile.last_block = buf
        obj = cls.frombuf(buf, tarfile.encoding or "utf-8", tarfile.errors)
        obj.offset = tarfile.fileobj.tell() - _BLOCK
        return obj._proc_member(tarfile)  # type: ignore[attr-defined,no-any-return]


# every byte ``int(field, 8)`` may accept: octal digits, its 0o prefix, sign, underscores and
# whitespace
_INT_BYTES = b"01234567oO+-_ \t\n\r\x0b\x0c"


def looks_like_tar(block: bytes) -> bool:
    """A ustar/GNU magic, or a v7 header whose checksum adds up."""
    if len(block) < _BLOCK:
        return False
    if block[257:262] == b"ustar":
        return True
    field = block[148:156].replace(b"\x00", b" ").strip()
    if not field or not block[0]:
        return False
    if field.translate(None, _INT_BYTES):
        return False  # a byte int() never takes: no exception to raise and catch (most files)
    try:
        want = int(field, 8)
    except ValueError:
        return False
    got = sum(block[:148]) + 8 * 32 + sum(block[156:_BLOCK])
    return want == got


def _inflate_head(head: bytes, filename: str) -> bytes | None:
    """The first block of the tar stream inside a compressed head, or None."""
    try:
        if head[:2] == b"\x1f\x8b":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _BLOCK)
        if head[:3] == b"BZh":
            out = bz2.BZ2Decompressor().decompress(head, _BLOCK)
            if not out and filename.lower().endswith(_BZ2_NAMES):
                # bzip2 emits nothing before a whole block (up to 900 kB) is read
                return b"ustar".rjust(262, b"\x00")
            return out
        if head[:6] == b"\xfd7zXZ\x00":
            return lzma.LZMADecompressor().decompress(head, _BLOCK)
    except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError):
        return None
    return None


class TarReader:
    name = "tar"

    def sniff(self, head: bytes, filename: str) -> bool:
        if looks_like_tar(head[:_BLOCK]):
            return True
        block = _inflate_head(head, filename)
        return block is not None and looks_like_tar(block[:_BLOCK])

    def extract(self, src: str, dest: str, limits: Limits) -> Extraction:
        size = Path(src).stat().st_size
        sink = Sink(dest, limits, stream_compressed=size)
        try:
            with (
                open(src, "rb") as fh,
                _TarFile.open(fileobj=fh, mode="r|*", tarinfo=_Header) as tf,
            ):
                try:
                    for ti in tf:
                        _extract_one(tf, ti, sink)
                except StopExtraction:
                    return sink.result()
                _check_end(tf, sink)
        except SourceError as e:
            raise MalformedInputError(f"truncated or corrupt tar: {e}") from None
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, TypeError) as e:
            # TypeError: tarfile's gzip header parser on a truncated FEXTRA (found by fuzzing)
            # write errors are problems inside _extract_one; what gets here is reading
            raise MalformedInputError(f"truncated or corrupt tar: {e}") from None
        return sink.result()


def _check_end(tf: tarfile.TarFile, sink: Sink) -> None:
    """A clean end is a zero block; anything but zeros after it is hidden data."""
    last = tf.last_block if isinstance(tf, _TarFile) else b"\0" * _BLOCK
    if len(last) < _BLOCK:
        raise MalformedInputError("tar ends without an end-of-archive marker (truncated)")
    if last.count(0) != _BLOCK:
        raise MalformedInputError("invalid tar header (corrupt or truncated)")
    seen = 0
    while seen < _TRAILER_SCAN:
        chunk = tf.fileobj.read(min(1 << 20, _TRAILER_SCAN - seen))
        if not chunk:
            return
        seen += len(chunk)
        if chunk.count(0) != len(chunk):
            sink.problem("", "data after the end-of-archive marker (hidden or concatenated)")
            return


def _extract_one(tf: tarfile.TarFile, ti: tarfile.TarInfo, sink: Sink) -> None:
    raw = ti.name
    name = sink.name(raw, is_dir=ti.isdir())
    if name is None:
        return
    try:
        if ti.isdir():
            sink.mkdir(name)
        elif ti.isreg():
            sink.admit_file(raw)
            f = tf.extractfile(ti)
            if f is None:
                raise MalformedInputError("regular file without data")
            sink.write(name, f)
        elif ti.issym():
            sink.link(raw, name, ti.linkname)  # checked with the whole layer (links.py)
        elif ti.islnk():
            sink.hardlink(raw, name, ti.linkname)  # checked with the whole layer (links.py)
        elif ti.ischr() or ti.isblk():
            sink.problem(raw, "device entry")
        elif ti.isfifo():
            sink.problem(raw, "FIFO entry")
        else:
            sink.problem(raw, f"unsupported tar entry type {ti.type!r}")
    except (StopExtraction, SourceError):
        raise
    except (MalformedInputError, LimitExceededError) as e:
        sink.problem(raw, e.message)
    except OSError as e:
        sink.problem(raw, f"cannot write entry: {e.strerror or e}")


registry.register(TarReader(), priority=20)
