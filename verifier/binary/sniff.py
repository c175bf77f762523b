"""Which format a file announces in its first bytes (PE, ELF, Mach-O, ASAR, data).

Why: every file of an inventory is sniffed to choose its analysis (``verifier.analysis``),
and unpack sniffs lone binaries the same way. Sniffing reads only ``SNIFF`` bytes and never
raises; a file that announces a format but does not parse is that format's parser's problem
(a ``malformed-input`` anomaly), never a silent "data".
"""

from __future__ import annotations

import struct

from verifier.binary import cafebabe, elf, pe
from verifier.model import FileFormat

SNIFF = pe.MAX_HEADERS  # the first read of a file: a PE's headers fit in it


def sniff(head: bytes, size: int) -> FileFormat:
    """The format ``head`` (the first bytes of a ``size``-byte file) announces."""
    if head[:2] == b"MZ" and len(head) >= 0x40:
        lfanew = struct.unpack_from("<I", head, 0x3C)[0]
        if pe.looks_like_pe(head) or lfanew + 4 > size:
            return FileFormat.PE
    if elf.looks_like_elf(head):
        return FileFormat.ELF
    if looks_like_macho(head, size):
        return FileFormat.MACHO
    if len(head) >= 24 and head[:4] == b"\x04\0\0\0" and head[16:24] == b'{"files"':
        return FileFormat.ASAR
    return FileFormat.DATA


def looks_like_macho(head: bytes, size: int) -> bool:
    """A thin Mach-O magic, or a fat one (tentatively: ``analyze`` reads the fat table to
    tell a universal binary from a Java class, see ``cafebabe``)."""
    if len(head) < 8:
        return False
    if head[:4] in cafebabe.FAT_MAGICS:
        return cafebabe.classify_head(head, size) in (None, "macho")
    return head[:4] in cafebabe.MACHO_MAGICS


def is_fat(head: bytes) -> bool:
    """Whether ``head`` starts with a fat (universal) Mach-O magic, which a Java class
    shares: ``cafebabe.classify`` tells them apart from the whole file."""
    return head[:4] in cafebabe.FAT_MAGICS
