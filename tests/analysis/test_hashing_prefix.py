"""Views whose streams begin alike share the hashing of those bytes (``_share_prefix``) and
still give exactly the digests of hashing each view on its own."""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
from pathlib import Path

import pytest

from verifier import hashing
from verifier.binary.fuses import FuseScanner
from verifier.hashing import CHUNK, SHARE_MIN, SPLIT_MIN, Span, View, digest_views
from verifier.signing.codesign_pages import PageDigests


def _expected(data: bytes, v: View) -> str:
    """The view's digest from its definition, byte by byte: no pieces, no sharing."""
    end = len(data) if v.end is None else min(v.end, len(data))
    out = bytearray()
    for i in range(v.start, end):
        if any(s.offset <= i < s.end for s in v.skip):
            continue
        out.append(0 if any(s.offset <= i < s.end for s in v.mask) else data[i])
    return hashlib.new(v.algorithm, bytes(out)).hexdigest()


def _expected_fast(data: bytes, v: View) -> str:
    """``_expected`` for large data: each run between span edges kept, zeroed or dropped
    as a whole, by what its first byte is."""
    end = len(data) if v.end is None else min(v.end, len(data))
    cuts = {v.start, end}
    for s in (*v.skip, *v.mask):
        cuts.update(x for x in (s.offset, s.end) if v.start < x < end)
    edges = sorted(cuts)
    h = hashlib.new(v.algorithm)
    for a, b in itertools.pairwise(edges):
        if any(s.offset <= a < s.end for s in v.skip):
            continue
        h.update(bytes(b - a) if any(s.offset <= a < s.end for s in v.mask) else data[a:b])
    return h.hexdigest()


def test_expected_agrees_with_itself() -> None:
    """The slice-based oracle is the byte-by-byte one, on small random views."""
    rng = random.Random(7)
    data = rng.randbytes(3000)
    for _ in range(50):
        v = View(
            "v",
            start=rng.randrange(0, 100),
            end=rng.choice([None, rng.randrange(100, 3000)]),
            skip=tuple(Span(rng.randrange(3000), rng.randrange(1, 200)) for _ in range(2)),
            mask=tuple(Span(rng.randrange(3000), rng.randrange(1, 200)) for _ in range(2)),
        )
        assert _expected_fast(data, v) == _expected(data, v)


