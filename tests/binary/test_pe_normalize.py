"""Normalised PE comparison: signing, rcedit-like resource edits, fuses, injected code."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from support.selfsigned import make_signer, sign

from verifier._scenarios import pewriter as w
from verifier.analysis import AnalysisContext, analyze
from verifier.binary.diff import (
    count_differing_bytes,
    describe_pe_divergence,
    fuse_evidence,
    pe_resources_only,
)
from verifier.model import BinaryFacts, Blob, FileEntry

needs_osslsigncode = pytest.mark.skipif(
    shutil.which("osslsigncode") is None, reason="needs osslsigncode"
)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_signer(tmp_path_factory.mktemp("pki"))


def _write(tmp: Path, name: str, spec: w.PESpec) -> Path:
    p = tmp / name
    p.write_bytes(w.build_pe(spec))
    return p


def _entry(path: Path, with_blob: bool = True) -> FileEntry:
    blob = Blob.of_file(path)
    sha, facts = analyze(blob, path.name, AnalysisContext(verify_signatures=False))
    return FileEntry(path.name, path.name, (), blob.size, sha, facts, blob if with_blob else None)


def _facts(path: Path) -> BinaryFacts:
    return _entry(path).facts


@needs_osslsigncode
@pytest.mark.parametrize("overlay", [b"", b"OVERLAY\0\0", b"x" * 13])
def test_signing_does_not_change_normalized_digest(
    overlay: bytes, tmp_path: Path, signer: tuple[Path, Path]
) -> None:
    src = _write(tmp_path, "a.exe", replace(w.electron_exe(), overlay=overlay))
    dst = tmp_path / "signed.exe"
    sign(src, dst, *signer)
    a, b = _entry(src), _entry(dst)
    assert a.sha256 != b.sha256
    assert a.facts.normalized_sha256 == b.facts.normalized_sha256
    assert a.facts.header_sha256 == b.facts.header_sha256
    assert a.facts.sections == b.facts.sections
    assert a.facts.overlay_sha256 == b.facts.overlay_sha256
    assert b.facts.signature.signed and not a.facts.signature.signed
    assert pe_resources_only(b.facts, a.facts)


@needs_osslsigncode
def test_data_after_signature_changes_normalized_digest(
    tmp_path: Path, signer: tuple[Path, Path]
) -> None:
    src = _write(tmp_path, "a.dll", w.ffmpeg_dll())
    dst = tmp_path / "signed.dll"
    sign(src, dst, *signer)
    tampered = tmp_path / "tampered.dll"
    tampered.write_bytes(dst.read_bytes() + b"\xfe\xed\xfa\xce payload")
    a, t = _facts(src), _facts(tampered)
    assert a.normalized_sha256 != t.normalized_sha256
    assert a.overlay_sha256 != t.overlay_sha256
    assert not pe_resources_only(t, a)


@needs_osslsigncode
def test_rcedit_variant_is_resources_only(tmp_path: Path, signer: tuple[Path, Path]) -> None:
    up = _write(tmp_path, "electron.exe", w.electron_exe())
    vendor = _write(tmp_path, "Acme.exe", w.vendor_exe(w.electron_exe(), "Acme"))
    signed = tmp_path / "Acme-signed.exe"
    sign(vendor, signed, *signer)
    u, v = _facts(up), _facts(signed)
    assert u.normalized_sha256 != v.normalized_sha256
    assert u.header_sha256 == v.header_sha256
    assert pe_resources_only(v, u)
    assert fuse_evidence(v, u) == {
        "shipped": u.fuses.values,
        "reference": u.fuses.values,  # type: ignore[union-attr]
        "changed": [],
    }
    ev = describe_pe_divergence(_entry(signed), _entry(up))
    assert {s["name"] for s in ev["sections"]} == {".rsrc"}
    assert ev["entry_point_changed"] is False and ev["imports_changed"] is False
    assert ev["executable_sections_changed"] is None
    assert ev["headers_changed"] is False


def test_flipped_fuses_are_resources_only_and_reported(tmp_path: Path) -> None:
    up = _write(tmp_path, "electron.exe", w.electron_exe(fuses="1101rr10"))
    vendor = _write(tmp_path, "Acme.exe", w.vendor_exe(w.electron_exe(), "Acme", fuses="0111rr11"))
    u, v = _facts(up), _facts(vendor)
    assert u.fuses and v.fuses and u.fuses.offset == v.fuses.offset
    assert v.fuses.values == "0111rr11"
    rdata_u = next(s for s in u.sections if s.name == ".rdata")
    rdata_v = next(s for s in v.sections if s.name == ".rdata")
    assert rdata_u.sha256 != rdata_v.sha256
    assert rdata_u.masked_sha256 == rdata_v.masked_sha256
    assert pe_resources_only(v, u)
    assert fuse_evidence(v, u) == {
        "shipped": "0111rr11",
        "reference": "1101rr10",
        "changed": [0, 2, 7],
    }
    assert v.markers == {"electron_version": "30.0.0"}


def test_fuse_wire_of_other_length_is_not_resources_only(tmp_path: Path) -> None:
    up = _write(tmp_path, "electron.exe", w.electron_exe(fuses="1101rr10"))
    other = _write(tmp_path, "x.exe", w.electron_exe(fuses="1101rr1"))
    assert not pe_resources_only(_facts(other), _facts(up))


def test_injected_code_is_divergent_with_evidence(tmp_path: Path) -> None:
    clean = _write(tmp_path, "ffmpeg.dll", w.ffmpeg_dll())
    bad = _write(tmp_path, "ffmpeg-bad.dll", w.trojaned_ffmpeg_dll())
    c, b = _entry(clean), _entry(bad)
    assert not pe_resources_only(b.facts, c.facts)
    ev = describe_pe_divergence(b, c)
    by = {s["name"]: s["differing_bytes"] for s in ev["sections"]}
    assert by[".text2"] == 512  # one file-aligned section, present on one side only
    assert ".text" not in by  # .text itself is unchanged
    assert ev["entry_point_changed"] is True
    assert ev["imports_changed"] is True
    assert ev["exports_changed"] is False
    assert ev["executable_sections_changed"] == {"added": [".text2"], "removed": []}
    assert ev["headers_changed"] is True and ev["overlay_changed"] is False
    # without the blobs (a reference known by digests only) the count is unknown
    ev2 = describe_pe_divergence(b, replace(c, blob=None))
    assert {s["name"]: s["differing_bytes"] for s in ev2["sections"]}[".text2"] is None


def test_changed_text_bytes_are_counted(tmp_path: Path) -> None:
    code = bytearray(w._FILLER[:3000])
    a = _write(tmp_path, "a.dll", replace(w.ffmpeg_dll(), text_extra=bytes(code)))
    for i in (5, 700, 2999):
        code[i] ^= 0xFF
    b = _write(tmp_path, "b.dll", replace(w.ffmpeg_dll(), text_extra=bytes(code)))
    ev = describe_pe_divergence(_entry(b), _entry(a))
    assert ev["sections"] == [{"name": ".text", "differing_bytes": 3}]
    assert ev["entry_point_changed"] is False
    assert not pe_resources_only(_facts(b), _facts(a))


def test_count_differing_bytes() -> None:
    assert count_differing_bytes(b"", b"") == 0
    assert count_differing_bytes(b"abcd", b"abcd") == 0
    assert count_differing_bytes(b"\x00\x01\x02", b"\x01\x01\x00") == 2
    with pytest.raises(ValueError):
        count_differing_bytes(b"a", b"")


@needs_osslsigncode
def test_payload_inside_certificate_table(tmp_path: Path, signer: tuple[Path, Path]) -> None:
    """3CX's d3dcompiler_47.dll: a payload appended inside WIN_CERTIFICATE.

    The Authenticode digest (and biv's normalised digest) skip the certificate table, so both
    stay equal; the container digest and the signature-structure check are what catch it.
    """
    import struct

    from verifier.binary import pe

    src = _write(tmp_path, "d3dcompiler_47.dll", w.d3dcompiler_dll())
    signed = tmp_path / "signed.dll"
    sign(src, signed, *signer)
    data = bytearray(signed.read_bytes())
    info = pe.parse_pe(bytes(data), len(data))
    payload = b"\xfe\xed\xfa\xce" + bytes(range(60))
    struct.pack_into("<I", data, info.cert_offset, info.cert_size + len(payload))
    struct.pack_into("<I", data, info.security_dir_offset + 4, info.cert_size + len(payload))
    data += payload
    struct.pack_into(
        "<I", data, info.checksum_offset, pe.pe_checksum(bytes(data), info.checksum_offset)
    )
    tampered = tmp_path / "tampered.dll"
    tampered.write_bytes(data)
    blob = Blob.of_file(tampered)
    _, facts = analyze(blob, "d3dcompiler_47.dll", AnalysisContext())
    _, clean = analyze(Blob.of_file(signed), "d3dcompiler_47.dll", AnalysisContext())
    assert facts.normalized_sha256 == clean.normalized_sha256 == _facts(src).normalized_sha256
    assert facts.signature.signed
    assert facts.signature.container_sha256 != clean.signature.container_sha256
    try:
        import verifier.signing.authenticode  # noqa: F401
    except ImportError:
        return
    assert "signature-padding" in {a.rule for a in facts.anomalies}
    assert "signature-padding" not in {a.rule for a in clean.anomalies}
