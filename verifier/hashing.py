"""Read each byte once: several digests over views of one stream.

A *view* is a hash over the file with some byte ranges left out (skipped) and others
replaced by zeros (masked). The plain sha256, the normalised digest, the Authenticode
digest and per-section digests are all views; ``digest_views`` feeds every view from one
sequential read of the blob in large chunks, so memory stays bounded whatever the size.
Views that hash the same first bytes (a Mach-O's __TEXT segment and its slice's normalised
digest) hash them once: the later one starts from a copy of the earlier one's state.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, TypeVar

from verifier.record import record

CHUNK = 1 << 20
_T = TypeVar("_T")
# a blob at least this large has its views shared between two threads (``_stream_split``)
SPLIT_MIN = 4 << 20


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@record
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
    # set by ``digest_views`` for a view whose stream begins like another's (``_share_prefix``):
    # it is fed from ``_from`` on, its state before that a copy of the host view's
    _from: int = field(init=False, repr=False)
    _host: View | None = field(init=False, repr=False, default=None)
    # views forked from this one: (stream offset, view), by offset
    _forks: list[tuple[int, View]] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        self._h = hashlib.new(self.algorithm)
        self._from = self.start

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def weight(self, size: int) -> float:
        """The view's work on a stream of ``size`` bytes, in bytes hashed (for sharing the
        views of one large file between two threads)."""
        end = size if self.end is None else min(self.end, size)
        return float(max(0, end - self._from)) * self.cost

    cost: ClassVar[float] = 1.0  # work per byte relative to sha256
    # holds the GIL for much of its work (many small hash calls, a conversion in C): it goes
    # to the stage with the searches (``_stages``), leaving the other stage's large
    # ``update`` calls to run beside it undisturbed
    gil_bound: ClassVar[bool] = False

    def after(self) -> Sequence[View]:
        """The views this one reads the results of while streaming (fed before it)."""
        return () if self._host is None else (self._host,)

    def feed(self, pos: int, chunk: memoryview) -> None:
        """Feed the chunk that starts at file offset ``pos``."""
        lo = max(pos, self._from)
        hi = pos + len(chunk) if self.end is None else min(pos + len(chunk), self.end)
        if self._forks:
            lo = self._fork_at(pos, chunk, lo, hi)
        if lo >= hi:
            return
        self._feed_range(pos, chunk, lo, hi)

    def _fork_at(self, pos: int, chunk: memoryview, lo: int, hi: int) -> int:
        """Hand each fork in ``[lo, hi]`` a copy of this state at its offset; returns where
        the rest of the chunk starts."""
        while self._forks and self._forks[0][0] <= hi:
            at, fork = self._forks.pop(0)
            if at > lo:
                self._feed_range(pos, chunk, lo, at)
                lo = at
            fork._h = self._h.copy()  # type: ignore[attr-defined]
        return lo

    def finish_forks(self) -> None:
        """The stream ended before a fork's offset: the fork's stream ended there too, equal
        to this one's, so it gets this final state."""
        for _at, fork in self._forks:
            fork._h = self._h.copy()  # type: ignore[attr-defined]
        self._forks.clear()

    def _feed_range(self, pos: int, chunk: memoryview, lo: int, hi: int) -> None:
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


def _stream_of(v: View, size: int) -> list[tuple[int, int, bool]]:
    """The bytes a plain view hashes, as merged (start, end, zeroed) pieces of the file."""
    end = size if v.end is None else min(v.end, size)
    out: list[tuple[int, int, bool]] = []
    for a, b, zero in _pieces(v.start, end, v.skip, v.mask) if end > v.start else ():
        if out and out[-1][1] == a and out[-1][2] == zero:
            out[-1] = (out[-1][0], b, zero)
        else:
            out.append((a, b, zero))
    return out


def _shared_until(x: list[tuple[int, int, bool]], y: list[tuple[int, int, bool]]) -> int | None:
    """The file offset up to which two views hash the same bytes (None: not one byte)."""
    upto: int | None = None
    for (a1, b1, z1), (a2, b2, z2) in zip(x, y, strict=False):
        if a1 != a2 or z1 != z2:
            break
        upto = min(b1, b2)
        if b1 != b2:
            break
    return upto


