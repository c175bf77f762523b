"""Mach-O parsing, per-slice digests and normalisation, with files from the small writer."""

from __future__ import annotations

import struct
from pathlib import Path

from verifier._scenarios import macho as w
from verifier.analysis.macho import analyze_macho
from verifier.binary import macho
from verifier.model import BinaryFacts, Blob, FileFormat, SignatureKind


def _analyze(tmp_path: Path, data: bytes, name: str = "bin") -> tuple[str, BinaryFacts]:
    p = tmp_path / name
    p.write_bytes(data)
    return analyze_macho(Blob.of_file(p), name)


def test_thin_executable_facts(tmp_path: Path) -> None:
    raw = w.build_thin("x86_64", b"\x55\x48\x89\xe5" * 300, b"hello")
    sha, f = _analyze(tmp_path, raw)
    assert f.format == FileFormat.MACHO and f.archs == ("x86_64",)
    assert f.anomalies == ()
    assert f.signature.kind == SignatureKind.NONE
    (sl,) = f.slices
    assert sl.sha256 == sha and sl.size == len(raw)
    names = [s.name for s in sl.sections]
    assert {"__TEXT", "__DATA", "__LINKEDIT", "__TEXT,__text", "__DATA,__data"} <= set(names)
    assert sl.shape.entry_point == 0x1000
    assert sl.shape.executable_sections == ("__TEXT,__text",)
    assert next(s for s in sl.sections if s.name == "__TEXT,__text").executable


def test_signing_changes_sha_but_not_normalized_digest(tmp_path: Path) -> None:
    raw = w.build_thin("arm64", b"\x1f\x20\x03\xd5" * 2000, dylib="@rpath/libx.dylib")
    _s, unsigned = _analyze(tmp_path, raw, "u")
    _s, adhoc = _analyze(tmp_path, w.sign(raw, "libx"), "a")
    _s, ident = _analyze(tmp_path, w.sign(raw, "libx", identity=w.TestIdentity()), "i")
    _s, resigned = _analyze(
        tmp_path, w.sign(w.sign(raw, "libx"), "libx", identity=w.TestIdentity(org="Other")), "r"
    )
    shas = {f.slices[0].sha256 for f in (unsigned, adhoc, ident, resigned)}
    assert len(shas) == 4
    norms = {f.slices[0].normalized_sha256 for f in (unsigned, adhoc, ident, resigned)}
    assert len(norms) == 1, "signature removal must make every variant hash the same"
    # code sections hash by content, not affected by signing
    text = {
        next(s.sha256 for s in f.slices[0].sections if s.name == "__TEXT,__text")
        for f in (unsigned, ident)
    }
    assert len(text) == 1


def test_changed_code_changes_normalized_digest(tmp_path: Path) -> None:
    a = w.build_thin("x86_64", b"\x90" * 100)
    b = w.build_thin("x86_64", b"\x90" * 99 + b"\xcc")
    _s, fa = _analyze(tmp_path, a, "a")
    _s, fb = _analyze(tmp_path, b, "b")
    assert fa.normalized_sha256 != fb.normalized_sha256


def test_fat_file_slices_and_fuses(tmp_path: Path) -> None:
    x = w.sign(w.build_thin("x86_64", b"\x90" * 64, w.fuse_wire("1r01")), "e")
    a = w.sign(w.build_thin("arm64", b"\x1f" * 64, w.fuse_wire("0101")), "e")
    fat = w.build_fat([x, a])
    _s, f = _analyze(tmp_path, fat)
    assert f.archs == ("x86_64", "arm64")
    fx, fa = f.slices
    assert fx.offset == 0x4000 and fx.size == len(x)
    assert fx.fuses is not None and fx.fuses.values == "1r01" and fx.fuses.version == 1
    assert fa.fuses is not None and fa.fuses.values == "0101"
    assert fat[fa.offset + fa.fuses.offset : fa.offset + fa.fuses.offset + 4] == b"0101"
    data = next(s for s in fx.sections if s.name == "__DATA,__data")
    assert data.masked_sha256 is not None and data.masked_sha256 != data.sha256
    assert f.signature.valid is True and f.signature.signed is False
    # the slices of the fat file hash like the thin files
    _s, tx = _analyze(tmp_path, x, "x")
    assert tx.slices[0].sha256 == fx.sha256
    assert tx.slices[0].normalized_sha256 == fx.normalized_sha256


def test_big_endian_and_32_bit_headers_parse(tmp_path: Path) -> None:
    # a 32-bit big-endian (ppc) header with no load commands
    hdr = struct.pack(">7I", macho.MH_MAGIC, 18, 0, 2, 0, 0, 0)
    _s, f = _analyze(tmp_path, hdr + b"\0" * 64)
    assert f.archs == ("ppc",) and f.anomalies == ()
    hdr = struct.pack("<7I", macho.MH_MAGIC, 7, 3, 2, 0, 0, 0)
    _s, f = _analyze(tmp_path, hdr + b"\0" * 64, "i386")
    assert f.archs == ("i386",) and f.anomalies == ()
