"""Where two binaries differ: merged byte ranges per region (section, segment, headers).

Why: "``.text`` (96 bytes differ)" does not tell an analyst *where*. This module compares two
files region by region (a region is a PE section, a Mach-O segment, an ELF section, the
headers...; the caller pairs them by name, see ``verifier.binary.layout``) position by
position, after zeroing the normalisation spans (checksum, signature fields), and returns the
differing byte ranges, merged when fewer than ``MERGE_GAP`` equal bytes separate them.

Cheap by construction, whatever the input:

* equal 64 KiB chunks are skipped with one ``==`` (memcmp); only differing chunks are looked
  at, and a chunk that differs densely is taken as one range without a byte-level scan;
* hard, time-independent caps: bytes read per side (``max_scan_bytes``), bytes of differing
  chunks scanned for exact ranges (``max_locate_bytes``), ranges kept (``max_changes``).
  Past a cap the scan says so (``truncated``) and keeps chunk-granular, coarse ranges, so a
  100 MB ``.text`` that differs everywhere costs one read and gives one honest range.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from verifier.hashing import Span
from verifier.record import record

CHUNK = 1 << 16
MERGE_GAP = 16
_GAP = b"\x00" * (MERGE_GAP + 1)
_RUN = re.compile(rb"[^\x00](?:\x00{0,%d}[^\x00])*+" % MERGE_GAP)


class Reader(Protocol):
    def seek(self, pos: int, /) -> int: ...
    def read(self, n: int, /) -> bytes: ...


@record
class ScanLimits:
    """Caps of one file's scan (both sides)."""

    max_scan_bytes: int = 512 << 20  # bytes read from each side, all regions together
    max_locate_bytes: int = 64 << 20  # bytes of differing chunks searched for exact ranges
    max_changes: int = 256  # ranges kept


@record
class RegionPair:
    """One region of the shipped file and its upstream counterpart (absolute blob offsets).

    ``shipped`` or ``upstream`` is None when the region exists on one side only. ``mask``
    spans (relative to the region's start) are zeroed on both sides before comparing.
    """

    name: str
    shipped: Span | None
    upstream: Span | None
    mask: tuple[Span, ...] = ()


@record
class Change:
    """A merged range of differing bytes, relative to its region's start.

    ``length`` counts shipped bytes, ``upstream_length`` upstream ones (they differ only for
    a region's grown or shrunk tail and for regions on one side only). ``kind``: ``changed``,
    ``added`` (region only in the shipped file), ``removed`` (only upstream), ``resized`` (the
    tail of a region that is longer on one side). ``exact`` is
    False for a coarse range the scan did not resolve byte by byte (a cap was reached).
    """

    region: int  # index into the RegionPair list
    offset: int
    length: int
    upstream_length: int
    kind: str = "changed"
    exact: bool = True


@dataclass
class ScanResult:
    changes: list[Change] = field(default_factory=list)
    # differing bytes per region index (position by position plus the size difference);
    # None where the scan cap stopped the count
    differing: dict[int, int | None] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)
    omitted_changes: int = 0
    scanned_bytes: int = 0
    located_bytes: int = 0


class _Budget:
    def __init__(self, limits: ScanLimits, out: ScanResult) -> None:
        self.limits, self.out = limits, out

    def note(self, why: str) -> None:
        if why not in self.out.truncated:
            self.out.truncated.append(why)

    def add(self, ch: Change) -> None:
        if len(self.out.changes) >= self.limits.max_changes:
            self.out.omitted_changes += 1
            self.note(f"more than {self.limits.max_changes} changed ranges: the rest omitted")
            return
        self.out.changes.append(ch)


def scan(
    fa: Reader,
    fb: Reader,
    pairs: Sequence[RegionPair],
    limits: ScanLimits = ScanLimits(),
) -> ScanResult:
    """Compare every region pair; ``fa`` is the shipped file, ``fb`` the upstream one.

    Offsets in ``pairs`` are absolute positions in the open files.
    """
    out = ScanResult()
    budget = _Budget(limits, out)
    for i, p in enumerate(pairs):
        if p.shipped is None and p.upstream is None:
            continue
        if p.shipped is None or p.upstream is None:
            span = p.shipped or p.upstream
            assert span is not None
            out.differing[i] = span.length
            if span.length:
                kind = "added" if p.shipped is not None else "removed"
                a = span.length if p.shipped is not None else 0
                b = span.length if p.upstream is not None else 0
                budget.add(Change(i, 0, a, b, kind))
            continue
        out.differing[i] = _scan_pair(fa, fb, i, p, budget)
    return out