# a view that shares fewer bytes than this with another is fed whole (nothing worth saving)
SHARE_MIN = 64 << 10


def _share_prefix(views: Sequence[View], size: int) -> None:
    """A plain view that hashes the same first bytes as an earlier one (a Mach-O's __TEXT
    segment begins its slice's normalised digest; a PE's normalised and Authenticode digests
    part only at the certificate table) is not fed those bytes: it gets a copy of the
    earlier view's state where their streams part, and is fed from there on."""
    streams: dict[int, list[tuple[int, int, bool]]] = {}

    def stream(v: View) -> list[tuple[int, int, bool]]:
        if id(v) not in streams:
            streams[id(v)] = _stream_of(v, size)
        return streams[id(v)]

    plain = [v for v in views if type(v) is View and not v._forks and v._host is None]
    for i, v in enumerate(plain):
        best: tuple[int, View] | None = None
        for w in plain[:i]:
            if w.algorithm != v.algorithm or w.start != v.start or w._host is not None:
                continue
            upto = _shared_until(stream(v), stream(w))
            if (
                upto is not None
                and upto - v.start >= SHARE_MIN
                and (best is None or upto > best[0])
            ):
                best = (upto, w)
        if best is not None:
            upto, w = best
            v._from, v._host = upto, w
            w._forks.append((upto, v))
            w._forks.sort(key=lambda f: f[0])


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
    Views are fed in the order given, each chunk in place (no copy): a view with a
    ``feed_buffer(pos, buf, n)`` method (one that searches, which a memoryview cannot) is
    handed the read buffer itself, its first ``n`` bytes being the chunk at ``pos``.
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
    if size is None:
        size = max(0, os.path.getsize(path) - offset)
    _share_prefix(fed, size)
    stages = _stages(fed, size)
    if stages is not None:
        _stream_split(path, *stages, offset, size)
    else:
        _stream(path, fed, offset, size)
    for v in fed:
        if v._forks:
            v.finish_forks()
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
            _feed_all(views, pos, buf, n)
            pos += n
            if remaining is not None:
                remaining -= n


def _stages(views: Sequence[View], size: int | None) -> tuple[list[View], list[View]] | None:
    """The views of a large blob in two stages of about equal work (``_stream_split``), or
    None to keep one.

    Only a blob of ``SPLIT_MIN`` bytes or more is split, and only when the lighter stage
    would still do a third of the heavier one's work. Views that search the buffer
    (``feed_buffer``: they hold the GIL for a whole chunk) and the views that read what they
    find (``after``) go to the second stage, the one a chunk behind: measured on real
    binaries, a search in the calling thread stalls the pool thread's many small hash calls
    (node's Mach-O: 245 ms against 192). The other views go, the heaviest first, to the stage
    with less work. Each stage keeps the views' order."""
    if size is None or size < SPLIT_MIN or len(views) < 2:
        return None
    second: set[int] = set()
    for v in views:
        if hasattr(v, "feed_buffer") or v.gil_bound or any(id(w) in second for w in v.after()):
            second.add(id(v))
    load = {1: 0.0, 2: sum(v.weight(size) for v in views if id(v) in second)}
    first: set[int] = set()
    # a view forked from another (``_share_prefix``) goes to its host's stage, after it
    forks: dict[int, list[View]] = {}
    for v in views:
        if v._host is not None and id(v) not in second:
            forks.setdefault(id(v._host), []).append(v)
    hosted = {id(f) for fs in forks.values() for f in fs}

    def unit(v: View) -> float:
        return v.weight(size) + sum(f.weight(size) for f in forks.get(id(v), ()))

    free = (v for v in views if id(v) not in second and id(v) not in hosted)
    for v in sorted(free, key=lambda v: -unit(v)):
        stage = 1 if load[1] <= load[2] else 2
        for w in (v, *forks.get(id(v), ())):
            (first if stage == 1 else second).add(id(w))
        load[stage] += unit(v)
    light, heavy = sorted(load.values())
    if not first or not second or light < heavy / 3:
        return None
    return [v for v in views if id(v) in first], [v for v in views if id(v) not in first]


