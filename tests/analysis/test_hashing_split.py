"""Large blobs: the views of one pass shared between two threads give the one-thread digests."""

from __future__ import annotations

import hashlib
import os
import threading
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
    (second stage) must see the wire the scanner (first or second stage) found."""
    p, data = _blob(tmp_path, 2 * CHUNK - back)
    split = _views()
    assert hashing._stages(split, len(data)) is not None  # this pass is shared between threads
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
    assert hashing._stages([View("a"), View("b")], SPLIT_MIN - 1) is None
    assert hashing._stages([View("a")], 10 * SPLIT_MIN) is None
    assert hashing._stages([View("a"), View("b")], None) is None
    # one heavy view and a light one: not worth a thread
    big = 10 * SPLIT_MIN
    assert hashing._stages([View("a"), View("tail", start=big - CHUNK)], big) is None


def test_stages_balance_and_keep_searches_with_their_readers_in_the_second() -> None:
    """The scanner and the views masking what it finds run a chunk behind (second stage),
    the other views fill the lighter stage, heaviest first; each stage keeps the order."""
    size = 10 * SPLIT_MIN
    a, b, c, d = View("a"), View("b"), View("c"), View("d")
    assert hashing._stages([a, b, c, d], size) == ([a, c], [b, d])
    scan = FuseScanner()
    masked = FuseMaskedView(start=0, end=size // 2, scanner=scan)
    own = FuseMaskedView(start=0, end=size // 2)  # scans its range itself: free to go
    stages = hashing._stages([a, scan, masked, b, own, c], size)
    assert stages is not None
    first, second = stages
    assert scan in second and masked in second
    assert second.index(scan) < second.index(masked)
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
