"""Bounded walk of a PE resource directory (type / name / language -> data).

Only what biv needs: find one resource by type and name (Electron's ASAR integrity lives in
``INTEGRITY``/``ELECTRONASAR``). Every offset is checked against the resource directory and
the file; entry counts, total entries, name lengths and data sizes are capped; the tree is
exactly three levels deep, so a loop cannot recurse.
"""

from __future__ import annotations

import struct

from verifier.binary.pe import DIR_RESOURCE, PEInfo
from verifier.errors import LimitExceededError, MalformedInputError
from verifier.model import Blob
from verifier.record import record

MAX_ENTRIES_PER_DIR = 4096
MAX_ENTRIES_TOTAL = 65536
MAX_NAME_CHARS = 256
MAX_DATA = 16 << 20

ResKey = int | str


@record
class Resource:
    type: ResKey
    name: ResKey
    lang: int
    offset: int  # file offset of the data
    size: int


class _Reader:
    def __init__(self, blob: Blob, info: PEInfo) -> None:
        rva, size = info.data_dir(DIR_RESOURCE)
        if rva == 0 or size == 0:
            raise LookupError("no resource directory")
        self.blob, self.info = blob, info
        self.rva, self.size = rva, size
        self.base = info.rva_to_offset(rva, min(size, 16))
        self.seen = 0

    def read(self, rel: int, n: int) -> bytes:
        """``n`` bytes at ``rel`` from the start of the resource directory."""
        if rel < 0 or rel + n > self.size:
            raise MalformedInputError(f"resource directory offset {rel:#x}+{n} out of range")
        data = self.blob.read(self.base + rel, n)
        if len(data) != n:
            raise MalformedInputError("resource directory truncated")
        return data

    def entries(self, rel: int) -> list[tuple[ResKey, int, bool]]:
        _c, _t, _ma, _mi, named, ids = struct.unpack("<IIHHHH", self.read(rel, 16))
        n = named + ids
        if n > MAX_ENTRIES_PER_DIR:
            raise LimitExceededError(f"resource directory with {n} entries")
        self.seen += n
        if self.seen > MAX_ENTRIES_TOTAL:
            raise LimitExceededError("too many resource entries")
        raw = self.read(rel + 16, 8 * n)
        out: list[tuple[ResKey, int, bool]] = []
        for i in range(n):
            name, target = struct.unpack_from("<II", raw, 8 * i)
            key: ResKey = self.name(name & 0x7FFFFFFF) if name & 0x80000000 else name & 0xFFFF
            out.append((key, target & 0x7FFFFFFF, bool(target & 0x80000000)))
        return out

    def name(self, rel: int) -> str:
        (length,) = struct.unpack("<H", self.read(rel, 2))
        if length > MAX_NAME_CHARS:
            raise LimitExceededError(f"resource name of {length} characters")
        return self.read(rel + 2, 2 * length).decode("utf-16-le", errors="replace")


def list_resources(blob: Blob, info: PEInfo) -> list[Resource]:
    """Every resource of the file (empty when it has none)."""
    try:
        r = _Reader(blob, info)
    except LookupError:
        return []
    out: list[Resource] = []
    for rtype, tdir, is_dir in r.entries(0):
        if not is_dir:
            raise MalformedInputError("resource type entry is not a directory")
        for rname, ndir, is_dir2 in r.entries(tdir):
            if not is_dir2:
                raise MalformedInputError("resource name entry is not a directory")
            for lang, leaf, is_dir3 in r.entries(ndir):
                if is_dir3 or not isinstance(lang, int):
                    raise MalformedInputError("resource language entry is not a data entry")
                data_rva, size, _cp, _res = struct.unpack("<IIII", r.read(leaf, 16))
                if size > MAX_DATA:
                    raise LimitExceededError(f"resource of {size} bytes")
                off = info.rva_to_offset(data_rva, max(size, 1))
                out.append(Resource(rtype, rname, lang, off, size))
    return out


def find_resource(blob: Blob, info: PEInfo, rtype: ResKey, name: ResKey) -> bytes | None:
    """The data of the first resource ``rtype``/``name`` (names compare case-insensitively)."""

    def same(a: ResKey, b: ResKey) -> bool:
        if isinstance(a, str) and isinstance(b, str):
            return a.upper() == b.upper()
        return a == b

    for res in list_resources(blob, info):
        if same(res.type, rtype) and same(res.name, name):
            return blob.read(res.offset, res.size)
    return None
