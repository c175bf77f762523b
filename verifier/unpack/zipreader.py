"""Zip (and .nupkg, .jar...) extraction with hostile-input checks; runs in the sandbox."""

from __future__ import annotations

import itertools
import stat
import struct
import zipfile
from pathlib import Path

from verifier.errors import LimitExceededError, MalformedInputError
from verifier.unpack import paths, registry
from verifier.unpack.limits import Limits
from verifier.unpack.result import Problem
from verifier.unpack.sink import Sink, SourceError, StopExtraction

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_MAX_COMMENT = 0xFFFF
_MAX_LINK = 4096


def _declared_entries(path: str) -> int | None:
    """Entry count from the end-of-central-directory record (before zipfile parses it)."""
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            start = max(0, size - _EOCD_SIZE - _MAX_COMMENT)
            f.seek(start)
            tail = f.read()
    except OSError:
        return None
    i = tail.rfind(_EOCD)
    if i < 0 or len(tail) - i < _EOCD_SIZE:
        return None
    (total,) = struct.unpack_from("<H", tail, i + 10)
    if total == 0xFFFF:  # zip64: the real count is in the zip64 record; zipfile checks it
        return None
    return int(total)


class ZipReader:
    name = "zip"

    def sniff(self, head: bytes, filename: str) -> bool:
        return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")

    def extract(self, src: str, dest: str, limits: Limits) -> list[Problem]:
        declared = _declared_entries(src)
        if declared is not None and declared > limits.max_members:
            raise LimitExceededError(
                f"zip declares {declared} entries, more than the {limits.max_members} allowed"
            )
        try:
            zf = zipfile.ZipFile(src)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
            raise MalformedInputError(f"not a readable zip archive: {e}") from None
        sink = Sink(dest, limits, stream_compressed=Path(src).stat().st_size)
        with zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise LimitExceededError(f"zip has {len(infos)} entries, more than the cap")
            overlapping = _overlapping(infos, Path(src).stat().st_size)
            try:
                for info in infos:
                    _extract_one(zf, info, sink, overlapping)
            except StopExtraction:
                pass
        return sink.problems


def _overlapping(infos: list[zipfile.ZipInfo], size: int) -> set[int]:
    """ids of entries whose data overlaps another's (the non-recursive zip bomb trick)."""
    bad: set[int] = set()
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for a, b in itertools.pairwise(ordered):
        # 30 bytes of local header + the data is a lower bound on where `a` ends
        if a.header_offset + 30 + a.compress_size > b.header_offset:
            bad.add(id(a))
            bad.add(id(b))
    for i in infos:
        if i.header_offset < 0 or i.header_offset + 30 + i.compress_size > size:
            bad.add(id(i))
    return bad


def _mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0


def _extract_one(zf: zipfile.ZipFile, info: zipfile.ZipInfo, sink: Sink, bad: set[int]) -> None:
    raw = info.filename
    is_dir = raw.replace("\\", "/").endswith("/") or stat.S_ISDIR(_mode(info))
    name = sink.name(raw, is_dir=is_dir)
    if name is None:
        return
    if id(info) in bad:
        sink.problem(raw, "entry data overlaps another entry or lies outside the file")
        return
    try:
        if is_dir:
            sink.mkdir(name)
            return
        if info.flag_bits & 0x1:
            sink.problem(raw, "encrypted entry")
            return
        if stat.S_ISLNK(_mode(info)):
            _symlink(zf, info, name, sink)
            return
        sink.admit_file(raw)
        try:
            f = zf.open(info)
        except OSError as e:  # e.g. a negative offset in the central directory
            raise SourceError(f"{type(e).__name__}: {e}") from e
        with f:
            sink.write(name, f, info.compress_size)
    except StopExtraction:
        raise
    except SourceError as e:
        sink.problem(raw, f"cannot read entry: {e}")
    except (MalformedInputError, LimitExceededError) as e:
        sink.problem(raw, e.message)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, EOFError) as e:
        sink.problem(raw, f"cannot read entry: {e}")
    except OSError as e:
        sink.problem(raw, f"cannot write entry: {e.strerror or e}")


def _symlink(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, sink: Sink) -> None:
    """Symlinks are never created; one pointing outside the archive is a problem."""
    if info.file_size > _MAX_LINK:
        sink.problem(info.filename, "symlink target too long")
        return
    with zf.open(info) as f:
        target = f.read(_MAX_LINK + 1).decode("utf-8", "replace")
    if paths.link_escapes(name, target):
        sink.problem(info.filename, f"symlink escapes the archive: -> {target!r}")


registry.register(ZipReader(), priority=10)
