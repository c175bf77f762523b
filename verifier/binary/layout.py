"""The regions of a binary that the explanation compares, and what the binary says about them.

A *unit* is what is compared with its upstream counterpart: a PE file, one Mach-O slice, an
ELF file. Its regions are paired by name (and occurrence) with upstream's:

* PE: ``(headers)`` with the checksum and security-directory entry masked, each section's raw
  data, and ``(overlay)`` (data after the last section, the certificate table and its
  alignment bytes left out);
* Mach-O slice: each segment (``LC_CODE_SIGNATURE``'s blob cut from ``__LINKEDIT``, the
  normalised load-command fields masked), with its sections to name a change;
* ELF: the headers before the first section, and each section with file content.

Parsing reuses biv's bounded parsers (``pe``, ``macho``, ``elf``) and the table parsers
(``pe_tables``, ``macho_tables``, ``elf_tables``). A table that cannot be read becomes a note.
"""

from __future__ import annotations

from collections.abc import Iterable

from verifier.binary import elf, elf_tables, macho, macho_tables, pe, pe_tables
from verifier.binary.symbols import EMPTY, Lookup
from verifier.errors import MalformedInputError
from verifier.hashing import Span
from verifier.model import Blob
from verifier.record import record

MAX_ELF_HEADERS = 1 << 16


@record
class Sub:
    """A section inside a region (Mach-O sections inside their segment)."""

    name: str
    offset: int  # relative to the region
    size: int
    vaddr: int | None
    executable: bool


@record
class Region:
    name: str
    key: tuple[str, int]  # (name, occurrence): how regions pair with upstream's
    offset: int  # absolute offset in the blob
    size: int
    vaddr: int | None
    executable: bool
    mask: tuple[Span, ...] = ()  # relative to the region
    subs: tuple[Sub, ...] = ()

    def locate(self, rel: int) -> tuple[str, int | None, bool]:
        """(name, address, executable) of the byte at ``rel`` (a section when one holds it)."""
        for s in self.subs:
            if s.offset <= rel < s.offset + s.size:
                addr = s.vaddr + (rel - s.offset) if s.vaddr is not None else None
                return s.name, addr, s.executable
        return self.name, (self.vaddr + rel if self.vaddr is not None else None), self.executable

    def bounds(self, rel: int) -> tuple[int, int] | None:
        """[first, end) addresses of the section (or region) holding the byte at ``rel``."""
        for s in self.subs:
            if s.offset <= rel < s.offset + s.size:
                return (s.vaddr, s.vaddr + s.size) if s.vaddr is not None else None
        return (self.vaddr, self.vaddr + self.size) if self.vaddr is not None else None


@record
class Unit:
    format: str  # pe, macho, elf
    arch: str
    address_kind: str  # rva (PE) or vmaddr
    regions: tuple[Region, ...]
    symbols: Lookup
    imports: frozenset[str]
    exports: frozenset[str]
    sections: tuple[str, ...]  # section names, for sections_added / sections_removed
    notes: tuple[str, ...] = ()
    # (absolute offset, length, name) of header fields / load commands, to name changed bytes
    fields: tuple[tuple[int, int, str], ...] = ()

    def fields_in(self, lo: int, hi: int, cap: int = 8) -> list[str]:
        out: list[str] = []
        for off, n, name in self.fields:
            if off < hi and lo < off + n and name not in out:
                out.append(name)
                if len(out) >= cap:
                    break
        return out


def _keyed(
    items: Iterable[tuple[str, int, int, int | None, bool, tuple[Span, ...], tuple[Sub, ...]]],
) -> tuple[Region, ...]:
    seen: dict[str, int] = {}
    out = []
    for name, off, size, vaddr, ex, mask, subs in items:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append(Region(name, (name, n), off, size, vaddr, ex, mask, subs))
    return tuple(out)


# --- PE ------------------------------------------------------------------------------------


