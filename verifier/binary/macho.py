"""Mach-O: thin and fat (universal) files, per-slice digests, normalisation, code signatures.

``analyze_macho`` parses the headers of every slice (bounded, capped), reads each slice's
embedded signature once, then streams the file once through ``hashing.digest_views`` feeding:
the whole-file sha256, each slice's sha256 and normalised digest, per-segment and per-section
digests, the code-page hash checks of every CodeDirectory and the Electron fuse-wire scan.

Normalisation (docs/contract.md "Upstream references"), per slice: the ``LC_CODE_SIGNATURE`` load
command is zeroed (so an unsigned slice whose padding took its place hashes the same), the
signature blob it points at is removed, and ``ncmds``/``sizeofcmds`` and ``__LINKEDIT``'s
vmsize/filesize are zeroed. A fat file's ``normalized_sha256`` is the sha256 of the lines
``arch:normalized_sha256`` of its slices in file order (the fat header's offsets and sizes move
whenever a slice is re-signed).

``compare_slices`` compares a shipped Mach-O with one or more upstream entries (a universal
file against the thin darwin-x64 and darwin-arm64 builds) slice by slice, by arch.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from verifier.binary import cafebabe
from verifier.binary import fuses as fuses_mod
from verifier.errors import MalformedInputError
from verifier.hashing import Span, View, digest_views
from verifier.model import (
    UNSIGNED,
    Anomaly,
    BinaryFacts,
    Blob,
    CodeShape,
    FileEntry,
    FileFormat,
    FuseWire,
    SectionDigest,
    SignatureFacts,
    SignatureKind,
    SliceFacts,
    SliceResult,
    Status,
)
from verifier.signing import codesign

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
MAX_INFO_PLIST = 1 << 20

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


@dataclass(frozen=True)
class FatArch:
    cputype: int
    cpusubtype: int
    offset: int
    size: int
    align: int

    @property
    def arch(self) -> str:
        return arch_name(self.cputype, self.cpusubtype)


@dataclass(frozen=True)
class Segment:
    name: str
    fileoff: int
    filesize: int
    vmaddr: int
    vmsize: int
    initprot: int
    cmd_offset: int


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


def parse_slice_header(head: bytes, slice_size: int) -> SliceHeader:
    """Parse a thin Mach-O's header and load commands from its first bytes (bounded)."""
    if len(head) < 28:
        raise MalformedInputError("Mach-O header truncated")
    m_le = struct.unpack_from("<I", head, 0)[0]
    if m_le in (MH_MAGIC, MH_MAGIC_64):
        e = "<"
    elif struct.unpack_from(">I", head, 0)[0] in (MH_MAGIC, MH_MAGIC_64):
        e = ">"
    else:
        raise MalformedInputError("not a Mach-O header")
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
    segments: list[Segment] = []
    sections: list[Section] = []
    code_sig: tuple[int, int, int] | None = None
    entry: int | None = None
    dylibs: list[str] = []
    install_name: str | None = None
    off = hsize
    end = hsize + sizeofcmds
    for i in range(ncmds):
        if off + 8 > end:
            raise MalformedInputError(f"load command {i} runs past sizeofcmds")
        cmd, cmdsize = struct.unpack_from(e + "2I", head, off)
        if cmdsize < 8 or off + cmdsize > end:
            raise MalformedInputError(f"load command {i} has bad size {cmdsize}")
        if cmd in (LC_SEGMENT_64, LC_SEGMENT):
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
            if fixed + nsects * ssize > cmdsize or len(sections) + nsects > MAX_SECTIONS:
                raise MalformedInputError(f"segment {name} claims {nsects} sections")
            if fileoff > slice_size or filesize > slice_size - fileoff:
                raise MalformedInputError(f"segment {name} runs past the end of the slice")
            segments.append(Segment(name, fileoff, filesize, vmaddr, vmsize, initprot, off))
            for k in range(nsects):
                so = off + fixed + k * ssize
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
                sections.append(s)
        elif cmd == LC_CODE_SIGNATURE:
            if cmdsize < 16:
                raise MalformedInputError("LC_CODE_SIGNATURE too short")
            if code_sig is not None:
                raise MalformedInputError("more than one LC_CODE_SIGNATURE")
            dataoff, datasize = struct.unpack_from(e + "2I", head, off + 8)
            if dataoff > slice_size or datasize > slice_size - dataoff:
                raise MalformedInputError(
                    f"LC_CODE_SIGNATURE ({dataoff}+{datasize}) runs past the end of the slice"
                )
            if dataoff < end:
                raise MalformedInputError("code signature overlaps the load commands")
            code_sig = (off, dataoff, datasize)
        elif cmd == LC_MAIN:
            if cmdsize >= 24:
                entry = struct.unpack_from(e + "Q", head, off + 8)[0]
        elif cmd in (LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_ID_DYLIB) and (
            cmdsize >= 24
        ):
            (noff,) = struct.unpack_from(e + "I", head, off + 8)
            if 24 <= noff < cmdsize:
                raw = head[off + noff : off + cmdsize].split(b"\0", 1)[0]
                nm = raw.decode("utf-8", "replace")
                if cmd == LC_ID_DYLIB:
                    install_name = nm
                else:
                    dylibs.append(nm)
        off += cmdsize
    return SliceHeader(
        arch=arch_name(cputype, cpusub),
        is64=is64,
        little=e == "<",
        filetype=filetype,
        ncmds=ncmds,
        sizeofcmds=sizeofcmds,
        header_size=hsize,
        segments=tuple(segments),
        sections=tuple(sections),
        code_signature=code_sig,
        entry_point=entry,
        dylibs=tuple(dylibs),
        install_name=install_name,
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


# --- streaming helpers ---------------------------------------------------------------------


def _shift(spans: Sequence[Span], by: int) -> list[Span]:
    return [Span(s.offset + by, s.length) for s in spans]


def _ctx_get(ctx: Any, name: str, default: Any) -> Any:
    return getattr(ctx, name, default) if ctx is not None else default


@dataclass
class _SlicePlan:
    arch: str
    offset: int
    size: int
    header: SliceHeader | None = None
    error: str | None = None
    sig: codesign.EmbeddedSignature | None = None
    sig_error: str | None = None
    specials: dict[int, bytes] = field(default_factory=dict)
    whole: View | None = None
    norm: View | None = None
    parts: list[tuple[str, bool, View]] = field(default_factory=list)
    pagers: list[codesign.PageHasher] = field(default_factory=list)
    fuse: fuses_mod.FuseScanner | None = None
    remnant: codesign.PageDigestIndex | None = None  # only when the signature's slack is not 0
    tail: View | None = None  # the bytes after the code signature, when there are any


def _read_header(blob: Blob, offset: int, size: int) -> bytes:
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


def _plan_slice(blob: Blob, plan: _SlicePlan) -> None:
    head = _read_header(blob, plan.offset, plan.size)
    try:
        plan.header = parse_slice_header(head, plan.size)
    except MalformedInputError as exc:
        plan.error = exc.message
        return
    h = plan.header
    if plan.arch == "?":
        plan.arch = h.arch
    base = plan.offset
    skip, mask = h.normalization()
    plan.whole = View(f"{plan.arch}:sha256", start=base, end=base + plan.size)
    plan.norm = View(
        f"{plan.arch}:normalized",
        start=base,
        end=base + plan.size,
        skip=_shift(skip, base),
        mask=_shift(mask, base),
    )
    for seg in h.segments:
        if seg.filesize == 0:
            continue
        plan.parts.append(
            (
                seg.name,
                bool(seg.initprot & VM_PROT_EXECUTE),
                View(
                    seg.name,
                    start=base + seg.fileoff,
                    end=base + seg.fileoff + seg.filesize,
                    skip=_shift(skip, base),
                    mask=_shift(mask, base),
                ),
            )
        )
    for sec in h.sections:
        if sec.zerofill or sec.size == 0:
            continue
        plan.parts.append(
            (
                sec.name,
                sec.executable,
                View(sec.name, start=base + sec.offset, end=base + sec.offset + sec.size),
            )
        )
        if sec.name == "__TEXT,__info_plist" and sec.size <= MAX_INFO_PLIST:
            plan.specials[codesign.CSSLOT_INFOSLOT] = blob.read(base + sec.offset, sec.size)
    plan.fuse = fuses_mod.FuseScanner(start=base, end=base + plan.size)
    if h.code_signature is not None:
        _cmd, dataoff, datasize = h.code_signature
        if dataoff + datasize < plan.size:
            plan.tail = View(
                f"{plan.arch}:tail", start=base + dataoff + datasize, end=base + plan.size
            )
        if datasize > codesign.MAX_SIGNATURE_SIZE:
            plan.sig_error = f"code signature of {datasize} bytes exceeds the cap"
            return
        data = blob.read(base + dataoff, datasize)
        try:
            plan.sig = codesign.parse_superblob(data)
        except MalformedInputError as exc:
            plan.sig_error = exc.message
            return
        for cd in plan.sig.code_directories:
            plan.pagers.append(codesign.PageHasher(cd, base, plan.size))
        if plan.sig.trailing_nonzero and plan.size <= codesign.MAX_REMNANT_SLICE:
            plan.remnant = codesign.PageDigestIndex(base, min(dataoff, plan.size))


MAX_GAP_READ = 1 << 20


def _fat_gaps(blob: Blob, head: bytes, fat: Sequence[FatArch], name: str) -> list[Anomaly]:
    """Bytes of a fat file that no slice covers: non-zero padding, or data after the last
    slice (no signature covers them)."""
    if not fat:
        return []
    esz = 32 if struct.unpack_from(">I", head, 0)[0] == FAT_MAGIC_64 else 20
    pos = 8 + len(fat) * esz
    ranges: list[dict[str, int]] = []
    for fa in sorted(fat, key=lambda a: a.offset):
        gap = fa.offset - pos
        if gap > MAX_GAP_READ or (gap > 0 and any(blob.read(pos, gap))):
            ranges.append({"offset": pos, "length": gap})
        pos = fa.offset + fa.size
    if blob.size > pos:
        ranges.append({"offset": pos, "length": blob.size - pos})
    if not ranges:
        return []
    total = sum(r["length"] for r in ranges)
    return [
        Anomaly(
            "data-after-signature",
            f"{name}: {total} bytes of the universal file lie outside every slice",
            {"ranges": ranges},
            region_sha256=_ranges_sha256(blob, ranges),
        )
    ]


def _ranges_sha256(blob: Blob, ranges: Sequence[Mapping[str, int]]) -> str:
    """sha256 of the bytes of ``ranges``, in order (read in bounded chunks)."""
    h = hashlib.sha256()
    for r in ranges:
        pos, end = r["offset"], r["offset"] + r["length"]
        while pos < end:
            chunk = blob.read(pos, min(1 << 20, end - pos))
            if not chunk:
                break
            h.update(chunk)
            pos += len(chunk)
    return h.hexdigest()


def analyze_macho(
    blob: Blob, name: str, ctx: Any = None, *, specials: Mapping[int, bytes] | None = None
) -> tuple[str, BinaryFacts]:
    """Analyse a thin or fat Mach-O in one streaming pass; never raises on bad input.

    ``specials`` gives the content of external special slots (1: Info.plist, 3:
    CodeResources) when the caller knows them (``signing.bundle``); otherwise those slots
    are reported as ``external`` (not verified here).
    """
    head = blob.read(0, 4096)
    kind = sniff(head)
    anomalies: list[Anomaly] = []
    plans: list[_SlicePlan] = []
    whole = View("sha256")

    def malformed(msg: str, arch: str | None = None) -> Anomaly:
        return Anomaly("malformed-input", f"{name}: {msg}", {"arch": arch} if arch else {}, arch)

    if kind == "fat":
        try:
            fat = parse_fat(head, blob.size)
        except MalformedInputError as exc:
            anomalies.append(malformed(exc.message))
            fat = []
        for fa in fat:
            plans.append(_SlicePlan(fa.arch, fa.offset, fa.size))
        anomalies.extend(_fat_gaps(blob, head, fat, name))
    elif kind == "thin":
        plans.append(_SlicePlan("?", 0, blob.size))
    else:
        anomalies.append(malformed("not a Mach-O file"))
    for p in plans:
        _plan_slice(blob, p)
        if specials:
            p.specials.update(specials)
        if p.error:
            anomalies.append(malformed(f"slice {p.arch}: {p.error}", p.arch))
    thin_whole = plans[0].whole if kind == "thin" and plans and plans[0].whole else None
    views: list[View] = [] if thin_whole is not None else [whole]
    for p in plans:
        if p.header is None:
            continue
        assert p.whole is not None and p.norm is not None and p.fuse is not None
        views += [p.whole, p.norm, p.fuse, *(v for _, _, v in p.parts), *p.pagers]
        views += [v for v in (p.remnant, p.tail) if v is not None]
    digest_views(blob.path, views, blob.offset, blob.size)
    sha256 = (thin_whole or whole).hexdigest()

    trust = _ctx_get(ctx, "trust", None)
    at: datetime | None = _ctx_get(ctx, "at", None) or _ctx_get(trust, "at", None)
    verify = bool(_ctx_get(ctx, "verify_signatures", True))
    slices: list[SliceFacts] = []
    markers: dict[str, str] = {}
    for p in plans:
        if p.header is None:
            continue
        assert p.whole is not None and p.norm is not None and p.fuse is not None
        h = p.header
        fuses = None
        masked: dict[str, str] = {}
        if p.fuse.fuses is not None:
            fw = p.fuse.fuses
            fuses = FuseWire(fw.offset - p.offset, fw.version, fw.values)
            masked = _masked_digests(blob, p, fuses)
        if p.fuse.electron_version and "electron_version" not in markers:
            markers["electron_version"] = p.fuse.electron_version
        digests = tuple(
            SectionDigest(
                name=n,
                size=_hashed_length(v),
                sha256=v.hexdigest(),
                executable=ex,
                masked_sha256=masked.get(n),
            )
            for n, ex, v in p.parts
        )
        shape = CodeShape(
            entry_point=h.entry_point,
            imports_sha256=hashlib.sha256("\n".join(sorted(h.dylibs)).encode()).hexdigest()
            if h.dylibs
            else None,
            executable_sections=tuple(s.name for s in h.sections if s.executable),
        )
        sig_facts: SignatureFacts = UNSIGNED
        if h.code_signature is not None:
            _cmd, dataoff, datasize = h.code_signature
            tail = p.size - (dataoff + datasize)
            if tail > 0:
                anomalies.append(
                    Anomaly(
                        "data-after-signature",
                        f"{name}: {tail} bytes after the code signature of {p.arch}",
                        {
                            "arch": p.arch,
                            "ranges": [{"offset": p.offset + dataoff + datasize, "length": tail}],
                        },
                        p.arch,
                        region_sha256=p.tail.hexdigest() if p.tail is not None else None,
                    )
                )
            if p.sig is not None:
                for pg in p.pagers:
                    pg.finish()
                sig_facts, sig_anoms = codesign.verify_slice(
                    p.sig,
                    p.pagers,
                    arch=p.arch,
                    specials=p.specials,
                    trust=trust,
                    at=at,
                    verify_signatures=verify,
                    sig_offset=p.offset + dataoff,
                    remnant_index=p.remnant,
                )
                anomalies.extend(sig_anoms)
            else:
                msg = f"{name}: malformed code signature in {p.arch}: {p.sig_error}"
                anomalies.append(
                    Anomaly("invalid-signature", msg, {"arch": p.arch, "problems": [msg]}, p.arch)
                )
                sig_facts = SignatureFacts(
                    kind=SignatureKind.MACHO,
                    signed=False,
                    valid=False,
                    anomalies=("invalid-signature",),
                    details={"error": p.sig_error},
                )
        slices.append(
            SliceFacts(
                arch=p.arch,
                offset=p.offset,
                size=p.size,
                sha256=p.whole.hexdigest(),
                normalized_sha256=p.norm.hexdigest(),
                sections=digests,
                fuses=fuses,
                shape=shape,
                signature=sig_facts,
            )
        )
    if kind == "fat" and slices:
        normalized = hashlib.sha256(
            "".join(f"{s.arch}:{s.normalized_sha256}\n" for s in slices).encode()
        ).hexdigest()
    elif slices:
        normalized = slices[0].normalized_sha256
    else:
        normalized = None
    if any(p.header is None for p in plans):
        # a slice we could not parse: its signature state is unknown, never 'valid'
        summary = codesign.summarize([*(s.signature for s in slices), SignatureFacts()])
        if summary.kind == SignatureKind.NONE:
            summary = UNSIGNED
    else:
        summary = codesign.summarize(s.signature for s in slices)
    if summary.kind != SignatureKind.NONE:
        summary = SignatureFacts(
            kind=summary.kind,
            signed=summary.signed,
            valid=summary.valid,
            signers=summary.signers,
            anomalies=tuple(sorted({a.rule for a in anomalies} | set(summary.anomalies))),
            container_sha256=summary.container_sha256,
            primary_container_sha256=summary.primary_container_sha256,
            details={
                **summary.details,
                "per_slice": {s.arch: dict(s.signature.details) for s in slices},
            },
        )
    thin = slices[0] if kind == "thin" and slices else None
    facts = BinaryFacts(
        format=FileFormat.MACHO,
        archs=tuple(s.arch for s in slices) or tuple(p.arch for p in plans),
        normalized_sha256=normalized,
        sections=thin.sections if thin else (),
        fuses=thin.fuses if thin else next((s.fuses for s in slices if s.fuses), None),
        shape=thin.shape if thin else CodeShape(),
        slices=tuple(slices),
        signature=summary,
        anomalies=tuple(anomalies),
        markers=markers,
    )
    return sha256, facts


def _hashed_length(v: View) -> int:
    """Bytes a view hashes: its range minus the skipped spans (the signature)."""
    end = v.end or 0
    n = end - v.start
    for sp in v.skip:
        n -= max(0, min(sp.end, end) - max(sp.offset, v.start))
    return n


def _masked_digests(blob: Blob, p: _SlicePlan, fuses: FuseWire) -> dict[str, str]:
    """Digests of the segments/sections holding the fuse wire, with the fuse bytes zeroed."""
    assert p.header is not None
    fuse_abs = Span(p.offset + fuses.offset, len(fuses.values))
    hit = [
        (n, v)
        for n, _ex, v in p.parts
        if v.start <= fuse_abs.offset and fuse_abs.end <= (v.end or 0)
    ]
    if not hit:
        return {}
    lo = min(v.start for _, v in hit)
    hi = max(v.end or 0 for _, v in hit)
    views = [
        View(
            n,
            start=v.start - lo,
            end=(v.end or 0) - lo,
            skip=[Span(s.offset - lo, s.length) for s in v.skip],
            mask=[
                *(Span(s.offset - lo, s.length) for s in v.mask),
                Span(fuse_abs.offset - lo, fuse_abs.length),
            ],
        )
        for n, v in hit
    ]
    digest_views(blob.path, views, blob.offset + lo, hi - lo)
    return {v.name: v.hexdigest() for v in views}


# --- comparison ----------------------------------------------------------------------------

_RANK = {
    Status.IDENTICAL: 0,
    Status.IDENTICAL_EXCEPT_SIGNATURE: 1,
    Status.RESOURCES_ONLY: 2,
    Status.MISSING: 3,
    Status.UNEXPECTED: 3,
    Status.DIVERGENT: 4,
}


def _slice_status(s: SliceFacts, r: SliceFacts) -> tuple[Status, list[str]]:
    if s.sha256 == r.sha256:
        return Status.IDENTICAL, []
    if s.normalized_sha256 == r.normalized_sha256:
        return Status.IDENTICAL_EXCEPT_SIGNATURE, []
    sd = {x.name: x for x in s.sections}
    rd = {x.name: x for x in r.sections}
    differing = sorted(
        n
        for n in set(sd) | set(rd)
        if n not in sd or n not in rd or sd[n].sha256 != rd[n].sha256 or sd[n].size != rd[n].size
    )
    if (
        s.fuses is not None
        and r.fuses is not None
        and s.fuses.offset == r.fuses.offset
        and len(s.fuses.values) == len(r.fuses.values)
        and set(sd) == set(rd)
        and differing
        and all(
            sd[n].masked_sha256 is not None
            and sd[n].masked_sha256 == rd[n].masked_sha256
            and sd[n].size == rd[n].size
            for n in differing
        )
    ):
        return Status.RESOURCES_ONLY, differing
    return Status.DIVERGENT, differing


def _differing_bytes(
    a: Blob,
    a_off: int,
    b: Blob,
    b_off: int,
    length: int,
    limit: int = 256 << 20,
    ignore: Sequence[Span] = (),
) -> int | None:
    """Count differing bytes between two equally long ranges (streamed, capped), not
    counting ``ignore`` spans (relative to the range start: normalised header fields)."""
    if length > limit:
        return None
    n = 0
    with open(a.path, "rb") as fa, open(b.path, "rb") as fb:
        fa.seek(a.offset + a_off)
        fb.seek(b.offset + b_off)
        left = length
        while left > 0:
            k = min(1 << 20, left)
            x, y = fa.read(k), fb.read(k)
            if len(x) != k or len(y) != k:
                return None
            if x != y:
                base = length - left
                xb, yb = bytearray(x), bytearray(y)
                for sp in ignore:
                    lo, hi = max(sp.offset - base, 0), min(sp.end - base, k)
                    if lo < hi:
                        xb[lo:hi] = yb[lo:hi] = bytes(hi - lo)
                xor = int.from_bytes(xb, "big") ^ int.from_bytes(yb, "big")
                n += k - xor.to_bytes(k, "big").count(0)
            left -= k
    return n


def _section_ranges(blob: Blob, sl: SliceFacts) -> tuple[dict[str, tuple[int, int]], list[Span]]:
    """name -> (slice-relative offset, size) for every segment/section of a slice, and the
    slice's normalisation spans."""
    head = _read_header(blob, sl.offset, sl.size)
    try:
        h = parse_slice_header(head, sl.size)
    except MalformedInputError:
        return {}, []
    skip, mask = h.normalization()
    out: dict[str, tuple[int, int]] = {}
    for seg in h.segments:
        out[seg.name] = (seg.fileoff, seg.filesize)
    for sec in h.sections:
        if not sec.zerofill:
            out[sec.name] = (sec.offset, sec.size)
    return out, [*skip, *mask]


def compare_slices(
    shipped: FileEntry, refs: FileEntry | Sequence[FileEntry]
) -> tuple[tuple[SliceResult, ...], dict[str, Any]]:
    """Compare a shipped Mach-O with upstream entries slice by slice (matched by arch).

    Returns the per-slice results and evidence: ``status`` (the file's overall status, the
    worst slice), ``slices`` [{arch, status, sections [{name, differing_bytes}]}], ``arch``
    (the first divergent slice) and ``sections`` (its differing segments and sections).
    ``differing_bytes`` is filled when both files' bytes are available (else null).
    """
    ref_list = [refs] if isinstance(refs, FileEntry) else list(refs)
    ref_slices: dict[str, tuple[FileEntry, SliceFacts]] = {}
    for rf in ref_list:
        for rs in rf.facts.slices:
            ref_slices.setdefault(rs.arch, (rf, rs))
    results: list[SliceResult] = []
    ev_slices: list[dict[str, Any]] = []
    first_divergent: dict[str, Any] | None = None
    seen: set[str] = set()
    for s in shipped.facts.slices:
        seen.add(s.arch)
        match = ref_slices.get(s.arch)
        if match is None:
            results.append(
                SliceResult(
                    s.arch,
                    Status.UNEXPECTED,
                    s.sha256,
                    s.normalized_sha256,
                    s.signature,
                    {"arch": s.arch, "reason": "no upstream slice for this architecture"},
                )
            )
            ev_slices.append({"arch": s.arch, "status": Status.UNEXPECTED.value, "sections": []})
            continue
        rf, r = match
        status, differing = _slice_status(s, r)
        sections: list[dict[str, Any]] = []
        if differing:
            ranges_s, norm_s = _section_ranges(shipped.blob, s) if shipped.blob else ({}, [])
            ranges_r, norm_r = _section_ranges(rf.blob, r) if rf.blob else ({}, [])
            for n in differing:
                nb: int | None = None
                if shipped.blob and rf.blob and n in ranges_s and n in ranges_r:
                    (so, ss), (ro, rs_) = ranges_s[n], ranges_r[n]
                    if ss == rs_ and n != "__LINKEDIT":
                        ignore = [
                            Span(sp.offset - so, sp.length)
                            for sp in (*norm_s, *norm_r)
                            if sp.end > so and sp.offset < so + ss
                        ]
                        nb = _differing_bytes(
                            shipped.blob, s.offset + so, rf.blob, r.offset + ro, ss, ignore=ignore
                        )
                sections.append({"name": n, "differing_bytes": nb})
        ev: dict[str, Any] = {
            "arch": s.arch,
            "status": status.value,
            "sections": sections,
            "expected_sha256": r.sha256,
            "actual_sha256": s.sha256,
            "expected_normalized_sha256": r.normalized_sha256,
            "actual_normalized_sha256": s.normalized_sha256,
            "reference": rf.location,
        }
        if status == Status.RESOURCES_ONLY and s.fuses and r.fuses:
            ev["fuses"] = {"expected": r.fuses.values, "actual": s.fuses.values}
        if status == Status.DIVERGENT and first_divergent is None:
            first_divergent = ev
        results.append(SliceResult(s.arch, status, s.sha256, s.normalized_sha256, s.signature, ev))
        ev_slices.append(ev)
    # upstream slices the shipped file lacks
    for arch in ref_slices:
        if arch in seen:
            continue
        results.append(SliceResult(arch, Status.MISSING, None, None, UNSIGNED, {"arch": arch}))
        ev_slices.append({"arch": arch, "status": Status.MISSING.value, "sections": []})
    overall = Status.IDENTICAL
    for r_ in results:
        st = Status.DIVERGENT if r_.status in (Status.MISSING, Status.UNEXPECTED) else r_.status
        if _RANK[st] > _RANK[overall]:
            overall = st
    if not results:
        overall = Status.DIVERGENT
    evidence: dict[str, Any] = {"status": overall.value, "slices": ev_slices}
    if first_divergent is not None:
        evidence["arch"] = first_divergent["arch"]
        evidence["sections"] = first_divergent["sections"]
        evidence["expected_sha256"] = first_divergent["expected_sha256"]
        evidence["actual_sha256"] = first_divergent["actual_sha256"]
    return tuple(results), evidence
