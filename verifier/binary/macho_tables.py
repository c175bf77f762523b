"""Mach-O tables for explaining a divergence: ``LC_FUNCTION_STARTS``, ``LC_SYMTAB``.

Why: the linker records every function's start in ``LC_FUNCTION_STARTS`` (ULEB128 deltas from
``__TEXT``'s address), even in stripped binaries; ``LC_SYMTAB`` names what it can. Together
they say which function a changed range lies in. The symbol table also gives the exported
(external, defined) names for ``exports_added``.

Every offset is checked against the slice, sizes and counts are capped (``MAX_*``), and a
table that does not fit gives a note instead of an error: the explanation is best effort on
top of a comparison that has already decided the file's status.
"""

from __future__ import annotations

import struct

from verifier.binary.macho import SliceHeader
from verifier.binary.symbols import MAX_SYMBOLS, Symbol, SymbolTable, short_name
from verifier.model import Blob
from verifier.record import record

LC_SYMTAB = 0x2
LC_FUNCTION_STARTS = 0x26
MAX_FUNCTION_STARTS_BYTES = 2 << 20
MAX_STRTAB_BYTES = 16 << 20
MAX_EXPORTS = 65536

N_STAB = 0xE0
N_TYPE = 0x0E
N_SECT = 0x0E
N_EXT = 0x01


@record
class MachOTables:
    symbols: SymbolTable
    exports: frozenset[str]
    notes: tuple[str, ...] = ()


def _commands(head: bytes, h: SliceHeader) -> dict[int, tuple[int, int]]:
    """cmd -> (offset of its payload in ``head``, cmdsize) for LC_SYMTAB/LC_FUNCTION_STARTS."""
    e = "<" if h.little else ">"
    out: dict[int, tuple[int, int]] = {}
    off, end = h.header_size, min(len(head), h.header_size + h.sizeofcmds)
    for _ in range(h.ncmds):
        if off + 8 > end:
            break
        cmd, size = struct.unpack_from(e + "2I", head, off)
        if size < 8 or off + size > end:
            break
        if cmd in (LC_SYMTAB, LC_FUNCTION_STARTS) and cmd not in out:
            out[cmd] = (off + 8, size - 8)
        off += size
    return out


def _uleb_deltas(data: bytes, cap: int) -> list[int]:
    out: list[int] = []
    value = shift = 0
    for b in data:
        value |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
            if shift > 63:
                break
            continue
        if value == 0:
            break  # the list ends with a zero delta
        out.append(value)
        if len(out) >= cap:
            break
        value = shift = 0
    return out


