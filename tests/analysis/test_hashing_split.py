"""Large blobs: the views of one pass fed in lanes (pool threads) give the one-thread digests."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from verifier import hashing
from verifier.binary.fuses import HEADER, SENTINEL, FuseMaskedView, FuseScanner
from verifier.binary.pe import PEChecksum
from verifier.hashing import CHUNK, SPLIT_MIN, Span, View, digest_views
from verifier.signing.codesign_pages import PageDigests


class _Pages(PageDigests):
    def __init__(self, algorithm: str, page: int, base: int, limit: int) -> None:
        super().__init__(f"pages-{algorithm}", algorithm, page, base, limit)
        self.got: list[bytes] = []

    def pages(self, digests: list[bytes]) -> None:
        self.got += digests


def _blob(tmp_path: Path, wire_at: int) -> tuple[Path, bytes]:
    """Random bytes the size of a large file, with a fuse wire across a chunk edge."""
    data = bytearray(os.urandom(SPLIT_MIN + 2 * CHUNK + 77))
    wire = SENTINEL + b"\x01\x04" + b"0101"
    data[wire_at : wire_at + len(wire)] = wire
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    return p, bytes(data)


def _views() -> list[View]:
    scan = FuseScanner()
    return [
        View("sha256"),
        View("normalized", skip=(Span(100, 8), Span(CHUNK - 3, 10)), mask=(Span(5000, 4),)),
        PEChecksum(0x40, SPLIT_MIN + 2 * CHUNK + 77),
        scan,
        FuseMaskedView(start=CHUNK, end=4 * CHUNK, scanner=scan),
        _Pages("sha1", 4096, 0, SPLIT_MIN + CHUNK),
        _Pages("sha256", 16384, 7, SPLIT_MIN),
        View("authenticode", skip=(Span(64, 4),)),
    ]


def _results(views: list[View]) -> list[object]:
    out: list[object] = []
    for v in views:
        if isinstance(v, FuseMaskedView):
            out.append((v.hexdigest(), v.masked_hexdigest()))
        elif isinstance(v, FuseScanner):
            out.append((v.fuses, list(v.wires)))
        elif isinstance(v, _Pages):
            v.flush()
            out.append(v.got)
        else:
            out.append(v.hexdigest())
    return out


@pytest.mark.parametrize("back", [1, HEADER - 1, HEADER + 2])
def test_split_pass_gives_the_digests_of_one_thread(tmp_path: Path, back: int) -> None:
    """The wire straddles the edge of chunk 2, the masked section spans it: the masked view
    must see the wire the scanner found (both in the first lane, the scanner first)."""
    p, data = _blob(tmp_path, 2 * CHUNK - back)
    split = _views()
    assert hashing._lanes(split, len(data)) is not None  # this pass is shared between threads
    digest_views(str(p), split)
    alone = _views()
    hashing._stream(str(p), alone, 0, len(data))
    assert _results(split) == _results(alone)
    assert split[0].hexdigest() == hashlib.sha256(data).hexdigest()
    masked = split[4]
    assert isinstance(masked, FuseMaskedView)
    assert masked.hexdigest() != masked.masked_hexdigest()  # the wire was found and masked


def test_split_pass_of_a_slice_with_an_offset(tmp_path: Path) -> None:
    """A blob inside a larger file (a member of an archive, a slice of a fat Mach-O)."""
    p, data = _blob(tmp_path, 3 * CHUNK - 5)
    off, size = 12345, len(data) - 12345 - 999
    split, alone = (
        [View("a"), View("b", skip=(Span(9, 9),))],
        [View("a"), View("b", skip=(Span(9, 9),))],
    )
    digest_views(str(p), split, off, size)
    hashing._stream(str(p), alone, off, size)
    assert [v.hexdigest() for v in split] == [v.hexdigest() for v in alone]
    assert split[0].hexdigest() == hashlib.sha256(data[off : off + size]).hexdigest()


def test_small_blobs_and_lone_views_are_not_split() -> None:
    assert hashing._lanes([View("a"), View("b")], SPLIT_MIN - 1) is None
    assert hashing._lanes([View("a")], 10 * SPLIT_MIN) is None
    assert hashing._lanes([View("a"), View("b")], None) is None
    # one heavy view and a light one: not worth a thread
    big = 10 * SPLIT_MIN
    assert hashing._lanes([View("a"), View("tail", start=big - CHUNK)], big) is None


def test_lanes_balance_and_keep_searches_with_their_readers_in_the_first() -> None:
    """The scanner and the views masking what it finds share the first lane, the scanner
    first; the other views fill the lighter lane, heaviest first; each lane keeps the
    order given."""
    size = 10 * SPLIT_MIN
    a, b, c, d = View("a"), View("b"), View("c"), View("d")
    assert hashing._lanes([a, b, c, d], size) == [[a, c], [b, d]]
    scan = FuseScanner()
    masked = FuseMaskedView(start=0, end=size // 2, scanner=scan)
    own = FuseMaskedView(start=0, end=size // 2)  # scans its range itself: free to go
    lanes = hashing._lanes([a, scan, masked, b, own, c], size)
    assert lanes is not None
    first, second = lanes
    assert scan in first and masked in first
    assert first.index(scan) < first.index(masked)
    assert sorted(v.name for v in first + second) == sorted(
        ["a", "b", "c", "fuse-scan", "fuse-masked", "fuse-masked"]
    )
    assert abs(sum(v.weight(size) for v in first) - sum(v.weight(size) for v in second)) <= size


class _Boom(View):
    def __init__(self, after: int, seen: Callable[[], None]) -> None:
        super().__init__("boom")
        self.at = after
        self.seen = seen

    def feed(self, pos: int, chunk: memoryview) -> None:
        self.seen()
        if pos >= self.at:
            raise ValueError("a view failed")


def test_a_failing_view_of_the_pool_thread_fails_the_pass(tmp_path: Path) -> None:
    """The error reaches the caller, and the pass does not return while the pool thread is
    still feeding a buffer (no view is fed after the call is over)."""
    p, _data = _blob(tmp_path, CHUNK)
    threads: set[str] = set()
    fed_after: list[int] = []
    done = threading.Event()

    def seen() -> None:
        threads.add(threading.current_thread().name)
        if done.is_set():
            fed_after.append(1)

    views: list[View] = [View("a"), View("b"), View("c"), _Boom(3 * CHUNK, seen)]
    with pytest.raises(ValueError, match="a view failed"):
        try:
            digest_views(str(p), views)
        finally:
            done.set()
    assert any(t.startswith("biv-digest") for t in threads)  # the last stage ran in the pool
    assert not fed_after


class _Checked(View):
    """Compares every chunk it is fed with the file's bytes, after a pause (a buffer read
    into again while a lane still feeds it would show here), and records the order."""

    gil_bound = True  # the first lane, alone: it weighs as much as the three others
    cost = 3.0

    def __init__(self, data: bytes, pause: float) -> None:
        super().__init__("checked")
        self.data = data
        self.pause = pause
        self.bad: list[int] = []
        self.seen: list[int] = []

    def feed(self, pos: int, chunk: memoryview) -> None:
        first = bytes(chunk[:64])
        time.sleep(self.pause)
        if bytes(chunk) != self.data[pos : pos + len(chunk)] or bytes(chunk[:64]) != first:
            self.bad.append(pos)
        self.seen.append(pos)
        super().feed(pos, chunk)


@pytest.mark.parametrize("ring", [2, 3])
def test_a_slow_lane_keeps_its_buffers_while_the_other_runs_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ring: int
) -> None:
    """A small ring over many chunks: the fast lane may run ahead only while the slow lane
    still has the buffer it reads; every view still gets every chunk, in order."""
    monkeypatch.setattr(hashing, "RING", ring)
    data = os.urandom(SPLIT_MIN + 5 * CHUNK + 3)
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    slow = _Checked(data, 0.004)
    fast = [View("a"), View("b", skip=(Span(CHUNK - 5, 9),)), View("c", start=777)]
    views: list[View] = [slow, *fast]
    lanes = hashing._lanes(views, len(data))
    assert lanes == [[slow], fast]
    digest_views(str(p), views)
    assert not slow.bad
    assert slow.seen == list(range(0, len(data), CHUNK))
    alone = [View("a"), View("b", skip=(Span(CHUNK - 5, 9),)), View("c", start=777)]
    hashing._stream(str(p), alone, 0, len(data))
    assert [v.hexdigest() for v in views] == [
        hashlib.sha256(data).hexdigest(),
        *(v.hexdigest() for v in alone),
    ]


@pytest.mark.parametrize("ring", [2, 8])
def test_a_lane_failing_while_the_reader_waits_for_a_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ring: int
) -> None:
    """The reader waits for a buffer the failed lane will never free: it must be told."""
    monkeypatch.setattr(hashing, "RING", ring)
    p, _data = _blob(tmp_path, CHUNK)
    views: list[View] = [View("a"), View("b"), _Boom(CHUNK, lambda: time.sleep(0.01))]
    raised: list[BaseException] = []

    def run() -> None:
        try:
            digest_views(str(p), views)
        except BaseException as exc:  # checked below
            raised.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the pass hangs after a lane failed"
    assert len(raised) == 1 and isinstance(raised[0], ValueError)
    assert str(raised[0]) == "a view failed"


def test_passes_sharing_the_pool_all_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More lanes than the pool has threads (several large files at once): a lane's task
    never waits, so every pass finishes, with the digests of one thread."""
    monkeypatch.setattr(hashing, "RING", 2)
    p, data = _blob(tmp_path, CHUNK)
    want = hashlib.sha256(data).hexdigest()
    got: list[str] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            vs = [View("a"), View("b", start=1), View("c", start=2), View("d", start=3)]
            digest_views(str(p), vs)
            got.append(vs[0].hexdigest())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors
    assert got == [want] * 6


def test_ring_buffers_are_reused_and_capped(tmp_path: Path) -> None:
    """A pass's buffers serve the next pass; no more than ``RING`` are kept."""
    p, _data = _blob(tmp_path, CHUNK)
    digest_views(str(p), [View("a"), View("b", start=1)])
    kept = list(hashing._RING_FREE)
    assert 0 < len(kept) <= hashing.RING
    digest_views(str(p), [View("a"), View("b", start=1)])
    assert {id(b) for b in hashing._RING_FREE} == {id(b) for b in kept}


def test_a_blob_cut_short_gives_what_one_thread_gives(tmp_path: Path) -> None:
    """The file ends before the size the caller was told (truncated while biv reads it):
    the lanes stop where the reads do, as the one-thread pass does, and nothing hangs."""
    p, data = _blob(tmp_path, CHUNK)
    told = len(data) + 3 * CHUNK + 5
    split, alone = _views(), _views()
    assert hashing._lanes(split, told) is not None
    digest_views(str(p), split, 0, told)
    hashing._stream(str(p), alone, 0, told)
    assert _results(split) == _results(alone)
    assert split[0].hexdigest() == hashlib.sha256(data).hexdigest()
