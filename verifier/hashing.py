"""Read each byte once: several digests over views of one stream.

A *view* is a hash over the file with some byte ranges left out (skipped) and others
replaced by zeros (masked). The plain sha256, the normalised digest, the Authenticode
digest and per-section digests are all views; ``digest_views`` feeds every view from one
sequential read of the blob in large chunks, so memory stays bounded whatever the size.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

CHUNK = 1 << 20


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class Span:
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass
class View:
    """One digest over ``[start, end)`` of the stream, minus ``skip``, with ``mask`` zeroed."""

    name: str
    algorithm: str = "sha256"
    start: int = 0
    end: int | None = None
    skip: Sequence[Span] = ()
    mask: Sequence[Span] = ()
    _h: Hasher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._h = hashlib.new(self.algorithm)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def feed(self, pos: int, chunk: memoryview) -> None:
        """Feed the chunk that starts at file offset ``pos``."""
        lo = max(pos, self.start)
        hi = pos + len(chunk) if self.end is None else min(pos + len(chunk), self.end)
        if lo >= hi:
            return
        if not self.skip and not self.mask:
            self._h.update(chunk[lo - pos : hi - pos])
            return
        for a, b, zero in _pieces(lo, hi, self.skip, self.mask):
            if zero:
                self._h.update(bytes(b - a))
            else:
                self._h.update(chunk[a - pos : b - pos])


def _pieces(
    lo: int, hi: int, skip: Sequence[Span], mask: Sequence[Span]
) -> Iterable[tuple[int, int, bool]]:
    """Split [lo, hi) into (a, b, zeroed) pieces, dropping skipped spans."""
    cuts = {lo, hi}
    for s in (*skip, *mask):
        if s.length > 0 and s.end > lo and s.offset < hi:
            cuts.add(max(s.offset, lo))
            cuts.add(min(s.end, hi))
    points = sorted(cuts)
    for a, b in itertools.pairwise(points):
        if any(s.offset <= a and b <= s.end for s in skip if s.length > 0):
            continue
        zero = any(s.offset <= a and b <= s.end for s in mask if s.length > 0)
        yield a, b, zero


def _signature(v: View) -> tuple[object, ...] | None:
    """What makes two plain views compute the same digest (None: not a plain View)."""
    if type(v) is not View:
        return None
    return (v.algorithm, v.start, v.end, tuple(v.skip), tuple(v.mask))


def digest_views(
    path: str, views: Sequence[View], offset: int = 0, size: int | None = None
) -> None:
    """Stream ``size`` bytes of ``path`` from ``offset`` once, feeding every view.

    View offsets are relative to ``offset`` (the start of the blob). Views that compute the
    same digest (a PE's normalised digest and its SHA-256 Authenticode digest when no
    alignment padding sets them apart) are fed once; the others get a copy of the result.
    Views are fed in the order given, each chunk in place (no copy).
    """
    first: dict[tuple[object, ...], View] = {}
    fed: list[View] = []
    twins: list[tuple[View, View]] = []
    for v in views:
        sig = _signature(v)
        if sig is None:
            fed.append(v)
        elif sig in first:
            twins.append((v, first[sig]))
        else:
            first[sig] = v
            fed.append(v)
    _stream(path, fed, offset, size)
    for v, src in twins:
        v._h = src._h.copy()  # type: ignore[attr-defined]


def _stream(path: str, views: Sequence[View], offset: int, size: int | None) -> None:
    # sized to the blob (small members are many): 1 MiB per tiny file fragments the heap
    buf = bytearray(CHUNK if size is None else max(4096, min(CHUNK, size)))
    mv = memoryview(buf)
    pos = 0
    with open(path, "rb", buffering=0) as fh:
        if offset:
            fh.seek(offset)
        remaining = size
        while remaining is None or remaining > 0:
            want = CHUNK if remaining is None else min(CHUNK, remaining)
            n = fh.readinto(mv[:want])
            if not n:
                break
            piece = mv[:n]
            for v in views:
                v.feed(pos, piece)
            pos += n
            if remaining is not None:
                remaining -= n


def sha256_file(path: str, offset: int = 0, size: int | None = None) -> str:
    v = View("sha256")
    digest_views(path, [v], offset, size)
    return v.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
