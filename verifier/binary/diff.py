"""Evidence for a PE file that differs from its upstream, and the resources-only test.

Why: "divergent" alone does not help a person triage a 3CX-style finding. They want to know
which sections changed and by how many bytes, and whether the entry point, the import or
export tables, the TLS callbacks or the set of executable sections changed: an added
executable section plus a moved entry point is what an injected loader looks like. And an
rcedit-ed ``electron.exe`` (new icon and version strings, possibly flipped fuses) must not be
mistaken for tampering: :func:`pe_resources_only` recognises it from the digests alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from verifier.binary import pe
from verifier.errors import MalformedInputError
from verifier.hashing import Span
from verifier.model import BinaryFacts, Blob, FileEntry, FileFormat, SectionDigest

if TYPE_CHECKING:
    from verifier.binary import explain
# A decided lazy import (docs/INTERNALS.md): ``explain`` and what it loads (layouts, symbol
# tables, the disassembler's front end: nine modules, ~70 ms) are imported when a divergent
# file is explained, so that ``import verifier.api`` (start-up) does not pay for them.

CHUNK = 1 << 20
RSRC = ".rsrc"


def _keyed(sections: tuple[SectionDigest, ...]) -> dict[tuple[str, int], SectionDigest]:
    """Sections keyed by (name, occurrence): two sections may share a name."""
    seen: dict[str, int] = {}
    out = {}
    for s in sections:
        n = seen.get(s.name, 0)
        seen[s.name] = n + 1
        out[(s.name, n)] = s
    return out


def pe_resources_only(shipped: BinaryFacts, ref: BinaryFacts) -> bool:
    """True when only what rcedit and @electron/fuses change differs (docs/contract.md).

    Headers equal once the rcedit-movable fields are zeroed, every section but ``.rsrc``
    equal by content with fuse bytes zeroed, the same overlay, and the fuse wire (if any) at
    the same offset with the same version and length.
    """
    if shipped.format != FileFormat.PE or ref.format != FileFormat.PE:
        return False
    if shipped.header_sha256 is None or shipped.header_sha256 != ref.header_sha256:
        return False
    if shipped.overlay_sha256 != ref.overlay_sha256:
        return False
    a = [(k, s.masked_sha256 or s.sha256) for k, s in _keyed(shipped.sections).items()]
    b = [(k, s.masked_sha256 or s.sha256) for k, s in _keyed(ref.sections).items()]
    if [x for x in a if x[0][0] != RSRC] != [x for x in b if x[0][0] != RSRC]:
        return False
    return _same_wire(shipped, ref)


def _same_wire(a: BinaryFacts, b: BinaryFacts) -> bool:
    if a.fuses is None or b.fuses is None:
        return a.fuses is None and b.fuses is None
    return (a.fuses.offset, a.fuses.version, len(a.fuses.values)) == (
        b.fuses.offset,
        b.fuses.version,
        len(b.fuses.values),
    )


def fuse_evidence(shipped: BinaryFacts, ref: BinaryFacts) -> dict[str, Any] | None:
    """The fuse values on both sides and which fuse indices changed (None without fuses)."""
    if shipped.fuses is None and ref.fuses is None:
        return None
    sv = shipped.fuses.values if shipped.fuses else None
    rv = ref.fuses.values if ref.fuses else None
    changed = [i for i, (x, y) in enumerate(zip(sv or "", rv or "", strict=False)) if x != y]
    return {"shipped": sv, "reference": rv, "changed": changed}


def describe_pe_divergence(shipped: FileEntry, ref: FileEntry) -> dict[str, Any]:
    """Evidence keys for a divergent PE (docs/contract.md "JSON report").

    ``sections``: [{name, differing_bytes}] for each section whose content differs (or that
    exists on one side only); ``differing_bytes`` is a byte count when both files are on disk,
    else null. ``executable_sections_changed`` is {added, removed} or null when unchanged;
    ``headers_changed`` compares the headers with the rcedit-movable fields zeroed.
    """
    sf, rf = shipped.facts, ref.facts
    ex = _explain(shipped, ref)
    ev: dict[str, Any] = {"sections": _section_evidence(shipped, ref, ex.differing if ex else None)}
    ev["entry_point_changed"] = _changed(sf.shape.entry_point, rf.shape.entry_point)
    ev["imports_changed"] = _changed(sf.shape.imports_sha256, rf.shape.imports_sha256)
    ev["exports_changed"] = _changed(sf.shape.exports_sha256, rf.shape.exports_sha256)
    ev["tls_callbacks_changed"] = sf.shape.tls_callbacks != rf.shape.tls_callbacks
    added = sorted(set(sf.shape.executable_sections) - set(rf.shape.executable_sections))
    removed = sorted(set(rf.shape.executable_sections) - set(sf.shape.executable_sections))
    ev["executable_sections_changed"] = (
        {"added": added, "removed": removed} if added or removed else None
    )
    ev["overlay_changed"] = sf.overlay_sha256 != rf.overlay_sha256
    ev["headers_changed"] = _changed(sf.header_sha256, rf.header_sha256)
    fuses = fuse_evidence(sf, rf)
    if fuses is not None:
        ev["fuses"] = fuses
    from verifier.binary import explain  # lazy: start-up (see the note at the top)

    ev.update(ex.evidence if ex else explain.unavailable(explain.UNAVAILABLE_NO_BYTES))
    return ev


def _explain(
    shipped: FileEntry, ref: FileEntry, limits: explain.ExplainLimits | None = None
) -> explain.UnitExplanation | None:
    """The explanation of a divergent PE or ELF pair (None without both files' bytes)."""
    if shipped.blob is None or ref.blob is None or shipped.format != ref.format:
        return None
    from verifier.binary import explain  # lazy: start-up (see the note at the top)

    return explain.explain_blobs(shipped.blob, ref.blob, shipped.format, limits or explain.DEFAULT)


def describe_elf_divergence(
    shipped: FileEntry, ref: FileEntry, limits: explain.ExplainLimits | None = None
) -> dict[str, Any]:
    """Explanation keys for a divergent PE or ELF file (docs/contract.md "Explaining a
    divergence")."""
    from verifier.binary import explain  # lazy: start-up (see the note at the top)

    ex = _explain(shipped, ref, limits)
    return ex.evidence if ex else explain.unavailable(explain.UNAVAILABLE_NO_BYTES)


explain_pair = describe_elf_divergence


def describe_macho_divergence(
    shipped: FileEntry,
    refs: Sequence[FileEntry],
    evidence: Mapping[str, Any],
    limits: explain.ExplainLimits | None = None,
) -> dict[str, Any]:
    """Explanation keys for a divergent Mach-O, per slice (docs/contract.md).

    Each divergent slice's entry in ``evidence["slices"]`` gains its own explanation keys; the
    top level carries the first divergent slice's, like ``arch`` and ``sections``.
    """
    from verifier.binary import explain  # lazy: start-up (see the note at the top)

    if shipped.blob is None:
        return explain.unavailable("the shipped file's bytes are not at hand")
    units = explain.explain_macho(shipped, refs, limits or explain.DEFAULT)
    by_arch = {u.arch: u for u in units}
    out: dict[str, Any] = {}
    slices = []
    for s in evidence.get("slices") or []:
        d = dict(s)
        u = by_arch.get(str(d.get("arch")))
        if u is not None and d.get("status") != "identical":
            d.update(u.evidence)
            if not out:
                out.update(u.evidence)
        slices.append(d)
    if slices:
        out["slices"] = slices
    return out


def _changed(a: object, b: object) -> bool | None:
    """True/False, or None when either side is unknown (a table biv could not parse)."""
    if a is None or b is None:
        return None
    return a != b


def _section_evidence(
    shipped: FileEntry, ref: FileEntry, counted: Mapping[tuple[str, int], int | None] | None = None
) -> list[dict[str, Any]]:
    """Differing sections; ``counted`` are the explanation's counts (bytes read once)."""
    sa, sb = _keyed(shipped.facts.sections), _keyed(ref.facts.sections)
    counted = counted or {}
    ranges = None
    out = []
    for key in [*sa, *(k for k in sb if k not in sa)]:
        a, b = sa.get(key), sb.get(key)
        if a is not None and b is not None and a.sha256 == b.sha256:
            continue
        count: int | None = None
        if counted.get(key) is not None:
            count = counted[key]
        else:
            ranges = ranges or _ranges(shipped.blob, ref.blob)
        if count is None and ranges is not None:
            count = _count_differing(shipped.blob, ref.blob, ranges[0].get(key), ranges[1].get(key))
        out.append({"name": key[0], "differing_bytes": count})
    return out


_Ranges = dict[tuple[str, int], Span]


def _ranges(a: Blob | None, b: Blob | None) -> tuple[_Ranges, _Ranges] | None:
    """Raw-data ranges of both files' sections, or None when a blob is missing or bad."""
    if a is None or b is None:
        return None
    try:
        ia, ib = pe.read_pe_info(a), pe.read_pe_info(b)
    except (MalformedInputError, OSError):
        return None
    return _section_spans(ia), _section_spans(ib)


def _section_spans(info: pe.PEInfo) -> _Ranges:
    seen: dict[str, int] = {}
    out = {}
    for s in info.sections:
        n = seen.get(s.name, 0)
        seen[s.name] = n + 1
        out[(s.name, n)] = s.raw_span
    return out


def _count_differing(a: Blob | None, b: Blob | None, ra: Span | None, rb: Span | None) -> int:
    """Bytes that differ position by position, plus the difference in length."""
    la, lb = ra.length if ra else 0, rb.length if rb else 0
    if a is None or b is None or ra is None or rb is None:
        return max(la, lb)
    n = min(la, lb)
    diff = abs(la - lb)
    for x, y in zip(_read(a, ra.offset, n), _read(b, rb.offset, n), strict=True):
        diff += count_differing_bytes(x, y)
    return diff


def _read(blob: Blob, offset: int, length: int) -> Iterator[bytes]:
    with open(blob.path, "rb") as fh:
        fh.seek(blob.offset + offset)
        left = length
        while left > 0:
            data = fh.read(min(CHUNK, left))
            if len(data) < min(CHUNK, left):
                data += bytes(min(CHUNK, left) - len(data))
            left -= len(data)
            yield data


def count_differing_bytes(x: bytes, y: bytes) -> int:
    """Positions where two equal-length byte strings differ (XOR in C, count zero bytes)."""
    if len(x) != len(y):
        raise ValueError("lengths differ")
    if not x:
        return 0
    xor = (int.from_bytes(x, "little") ^ int.from_bytes(y, "little")).to_bytes(len(x), "little")
    return len(x) - xor.count(0)