def pe_unit(blob: Blob) -> Unit:
    info = pe.read_pe_info(blob)
    notes: list[str] = []
    try:
        shape = pe.read_shape(blob, info)
        imports, exports = shape.imports, shape.exports
    except MalformedInputError as exc:
        notes.append(f"import/export tables not readable: {exc.message}")
        imports, exports = (), ()
    tables = pe_tables.read_tables(blob, info, exports, info.entry_point)
    notes += tables.notes
    hdr_mask = [Span(info.checksum_offset, 4)]
    if len(info.data_dirs) > pe.DIR_SECURITY:
        hdr_mask.append(Span(info.security_dir_offset, 8))
    items: list[tuple[str, int, int, int | None, bool, tuple[Span, ...], tuple[Sub, ...]]] = [
        ("(headers)", 0, info.size_of_headers, 0, False, tuple(hdr_mask), ())
    ]
    for s in info.sections:
        if s.raw_size:
            items.append(
                (s.name, s.raw_pointer, s.raw_size, s.virtual_address, s.executable, (), ())
            )
    pad = pe.read_alignment_pad(blob, info)
    end = pad.offset
    if end > info.last_section_end:
        items.append(
            ("(overlay)", info.last_section_end, end - info.last_section_end, None, False, (), ())
        )
    return Unit(
        format="pe",
        arch=info.arch,
        address_kind="rva",
        regions=_keyed(items),
        symbols=tables,
        imports=frozenset(pe_tables.import_names(imports)),
        exports=frozenset(pe_tables.export_names(exports)),
        sections=tuple(s.name for s in info.sections),
        notes=tuple(notes),
        fields=tuple(pe_tables.header_fields(info)),
    )


# --- Mach-O --------------------------------------------------------------------------------


def macho_slices(blob: Blob) -> list[tuple[str, int, int]]:
    """(arch, offset, size) of every slice of a thin or fat Mach-O."""
    head = blob.read(0, 4096)
    kind = macho.sniff(head)
    if kind == "fat":
        return [(a.arch, a.offset, a.size) for a in macho.parse_fat(head, blob.size)]
    if kind == "thin":
        h = macho.parse_slice_header(macho.read_header(blob, 0, blob.size), blob.size)
        return [(h.arch, 0, blob.size)]
    raise MalformedInputError("not a Mach-O file")


def macho_unit(blob: Blob, offset: int, size: int) -> Unit:
    head = macho.read_header(blob, offset, size)
    h = macho.parse_slice_header(head, size)
    tables = macho_tables.read_tables(blob, offset, size, head, h)
    skip, mask = h.normalization()
    cut = skip[0].offset if skip else None  # the code signature blob (slice-relative)
    items: list[tuple[str, int, int, int | None, bool, tuple[Span, ...], tuple[Sub, ...]]] = []
    for seg in h.segments:
        if not seg.filesize:
            continue
        length = seg.filesize
        if cut is not None and seg.fileoff <= cut < seg.fileoff + seg.filesize:
            length = cut - seg.fileoff
        rel_mask = tuple(
            Span(m.offset - seg.fileoff, m.length)
            for m in mask
            if m.offset < seg.fileoff + length and m.offset + m.length > seg.fileoff
        )
        subs = tuple(
            Sub(s.name, s.offset - seg.fileoff, s.size, s.addr, s.executable)
            for s in h.sections
            if s.segname == seg.name
            and not s.zerofill
            and seg.fileoff <= s.offset < seg.fileoff + length
        )
        executable = bool(seg.initprot & macho.VM_PROT_EXECUTE)
        items.append(
            (seg.name, offset + seg.fileoff, length, seg.vmaddr, executable, rel_mask, subs)
        )
    return Unit(
        format="macho",
        arch=h.arch,
        address_kind="vmaddr",
        regions=_keyed(items),
        symbols=tables.symbols,
        imports=frozenset(h.dylibs),
        exports=tables.exports,
        sections=tuple(s.name for s in h.sections),
        notes=tables.notes,
        fields=tuple((offset + o, n, name) for o, n, name in macho_tables.load_commands(head, h)),
    )


# --- ELF -----------------------------------------------------------------------------------


def elf_unit(blob: Blob) -> Unit:
    info = elf.read_elf_info(blob)
    tables = elf_tables.read_tables(blob, info)
    starts = [s.offset for s in info.sections if s.size and s.offset]
    first = min(starts, default=min(blob.size, MAX_ELF_HEADERS))
    items: list[tuple[str, int, int, int | None, bool, tuple[Span, ...], tuple[Sub, ...]]] = [
        ("(headers)", 0, min(first, MAX_ELF_HEADERS), None, False, (), ())
    ]
    for s in info.sections:
        if s.size and s.type != elf.SHT_NOBITS:
            vaddr = s.addr if s.addr else None
            items.append((s.name or "(unnamed)", s.offset, s.size, vaddr, s.executable, (), ()))
    return Unit(
        format="elf",
        arch=info.arch,
        address_kind="vmaddr",
        regions=_keyed(items),
        symbols=tables.symbols,
        imports=tables.needed,
        exports=tables.exports,
        sections=tuple(s.name for s in info.sections if s.name),
        notes=tables.notes,
    )


def empty_unit(fmt: str, arch: str) -> Unit:
    return Unit(
        fmt, arch, "rva" if fmt == "pe" else "vmaddr", (), EMPTY, frozenset(), frozenset(), ()
    )
