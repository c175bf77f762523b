"""Code-page hashes of a Mach-O slice, computed while the slice streams past.

A CodeDirectory holds one hash per code page (4 KiB or 16 KiB, SHA-1/SHA-256/SHA-384,
possibly truncated). ``PageHasher`` is a ``hashing.View`` that hashes every page of
``[base, base + codeLimit)`` in the one pass ``hashing.digest_views`` makes over the file and
compares the digests with the CodeDirectory's slots a chunk's worth at a time: a whole page
inside a chunk is hashed with one call, straight from the read buffer (no copy, no hasher
object kept), and only a page that straddles two chunks keeps a running hasher.

``PageDigestIndex`` collects the digests of every page of a slice for the page sizes and
hashes signatures have used; it is streamed only when a signature's slack holds non-zero
bytes (``codesign_slack`` tells the remnant of an earlier signature from a payload), and it
takes the digests a ``PageHasher`` of the same kind computes anyway instead of hashing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

from verifier.hashing import View
from verifier.signing.codesign import CodeDirectory

MAX_PAGES_REPORTED = 32


class _Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


_CONSTRUCTORS: dict[str, Callable[[bytes | memoryview], _Digest]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


class PageDigests(View):
    """The digest of every ``page``-byte page of ``[base, base + limit)`` (the last page may
    be shorter), handed to ``pages`` in order, a chunk's worth at a time."""

    def __init__(self, name: str, algorithm: str, page: int, base: int, limit: int) -> None:
        super().__init__(name=name, algorithm=algorithm)
        self.page = page
        self.base = base
        self.limit = limit
        self._new = _CONSTRUCTORS[algorithm]
        self._cur: _Digest | None = None  # a page begun in the previous chunk
        self._filled = 0
        self.count = 0  # pages hashed so far

    cost = 1.2  # one call per page: a little over a plain hash
    gil_bound = True  # a Python call per page

    def weight(self, size: int) -> float:
        return float(max(0, min(self.base + self.limit, size) - self.base)) * self.cost

    def pages(self, digests: list[bytes]) -> None:
        """Called with the next pages' full digests (in order)."""

    def feed(self, pos: int, chunk: memoryview) -> None:
        end = self.base + self.limit
        lo = max(pos, self.base)
        hi = min(pos + len(chunk), end)
        if lo >= hi:
            return
        page = self.page
        done: list[bytes] = []
        if self._cur is not None:
            take = min(hi - lo, page - self._filled)
            self._cur.update(chunk[lo - pos : lo - pos + take])
            self._filled += take
            lo += take
            if self._filled == page or lo == end:
                done.append(self._cur.digest())
                self._cur, self._filled = None, 0
        new = self._new
        full = (hi - lo) // page
        if full:
            a = lo - pos
            done += [new(chunk[i : i + page]).digest() for i in range(a, a + full * page, page)]
            lo += full * page
        if lo < hi:
            rest = chunk[lo - pos : hi - pos]
            if hi == end:  # the last page, shorter than the others
                done.append(new(rest).digest())
            else:
                self._cur = new(rest)
                self._filled = hi - lo
        if done:
            self.count += len(done)
            self.pages(done)

    def flush(self) -> None:
        """After streaming: a page cut short by the end of the file still gets its digest."""
        if self._cur is not None:
            self.count += 1
            self.pages([self._cur.digest()])
            self._cur, self._filled = None, 0

    def hexdigest(self) -> str:
        return ""


class PageHasher(PageDigests):
    """Checks one CodeDirectory's code-page hashes while the slice streams past.

    ``base`` is the slice's offset in the blob being streamed; pages cover
    ``[base, base + codeLimit)``. Mismatching page indices are collected in ``bad_pages``;
    ``keep`` also keeps every page's full digest in ``seen`` (for a ``PageDigestIndex``).
    """

    def __init__(self, cd: CodeDirectory, base: int, slice_size: int) -> None:
        limit = min(cd.code_limit, slice_size)
        page = cd.page_size or max(cd.code_limit, 1)
        super().__init__(f"pages-{cd.slot:#x}", cd.algorithm, page, base, limit)
        self.cd = cd
        self.past_eof = cd.code_limit > slice_size
        self.bad_pages: list[int] = []
        self.checked = 0
        self.keep = False
        self.seen: set[bytes] = set()

    def pages(self, digests: list[bytes]) -> None:
        if self.keep:
            self.seen.update(digests)
        cd = self.cd
        first = self.count - len(digests)  # the index of digests[0]
        n = max(0, min(len(digests), cd.n_code_slots - first))
        if not n:
            return
        hs = cd.hash_size
        lo = cd.hash_offset + first * hs
        want = cd.raw[lo : lo + n * hs]
        got = b"".join([d[:hs] for d in digests[:n]])
        if got != want:
            self.bad_pages += [
                first + i
                for i in range(n)
                if got[i * hs : (i + 1) * hs] != want[i * hs : (i + 1) * hs]
            ]
        self.checked += n

    def finish(self) -> None:
        """Call after streaming: a partial last page (file shorter than codeLimit) fails,
        and so does every page past the end of the file."""
        self.flush()
        self.bad_pages += range(self.count, self.cd.n_code_slots)


class _Collect(PageDigests):
    """Page digests gathered into a set."""

    def __init__(self, name: str, algorithm: str, page: int, base: int, limit: int) -> None:
        super().__init__(name, algorithm, page, base, limit)
        self.seen: set[bytes] = set()

    def pages(self, digests: list[bytes]) -> None:
        self.seen.update(digests)


class PageDigestIndex:
    """The digests of every page of a slice, for the page sizes and hashes code signatures
    have used, collected while the slice streams past. Used only when a signature's slack
    holds non-zero bytes: an earlier signature's hash slots are hashes of this very code."""

    KINDS = (("sha256", 4096), ("sha256", 16384), ("sha1", 4096))

    def __init__(self, base: int, limit: int, pagers: Sequence[PageHasher] = ()) -> None:
        self.base = base
        self.limit = limit
        self._sources: dict[tuple[str, int], PageHasher | _Collect] = {}
        for alg, page in self.KINDS:
            same = next(
                (
                    p
                    for p in pagers
                    if (p.cd.algorithm, p.page, p.base, p.limit) == (alg, page, base, limit)
                ),
                None,
            )
            if same is not None:
                same.keep = True
                self._sources[(alg, page)] = same
            else:
                self._sources[(alg, page)] = _Collect(f"index-{alg}-{page}", alg, page, base, limit)

    def views(self) -> list[View]:
        """The views to stream (the kinds no ``PageHasher`` computes already)."""
        return [v for v in self._sources.values() if isinstance(v, _Collect)]

    @property
    def digests(self) -> dict[tuple[str, int], set[bytes]]:
        return {k: v.seen for k, v in self._sources.items()}


def page_ranges(pages: Sequence[int], page_size: int) -> list[dict[str, int]]:
    """Coalesce page indices into {offset, length} ranges (slice-relative), capped."""
    out: list[dict[str, int]] = []
    for p in sorted(pages):
        off = p * page_size
        if out and out[-1]["offset"] + out[-1]["length"] == off:
            out[-1]["length"] += page_size
        else:
            if len(out) >= MAX_PAGES_REPORTED:
                break
            out.append({"offset": off, "length": page_size})
    return out
