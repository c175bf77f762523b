"""Mach-O headers: thin and fat (universal) files, load commands, normalisation spans.

Everything here parses small bounded reads (the fat table, one slice's header and load
commands) and raises ``MalformedInputError`` on anything hostile. The streaming pass over a
Mach-O file is ``binary.macho_digests``; its code signature is ``signing.codesign``;
``binary.macho_compare`` compares slices.

Normalisation (docs/contract.md "Upstream references"), per slice: the ``LC_CODE_SIGNATURE`` load
command is zeroed (so an unsigned slice whose padding took its place hashes the same), the
signature blob it points at is removed, and ``ncmds``/``sizeofcmds`` and ``__LINKEDIT``'s
vmsize/filesize are zeroed (``SliceHeader.normalization``).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field

from verifier.binary import cafebabe
from verifier.binary import fuses as fuses_mod
from verifier.errors import MalformedInputError
from verifier.hashing import Span
from verifier.model import Blob
from verifier.record import record

MH_MAGIC = 0xFEEDFACE
MH_MAGIC_64 = 0xFEEDFACF
FAT_MAGIC = 0xCAFEBABE
FAT_MAGIC_64 = 0xCAFEBABF

LC_SEGMENT = 0x1
LC_SEGMENT_64 = 0x19
LC_CODE_SIGNATURE = 0x1D
LC_MAIN = 0x80000028
LC_LOAD_DYLIB = 0xC
LC_LOAD_WEAK_DYLIB = 0x80000018
LC_REEXPORT_DYLIB = 0x8000001F
LC_ID_DYLIB = 0xD

CPU_ARCH_ABI64 = 0x01000000
CPU_TYPES = {
    7: "i386",
    7 | CPU_ARCH_ABI64: "x86_64",
    12: "arm",
    12 | CPU_ARCH_ABI64: "arm64",
    12 | 0x02000000: "arm64_32",
    18: "ppc",
    18 | CPU_ARCH_ABI64: "ppc64",
}

MAX_FAT_ARCHS = cafebabe.MAX_FAT_ARCHS  # one cap, one place
MAX_NCMDS = 4096
MAX_SIZEOFCMDS = 16 << 20
MAX_SECTIONS = 4096

FUSE_SENTINEL = fuses_mod.SENTINEL

S_ZEROFILL_TYPES = {0x1, 0xC, 0x12}
S_ATTR_PURE_INSTRUCTIONS = 0x80000000
S_ATTR_SOME_INSTRUCTIONS = 0x400
VM_PROT_EXECUTE = 0x4


def arch_name(cputype: int, cpusubtype: int) -> str:
    name = CPU_TYPES.get(cputype, f"cpu{cputype:#x}")
    if name == "arm64" and (cpusubtype & 0xFF) == 2:
        return "arm64e"
    if name == "x86_64" and (cpusubtype & 0xFF) == 8:
        return "x86_64h"
    return name


# --- headers -------------------------------------------------------------------------------


@record
class FatArch:
    cputype: int
    cpusubtype: int
    offset: int
    size: int
    align: int

    @property
    def arch(self) -> str:
        return arch_name(self.cputype, self.cpusubtype)


@record
class Segment:
    name: str
    fileoff: int
    filesize: int
    vmaddr: int
    vmsize: int
    initprot: int
    cmd_offset: int


@record
class Section:
    segname: str
    sectname: str
    offset: int
    size: int
    flags: int
    addr: int = 0  # VM address

    @property
    def name(self) -> str:
        return f"{self.segname},{self.sectname}"

    @property
    def zerofill(self) -> bool:
        return (self.flags & 0xFF) in S_ZEROFILL_TYPES

    @property
    def executable(self) -> bool:
        return bool(self.flags & (S_ATTR_PURE_INSTRUCTIONS | S_ATTR_SOME_INSTRUCTIONS))


@record
class SliceHeader:
    arch: str
    is64: bool
    little: bool
    filetype: int
    ncmds: int
    sizeofcmds: int
    header_size: int
    segments: tuple[Segment, ...]
    sections: tuple[Section, ...]
    code_signature: tuple[int, int, int] | None  # (cmd offset, dataoff, datasize)
    entry_point: int | None
    dylibs: tuple[str, ...] = ()
    install_name: str | None = None

    @property
    def linkedit(self) -> Segment | None:
        return next((s for s in self.segments if s.name == "__LINKEDIT"), None)

    def normalization(self) -> tuple[list[Span], list[Span]]:
        """(skip, mask) spans, slice-relative, that normalisation removes / zeroes."""
        skip: list[Span] = []
        mask: list[Span] = [Span(16, 8)]  # ncmds, sizeofcmds
        if self.code_signature is not None:
            cmd_off, dataoff, datasize = self.code_signature
            mask.append(Span(cmd_off, 16))
            skip.append(Span(dataoff, datasize))
        le = self.linkedit
        if le is not None:
            if self.is64:
                mask += [Span(le.cmd_offset + 32, 8), Span(le.cmd_offset + 48, 8)]
            else:
                mask += [Span(le.cmd_offset + 28, 4), Span(le.cmd_offset + 36, 4)]
        return skip, mask


def _name16(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("latin-1")


@dataclass
class _Commands:
    """What the load commands of one slice say, collected while walking them."""

    e: str  # struct endianness prefix
    head: bytes
    slice_size: int
    end: int  # the end of the load commands
    segments: list[Segment] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    code_sig: tuple[int, int, int] | None = None
    entry: int | None = None
    dylibs: list[str] = field(default_factory=list)
    install_name: str | None = None

    def segment(self, i: int, off: int, cmd: int, cmdsize: int) -> None:
        e, head, slice_size = self.e, self.head, self.slice_size
        seg64 = cmd == LC_SEGMENT_64
        fixed = 72 if seg64 else 56
        if cmdsize < fixed:
            raise MalformedInputError(f"segment command {i} too short")
        name = _name16(head[off + 8 : off + 24])
        if seg64:
            vmaddr, vmsize, fileoff, filesize = struct.unpack_from(e + "4Q", head, off + 24)
            _maxprot, initprot, nsects, _sflags = struct.unpack_from(e + "4I", head, off + 56)
            ssize = 80
        else:
            vmaddr, vmsize, fileoff, filesize = struct.unpack_from(e + "4I", head, off + 24)
            _maxprot, initprot, nsects, _sflags = struct.unpack_from(e + "4I", head, off + 40)
            ssize = 68
        if fixed + nsects * ssize > cmdsize or len(self.sections) + nsects > MAX_SECTIONS:
            raise MalformedInputError(f"segment {name} claims {nsects} sections")
        if fileoff > slice_size or filesize > slice_size - fileoff:
            raise MalformedInputError(f"segment {name} runs past the end of the slice")
        self.segments.append(Segment(name, fileoff, filesize, vmaddr, vmsize, initprot, off))
        for k in range(nsects):
            self.sections.append(self._section(off + fixed + k * ssize, seg64))

    def _section(self, so: int, seg64: bool) -> Section:
        e, head, slice_size = self.e, self.head, self.slice_size
        sect = _name16(head[so : so + 16])
        segn = _name16(head[so + 16 : so + 32])
        if seg64:
            addr, size = struct.unpack_from(e + "2Q", head, so + 32)
            (offset,) = struct.unpack_from(e + "I", head, so + 48)
            (flags,) = struct.unpack_from(e + "I", head, so + 64)
        else:
            addr, size, offset = struct.unpack_from(e + "3I", head, so + 32)
            (flags,) = struct.unpack_from(e + "I", head, so + 56)
        s = Section(segn, sect, offset, size, flags, addr)
        if not s.zerofill and size and (offset > slice_size or size > slice_size - offset):
            raise MalformedInputError(f"section {s.name} runs past the end of the slice")
        return s

    def code_signature(self, off: int, cmdsize: int) -> None:
        if cmdsize < 16:
            raise MalformedInputError("LC_CODE_SIGNATURE too short")
        if self.code_sig is not None:
            raise MalformedInputError("more than one LC_CODE_SIGNATURE")
        dataoff, datasize = struct.unpack_from(self.e + "2I", self.head, off + 8)
        if dataoff > self.slice_size or datasize > self.slice_size - dataoff:
            raise MalformedInputError(
                f"LC_CODE_SIGNATURE ({dataoff}+{datasize}) runs past the end of the slice"
            )
        if dataoff < self.end:
            raise MalformedInputError("code signature overlaps the load commands")
        self.code_sig = (off, dataoff, datasize)

    def dylib(self, off: int, cmd: int, cmdsize: int) -> None:
        (noff,) = struct.unpack_from(self.e + "I", self.head, off + 8)
        if 24 <= noff < cmdsize:
            raw = self.head[off + noff : off + cmdsize].split(b"\0", 1)[0]
            nm = raw.decode("utf-8", "replace")
            if cmd == LC_ID_DYLIB:
                self.install_name = nm
            else:
                self.dylibs.append(nm)

    def command(self, i: int, off: int, cmd: int, cmdsize: int) -> None:
        if cmd in (LC_SEGMENT_64, LC_SEGMENT):
            self.segment(i, off, cmd, cmdsize)
        elif cmd == LC_CODE_SIGNATURE:
            self.code_signature(off, cmdsize)
        elif cmd == LC_MAIN:
            if cmdsize >= 24:
                self.entry = struct.unpack_from(self.e + "Q", self.head, off + 8)[0]
        elif cmd in _DYLIB_COMMANDS and cmdsize >= 24:
            self.dylib(off, cmd, cmdsize)


_DYLIB_COMMANDS = (LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_ID_DYLIB)


def _endianness(head: bytes) -> str:
    if struct.unpack_from("<I", head, 0)[0] in (MH_MAGIC, MH_MAGIC_64):
        return "<"
    if struct.unpack_from(">I", head, 0)[0] in (MH_MAGIC, MH_MAGIC_64):
        return ">"
    raise MalformedInputError("not a Mach-O header")


def parse_slice_header(head: bytes, slice_size: int) -> SliceHeader:
    """Parse a thin Mach-O's header and load commands from its first bytes (bounded)."""
    if len(head) < 28:
        raise MalformedInputError("Mach-O header truncated")
    e = _endianness(head)
    magic, cputype, cpusub, filetype, ncmds, sizeofcmds, _flags = struct.unpack_from(
        e + "7I", head, 0
    )
    is64 = magic == MH_MAGIC_64
    hsize = 32 if is64 else 28
    if ncmds > MAX_NCMDS:
        raise MalformedInputError(f"Mach-O claims {ncmds} load commands (cap {MAX_NCMDS})")
    if sizeofcmds > MAX_SIZEOFCMDS or hsize + sizeofcmds > slice_size:
        raise MalformedInputError(f"Mach-O sizeofcmds {sizeofcmds} runs past the slice")
    if hsize + sizeofcmds > len(head):
        raise MalformedInputError("Mach-O load commands truncated")
    end = hsize + sizeofcmds
    cmds = _Commands(e, head, slice_size, end)
    off = hsize
    for i in range(ncmds):
        if off + 8 > end:
            raise MalformedInputError(f"load command {i} runs past sizeofcmds")
        cmd, cmdsize = struct.unpack_from(e + "2I", head, off)
        if cmdsize < 8 or off + cmdsize > end:
            raise MalformedInputError(f"load command {i} has bad size {cmdsize}")
        cmds.command(i, off, cmd, cmdsize)
        off += cmdsize
    return SliceHeader(
        arch=arch_name(cputype, cpusub),
        is64=is64,
        little=e == "<",
        filetype=filetype,
        ncmds=ncmds,
        sizeofcmds=sizeofcmds,
        header_size=hsize,
        segments=tuple(cmds.segments),
        sections=tuple(cmds.sections),
        code_signature=cmds.code_sig,
        entry_point=cmds.entry,
        dylibs=tuple(cmds.dylibs),
        install_name=cmds.install_name,
    )


