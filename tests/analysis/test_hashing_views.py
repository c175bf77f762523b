"""One pass, many digests: shared hashers, fuse-masked sections, the PE checksum's word sum."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from verifier.binary import wordsum
from verifier.binary.fuses import SENTINEL, FuseMaskedView, FuseScanner
from verifier.hashing import CHUNK, Span, View, digest_views


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 8, 9, 4095, 4096, 65537, CHUNK + 3])
def test_word_sum_backends_agree(n: int) -> None:
    data = bytearray(os.urandom(n))
    want = int.from_bytes(data, "little") % 0xFFFF
    assert wordsum.py_mod_ffff(data) == want
    assert wordsum.mod_ffff(memoryview(data)) == want
    assert wordsum.mod_ffff(bytes(data)) == want  # read-only buffers too


def test_word_sum_accumulates_pieces_like_one_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """``WordSum`` adds pieces (each at an even offset) and folds once: the same value as
    ``mod_ffff`` of their sum, with libcrypto where loaded and in Python without it."""
    pieces = [os.urandom(n) for n in (0, 2, 1000, CHUNK, 4096, 7, CHUNK + 6)]
    want = sum(int.from_bytes(p, "little") for p in pieces) % 0xFFFF
    for backend in ("default", "python"):
        if backend == "python":
            monkeypatch.setattr(wordsum, "_lib", lambda: None)
        acc = wordsum.WordSum()
        for p in pieces:
            acc.add(memoryview(bytearray(p)))
        assert acc.value() == want
        assert acc.value() == want  # reading it again gives the same value
        acc.add(b"\x01\x00")
        assert acc.value() == (want + 1) % 0xFFFF


def test_word_sum_of_extremes() -> None:
    ones = b"\xff" * 1000
    assert wordsum.mod_ffff(ones) == int.from_bytes(ones, "little") % 0xFFFF == 0
    assert wordsum.mod_ffff(b"\x00" * 999) == 0
    assert wordsum.backend() in ("libcrypto", "python")


def test_equal_views_share_one_hasher_and_give_the_same_digests(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 123)
    p = tmp_path / "f"
    p.write_bytes(data)
    skip = (Span(10, 4), Span(CHUNK - 2, 9))
    a, b = View("a", skip=skip), View("b", skip=skip)
    c = View("c", skip=skip, mask=(Span(100, 3),))
    whole, again = View("whole"), View("again")
    digest_views(str(p), [a, whole, b, c, again])
    kept = data[:10] + data[14 : CHUNK - 2] + data[CHUNK + 7 :]
    assert a.hexdigest() == b.hexdigest() == hashlib.sha256(kept).hexdigest()
    masked = bytearray(kept)
    masked[96:99] = bytes(3)  # file offset 100, after the 4 skipped bytes
    assert c.hexdigest() == hashlib.sha256(masked).hexdigest()
    assert whole.hexdigest() == again.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("where", [5, CHUNK - 20, CHUNK - 34, 2 * CHUNK - 1])
def test_sections_take_wires_from_the_shared_scanner(tmp_path: Path, where: int) -> None:
    """A wire anywhere (across the chunk edge too) is masked in the section holding it."""
    data = bytearray(os.urandom(3 * CHUNK))
    wire = SENTINEL + b"\x01\x04" + b"0101"
    data[where : where + len(wire)] = wire
    p = tmp_path / "f"
    p.write_bytes(data)
    scan = FuseScanner()
    shared = FuseMaskedView("s", start=0, end=2 * CHUNK + 50, scanner=scan)
    own = FuseMaskedView("o", start=0, end=2 * CHUNK + 50)
    digest_views(str(p), [scan, shared, own])
    body = bytearray(data[: 2 * CHUNK + 50])
    assert shared.hexdigest() == own.hexdigest() == hashlib.sha256(body).hexdigest()
    fuse_at = where + len(SENTINEL) + 2
    body[fuse_at : fuse_at + 4] = bytes(4)
    assert shared.masked_hexdigest() == own.masked_hexdigest() == hashlib.sha256(body).hexdigest()
    assert scan.fuses is not None and scan.fuses.offset == fuse_at


def test_a_wire_outside_the_section_is_not_masked(tmp_path: Path) -> None:
    data = bytearray(os.urandom(2 * CHUNK))
    data[100 : 100 + 38] = SENTINEL + b"\x01\x04" + b"0101"
    p = tmp_path / "f"
    p.write_bytes(data)
    scan = FuseScanner()
    sec = FuseMaskedView("s", start=200, end=CHUNK, scanner=scan)
    digest_views(str(p), [scan, sec])
    assert sec.masked_hexdigest() == sec.hexdigest() == hashlib.sha256(data[200:CHUNK]).hexdigest()