def read_tables(
    blob: Blob, slice_offset: int, slice_size: int, head: bytes, h: SliceHeader
) -> MachOTables:
    """Function starts, symbols and exported names of one slice (never raises)."""
    e = "<" if h.little else ">"
    notes: list[str] = []
    cmds = _commands(head, h)
    text = next((s for s in h.segments if s.name == "__TEXT"), None)
    syms: list[Symbol] = []
    if LC_FUNCTION_STARTS in cmds and text is not None:
        off, size = cmds[LC_FUNCTION_STARTS]
        if size >= 8:
            dataoff, datasize = struct.unpack_from(e + "2I", head, off)
            if dataoff + datasize <= slice_size:
                if datasize > MAX_FUNCTION_STARTS_BYTES:
                    notes.append(f"LC_FUNCTION_STARTS over {MAX_FUNCTION_STARTS_BYTES} bytes: cut")
                    datasize = MAX_FUNCTION_STARTS_BYTES
                addr = text.vmaddr
                for d in _uleb_deltas(blob.read(slice_offset + dataoff, datasize), MAX_SYMBOLS):
                    addr += d
                    syms.append(Symbol(addr, None, None, "function-starts"))
            else:
                notes.append("LC_FUNCTION_STARTS points past the slice")
    names: dict[int, int] = {}
    exports: set[str] = set()
    strtab = b""
    if LC_SYMTAB in cmds and cmds[LC_SYMTAB][1] >= 16:
        off, _size = cmds[LC_SYMTAB]
        symoff, nsyms, stroff, strsize = struct.unpack_from(e + "4I", head, off)
        entsize = 16 if h.is64 else 12
        if symoff + nsyms * entsize > slice_size or stroff + strsize > slice_size:
            notes.append("LC_SYMTAB points past the slice")
            nsyms = strsize = 0
        if nsyms > MAX_SYMBOLS:
            notes.append(f"{nsyms} symbols: only the first {MAX_SYMBOLS} read")
            nsyms = MAX_SYMBOLS
        if strsize > MAX_STRTAB_BYTES:
            notes.append(f"string table over {MAX_STRTAB_BYTES} bytes: cut")
            strsize = MAX_STRTAB_BYTES
        strtab = blob.read(slice_offset + stroff, strsize) if nsyms else b""
        raw = blob.read(slice_offset + symoff, nsyms * entsize)
        fmt = e + ("IBBHQ" if h.is64 else "IBBHI")
        executable = {i + 1 for i, s in enumerate(h.sections) if s.executable}
        for strx, ntype, nsect, _desc, value in struct.iter_unpack(
            fmt, raw[: len(raw) - len(raw) % entsize]
        ):
            if ntype & N_STAB or ntype & N_TYPE != N_SECT:
                continue
            if ntype & N_EXT and len(exports) < MAX_EXPORTS:
                exports.add(_name(strtab, strx))
            if nsect in executable:
                names.setdefault(value, strx)
                syms.append(Symbol(value, None, None, "symtab"))

    def namer(addr: int) -> str | None:
        strx = names.get(addr)
        return _name(strtab, strx) if strx is not None else None

    exports.discard("")
    return MachOTables(
        SymbolTable(syms, notes=notes, namer=namer), frozenset(exports), tuple(notes)
    )


def _name(strtab: bytes, strx: int) -> str:
    if strx <= 0 or strx >= len(strtab):
        return ""
    end = strtab.find(b"\0", strx, strx + 4096)
    return short_name(strtab[strx : end if end >= 0 else strx + 4096])


_LC_NAMES = {
    0x1: "LC_SEGMENT",
    0x2: "LC_SYMTAB",
    0xB: "LC_DYSYMTAB",
    0xC: "LC_LOAD_DYLIB",
    0xD: "LC_ID_DYLIB",
    0xE: "LC_LOAD_DYLINKER",
    0x19: "LC_SEGMENT_64",
    0x1B: "LC_UUID",
    0x1D: "LC_CODE_SIGNATURE",
    0x22: "LC_DYLD_INFO",
    0x26: "LC_FUNCTION_STARTS",
    0x29: "LC_DATA_IN_CODE",
    0x2A: "LC_SOURCE_VERSION",
    0x32: "LC_BUILD_VERSION",
    0x80000018: "LC_LOAD_WEAK_DYLIB",
    0x8000001C: "LC_RPATH",
    0x8000001F: "LC_REEXPORT_DYLIB",
    0x80000022: "LC_DYLD_INFO_ONLY",
    0x80000028: "LC_MAIN",
    0x80000033: "LC_DYLD_EXPORTS_TRIE",
    0x80000034: "LC_DYLD_CHAINED_FIXUPS",
}


def load_commands(head: bytes, h: SliceHeader) -> list[tuple[int, int, str]]:
    """(slice offset, size, name) of the Mach-O header and each load command (bounded)."""
    e = "<" if h.little else ">"
    out = [(0, h.header_size, "mach header")]
    off, end = h.header_size, min(len(head), h.header_size + h.sizeofcmds)
    for _ in range(h.ncmds):
        if off + 8 > end:
            break
        cmd, size = struct.unpack_from(e + "2I", head, off)
        if size < 8 or off + size > end:
            break
        name = _LC_NAMES.get(cmd, f"load command {cmd:#x}")
        if cmd in (0x1, 0x19) and size >= 24:
            name += " " + head[off + 8 : off + 24].split(b"\0", 1)[0].decode("latin-1")
        out.append((off, size, name))
        off += size
    return out