def parse_fat(head: bytes, file_size: int) -> list[FatArch]:
    """Parse a fat header (big-endian), checking every slice lies inside the file."""
    if len(head) < 8:
        raise MalformedInputError("fat header truncated")
    magic, nfat = struct.unpack_from(">2I", head, 0)
    if magic not in (FAT_MAGIC, FAT_MAGIC_64):
        raise MalformedInputError("not a fat Mach-O")
    if nfat == 0 or nfat > MAX_FAT_ARCHS:
        raise MalformedInputError(f"fat header claims {nfat} architectures (cap {MAX_FAT_ARCHS})")
    is64 = magic == FAT_MAGIC_64
    esz = 32 if is64 else 20
    if 8 + nfat * esz > len(head):
        raise MalformedInputError("fat header truncated")
    archs: list[FatArch] = []
    for i in range(nfat):
        o = 8 + i * esz
        if is64:
            ct, cs, offset, size, align, _r = struct.unpack_from(">2I2Q2I", head, o)
        else:
            ct, cs, offset, size, align = struct.unpack_from(">5I", head, o)
        if offset < 8 + nfat * esz or offset > file_size or size > file_size - offset or size == 0:
            raise MalformedInputError(f"fat slice {i} ({offset}+{size}) is outside the file")
        archs.append(FatArch(ct, cs, offset, size, align))
    spans = sorted((a.offset, a.offset + a.size) for a in archs)
    for (_a0, a1), (b0, _b1) in itertools.pairwise(spans):
        if b0 < a1:
            raise MalformedInputError("fat slices overlap")
    return archs


def sniff(head: bytes) -> str | None:
    """'thin', 'fat' or None from the first bytes."""
    if len(head) < 8:
        return None
    le = struct.unpack_from("<I", head, 0)[0]
    be = struct.unpack_from(">I", head, 0)[0]
    if le in (MH_MAGIC, MH_MAGIC_64) or be in (MH_MAGIC, MH_MAGIC_64):
        return "thin"
    if be in (FAT_MAGIC, FAT_MAGIC_64):
        return "fat"
    return None


def read_header(blob: Blob, offset: int, size: int) -> bytes:
    """The first bytes of the slice at ``offset``: its header and load commands (bounded)."""
    first = blob.read(offset, min(size, 4096))
    if len(first) < 28:
        return first
    kind = sniff(first)
    if kind != "thin":
        return first
    e = "<" if struct.unpack_from("<I", first, 0)[0] in (MH_MAGIC, MH_MAGIC_64) else ">"
    sizeofcmds = struct.unpack_from(e + "I", first, 20)[0]
    want = min(size, 32 + min(sizeofcmds, MAX_SIZEOFCMDS))
    if want <= len(first):
        return first
    return blob.read(offset, want)