def _scan_pair(fa: Reader, fb: Reader, index: int, p: RegionPair, budget: _Budget) -> int | None:
    assert p.shipped is not None and p.upstream is not None
    la, lb = p.shipped.length, p.upstream.length
    n = min(la, lb)
    limits, out = budget.limits, budget.out
    differing: int | None = 0
    open_: list[int] | None = None  # [start, end) of the range being merged
    coarse: list[int] | None = None  # [first, last) differing chunk bounds past the locate cap
    pos = 0
    fa.seek(p.shipped.offset)
    fb.seek(p.upstream.offset)
    while pos < n:
        if out.scanned_bytes >= limits.max_scan_bytes:
            budget.note(f"compared at most {limits.max_scan_bytes} bytes per side")
            coarse = [pos, n] if coarse is None else [coarse[0], n]
            differing = None
            break
        k = min(CHUNK, n - pos)
        x, y = fa.read(k), fb.read(k)
        out.scanned_bytes += k
        if len(x) != k or len(y) != k:  # a file shorter than its headers say
            budget.note(f"{p.name}: file ended early")
            differing = None
            break
        if p.mask:
            x, y = _masked(x, pos, p.mask), _masked(y, pos, p.mask)
        if x != y:
            xor = (int.from_bytes(x, "little") ^ int.from_bytes(y, "little")).to_bytes(k, "little")
            if differing is not None:
                differing += k - xor.count(b"\x00")
            full = len(out.changes) >= limits.max_changes
            if out.located_bytes < limits.max_locate_bytes and coarse is None and not full:
                out.located_bytes += k
                for s, e in _runs(xor):
                    s, e = s + pos, e + pos
                    if open_ is not None and s - open_[1] <= MERGE_GAP:
                        open_[1] = e
                    else:
                        if open_ is not None:
                            budget.add(
                                Change(index, open_[0], open_[1] - open_[0], open_[1] - open_[0])
                            )
                        open_ = [s, e]
            else:
                budget.note(
                    f"more than {limits.max_changes} changed ranges: coarse ranges after that"
                    if full
                    else f"exact ranges located in the first {limits.max_locate_bytes} "
                    "differing bytes only; coarse ranges after that"
                )
                coarse = [pos, pos + k] if coarse is None else [coarse[0], pos + k]
        pos += k
    if open_ is not None:
        if coarse is not None and coarse[0] - open_[1] <= MERGE_GAP:
            coarse[0] = open_[0]
        else:
            budget.add(Change(index, open_[0], open_[1] - open_[0], open_[1] - open_[0]))
    if coarse is not None:
        budget.add(
            Change(index, coarse[0], coarse[1] - coarse[0], coarse[1] - coarse[0], exact=False)
        )
    if la != lb:
        budget.add(Change(index, n, la - n, lb - n, "resized"))
        if differing is not None:
            differing += abs(la - lb)
    return differing


def _masked(data: bytes, pos: int, mask: Sequence[Span]) -> bytes:
    buf: bytearray | None = None
    for m in mask:
        lo, hi = max(m.offset - pos, 0), min(m.end - pos, len(data))
        if lo < hi:
            if buf is None:
                buf = bytearray(data)
            buf[lo:hi] = bytes(hi - lo)
    return bytes(buf) if buf is not None else data


def _runs(xor: bytes) -> list[tuple[int, int]]:
    """[start, end) of the non-zero runs of ``xor``, merged across gaps <= MERGE_GAP."""
    first = len(xor) - len(xor.lstrip(b"\x00"))
    last = len(xor.rstrip(b"\x00"))
    if first >= last:
        return []
    if _GAP not in xor[first:last]:  # dense: one range, no byte-level scan
        return [(first, last)]
    return [(m.start(), m.end()) for m in _RUN.finditer(xor, first, last)]
