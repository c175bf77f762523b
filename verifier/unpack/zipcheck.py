"""The structure of a zip as both kinds of extractor see it, checked to agree.

``unzip`` reads the central directory; streaming extractors (and some unpackers) walk the
local headers from the start of the file. An attacker can make the two disagree: a member
that only one of them lists, a name or size or CRC that differs, bytes prepended before the
first local header. biv extracts what the central directory says, so every such
disagreement is reported (docs/contract.md "Archives as real extractors see them"):

* each central-directory entry must have a local header at its offset with the same name,
  method, CRC and sizes, read as the format allows: after general-purpose bit 3 the local
  header may carry zeros and a data descriptor follows the data; ZIP64 sentinels
  (``0xFFFFFFFF``) defer to the ZIP64 extra field; the Info-ZIP Unicode path extra field
  (``0x7075``) names the member when its CRC matches the raw name, as ``unzip`` does;
* a local header that no central-directory entry accounts for (in a gap between members,
  or between the last member and the central directory) is a member "only in the local
  headers";
* bytes before the first local header are allowed only when they are a self-extractor stub
  biv recognises (a PE or ELF program); anything else (another zip, garbage) is hostile;
* a NUL in a name is hostile (Python's zipfile would silently cut the name there).

The central directory is streamed: one small tuple per entry, no ``ZipInfo`` objects, and the
local headers are read in file order. Archive-wide faults raise ``MalformedInputError``;
per-member faults are :class:`Problem`s and the member is skipped.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from verifier.errors import LimitExceededError, MalformedInputError
from verifier.record import record
from verifier.unpack.result import Problem

EOCD = b"PK\x05\x06"
EOCD64 = b"PK\x06\x06"
EOCD64_LOC = b"PK\x06\x07"
CDH = b"PK\x01\x02"
LFH = b"PK\x03\x04"
DD = b"PK\x07\x08"
_EOCD_SIZE = 22
_MAX_COMMENT = 0xFFFF
_CDH_SIZE = 46
_LFH_SIZE = 30
_LFH = struct.Struct("<4s5H3I2H")
_SENTINEL32 = 0xFFFFFFFF
_SENTINEL16 = 0xFFFF
_GAP_SCAN = 64 << 20  # bytes of gaps between members scanned for hidden local headers
_UNICODE_PATH = 0x7075
_ZIP64 = 0x0001
_STUB_MAGICS = (b"MZ", b"\x7fELF")  # self-extractor programs (PE: WinZip/7-Zip/Info-ZIP SFX)


@record(slots=True)
class ZipEntry:
    """One member, as the central directory describes it once checked against its local
    header. ``data_offset`` is absolute in the file."""

    index: int
    raw_name: bytes
    name: str  # decoded (UTF-8, else the raw bytes kept via surrogateescape)
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    data_offset: int
    create_system: int
    external_attr: int

    @property
    def mode(self) -> int:
        return (self.external_attr >> 16) & 0xFFFF if self.create_system == 3 else 0


@record
class Layout:
    entries: list[ZipEntry]
    problems: list[Problem]
    shift: int  # bytes before the archive (a recognised stub), added to every offset


def decode_name(raw: bytes, flags: int) -> str:
    """UTF-8 (flag bit 11, or simply valid UTF-8); otherwise the bytes themselves, kept
    losslessly (surrogateescape) as ``unzip`` writes them on a POSIX file system."""
    return raw.decode("utf-8", "surrogateescape")


def _extras(data: bytes) -> Iterator[tuple[int, bytes]]:
    i = 0
    while i + 4 <= len(data):
        hid, size = struct.unpack_from("<HH", data, i)
        yield hid, data[i + 4 : i + 4 + size]
        i += 4 + size


def _unicode_name(extra: bytes, raw: bytes) -> str | None:
    """The Info-ZIP Unicode path (0x7075), used when its CRC matches the raw name."""
    for hid, body in _extras(extra):
        if hid == _UNICODE_PATH and len(body) >= 5 and body[0] == 1:
            (crc,) = struct.unpack_from("<I", body, 1)
            if crc == zlib.crc32(raw):
                try:
                    return body[5:].decode("utf-8")
                except UnicodeDecodeError:
                    return None
    return None


def _zip64(extra: bytes, want: list[str], values: dict[str, int]) -> bool:
    """Fill the ``want`` fields (in spec order) from the ZIP64 extra field; False if absent
    or short."""
    for hid, body in _extras(extra):
        if hid != _ZIP64:
            continue
        need = 8 * len(want)
        if len(body) < need:
            return False
        for k, name in enumerate(want):
            (values[name],) = struct.unpack_from("<Q", body, 8 * k)
        return True
    return False


def _has_zip64(extra: bytes) -> bool:
    return any(hid == _ZIP64 for hid, _ in _extras(extra))


def _find_eocd(fh: BinaryIO, size: int) -> tuple[int, bytes]:
    start = max(0, size - _EOCD_SIZE - _MAX_COMMENT)
    fh.seek(start)
    tail = fh.read()
    i = tail.rfind(EOCD)
    while i >= 0:
        if len(tail) - i >= _EOCD_SIZE:
            (clen,) = struct.unpack_from("<H", tail, i + 20)
            if i + _EOCD_SIZE + clen == len(tail):
                return start + i, tail[i : i + _EOCD_SIZE]
        i = tail.rfind(EOCD, 0, i)
    raise MalformedInputError("not a readable zip archive: no end of central directory record")


@record
class _Directory:
    offset: int  # where the central directory says it starts (before any shift)
    size: int
    count: int
    at: int  # where it really is in the file


def _directory(fh: BinaryIO, size: int) -> _Directory:
    pos, rec = _find_eocd(fh, size)
    disk, cd_disk, n_here, n_total, cd_size, cd_off, _clen = struct.unpack_from("<4H2IH", rec, 4)
    if disk != 0 or cd_disk != 0 or n_here != n_total:
        raise MalformedInputError("multi-disk (spanned) zip archives are not supported")
    end_of_cd = pos
    loc = b""
    if pos >= 20:
        fh.seek(pos - 20)
        loc = fh.read(20)
    if loc[:4] == EOCD64_LOC:  # ZIP64: the real values are in the ZIP64 record
        (_d, rec64_off, _disks) = struct.unpack_from("<IQI", loc, 4)
        rec_at = pos - 20 - 56
        if rec_at < 0:
            raise MalformedInputError("ZIP64 end of central directory record missing")
        fh.seek(rec_at)
        r64 = fh.read(56)
        if r64[:4] != EOCD64:
            raise MalformedInputError("ZIP64 end of central directory record missing")
        n_here, n_total, cd_size, cd_off = struct.unpack_from("<4Q", r64, 24)
        if n_here != n_total:
            raise MalformedInputError("multi-disk (spanned) zip archives are not supported")
        if rec64_off > rec_at:
            raise MalformedInputError("ZIP64 end of central directory record out of place")
        end_of_cd = rec_at
    elif _SENTINEL32 in (cd_size, cd_off):
        raise MalformedInputError("ZIP64 end of central directory locator missing")
    elif n_total == _SENTINEL16:
        n_total = -1  # "many": writers without ZIP64 records; the directory's size tells
    at = end_of_cd - cd_size
    if at < 0 or cd_off > at:
        raise MalformedInputError(
            "not a readable zip archive: central directory offset or size past the file"
        )
    return _Directory(cd_off, cd_size, n_total, at)


def _central(fh: BinaryIO, d: _Directory) -> Iterator[tuple[int, bytes, bytes, tuple[int, ...]]]:
    """(index, raw name, extra, fixed fields) per central-directory entry, streamed in 1 MiB
    reads. The caller reads local headers with the same file object between entries, so
    every read here seeks to where this stream stands."""
    pos = d.at
    left = d.size
    buf = b""
    i = 0  # where the next entry starts in buf
    index = 0

    def more() -> bool:
        nonlocal pos, left, buf, i
        if left <= 0:
            return False
        fh.seek(pos)
        chunk = fh.read(min(left, 1 << 20))
        if not chunk:
            left = 0
            return False
        pos += len(chunk)
        left -= len(chunk)
        buf = buf[i:] + chunk
        i = 0
        return True

    unpack = struct.Struct("<4s6H3I5H2I").unpack_from
    while i < len(buf) or left > 0:
        while len(buf) - i < _CDH_SIZE and more():
            pass
        if len(buf) - i < _CDH_SIZE:
            raise MalformedInputError("central directory truncated")
        if buf[i : i + 4] != CDH:
            raise MalformedInputError(f"central directory entry {index}: bad signature")
        fields = unpack(buf, i)
        nlen, xlen, clen = fields[10], fields[11], fields[12]
        total = _CDH_SIZE + nlen + xlen + clen
        while len(buf) - i < total and more():
            pass
        if len(buf) - i < total:
            raise MalformedInputError(f"central directory entry {index} truncated")
        name = buf[i + _CDH_SIZE : i + _CDH_SIZE + nlen]
        extra = buf[i + _CDH_SIZE + nlen : i + _CDH_SIZE + nlen + xlen]
        i += total
        yield index, name, extra, fields
        index += 1


def _stub_ok(fh: BinaryIO, first: int) -> bool:
    if first <= 0:
        return True
    fh.seek(0)
    return fh.read(4).startswith(_STUB_MAGICS)


def scan(path: str, max_members: int | None = None) -> Layout:
    """Check the archive at ``path``; every member both views agree on, plus problems."""
    size = Path(path).stat().st_size
    with open(path, "rb") as fh:
        d = _directory(fh, size)
        if max_members is not None and d.count > max_members:
            raise LimitExceededError(
                f"zip declares {d.count} entries, more than the {max_members} allowed"
            )
        shift = d.at - d.offset  # bytes prepended to a whole archive (offsets not adjusted)
        entries: list[ZipEntry] = []
        problems: list[Problem] = []
        spans: list[tuple[int, int, int]] = []  # start, end, central-directory index
        n = 0
        for index, raw, extra, f in _central(fh, d):
            n += 1
            if max_members is not None and n > max_members:
                raise LimitExceededError(f"zip has more than the {max_members} entries allowed")
            e, span, why = _entry(fh, size, shift, index, raw, extra, f)
            if why is not None:
                problems.append(Problem(_label(raw, extra, f), why))
            if span is not None:
                spans.append((*span, index))
            if e is not None:
                entries.append(e)
        if n != d.count and d.count >= 0:
            problems.append(
                Problem("", f"central directory lists {n} entries, its end record says {d.count}")
            )
        first = min((s for s, _, _ in spans), default=d.at)
        if first > 0 and not _stub_ok(fh, first):
            raise MalformedInputError(
                f"{first} bytes before the first local header that are not a "
                "self-extractor stub (another archive prepended?)"
            )
        overlapping, found = _gaps_and_overlaps(fh, spans, first, d.at)
        problems.extend(found)
        if overlapping:
            for e in entries:
                if e.index in overlapping:
                    why = "entry data overlaps another entry (zip bomb?)"
                    problems.append(Problem(e.name, why))
            entries = [e for e in entries if e.index not in overlapping]
    return Layout(entries, problems, shift)


def _label(raw: bytes, extra: bytes, f: tuple[int, ...]) -> str:
    return _unicode_name(extra, raw) or decode_name(raw, int(f[3]))


def _entry(
    fh: BinaryIO,
    size: int,
    shift: int,
    index: int,
    raw: bytes,
    extra: bytes,
    f: tuple[int, ...],
) -> tuple[ZipEntry | None, tuple[int, int] | None, str | None]:
    """Check one central-directory entry against its local header.

    Returns (entry or None, the byte span it occupies or None, why it is rejected or None).
    """
    (_sig, made_by, _need, flags, method, _t, _d, crc, csize, usize) = f[:10]
    (_nl, _xl, _cl, disk, _ia, ext_attr, lh_off) = f[10:]
    want: list[str] = []
    if _SENTINEL32 in (usize, csize, lh_off) or disk == _SENTINEL16:  # ZIP64 (rare)
        got64 = _central_zip64(extra, usize, csize, lh_off, disk)
        if got64 is None:
            return None, None, "ZIP64 sizes announced but the ZIP64 extra field is missing"
        usize, csize, lh_off, want = got64
    nul = f"NUL byte in member name {raw!r}" if b"\x00" in raw else None
    name = (_unicode_name(extra, raw) if extra else None) or decode_name(raw, flags)
    start = lh_off + shift
    if start < 0 or start + _LFH_SIZE > size:
        return None, None, "local header offset outside the file"
    fh.seek(start)
    blob = fh.read(_LFH_SIZE + len(raw) + len(extra) + 32)  # usually the whole local header
    if blob[:4] != LFH or len(blob) < _LFH_SIZE:
        return None, None, "no local header where the central directory points"
    (_s, _v, lflags, lmethod, _lt, _ld, lcrc, lcsize, lusize, lnl, lxl) = _LFH.unpack_from(blob)
    need = _LFH_SIZE + lnl + lxl
    if len(blob) < need:
        blob += fh.read(need - len(blob))
    lname = blob[_LFH_SIZE : _LFH_SIZE + lnl]
    lextra = blob[_LFH_SIZE + lnl : need]
    data = start + need
    end = data + csize
    if end > size:
        return None, (start, min(end, size)), "member data runs past the end of the file"
    span_end = end
    if lname != raw:
        lname_u = _unicode_name(lextra, lname) or decode_name(lname, lflags)
        if lname_u != name:
            why = f"local header names it {lname!r}, the central directory {raw!r}"
            return None, (start, span_end), why
    if lmethod != method or (lflags & 0x1) != (flags & 0x1):
        return None, (start, span_end), "local header and central directory disagree on method"
    if lflags & 0x8:
        # the values follow the data; whatever the local header holds there (zeros, or
        # some of them: Info-ZIP writes the size) is not what extractors use
        dd, span_end = _descriptor(fh, end, size, _has_zip64(lextra) or bool(want))
        if dd is None:
            return None, (start, span_end), "data descriptor missing or truncated"
        got = dd
    elif _SENTINEL32 in (lusize, lcsize):  # local ZIP64 sizes (rare)
        lv = {"usize": lusize, "csize": lcsize}
        if not _zip64(lextra, ["usize", "csize"], lv):
            return None, (start, span_end), "local ZIP64 sizes without a ZIP64 extra field"
        got = (lcrc, lv["csize"], lv["usize"])
    else:
        got = (lcrc, lcsize, lusize)
    if got != (crc, csize, usize):
        why = (
            f"local header says crc {got[0]:08x}, {got[1]}/{got[2]} bytes; the central "
            f"directory crc {crc:08x}, {csize}/{usize} bytes"
        )
        return None, (start, span_end), why
    if nul is not None:
        return None, (start, span_end), nul
    entry = ZipEntry(
        index, raw, name, flags, method, crc, csize, usize, data, made_by >> 8, ext_attr
    )
    return entry, (start, span_end), None


def _central_zip64(
    extra: bytes, usize: int, csize: int, lh_off: int, disk: int
) -> tuple[int, int, int, list[str]] | None:
    """(usize, csize, offset, the fields announced) from the ZIP64 extra field of an entry
    whose central-directory fields hold sentinels; None when the field is missing or short."""
    vals = {"usize": usize, "csize": csize, "offset": lh_off}
    want = [
        k for k, v in (("usize", usize), ("csize", csize), ("offset", lh_off)) if v == _SENTINEL32
    ]
    if disk == _SENTINEL16:
        want.append("disk")
    if not _zip64(extra, want, vals):
        return None
    return vals["usize"], vals["csize"], vals["offset"], want


def _descriptor(
    fh: BinaryIO, at: int, size: int, zip64: bool
) -> tuple[tuple[int, int, int] | None, int]:
    """(crc, csize, usize) of the data descriptor at ``at`` and where it ends."""
    fh.seek(at)
    head = fh.read(24)
    body = head[4:] if head[:4] == DD else head
    skip = 4 if head[:4] == DD else 0
    # ZIP64 descriptors hold 8-byte sizes; try the announced form first, then the other
    fmt, n = ("<IQQ", 20) if zip64 else ("<III", 12)
    if len(body) < n:
        return None, min(size, at + len(head))
    crc, cs, us = struct.unpack_from(fmt, body, 0)
    return (int(crc), int(cs), int(us)), at + skip + n


def _gaps_and_overlaps(
    fh: BinaryIO, spans: list[tuple[int, int, int]], first: int, cd_at: int
) -> tuple[set[int], list[Problem]]:
    """(indexes of members whose bytes overlap another's, problems for local headers in the
    gaps between members: members only in the local headers)."""
    problems: list[Problem] = []
    overlapping: set[int] = set()
    spans.sort()
    edge = first
    edge_owner = -1
    scanned = 0
    for s, e, i in spans:
        if s < edge:
            overlapping.update((i, edge_owner))
        elif s > edge and scanned < _GAP_SCAN:
            scanned += s - edge
            if _has_header(fh, edge, s):
                problems.append(Problem("", _ONLY_LOCAL.format(edge, s)))
        if e > edge:
            edge, edge_owner = e, i
    if cd_at < edge:
        problems.append(Problem("", "member data runs into the central directory"))
    elif cd_at > edge and scanned < _GAP_SCAN and _has_header(fh, edge, cd_at):
        problems.append(Problem("", _ONLY_LOCAL.format(edge, cd_at)))
    return overlapping, problems


_ONLY_LOCAL = "a member only in the local headers (bytes {}..{}): the central directory lacks it"


def _has_header(fh: BinaryIO, start: int, end: int) -> bool:
    fh.seek(start)
    left = min(end - start, _GAP_SCAN)
    tail = b""
    while left > 0:
        chunk = fh.read(min(left, 1 << 20))
        if not chunk:
            return False
        left -= len(chunk)
        if LFH in tail + chunk:
            return True
        tail = chunk[-3:]
    return False
