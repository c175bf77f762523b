"""Electron's fuse wire and version marker, found while streaming.

Why: Electron fuses are bytes that vendors may legitimately flip (``@electron/fuses``) in an
otherwise upstream binary, so biv must know where they are to mask them in the comparison and
report their values. The wire is ``SENTINEL``, a version byte, a length byte, then one byte per
fuse ('0' off, '1' on, 'r' removed). The scanners here keep a small overlap between chunks so a
sentinel straddling two chunks is still found, and cost one ``bytes.find`` per chunk.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from verifier.hashing import Span, View
from verifier.model import FuseWire

SENTINEL = b"dL7pKGdnNz796PbbjQWNKmHXBZaB9tsX"
HEADER = len(SENTINEL) + 2  # sentinel + version byte + length byte
MAX_WIRE = HEADER + 255
MARKER = b"Electron/"
_MARKER_RE = re.compile(rb"Electron/(\d{1,4}\.\d{1,4}\.\d{1,6}(?:-[A-Za-z0-9.]{1,32})?)")
_MARKER_MAX = 64

FUSE_CHARS = {0x30: "0", 0x31: "1", 0x72: "r"}


def decode_values(raw: bytes) -> str:
    """Fuse bytes as text: '0', '1', 'r', or '?' for anything else."""
    return "".join(FUSE_CHARS.get(b, "?") for b in raw)


def find_fuse_wire(data: bytes, base: int = 0) -> FuseWire | None:
    """The first complete fuse wire in ``data`` (``base`` = file offset of ``data[0]``)."""
    i = data.find(SENTINEL)
    while i >= 0:
        if i + HEADER <= len(data):
            n = data[i + HEADER - 1]
            if i + HEADER + n <= len(data):
                raw = data[i + HEADER : i + HEADER + n]
                return FuseWire(base + i + HEADER, data[i + len(SENTINEL)], decode_values(raw))
        i = data.find(SENTINEL, i + 1)
    return None


@dataclass
class FuseScanner(View):
    """A View that hashes nothing: it finds fuse wires and the ``Electron/X.Y.Z`` marker.

    Each chunk is searched once: in the read buffer itself when ``hashing.digest_views``
    hands it over (``feed_buffer``), else copied into one buffer the scanner keeps (``find``
    needs a buffer of its own; a fresh copy per chunk would cost more than the search, its
    pages faulted in every time); a wire or marker that straddles two chunks is found in the
    seam: the last ``MAX_WIRE`` bytes of the previous chunk joined with the first ``MAX_WIRE``
    of this one. ``wires`` lists every
    wire's sentinel offset and fuse bytes as soon as its header is complete, so views fed
    after this one in the same pass can mask the fuse bytes of the chunk they are given.
    """

    cost: ClassVar[float] = 0.7  # two searches, no hash
    name: str = "fuse-scan"
    markers: bool = True  # also look for the Electron/X.Y.Z marker
    fuses: FuseWire | None = None
    electron_version: str | None = None
    wires: list[tuple[int, Span]] = field(default_factory=list)
    _tail: bytes = field(default=b"", init=False, repr=False)
    _tail_pos: int = field(default=0, init=False, repr=False)
    _seen: set[int] = field(default_factory=set, init=False, repr=False)
    _buf: bytearray = field(default_factory=bytearray, init=False, repr=False)

    def feed(self, pos: int, chunk: memoryview) -> None:
        lo = max(pos, self.start)
        hi = pos + len(chunk) if self.end is None else min(pos + len(chunk), self.end)
        if lo >= hi:
            return
        n = hi - lo
        if len(self._buf) < n:
            self._buf = bytearray(n)
        buf = self._buf  # one buffer for every chunk: a copy, but no allocation
        buf[:n] = chunk[lo - pos : hi - pos]
        self._scan(buf, 0, lo, hi)

    def feed_buffer(self, pos: int, buf: bytearray, n: int) -> None:
        """``feed(pos, memoryview(buf)[:n])``, searching ``buf`` in place (no copy)."""
        lo = max(pos, self.start)
        hi = pos + n if self.end is None else min(pos + n, self.end)
        if lo < hi:
            self._scan(buf, lo - pos, lo, hi)

    def _scan(self, buf: bytearray, a: int, lo: int, hi: int) -> None:
        """Search ``buf[a : a + hi - lo]`` (file offsets ``[lo, hi)``) and the seam before it."""
        n = hi - lo
        if self._tail and self._tail_pos + len(self._tail) == lo:
            seam = self._tail + buf[a : a + min(MAX_WIRE, n)]
            self._search(seam, 0, len(seam), self._tail_pos, len(self._tail))
            tail = self._tail + buf[a : a + n] if n < MAX_WIRE else buf[a + n - MAX_WIRE : a + n]
        else:
            tail = buf[a + max(0, n - MAX_WIRE) : a + n]
        self._search(buf, a, a + n, lo, n)
        self._tail = bytes(tail[-MAX_WIRE:])
        self._tail_pos = hi - len(self._tail)

    def _search(
        self, data: bytes | bytearray, start: int, end: int, base: int, starts_before: int
    ) -> None:
        """Wires and markers in ``data[start:end]`` (file offset ``base``) starting before
        index ``starts_before`` of it."""
        i = data.find(SENTINEL, start, end)
        while 0 <= i < start + starts_before:
            at = base + i - start
            if i + HEADER <= end:
                n = data[i + HEADER - 1]
                if at not in self._seen:
                    self._seen.add(at)
                    self.wires.append((at, Span(at + HEADER, n)))
                if self.fuses is None and i + HEADER + n <= end:
                    raw = bytes(data[i + HEADER : i + HEADER + n])
                    version = data[i + len(SENTINEL)]
                    self.fuses = FuseWire(at + HEADER, version, decode_values(raw))
            i = data.find(SENTINEL, i + 1, end)
        if self.markers and self.electron_version is None and data.find(MARKER, start, end) >= 0:
            for m in _MARKER_RE.finditer(data, start, end):
                if m.start() - start >= starts_before:
                    break
                if m.end() < end:  # not cut at the end of what was seen
                    self.electron_version = bytes(m.group(1)).decode("ascii")
                    break

    def hexdigest(self) -> str:
        return ""

    def found_markers(self) -> dict[str, str]:
        """The markers found (``BinaryFacts.markers``): the Electron version, if any."""
        return {"electron_version": self.electron_version} if self.electron_version else {}


class _Hash(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def copy(self) -> _Hash: ...
    def hexdigest(self) -> str: ...


@dataclass
class FuseMaskedView(View):
    """A digest of ``[start, end)``, plus the same digest with any fuse bytes zeroed.

    Fuse wires come from ``scanner``, a ``FuseScanner`` fed the same chunks *before* this
    view (a wire counts when its sentinel and header lie inside the range); without one the
    view scans its own range. Chunks are hashed in place; the masked digest costs nothing
    until a wire's fuse bytes reach the range: it starts as a copy of the plain hash state.
    """

    name: str = "fuse-masked"
    scanner: FuseScanner | None = field(default=None, repr=False)
    _own: FuseScanner | None = field(default=None, init=False, repr=False)
    _plain: _Hash = field(init=False, repr=False)
    _masked: _Hash | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._plain = hashlib.new(self.algorithm)
        if self.scanner is None:
            self._own = FuseScanner(start=self.start, end=self.end, markers=False)

    def after(self) -> tuple[View, ...]:
        return (self.scanner,) if self.scanner is not None else ()

    def feed(self, pos: int, chunk: memoryview) -> None:
        lo = max(pos, self.start)
        hi = pos + len(chunk) if self.end is None else min(pos + len(chunk), self.end)
        if lo >= hi:
            return
        if self._own is not None:
            self._own.feed(pos, chunk)
        scanner = self._own or self.scanner
        assert scanner is not None
        end = self.end
        hit = [
            s
            for at, s in scanner.wires
            if at >= self.start
            and (end is None or at + HEADER <= end)
            and s.length
            and s.end > lo
            and s.offset < hi
        ]
        piece = chunk[lo - pos : hi - pos]
        if hit and self._masked is None:
            self._masked = self._plain.copy()  # the state before this piece
        self._plain.update(piece)
        if self._masked is None:
            return
        if not hit:
            self._masked.update(piece)
            return
        buf = bytearray(piece)
        for s in hit:
            a, b = max(s.offset, lo), min(s.end, hi)
            buf[a - lo : b - lo] = bytes(b - a)
        self._masked.update(buf)

    def hexdigest(self) -> str:
        """The plain digest of the range."""
        return str(self._plain.hexdigest())

    def masked_hexdigest(self) -> str:
        """The digest with fuse bytes zeroed (the plain digest when there were none)."""
        return str((self._masked or self._plain).hexdigest())
