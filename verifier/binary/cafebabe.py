"""``CA FE BA BE``: a universal (fat) Mach-O, or a Java class file?

Both formats start with the same four bytes; the next four are the fat header's slice count
for one and the class file's version for the other (Java 1.1 is 45, Java 25 is 69, so the
count alone cannot tell them apart, and an attacker chooses it anyway). The rule, in one
place (issue 12; docs/contract.md "Principles": what biv does not understand is no pass):

* a fat table that parses (every slice inside the file, after the table, not empty; at
  least one slice starting with a Mach-O magic) is Mach-O, whatever its count; with more
  than ``MAX_FAT_ARCHS`` slices it is then malformed (``macho.parse_fat`` says so);
* otherwise a Java class if it parses as one (constant pool, fields, methods, attributes,
  ending exactly at the end of the file);
* otherwise, with 1 to ``MAX_FAT_ARCHS`` slices announced, a damaged universal binary
  (truncated, slices outside the file): Mach-O, which its parser reports as malformed;
* otherwise data, compared byte for byte (neither loader would run it).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

MAX_FAT_ARCHS = 64  # slices in a fat Mach-O: the one cap (macho.parse_fat applies it)
_TABLE_CHECK = 4096  # entries checked when classifying a table over the cap
_MAGIC_PROBES = 16  # slices whose first bytes are read
_MAX_CLASS = 16 << 20  # a class file larger than this is not parsed as one
MACHO_MAGICS = (
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
)
FAT_MAGICS = (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf")

Read = Callable[[int, int], bytes]  # (offset, length) -> bytes, clamped to the file


def classify(read: Read, size: int) -> str:
    """'macho', 'java' or 'data' for a file starting with a fat magic."""
    head = read(0, 8)
    if len(head) < 8 or head[:4] not in FAT_MAGICS:
        return "data"
    if fat_table_parses(read, size):
        return "macho"
    if head[:4] == FAT_MAGICS[0] and java_class_parses(read, size):
        return "java"
    nfat = int.from_bytes(head[4:8], "big")
    return "macho" if 0 < nfat <= MAX_FAT_ARCHS else "data"


def classify_head(head: bytes, size: int) -> str | None:
    """``classify`` when ``head`` is the whole file, else None (the file must be read)."""
    if len(head) < size:
        return None
    return classify(lambda off, n: head[off : off + n] if off >= 0 else b"", size)


def fat_table_parses(read: Read, size: int) -> bool:
    head = read(0, 8)
    magic, nfat = struct.unpack(">4sI", head)
    esz = 32 if magic == FAT_MAGICS[1] else 20
    table_end = 8 + nfat * esz
    if nfat == 0 or table_end > size:
        return False
    n = min(nfat, _TABLE_CHECK)
    table = read(8, n * esz)
    if len(table) < n * esz:
        return False
    offsets = []
    for i in range(n):
        if esz == 32:
            _ct, _cs, off, sz, _al, _r = struct.unpack_from(">2I2Q2I", table, i * esz)
        else:
            _ct, _cs, off, sz, _al = struct.unpack_from(">5I", table, i * esz)
        if sz == 0 or off < table_end or off + sz > size:
            return False
        offsets.append(off)
    return any(read(off, 4) in MACHO_MAGICS for off in offsets[:_MAGIC_PROBES])


class _Class:
    def __init__(self, data: bytes) -> None:
        self.d = data
        self.i = 0

    def take(self, n: int) -> bytes:
        if self.i + n > len(self.d):
            raise ValueError("class file truncated")
        b = self.d[self.i : self.i + n]
        self.i += n
        return b

    def u2(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u4(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def attributes(self) -> None:
        for _ in range(self.u2()):
            self.u2()
            self.take(self.u4())

    def members(self) -> None:
        for _ in range(self.u2()):
            self.take(6)
            self.attributes()


_CP_FIXED = {3: 4, 4: 4, 5: 8, 6: 8, 7: 2, 8: 2, 9: 4, 10: 4, 11: 4, 12: 4, 15: 3, 16: 2}
_CP_FIXED.update({17: 4, 18: 4, 19: 2, 20: 2})


def java_class_parses(read: Read, size: int) -> bool:
    """A bounded parse of the whole class file (JVMS chapter 4)."""
    if size > _MAX_CLASS or size < 10:
        return False
    c = _Class(read(0, size))
    try:
        c.take(4)
        c.u2()  # minor
        if c.u2() < 45:
            return False
        count = c.u2()
        i = 1
        while i < count:
            tag = c.take(1)[0]
            if tag == 1:
                c.take(c.u2())
            elif tag in _CP_FIXED:
                c.take(_CP_FIXED[tag])
            else:
                return False
            i += 2 if tag in (5, 6) else 1
        c.take(6)  # access flags, this class, super class
        c.take(2 * c.u2())  # interfaces
        c.members()  # fields
        c.members()  # methods
        c.attributes()
    except ValueError:
        return False
    return c.i == len(c.d)