def _macho_like(size: int) -> list[View]:
    """A slice's views as Mach-O analysis makes them: the normalised digest (one skip, four
    masks), the __TEXT segment (a prefix of it), __LINKEDIT (a suffix), a section, the
    plain digest; a PE's Authenticode digest parting from the normalised one near the end."""
    cs = Span(size - 70_000, 60_000)  # the code signature
    masks = (Span(0x20, 4), Span(0x1000, 16), Span(0x3000, 8), Span(size - 5, 4))
    return [
        View("sha256"),
        View("normalized", skip=(cs,), mask=masks),
        View("__TEXT", end=size // 2, skip=(cs,), mask=masks),
        View("__LINKEDIT", start=size // 2, skip=(cs,), mask=masks),
        View("__TEXT,__text", start=0x4000, end=size // 3),
        View("pe-normalized", skip=(Span(0x20, 4), Span(size - 90_000, 100), Span(size - 9, 9))),
        View("authenticode", skip=(Span(0x20, 4), Span(size - 9, 9))),
        View("short", end=SHARE_MIN - 1, mask=masks),  # too short to share anything
    ]


@pytest.mark.parametrize("size", [SHARE_MIN * 3 + 11, SPLIT_MIN + 2 * CHUNK + 77])
def test_views_sharing_a_prefix_give_their_own_digests(tmp_path: Path, size: int) -> None:
    """One pass (split between threads for the large blob) with shared prefixes gives every
    view the digest of its own bytes; the shares happened (a mutant without them fails the
    work check, one that shares wrongly fails the digests)."""
    data = random.Random(size).randbytes(size)
    p = tmp_path / "blob"
    p.write_bytes(data)
    views = _macho_like(size)
    digest_views(str(p), views)
    assert [v.hexdigest() for v in views] == [_expected_fast(data, v) for v in views]
    by = {v.name: v for v in views}
    assert by["__TEXT"]._host is by["normalized"]  # a prefix: fed nothing itself
    assert by["__TEXT"].weight(size) == 0
    assert by["authenticode"]._host is by["pe-normalized"]  # they part near the end
    assert by["authenticode"]._from == size - 90_000
    assert by["short"]._host is None and by["__LINKEDIT"]._host is None


def test_a_fork_past_the_end_of_a_truncated_stream_gets_the_final_state(tmp_path: Path) -> None:
    """The file is shorter than the views say (a truncated member): a fork whose offset the
    stream never reaches still gets the digest of the bytes there were."""
    size = SHARE_MIN * 4
    data = random.Random(1).randbytes(size)
    p = tmp_path / "blob"
    p.write_bytes(data[: size // 2])  # half of what the views were made for
    views = [View("whole", mask=(Span(10, 4),)), View("head", end=size - 100, mask=(Span(10, 4),))]
    digest_views(str(p), views, 0, size)
    short = data[: size // 2]
    assert views[1]._host is views[0]
    assert views[0].hexdigest() == views[1].hexdigest() == _expected_fast(short, views[0])


def test_forks_at_chunk_edges_and_many_from_one_host(tmp_path: Path) -> None:
    """Forks exactly at a chunk edge, one byte either side, several on one host, others
    parting inside a masked span: all exact, in one thread and split."""
    size = 6 * CHUNK + 5
    data = random.Random(3).randbytes(size)
    p = tmp_path / "blob"
    p.write_bytes(data)

    def views() -> list[View]:
        out = [View("host", mask=(Span(100, 8), Span(2 * CHUNK - 4, 8)))]
        for end in (CHUNK, CHUNK - 1, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 3):
            out.append(View(f"to-{end}", end=end, mask=out[0].mask))
        out.append(View("parts-in-mask", mask=(Span(100, 8), Span(2 * CHUNK - 4, 4))))
        out.append(View("other-alg", algorithm="sha1", mask=out[0].mask))
        out.append(FuseScanner())
        out.append(PageDigests("pages", "sha256", 4096, 0, size))
        return out

    for split in (False, True):
        vs = views()
        if split:
            digest_views(str(p), vs)
        else:
            hashing._share_prefix(vs, size)
            hashing._stream(str(p), vs, 0, size)
            for v in vs:
                if v._forks:
                    v.finish_forks()
        plain = [v for v in vs if type(v) is View]
        assert [v.hexdigest() for v in plain] == [_expected_fast(data, v) for v in plain]
        assert all(v._host is vs[0] for v in vs[1:6])
        assert vs[6]._host is vs[0] and vs[6]._from == 2 * CHUNK  # parts where the masks do
        assert vs[7]._host is None  # another algorithm shares nothing


def test_a_fork_runs_in_its_hosts_lane_after_it() -> None:
    """Split between threads, a fork is fed in its host's lane, after the host (it reads
    the host's state mid-stream)."""
    size = 10 * SPLIT_MIN
    host, fork = View("host"), View("fork", end=size // 2, mask=())
    other = [View(f"o{i}", start=i + 1) for i in range(3)]
    vs = [host, *other, fork]
    hashing._share_prefix(vs, size)
    assert fork._host is host
    lanes = hashing._lanes(vs, size)
    assert lanes is not None
    lane = next(s for s in lanes if host in s)
    assert fork in lane and lane.index(host) < lane.index(fork)


def test_page_hashing_goes_with_the_searches() -> None:
    """Per-page hashing (a Python call per page) runs in the searching lane, so the two
    never wait for each other's GIL; the other lane's large updates run beside them."""
    size = 10 * SPLIT_MIN
    scan, pages = FuseScanner(), PageDigests("pages", "sha256", 4096, 0, size)
    a, b = View("a"), View("b", mask=(Span(5, 5),))
    lanes = hashing._lanes([a, pages, scan, b], size)
    assert lanes is not None
    assert pages in lanes[0] and scan in lanes[0]
    assert lanes[0].index(pages) < lanes[0].index(scan)  # the order given
    assert a not in lanes[0] and b not in lanes[0]


class _Last(View):
    """Records how far the pass got; fails at ``fail_at`` if set."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__("last")
        self.reached = 0
        self.fail_at = fail_at

    def feed(self, pos: int, chunk: memoryview) -> None:
        if self.fail_at is not None and pos >= self.fail_at:
            raise ValueError("the pass failed")
        self.reached = pos + len(chunk)


def test_a_pass_beside_parsing_gives_the_same_digests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``digest_beside``: the pass in a side thread, the work here; same digests, the work's
    result; a small blob is done in this thread."""
    monkeypatch.setattr(hashing, "BESIDE_MIN", 2 * CHUNK)  # (a smaller file than 16 MiB)
    size = 3 * CHUNK + 5
    data = random.Random(5).randbytes(size)
    p = tmp_path / "blob"
    p.write_bytes(data)
    views, alone = _macho_like(size), _macho_like(size)
    here = threading.get_ident()
    got = hashing.digest_beside(str(p), views, 0, size, lambda: threading.get_ident())
    assert got == here
    digest_views(str(p), alone)
    assert [v.hexdigest() for v in views] == [v.hexdigest() for v in alone]
    small = View("small")
    hashing.digest_beside(str(p), [small], 0, hashing.BESIDE_MIN - 1, lambda: None)
    assert small.hexdigest() == hashlib.sha256(data[: hashing.BESIDE_MIN - 1]).hexdigest()


def test_a_failing_parse_waits_for_the_pass_and_a_failing_pass_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work raises: the error comes once the pass is over (never while a thread still
    reads the file); the pass raises: its error comes even though the work succeeded."""
    monkeypatch.setattr(hashing, "BESIDE_MIN", CHUNK)
    size = 8 * CHUNK
    p = tmp_path / "blob"
    p.write_bytes(random.Random(6).randbytes(size))
    last = _Last()

    def broken() -> None:
        raise KeyError("parse failed")

    with pytest.raises(KeyError):
        hashing.digest_beside(str(p), [last], 0, size, broken)
    assert last.reached == size
    with pytest.raises(ValueError, match="the pass failed"):
        hashing.digest_beside(str(p), [_Last(fail_at=2 * CHUNK)], 0, size, lambda: 1)
