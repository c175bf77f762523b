"""ELF tables for explaining a divergence: ``.symtab``/``.dynsym`` functions, ``DT_NEEDED``.

Why: ELF symbols carry both an address and a size, so the function around a changed range
is known exactly where the binary keeps its symbols (``.dynsym`` always, ``.symtab`` unless
stripped). ``DT_NEEDED`` entries are the libraries the loader maps: a new one is how a
trojanised ``.so`` pulls in its payload.

Reads are bounded by the section sizes (already checked against the file by ``elf``) and
capped (``MAX_*``); a table that does not fit gives a note, never an error.
"""

from __future__ import annotations

import struct

from verifier.binary.elf import ELFInfo
from verifier.binary.symbols import MAX_SYMBOLS, Symbol, SymbolTable, short_name
from verifier.model import Blob
from verifier.record import record

SHT_SYMTAB = 2
SHT_DYNAMIC = 6
SHT_DYNSYM = 11
STT_FUNC = 2
STT_OBJECT = 1
STB_GLOBAL = 1
STB_WEAK = 2
DT_NEEDED = 1
MAX_STRTAB_BYTES = 16 << 20
MAX_DYNAMIC = 4096
MAX_NEEDED = 1024
MAX_EXPORTS = 65536


@record
class ELFTables:
    symbols: SymbolTable
    needed: frozenset[str]
    exports: frozenset[str]
    notes: tuple[str, ...] = ()


def _strtab(blob: Blob, info: ELFInfo, index: int, notes: list[str]) -> bytes:
    if not 0 < index < len(info.sections):
        return b""
    s = info.sections[index]
    size = s.size
    if size > MAX_STRTAB_BYTES:
        notes.append(f"string table {s.name} over {MAX_STRTAB_BYTES} bytes: cut")
        size = MAX_STRTAB_BYTES
    return blob.read(s.offset, size)


def _cstr(tab: bytes, off: int) -> str:
    if off <= 0 or off >= len(tab):
        return ""
    end = tab.find(b"\0", off, off + 4096)
    return short_name(tab[off : end if end >= 0 else off + 4096])


def read_tables(blob: Blob, info: ELFInfo) -> ELFTables:
    """Function symbols, needed libraries and exported names of an ELF file (never raises)."""
    e = "<" if info.little else ">"
    notes: list[str] = []
    syms: list[Symbol] = []
    names: dict[int, tuple[bytes, int]] = {}
    exports: set[str] = set()
    executable = {i for i, s in enumerate(info.sections) if s.executable}
    for sec in info.sections:
        if sec.type not in (SHT_SYMTAB, SHT_DYNSYM) or not sec.size:
            continue
        entsize = 24 if info.is64 else 16
        count = sec.size // entsize
        if count > MAX_SYMBOLS:
            notes.append(f"{sec.name}: {count} symbols, only the first {MAX_SYMBOLS} read")
            count = MAX_SYMBOLS
        strtab = _strtab(blob, info, sec.link, notes)
        raw = blob.read(sec.offset, count * entsize)
        raw = raw[: len(raw) - len(raw) % entsize]
        source = "symtab" if sec.type == SHT_SYMTAB else "dynsym"
        fmt = e + ("IBBHQQ" if info.is64 else "IIIBBH")
        for entry in struct.iter_unpack(fmt, raw):
            if info.is64:
                name, st_info, _other, shndx, value, size = entry
            else:
                name, value, size, st_info, _other, shndx = entry
            typ, bind = st_info & 0xF, st_info >> 4
            if shndx == 0 or shndx >= 0xFF00:
                continue  # undefined, absolute, common
            if (
                sec.type == SHT_DYNSYM
                and bind in (STB_GLOBAL, STB_WEAK)
                and typ in (STT_FUNC, STT_OBJECT)
                and len(exports) < MAX_EXPORTS
            ):
                exports.add(_cstr(strtab, name))
            if typ == STT_FUNC and shndx in executable and value:
                names.setdefault(value, (strtab, name))
                syms.append(Symbol(value, value + size if size else None, None, source))

    def namer(addr: int) -> str | None:
        tab_off = names.get(addr)
        return (_cstr(*tab_off) or None) if tab_off is not None else None

    exports.discard("")
    needed = frozenset(_needed(blob, info, e, notes))
    table = SymbolTable(syms, notes=notes, namer=namer)
    return ELFTables(table, needed, frozenset(exports), tuple(notes))


def _needed(blob: Blob, info: ELFInfo, e: str, notes: list[str]) -> set[str]:
    out: set[str] = set()
    for sec in info.sections:
        if sec.type != SHT_DYNAMIC or not sec.size:
            continue
        entsize = 16 if info.is64 else 8
        count = min(sec.size // entsize, MAX_DYNAMIC)
        strtab = _strtab(blob, info, sec.link, notes)
        raw = blob.read(sec.offset, count * entsize)
        raw = raw[: len(raw) - len(raw) % entsize]
        for tag, val in struct.iter_unpack(e + ("qQ" if info.is64 else "iI"), raw):
            if tag == 0:
                break
            if tag == DT_NEEDED and len(out) < MAX_NEEDED:
                out.add(_cstr(strtab, val))
    out.discard("")
    return out
