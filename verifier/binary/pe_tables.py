"""PE tables for explaining a divergence: ``.pdata`` function ranges, exports, imports.

Why: a changed range at RVA 0x1a2b3 means little; "inside ``av_malloc`` (RVA 0x1a200 to
0x1a2f0, from ``.pdata``)" tells an analyst where to look. On x64 and ARM64 every function
that is not a leaf has a RUNTIME_FUNCTION entry in the exception directory; Windows finds
them by binary search, so the table is sorted and biv searches it in place (``bisect`` over
the raw entries, no parse of the whole table). Exports name the functions they point at.
Without ``.pdata`` (x86) the nearest preceding export is given, marked as such.

Every read is bounded (``MAX_PDATA_BYTES``) and goes through ``pe._Reader``'s RVA checks.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Sequence
from typing import overload

from verifier.binary import pe
from verifier.binary.symbols import MAX_COVERING, Symbol, short_name
from verifier.errors import MalformedInputError
from verifier.model import Blob
from verifier.record import record

DIR_EXCEPTION = 3
MAX_PDATA_BYTES = 12 * 400_000
MACHINE_X64 = 0x8664
MACHINE_ARM64 = 0xAA64


class _Begins(Sequence[int]):
    """BeginAddress of each RUNTIME_FUNCTION entry, read on demand (for ``bisect``)."""

    def __init__(self, raw: bytes, step: int) -> None:
        self.raw, self.step = raw, step

    def __len__(self) -> int:
        return len(self.raw) // self.step

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[int]: ...
    def __getitem__(self, i: int | slice) -> int | Sequence[int]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return int(struct.unpack_from("<I", self.raw, i * self.step)[0])


@record
class PETables:
    """Function lookup for one PE file: ``covering`` / ``overlapping`` (``symbols.Lookup``)."""

    pdata: bytes  # raw RUNTIME_FUNCTION entries (x64: 12 bytes each)
    step: int  # entry size (0: no function extents)
    exports: tuple[tuple[int, str], ...]  # (rva, name) sorted by rva
    notes: tuple[str, ...] = ()

    def _name(self, rva: int) -> str | None:
        i = bisect.bisect_left(self.exports, (rva, ""))
        if i < len(self.exports) and self.exports[i][0] == rva:
            return self.exports[i][1]
        return None

    def _entry(self, i: int) -> Symbol | None:
        begin, end = struct.unpack_from("<II", self.pdata, i * self.step)
        if end <= begin:
            return None
        return Symbol(begin, end, self._name(begin), "pdata")

    def covering(self, addr: int) -> Symbol | None:
        if self.step:
            begins = _Begins(self.pdata, self.step)
            i = bisect.bisect_right(begins, addr) - 1
            if i >= 0:
                s = self._entry(i)
                if s is not None and s.start <= addr < (s.end or 0):
                    return s
            return None
        i = bisect.bisect_right(self.exports, (addr, "\U0010ffff")) - 1
        if i >= 0:
            rva, name = self.exports[i]
            return Symbol(rva, None, name, "entry" if name == ENTRY_NAME else "export")
        return None

    def overlapping(self, lo: int, hi: int, cap: int = MAX_COVERING) -> tuple[list[Symbol], int]:
        out: list[Symbol] = []
        first = self.covering(lo)
        if first is not None:
            out.append(first)
        if not self.step:
            return out, 0
        begins = _Begins(self.pdata, self.step)
        i, j = bisect.bisect_right(begins, lo), bisect.bisect_left(begins, hi)
        for k in range(i, j):
            if len(out) >= cap:
                break
            s = self._entry(k)
            if s is not None:
                out.append(s)
        return out, max(0, (j - i) - (len(out) - (1 if first is not None else 0)))


ENTRY_NAME = "(entry point)"


def read_tables(
    blob: Blob, info: pe.PEInfo, exports: Sequence[tuple[int, str, int]], entry: int = 0
) -> PETables:
    """``.pdata`` (x64) and export names of ``blob``; a bad table gives a note, never raises.

    The entry point counts as a named function start too (``(entry point)``)."""
    notes: list[str] = []
    named = sorted({(rva, name or f"#{ordinal}") for ordinal, name, rva in exports})
    if entry and not any(rva == entry for rva, _n in named):
        named = sorted([*named, (entry, ENTRY_NAME)])
    raw, step = b"", 0
    rva, size = info.data_dir(DIR_EXCEPTION)
    if info.machine == MACHINE_X64 and rva and size:
        size = size - size % 12
        if size > MAX_PDATA_BYTES:
            notes.append(f".pdata has {size // 12} entries: only the first {MAX_PDATA_BYTES // 12}")
            size = MAX_PDATA_BYTES
        try:
            off = info.rva_to_offset(rva, size)
            raw, step = blob.read(off, size), 12
        except MalformedInputError as exc:
            notes.append(f"exception directory not usable: {exc.message}")
    elif info.machine == MACHINE_ARM64 and rva and size:
        notes.append("ARM64 .pdata extents are not decoded: functions named by exports only")
    return PETables(raw, step, tuple((r, short_name(n.encode())) for r, n in named), tuple(notes))


def import_names(imports: Sequence[tuple[str, str]]) -> set[str]:
    """``dll!name`` strings (delay-load DLLs keep their ``(delay-load)`` suffix)."""
    return {f"{dll}!{name}" for dll, name in imports}


def export_names(exports: Sequence[tuple[int, str, int]]) -> set[str]:
    return {name or f"#{ordinal}" for ordinal, name, _rva in exports}


_DIRS = (
    "export",
    "import",
    "resource",
    "exception",
    "security",
    "base relocation",
    "debug",
    "architecture",
    "global pointer",
    "TLS",
    "load config",
    "bound import",
    "IAT",
    "delay import",
    "CLR runtime",
    "reserved",
)


def header_fields(info: pe.PEInfo) -> list[tuple[int, int, str]]:
    """(file offset, length, name) of the PE header fields, to name a changed header byte."""
    opt = info.checksum_offset - 64
    coff = opt - 20
    f: list[tuple[int, int, str]] = [(0x3C, 4, "e_lfanew")]
    for off, n, name in (
        (0, 2, "Machine"),
        (2, 2, "NumberOfSections"),
        (4, 4, "TimeDateStamp"),
        (8, 4, "PointerToSymbolTable"),
        (12, 4, "NumberOfSymbols"),
        (16, 2, "SizeOfOptionalHeader"),
        (18, 2, "Characteristics"),
    ):
        f.append((coff + off, n, name))
    fields = [
        (0, 2, "Magic"),
        (2, 2, "LinkerVersion"),
        (4, 4, "SizeOfCode"),
        (8, 4, "SizeOfInitializedData"),
        (12, 4, "SizeOfUninitializedData"),
        (16, 4, "AddressOfEntryPoint"),
        (20, 4, "BaseOfCode"),
        (32, 4, "SectionAlignment"),
        (36, 4, "FileAlignment"),
        (40, 12, "OS/image/subsystem versions"),
        (52, 4, "Win32VersionValue"),
        (56, 4, "SizeOfImage"),
        (60, 4, "SizeOfHeaders"),
        (64, 4, "CheckSum"),
        (68, 2, "Subsystem"),
        (70, 2, "DllCharacteristics"),
    ]
    fields += [(24, 8, "ImageBase")] if info.is64 else [(24, 4, "BaseOfData"), (28, 4, "ImageBase")]
    fields += [(72, 32 if info.is64 else 16, "stack/heap sizes")]
    f += [(opt + o, n, name) for o, n, name in fields]
    for i in range(len(info.data_dirs)):
        f.append((info.data_dir_offset + 8 * i, 8, f"{_DIRS[i]} directory entry"))
    for sec in info.sections:
        f.append((sec.header_offset, 40, f"section header {sec.name}"))
    return sorted(f)
