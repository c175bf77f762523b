"""What one streaming pass over a Mach-O file computes, and the facts made from it.

``plan_file`` parses the fat table and every slice's header (bounded, capped) and builds the
``hashing.View``s one read of the file feeds: the whole-file sha256, each slice's sha256 and
normalised digest, per-segment and per-section digests (level "full" only) and the Electron
fuse scan. The code signature's page checks (``signing.macho_signature``) join the same pass.
``slice_facts`` and ``file_facts`` turn the fed views and the judged signatures into facts.

A fat file's ``normalized_sha256`` is the sha256 of the lines ``arch:normalized_sha256`` of
its slices in file order (the fat header's offsets and sizes move whenever a slice is
re-signed).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from verifier.binary import fuses as fuses_mod
from verifier.binary.macho import (
    FAT_MAGIC_64,
    VM_PROT_EXECUTE,
    FatArch,
    Section,
    SliceHeader,
    parse_fat,
    parse_slice_header,
    read_header,
    sniff,
)
from verifier.errors import MalformedInputError
from verifier.hashing import Span, View, digest_views
from verifier.model import (
    Anomaly,
    BinaryFacts,
    Blob,
    CodeShape,
    FileFormat,
    FuseWire,
    SectionDigest,
    SignatureFacts,
    SliceFacts,
)

MAX_GAP_READ = 1 << 20
INFO_PLIST_SECTION = "__TEXT,__info_plist"


def _shift(spans: Sequence[Span], by: int) -> list[Span]:
    return [Span(s.offset + by, s.length) for s in spans]


@dataclass
class SlicePlan:
    """One slice: its header and the views the pass feeds for it."""

    arch: str
    offset: int
    size: int
    header: SliceHeader | None = None
    error: str | None = None
    whole: View | None = None  # None when the file's known sha256 is the slice's (thin)
    known_sha256: str | None = None
    norm: View | None = None
    parts: list[tuple[str, bool, View]] = field(default_factory=list)
    fuse: fuses_mod.FuseScanner | None = None
    tail: View | None = None  # the bytes after the code signature, when there are any
    info_plist: Section | None = None  # __TEXT,__info_plist: special slot 1's content

    def views(self) -> list[View]:
        assert self.norm is not None and self.fuse is not None
        views: list[View] = [v for v in (self.whole, self.norm, self.fuse) if v is not None]
        views += [v for _, _, v in self.parts]
        return views + ([self.tail] if self.tail is not None else [])

    @property
    def sha256(self) -> str:
        if self.known_sha256 is not None:
            return self.known_sha256
        assert self.whole is not None
        return self.whole.hexdigest()


def plan_slice(blob: Blob, plan: SlicePlan, *, core: bool) -> None:
    """Parse the slice's header and build its views; a bad header sets ``plan.error``.
    ``core``: no segment or section digests (only a comparison with a different file
    needs them)."""
    head = read_header(blob, plan.offset, plan.size)
    try:
        plan.header = h = parse_slice_header(head, plan.size)
    except MalformedInputError as exc:
        plan.error = exc.message
        return
    if plan.arch == "?":
        plan.arch = h.arch
    base, end = plan.offset, plan.offset + plan.size
    skip, mask = h.normalization()
    if plan.known_sha256 is None:
        plan.whole = View(f"{plan.arch}:sha256", start=base, end=end)
    plan.norm = View(
        f"{plan.arch}:normalized",
        start=base,
        end=end,
        skip=_shift(skip, base),
        mask=_shift(mask, base),
    )
    if not core:
        plan.parts = _parts(h, base, skip, mask)
    plan.info_plist = next((s for s in h.sections if s.name == INFO_PLIST_SECTION), None)
    plan.fuse = fuses_mod.FuseScanner(start=base, end=end)
    if h.code_signature is not None:
        _cmd, dataoff, datasize = h.code_signature
        if dataoff + datasize < plan.size:
            plan.tail = View(f"{plan.arch}:tail", start=base + dataoff + datasize, end=end)


def _parts(
    h: SliceHeader, base: int, skip: Sequence[Span], mask: Sequence[Span]
) -> list[tuple[str, bool, View]]:
    """(name, executable, view) for every segment and section with bytes in the file."""
    parts = [
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
        for seg in h.segments
        if seg.filesize
    ]
    parts += [
        (
            sec.name,
            sec.executable,
            View(sec.name, start=base + sec.offset, end=base + sec.offset + sec.size),
        )
        for sec in h.sections
        if not sec.zerofill and sec.size
    ]
    return parts


@dataclass
class MachOPlan:
    """A thin or fat Mach-O file: its slices, what its headers got wrong, its views."""

    name: str
    kind: str | None  # "thin", "fat" or None
    slices: list[SlicePlan]
    anomalies: list[Anomaly]
    whole: View | None  # the file's sha256 when neither known nor a thin slice's

    def parsed(self) -> list[SlicePlan]:
        return [p for p in self.slices if p.header is not None]

    def views(self) -> list[View]:
        return [
            *([self.whole] if self.whole is not None else []),
            *(v for p in self.parsed() for v in p.views()),
        ]

    def sha256(self, known: str | None) -> str:
        if known is not None:
            return known
        if self.whole is not None:
            return self.whole.hexdigest()
        return self.slices[0].sha256


def malformed(name: str, msg: str, arch: str | None = None) -> Anomaly:
    return Anomaly("malformed-input", f"{name}: {msg}", {"arch": arch} if arch else {}, arch)


def plan_file(blob: Blob, name: str, *, core: bool, known: str | None = None) -> MachOPlan:
    """Parse a thin or fat Mach-O's headers and plan its one pass; never raises on bad
    input (a bad fat table or slice header is a ``malformed-input`` anomaly)."""
    head = blob.read(0, 4096)
    kind = sniff(head)
    anomalies: list[Anomaly] = []
    plans: list[SlicePlan] = []
    if kind == "fat":
        try:
            fat = parse_fat(head, blob.size)
        except MalformedInputError as exc:
            anomalies.append(malformed(name, exc.message))
            fat = []
        plans = [SlicePlan(fa.arch, fa.offset, fa.size) for fa in fat]
        anomalies.extend(_fat_gaps(blob, head, fat, name))
    elif kind == "thin":
        plans.append(SlicePlan("?", 0, blob.size, known_sha256=known))
    else:
        anomalies.append(malformed(name, "not a Mach-O file"))
    for p in plans:
        plan_slice(blob, p, core=core)
        if p.error:
            anomalies.append(malformed(name, f"slice {p.arch}: {p.error}", p.arch))
    thin = kind == "thin" and plans and plans[0].header is not None
    whole = None if known is not None or thin else View("sha256")
    return MachOPlan(name, kind, plans, anomalies, whole)


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


def tail_anomaly(name: str, p: SlicePlan) -> Anomaly | None:
    """``data-after-signature`` for bytes of a slice after its code signature."""
    if p.header is None or p.header.code_signature is None:
        return None
    _cmd, dataoff, datasize = p.header.code_signature
    tail = p.size - (dataoff + datasize)
    if tail <= 0:
        return None
    return Anomaly(
        "data-after-signature",
        f"{name}: {tail} bytes after the code signature of {p.arch}",
        {
            "arch": p.arch,
            "ranges": [{"offset": p.offset + dataoff + datasize, "length": tail}],
        },
        p.arch,
        region_sha256=p.tail.hexdigest() if p.tail is not None else None,
    )


def slice_facts(blob: Blob, p: SlicePlan, signature: SignatureFacts) -> SliceFacts:
    """The facts of one parsed slice once the pass fed its views."""
    assert p.header is not None and p.norm is not None and p.fuse is not None
    h = p.header
    fuses = None
    masked: dict[str, str] = {}
    if p.fuse.fuses is not None:
        fw = p.fuse.fuses
        fuses = FuseWire(fw.offset - p.offset, fw.version, fw.values)
        masked = _masked_digests(blob, p, fuses)
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
    return SliceFacts(
        arch=p.arch,
        offset=p.offset,
        size=p.size,
        sha256=p.sha256,
        normalized_sha256=p.norm.hexdigest(),
        sections=digests,
        fuses=fuses,
        shape=shape,
        signature=signature,
    )


def file_facts(
    plan: MachOPlan, slices: Sequence[SliceFacts], signature: SignatureFacts
) -> BinaryFacts:
    """The facts of the whole file from its slices' (a thin file's are its one slice's)."""
    if plan.kind == "fat" and slices:
        normalized: str | None = hashlib.sha256(
            "".join(f"{s.arch}:{s.normalized_sha256}\n" for s in slices).encode()
        ).hexdigest()
    elif slices:
        normalized = slices[0].normalized_sha256
    else:
        normalized = None
    markers: dict[str, str] = {}
    for p in plan.parsed():
        assert p.fuse is not None
        if p.fuse.electron_version and "electron_version" not in markers:
            markers["electron_version"] = p.fuse.electron_version
    thin = slices[0] if plan.kind == "thin" and slices else None
    return BinaryFacts(
        format=FileFormat.MACHO,
        archs=tuple(s.arch for s in slices) or tuple(p.arch for p in plan.slices),
        normalized_sha256=normalized,
        sections=thin.sections if thin else (),
        fuses=thin.fuses if thin else next((s.fuses for s in slices if s.fuses), None),
        shape=thin.shape if thin else CodeShape(),
        slices=tuple(slices),
        signature=signature,
        anomalies=tuple(plan.anomalies),
        markers=markers,
    )


def _hashed_length(v: View) -> int:
    """Bytes a view hashes: its range minus the skipped spans (the signature)."""
    end = v.end or 0
    n = end - v.start
    for sp in v.skip:
        n -= max(0, min(sp.end, end) - max(sp.offset, v.start))
    return n


def _masked_digests(blob: Blob, p: SlicePlan, fuses: FuseWire) -> dict[str, str]:
    """Digests of the segments/sections holding the fuse wire, with the fuse bytes zeroed."""
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
