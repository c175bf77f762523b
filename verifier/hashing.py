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
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, TypeVar

from verifier.record import record

CHUNK = 1 << 20
_T = TypeVar("_T")
# a blob at least this large has its views shared between two threads (``_stream_lanes``)
SPLIT_MIN = 4 << 20
LANES = 2  # pool threads feeding one pass's views (the GIL-bound views keep to one)
RING = 8  # chunk buffers of such a pass: its lanes drift apart by up to this many chunks


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
    # to the lane with the searches (``_lanes``), leaving the other lane's large
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
    lanes = _lanes(fed, size)
    if lanes is not None:
        _stream_lanes(path, lanes, offset, size)
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


def _lanes(views: Sequence[View], size: int | None) -> list[list[View]] | None:
    """The views of a large blob in ``LANES`` lanes of about equal work
    (``_stream_lanes``), or None to feed them in this thread.

    A view that reads another's results while streaming (``after``: a fuse-masked view its
    scanner's wires, a fork its host's state) goes to that view's lane, after it: a lane
    feeds its views each chunk in order, and lanes run side by side. The views that hold
    the GIL for much of their work (searches, per-page hashing: ``feed_buffer``,
    ``gil_bound``) and the views reading them all go to the first lane: two such lanes
    would mostly wait for each other (node's Mach-O with them in two lanes of four: 161-174
    ms; all in one lane of two: 146 ms). The other views go, the heaviest first, to the lane
    with less work; each lane keeps the views' order. Only a blob of ``SPLIT_MIN`` bytes or
    more is split, and only when the lighter lane would still do a third of the heavier
    one's work."""
    if size is None or size < SPLIT_MIN or len(views) < 2:
        return None
    index = {id(v): i for i, v in enumerate(views)}
    root = list(range(len(views)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for i, v in enumerate(views):
        for w in v.after():
            j = index.get(id(w))
            if j is not None:
                root[find(i)] = find(j)
    units: dict[int, list[int]] = {}
    for i in range(len(views)):
        units.setdefault(find(i), []).append(i)
    work = {r: sum(views[i].weight(size) for i in m) for r, m in units.items()}
    lanes: list[list[int]] = [[] for _ in range(LANES)]
    load = [0.0] * LANES
    rest = []
    for r, m in units.items():
        if any(hasattr(views[i], "feed_buffer") or views[i].gil_bound for i in m):
            lanes[0] += m
            load[0] += work[r]
        else:
            rest.append(r)
    for r in sorted(rest, key=lambda r: -work[r]):
        k = load.index(min(load))
        lanes[k] += units[r]
        load[k] += work[r]
    light, heavy = min(load), max(load)
    if light < heavy / 3:
        return None
    return [[views[i] for i in sorted(lane)] for lane in lanes]


_POOL_LOCK = threading.Lock()
_POOLS: dict[str, ThreadPoolExecutor] = {}


def _pool(kind: str = "digest", workers: int = 4) -> ThreadPoolExecutor:
    """This process's pool of ``kind``, made on first use: "digest" runs the lanes of
    passes, "pass" a pass beside the caller's parsing (``digest_beside``). Apart, so that a
    pass waiting for its lanes never waits behind other passes."""
    with _POOL_LOCK:
        pool = _POOLS.get(kind)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"biv-{kind}")
            _POOLS[kind] = pool
        return pool


_RING_LOCK = threading.Lock()
_RING_FREE: list[bytearray] = []  # the buffers of passes that are over, for the next


def _ring_take(n: int) -> list[bytearray]:
    """``n`` chunk buffers (reused: a fresh MiB costs its page faults on every pass)."""
    with _RING_LOCK:
        got = [_RING_FREE.pop() for _ in range(min(n, len(_RING_FREE)))]
    return got + [bytearray(CHUNK) for _ in range(n - len(got))]


def _ring_give(bufs: list[bytearray]) -> None:
    """Keep up to ``RING`` buffers for the next pass (a pass reads none after it ends)."""
    with _RING_LOCK:
        _RING_FREE.extend(bufs[: max(0, RING - len(_RING_FREE))])


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there (nor does a lock
    one of them held)."""
    global _POOLS, _POOL_LOCK, _RING_LOCK
    _POOLS = {}
    _POOL_LOCK = threading.Lock()
    _RING_LOCK = threading.Lock()


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


class _Pass:
    """The state of one pass fed by lanes (``_stream_lanes``), guarded by ``cond``."""

    def __init__(self, lanes: Sequence[Sequence[View]], bufs: list[bytearray]) -> None:
        self.lanes = lanes
        self.bufs = bufs
        self.cond = threading.Condition()
        self.ready = 0  # chunks 0 .. ready - 1 are in their buffers
        self.at: list[tuple[int, int]] = []  # chunk k's (stream offset, length)
        self.done = [0] * len(lanes)  # lane i has fed chunks 0 .. done[i] - 1
        self.running = [False] * len(lanes)
        self.error: BaseException | None = None

    def run(self, i: int) -> None:
        """Feed lane ``i`` every chunk that is ready, then return: a task never waits, so
        passes sharing the pool cannot hold each other up for good."""
        cond, views, nbuf = self.cond, self.lanes[i], len(self.bufs)
        while True:
            with cond:
                k = self.done[i]
                if self.error is not None or k >= self.ready:
                    self.running[i] = False
                    cond.notify_all()
                    return
                pos, n = self.at[k]
            try:
                _feed_all(views, pos, self.bufs[k % nbuf], n)
            except BaseException as exc:
                with cond:
                    if self.error is None:
                        self.error = exc
                    self.running[i] = False
                    cond.notify_all()
                return
            with cond:
                self.done[i] = k + 1
                if min(self.done) == k + 1:
                    cond.notify_all()  # every lane is done with chunk k: its buffer is free

    def start_idle(self) -> None:
        """Give every idle lane a pool thread (call holding ``cond``)."""
        for i in range(len(self.lanes)):
            if not self.running[i] and self.error is None:
                self.running[i] = True
                try:
                    _pool("digest", 2 * LANES).submit(self.run, i)
                except BaseException as exc:  # a pool shut down at exit
                    self.running[i] = False
                    self.error = exc


def _stream_lanes(path: str, lanes: Sequence[Sequence[View]], offset: int, size: int) -> None:
    """``_stream`` with each lane fed by a pool thread: this thread reads chunk after chunk
    into a ring of ``RING`` buffers, each lane feeds its views every chunk in order, as
    fast as it can, and a buffer is read into again once every lane is done with it. The
    lanes drift apart by up to ``RING`` chunks, so a lane with little work in one part of
    the file (no section there) runs ahead while the other catches up."""
    st = _Pass(lanes, _ring_take(max(2, min(RING, -(-size // CHUNK)))))
    cond, nbuf = st.cond, len(st.bufs)
    pos, k, remaining = 0, 0, size
    try:
        with open(path, "rb", buffering=0) as fh:
            if offset:
                fh.seek(offset)
            while remaining > 0:
                with cond:
                    while st.error is None and min(st.done) <= k - nbuf:
                        cond.wait()  # chunk k's buffer still holds chunk k - nbuf
                    if st.error is not None:
                        break
                n = fh.readinto(memoryview(st.bufs[k % nbuf])[: min(CHUNK, remaining)])
                if not n:
                    break
                with cond:
                    st.at.append((pos, n))
                    st.ready = k + 1
                    st.start_idle()
                pos, k, remaining = pos + n, k + 1, remaining - n
    finally:
        with cond:
            while any(st.running):  # never return while a lane still reads a buffer
                cond.wait()
        _ring_give(st.bufs)
    if st.error is not None:
        raise st.error


def sha256_file(path: str, offset: int = 0, size: int | None = None) -> str:
    v = View("sha256")
    digest_views(path, [v], offset, size)
    return v.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
