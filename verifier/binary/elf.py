"""Bounded ELF header parser: class, endianness, machine and section ranges.

Why: Linux Electron builds ship ELF binaries; biv needs their architecture and, for triage of
a divergent file, per-section digests by content. ELF carries no embedded signature, so the
normalised digest is the plain sha256.
"""

from __future__ import annotations

import struct

from verifier.errors import LimitExceededError, MalformedInputError
from verifier.model import Blob
from verifier.record import record

MAX_SECTIONS = 512
MAX_SHSTRTAB = 1 << 20

MACHINES = {
    3: "x86",
    62: "x64",
    40: "arm",
    183: "arm64",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    243: "riscv",
    258: "loongarch",
}

SHT_NOBITS = 8
SHF_EXECINSTR = 0x4


@record
class ELFSection:
    name: str
    type: int
    flags: int
    offset: int
    size: int
    addr: int = 0
    link: int = 0
    entsize: int = 0

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@record
class ELFInfo:
    is64: bool
    little: bool
    machine: int
    arch: str
    entry: int
    sections: tuple[ELFSection, ...]


def looks_like_elf(head: bytes) -> bool:
    return head[:4] == b"\x7fELF"


def read_elf_info(blob: Blob) -> ELFInfo:
    """Parse the ELF header and section table of ``blob`` with small bounded reads."""
    head = blob.read(0, 64)
    if len(head) < 52 or head[:4] != b"\x7fELF":
        raise MalformedInputError("ELF header truncated")
    cls, data = head[4], head[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise MalformedInputError(f"bad ELF class/data bytes {cls}/{data}")
    is64, e = cls == 2, "<" if data == 1 else ">"
    if is64 and len(head) < 64:
        raise MalformedInputError("ELF64 header truncated")
    machine = struct.unpack_from(e + "H", head, 18)[0]
    if is64:
        entry, shoff = struct.unpack_from(e + "Q8xQ", head, 24)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", head, 58)
    else:
        entry, shoff = struct.unpack_from(e + "I4xI", head, 24)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", head, 46)
    sections = _sections(blob, e, is64, shoff, shentsize, shnum, shstrndx)
    arch = MACHINES.get(machine, f"elf-{machine}")
    return ELFInfo(is64, data == 1, machine, arch, entry, sections)


def _sections(
    blob: Blob, e: str, is64: bool, shoff: int, entsize: int, num: int, strndx: int
) -> tuple[ELFSection, ...]:
    if num == 0 or shoff == 0:
        return ()
    if num > MAX_SECTIONS:
        raise LimitExceededError(f"ELF has {num} sections (cap {MAX_SECTIONS})")
    need = 64 if is64 else 40
    if entsize < need:
        raise MalformedInputError(f"ELF section header size {entsize} too small")
    if shoff + entsize * num > blob.size:
        raise MalformedInputError("ELF section table runs past the end of file")
    table = blob.read(shoff, entsize * num)
    fmt = e + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII")
    raw = [struct.unpack_from(fmt, table, i * entsize) for i in range(num)]
    names = b""
    if 0 < strndx < num:
        off, size = raw[strndx][4:6]
        if size > MAX_SHSTRTAB or off + size > blob.size:
            raise MalformedInputError("ELF section name table out of bounds")
        names = blob.read(off, size)
    out = []
    for name_off, typ, flags, addr, off, size, link, _info, _align, ent in raw:
        if typ != SHT_NOBITS and size and off + size > blob.size:
            raise MalformedInputError(f"ELF section at {off:#x}+{size:#x} runs past end of file")
        end = names.find(b"\0", name_off) if name_off < len(names) else -1
        name = names[name_off:end].decode("latin-1") if end >= 0 else ""
        size = 0 if typ == SHT_NOBITS else size
        out.append(ELFSection(name, typ, flags, off, size, addr, link, ent))
    return tuple(out)