_POOL_LOCK = threading.Lock()
_POOLS: dict[str, ThreadPoolExecutor] = {}


def _pool(kind: str = "digest", workers: int = 4) -> ThreadPoolExecutor:
    """This process's pool of ``kind``, made on first use: "digest" runs a pass's second
    stage, "pass" a pass beside the caller's parsing (``digest_beside``). Apart, so that a
    pass waiting for its second stage never waits behind other passes."""
    with _POOL_LOCK:
        pool = _POOLS.get(kind)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"biv-{kind}")
            _POOLS[kind] = pool
        return pool


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there (nor does a lock
    one of them held)."""
    global _POOLS, _POOL_LOCK
    _POOLS = {}
    _POOL_LOCK = threading.Lock()


# a blob at least this large has its pass run beside the caller's parsing (``digest_beside``):
# below it, parsing often outlasts the pass, and the pass's threads then wait for the GIL the
# parsing holds (measured: Qt5Gui.dll, 7 MB with 25,000 exports, 52 ms one after the other,
# 59-68 ms side by side; node.exe, 79 MB, 185 -> 180 ms; ccmake, 22 MB, 78 -> 74 ms)
BESIDE_MIN = 16 << 20


def digest_beside(
    path: str, views: Sequence[View], offset: int, size: int, work: Callable[[], _T]
) -> _T:
    """``digest_views(path, views, offset, size)`` and ``work()`` at once: the pass in a
    side thread (its large ``update`` calls run without the GIL), ``work`` (parsing, which
    holds it) in this one. Returns what ``work`` returns once both are done; an error of
    either is raised, the pass's first. Blobs under ``BESIDE_MIN``: one after the other."""
    if size < BESIDE_MIN:
        digest_views(path, views, offset, size)
        return work()
    done = _pool("pass", 8).submit(digest_views, path, views, offset, size)
    try:
        result = work()
    except BaseException:
        wait([done])  # never return while the pass still reads
        done.result()
        raise
    done.result()
    return result


os.register_at_fork(after_in_child=_forget_pool)


def _feed_all(views: Sequence[View], pos: int, buf: bytearray, n: int) -> None:
    piece = memoryview(buf)[:n]
    for v in views:
        direct = getattr(v, "feed_buffer", None)
        if direct is not None:
            direct(pos, buf, n)  # a search, not a hash: it reads the buffer in place
        else:
            v.feed(pos, piece)


def _stream_split(
    path: str, first: Sequence[View], second: Sequence[View], offset: int, size: int
) -> None:
    """``_stream`` with the views in two stages run as a pipeline: while this thread feeds
    chunk i to ``first``, a pool thread feeds chunk i - 1 to ``second``. Every view is still
    fed each chunk after all the views before it (a view that reads another's results, such
    as a fuse-masked view its scanner's wires, sees them up to date), chunks in order."""
    bufs = (bytearray(CHUNK), bytearray(CHUNK))
    pending: Future[None] | None = None
    prev: tuple[int, int, int] | None = None  # (pos, buffer index, length) of chunk i - 1
    pos, cur, remaining = 0, 0, size
    try:
        with open(path, "rb", buffering=0) as fh:
            if offset:
                fh.seek(offset)
            while remaining > 0:
                n = fh.readinto(memoryview(bufs[cur])[: min(CHUNK, remaining)])
                if not n:
                    break
                if prev is not None:
                    p_pos, p_buf, p_n = prev
                    pending = _pool().submit(_feed_all, second, p_pos, bufs[p_buf], p_n)
                _feed_all(first, pos, bufs[cur], n)
                if pending is not None:
                    pending.result()  # the other buffer is free again
                    pending = None
                prev = (pos, cur, n)
                pos, cur, remaining = pos + n, 1 - cur, remaining - n
        if prev is not None:
            _feed_all(second, prev[0], bufs[prev[1]], prev[2])
    finally:
        if pending is not None:
            pending.result()  # never return while a pool thread still reads a buffer


def sha256_file(path: str, offset: int = 0, size: int | None = None) -> str:
    v = View("sha256")
    digest_views(path, [v], offset, size)
    return v.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
