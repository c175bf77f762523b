"""Fuse wire and Electron version marker: found while streaming, even across chunk edges."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from verifier._scenarios import pewriter as w
from verifier.analysis import AnalysisContext, analyze
from verifier.binary.fuses import (
    SENTINEL,
    FuseMaskedView,
    FuseScanner,
    decode_values,
    find_fuse_wire,
)
from verifier.binary.pe import parse_pe
from verifier.hashing import CHUNK
from verifier.model import Blob, FuseWire

WIRE = SENTINEL + bytes([1, 5]) + b"01r1\x07"


def _doc(at: int, total: int = 4000) -> bytes:
    filler = bytes((i * 31 + 7) & 0xFF for i in range(total))
    return filler[:at] + WIRE + b"..Electron/29.4.6\0" + filler[at:]


def _feed(views: list, data: bytes, step: int) -> None:  # type: ignore[type-arg]
    for pos in range(0, len(data), step):
        for v in views:
            v.feed(pos, memoryview(data[pos : pos + step]))


def test_find_fuse_wire_in_buffer() -> None:
    assert find_fuse_wire(_doc(100)) == FuseWire(100 + 34, 1, "01r1?")
    assert find_fuse_wire(b"x" * 50) is None
    assert find_fuse_wire(SENTINEL + b"\x01") is None  # header cut short
    assert find_fuse_wire(SENTINEL + b"\x01\x09" + b"11") is None  # values cut short
    assert decode_values(b"01r\xff") == "01r?"


@pytest.mark.parametrize("step", [1, 7, 33, 34, 35, 64, 289, 1000])
@pytest.mark.parametrize("at", [0, 5, 30, 333])
def test_streaming_finds_wire_and_marker_across_chunks(step: int, at: int) -> None:
    data = _doc(at)
    scan, masked = FuseScanner(), FuseMaskedView("m")
    _feed([scan, masked], data, step)
    assert scan.fuses == FuseWire(at + 34, 1, "01r1?")
    assert scan.electron_version == "29.4.6"
    zeroed = bytearray(data)
    zeroed[at + 34 : at + 39] = bytes(5)
    assert masked.masked_hexdigest() == hashlib.sha256(zeroed).hexdigest()
    assert masked.hexdigest() == hashlib.sha256(data).hexdigest()


def test_masked_view_range_and_no_wire() -> None:
    data = _doc(200)
    v = FuseMaskedView("m", start=10, end=150)  # the wire lies outside the range
    _feed([v], data, 64)
    assert v.hexdigest() == v.masked_hexdigest() == hashlib.sha256(data[10:150]).hexdigest()


@pytest.mark.parametrize("back", [3, 20, 40])
def test_wire_straddling_the_real_chunk_edge(back: int, tmp_path: Path) -> None:
    """A PE whose only fuse wire sits across hashing's 1 MiB chunk boundary."""
    spec = replace(w.electron_exe(), fuses=None, electron_version=None, rdata_extra=bytes(CHUNK))
    raw = bytearray(w.build_pe(spec))
    off = CHUNK - back
    raw[off : off + len(WIRE)] = WIRE
    path = tmp_path / "big.exe"
    path.write_bytes(raw)
    sha, facts = analyze(Blob.of_file(path), "big.exe", AnalysisContext(verify_signatures=False))
    assert facts.fuses == FuseWire(off + 34, 1, "01r1?")
    rdata = next(s for s in facts.sections if s.name == ".rdata")
    sec = parse_pe(bytes(raw), len(raw)).find_section(".rdata")
    assert sec is not None and sec.raw_pointer < off < sec.raw_pointer + sec.raw_size
    body = bytearray(raw[sec.raw_pointer : sec.raw_pointer + sec.raw_size])
    assert rdata.sha256 == hashlib.sha256(body).hexdigest()
    body[off + 34 - sec.raw_pointer : off + 39 - sec.raw_pointer] = bytes(5)
    assert rdata.masked_sha256 == hashlib.sha256(body).hexdigest()
    assert sha == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("back", [1, 9, 15])
def test_marker_straddling_the_chunk_edge(back: int) -> None:
    raw = bytearray(CHUNK + 4096)
    marker = b"Electron/31.0.1\0"
    raw[CHUNK - back : CHUNK - back + len(marker)] = marker
    scan = FuseScanner()
    _feed([scan], bytes(raw), CHUNK)
    assert scan.electron_version == "31.0.1"
