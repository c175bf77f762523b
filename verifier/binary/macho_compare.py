"""Compare a shipped Mach-O with upstream entries slice by slice, matched by architecture
(a universal file against the thin darwin-x64 and darwin-arm64 builds, or another universal
file), with the segments and sections that differ and, when both files' bytes are at hand,
how many bytes of each differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verifier.binary.macho import parse_slice_header, read_header
from verifier.errors import MalformedInputError
from verifier.hashing import Span
from verifier.model import UNSIGNED, Blob, FileEntry, SliceFacts, SliceResult, Status

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
    head = read_header(blob, sl.offset, sl.size)
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


def _differing_sections(
    shipped: FileEntry, s: SliceFacts, rf: FileEntry, r: SliceFacts, differing: Sequence[str]
) -> list[dict[str, Any]]:
    """[{name, differing_bytes}] for the differing parts of two slices (bytes when both
    files are at hand and the part has the same size on both sides)."""
    ranges_s, norm_s = _section_ranges(shipped.blob, s) if shipped.blob else ({}, [])
    ranges_r, norm_r = _section_ranges(rf.blob, r) if rf.blob else ({}, [])
    sections: list[dict[str, Any]] = []
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
    return sections


def _compare_slice(
    shipped: FileEntry, s: SliceFacts, rf: FileEntry, r: SliceFacts
) -> tuple[SliceResult, dict[str, Any]]:
    status, differing = _slice_status(s, r)
    sections = _differing_sections(shipped, s, rf, r, differing) if differing else []
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
    return SliceResult(s.arch, status, s.sha256, s.normalized_sha256, s.signature, ev), ev


def _overall(results: Sequence[SliceResult]) -> Status:
    """The file's status: its worst slice's (a missing or unexpected slice is divergent)."""
    if not results:
        return Status.DIVERGENT
    overall = Status.IDENTICAL
    for r_ in results:
        st = Status.DIVERGENT if r_.status in (Status.MISSING, Status.UNEXPECTED) else r_.status
        if _RANK[st] > _RANK[overall]:
            overall = st
    return overall


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
            reason = {"arch": s.arch, "reason": "no upstream slice for this architecture"}
            results.append(
                SliceResult(
                    s.arch, Status.UNEXPECTED, s.sha256, s.normalized_sha256, s.signature, reason
                )
            )
            ev_slices.append({"arch": s.arch, "status": Status.UNEXPECTED.value, "sections": []})
            continue
        result, ev = _compare_slice(shipped, s, *match)
        if result.status == Status.DIVERGENT and first_divergent is None:
            first_divergent = ev
        results.append(result)
        ev_slices.append(ev)
    for arch in ref_slices:  # upstream slices the shipped file lacks
        if arch not in seen:
            results.append(SliceResult(arch, Status.MISSING, None, None, UNSIGNED, {"arch": arch}))
            ev_slices.append({"arch": arch, "status": Status.MISSING.value, "sections": []})
    evidence: dict[str, Any] = {"status": _overall(results).value, "slices": ev_slices}
    if first_divergent is not None:
        for key in ("arch", "sections", "expected_sha256", "actual_sha256"):
            evidence[key] = first_divergent[key]
    return tuple(results), evidence
