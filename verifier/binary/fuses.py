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
from typing import Any

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
    """A View that hashes nothing: it finds the fuse wire and the ``Electron/X.Y.Z`` marker.

    Each chunk is searched together with the last ``MAX_WIRE`` bytes of the previous one, so
    a wire or marker split across chunks is found.
    """

    name: str = "fuse-scan"
    fuses: FuseWire | None = None
    electron_version: str | None = None
    _tail: bytes = field(default=b"", init=False, repr=False)
    _tail_pos: int = field(default=0, init=False, repr=False)

    def feed(self, pos: int, chunk: memoryview) -> None:
        lo = max(pos, self.start)
        hi = pos + len(chunk) if self.end is None else min(pos + len(chunk), self.end)
        if lo >= hi:
            return
        piece = bytes(chunk[lo - pos : hi - pos])
        if self._tail and self._tail_pos + len(self._tail) == lo:
            data, base = self._tail + piece, self._tail_pos
        else:
            data, base = piece, lo
        if self.fuses is None and SENTINEL[:8] in data:
            self.fuses = find_fuse_wire(data, base)
        if self.electron_version is None and MARKER in data:
            m = _MARKER_RE.search(data)
            if m and m.end() < len(data):  # not cut at the chunk end
                self.electron_version = m.group(1).decode("ascii")
        keep = min(len(data), MAX_WIRE)
        self._tail, self._tail_pos = data[-keep:], base + len(data) - keep

    def hexdigest(self) -> str:
        return ""


@dataclass
class FuseMaskedView(View):
    """A digest of ``[start, end)``, plus the same digest with any fuse bytes zeroed.

    The fuse location is only known once the wire has been seen, so this view holds back the
    last ``MAX_WIRE`` bytes it was given until it knows they are not fuse bytes. The masked
    digest costs nothing until a wire is found: it starts as a copy of the plain hash state.
    """

    name: str = "fuse-masked"
    fuse_spans: list[Span] = field(default_factory=list)
    _plain: Any = field(default=None, init=False, repr=False)
    _masked: Any = field(default=None, init=False, repr=False)
    _pending: bytes = field(default=b"", init=False, repr=False)
    _pending_pos: int = field(default=0, init=False, repr=False)
    _done: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._plain = hashlib.new(self.algorithm)

    def feed(self, pos: int, chunk: memoryview) -> None:
        lo = max(pos, self.start)
        hi = pos + len(chunk) if self.end is None else min(pos + len(chunk), self.end)
        if lo >= hi:
            return
        if not self._pending:
            self._pending_pos = lo
        data = self._pending + bytes(chunk[lo - pos : hi - pos])
        self._find(data, self._pending_pos)
        cut = max(0, len(data) - MAX_WIRE)
        self._emit(data[:cut], self._pending_pos)
        self._pending, self._pending_pos = data[cut:], self._pending_pos + cut

    def _find(self, data: bytes, base: int) -> None:
        i = data.find(SENTINEL)
        while i >= 0:
            if i + HEADER <= len(data):
                span = Span(base + i + HEADER, data[i + HEADER - 1])
                if span.length and span not in self.fuse_spans:
                    self.fuse_spans.append(span)
            i = data.find(SENTINEL, i + 1)

    def _emit(self, data: bytes, base: int) -> None:
        if not data:
            return
        hit = [s for s in self.fuse_spans if s.end > base and s.offset < base + len(data)]
        if hit and self._masked is None:
            self._masked = self._plain.copy()  # the state before ``data``
        self._plain.update(data)
        if self._masked is None:
            return
        if not hit:
            self._masked.update(data)
            return
        buf = bytearray(data)
        for s in hit:
            a, b = max(s.offset, base), min(s.end, base + len(data))
            buf[a - base : b - base] = bytes(b - a)
        self._masked.update(buf)

    def _finish(self) -> None:
        if not self._done:
            self._find(self._pending, self._pending_pos)
            self._emit(self._pending, self._pending_pos)
            self._pending, self._done = b"", True

    def hexdigest(self) -> str:
        """The plain digest of the range."""
        self._finish()
        return str(self._plain.hexdigest())

    def masked_hexdigest(self) -> str:
        """The digest with fuse bytes zeroed (the plain digest when there were none)."""
        self._finish()
        return str((self._masked or self._plain).hexdigest())
