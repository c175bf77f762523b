"""3CX-style tampering (verifier._scenarios.payload): RC4, signature padding, code patching."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from verifier._scenarios import osslsign, payload, pewriter, pki
from verifier.binary.pe import pe_checksum as biv_pe_checksum
from verifier.errors import MalformedInputError

needs_osslsigncode = pytest.mark.skipif(
    shutil.which("osslsigncode") is None, reason="needs osslsigncode"
)


@pytest.mark.parametrize(
    ("key", "plain", "cipher"),
    [  # the classic test vectors
        (b"Key", b"Plaintext", "bbf316e8d940af0ad3"),
        (b"Wiki", b"pedia", "1021bf0420"),
        (b"Secret", b"Attack at dawn", "45a01f645fc35b383552544b9bf5"),
    ],
)
def test_rc4_vectors(key: bytes, plain: bytes, cipher: str) -> None:
    assert payload.rc4(key, plain).hex() == cipher
    assert payload.rc4(key, bytes.fromhex(cipher)) == plain


def test_rc4_rejects_empty_key() -> None:
    with pytest.raises(ValueError):
        payload.rc4(b"", b"x")


def test_payload_layout() -> None:
    p = payload.make_payload(b"hello", b"k")
    assert p[:4] == bytes.fromhex("FEEDFACE") == payload.MARKER
    assert payload.rc4(b"k", p[4:]) == b"hello"
    default = payload.make_payload()
    assert payload.rc4(payload.DEMO_RC4_KEY, default[4:]) == payload.DEMO_PLAINTEXT


def test_checksum_matches_biv_parser() -> None:
    data = pewriter.build_pe(pewriter.ffmpeg_dll())
    h = payload.read_headers(data)
    assert payload.pe_checksum(data, h.checksum_offset) == biv_pe_checksum(data, h.checksum_offset)
    assert struct.unpack_from("<I", data, h.checksum_offset)[0] == payload.pe_checksum(
        data, h.checksum_offset
    )


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pki.PkiPaths]:
    d = tmp_path_factory.mktemp("payload")
    up = pki.upstream_pki().write(d / "pki")
    raw = d / "d3d.dll"
    raw.write_bytes(pewriter.build_pe(pewriter.d3dcompiler_dll()))
    out = d / "d3d.signed.dll"
    osslsign.sign(raw, out, up.signer_chain, up.signer_key)
    return out, up


@needs_osslsigncode
def test_padding_is_invisible_to_osslsigncode(
    signed: tuple[Path, pki.PkiPaths], tmp_path: Path
) -> None:
    src, up = signed
    padded = tmp_path / "padded.dll"
    res = payload.inject_signature_padding(src, out_path=padded)
    before, after = src.read_bytes(), padded.read_bytes()
    assert before != after and len(after) > len(before)
    # payload where the result says, right after the DER, inside the certificate table
    assert after[res.payload_offset : res.payload_offset + 4] == payload.MARKER
    assert after[res.payload_offset : res.payload_offset + res.payload_length] == (
        payload.make_payload()
    )
    h = payload.read_headers(after)
    assert h.security_offset + h.security_size == len(after)
    assert h.security_size == res.new_table_size and h.security_size % 8 == 0
    dw_length = struct.unpack_from("<I", after, res.entry_offset)[0]
    assert dw_length % 8 == 0 and res.entry_offset + dw_length == len(after)
    assert dw_length >= 8 + res.der_length + res.payload_length
    assert res.payload_offset == res.entry_offset + 8 + res.der_length
    # bytes before the table are unchanged apart from checksum and security directory size
    hb = payload.read_headers(before)
    a, b = bytearray(before[: hb.security_offset]), bytearray(after[: hb.security_offset])
    for buf in (a, b):
        buf[h.checksum_offset : h.checksum_offset + 4] = bytes(4)
        buf[h.security_dir_offset + 4 : h.security_dir_offset + 8] = bytes(4)
    assert a == b
    # osslsigncode (like Windows without EnableCertPaddingCheck) still says valid
    r_before = osslsign.verify(src, up.root_cert)
    r_after = osslsign.verify(padded, up.root_cert)
    assert r_before.valid and r_after.valid, r_after.output
    assert r_after.pe_checksum_ok is True
    assert r_before.signatures[0].calculated_digest == r_after.signatures[0].calculated_digest
    assert r_after.signatures[0].signer_cn == "Microsoft-like upstream signer"


@needs_osslsigncode
def test_padding_in_place_and_custom_payload(
    signed: tuple[Path, pki.PkiPaths], tmp_path: Path
) -> None:
    src, up = signed
    f = tmp_path / "f.dll"
    f.write_bytes(src.read_bytes())
    res = payload.inject_signature_padding(f, payload.MARKER + b"\x01" * 13)
    assert res.path == str(f) and res.payload_length == 17
    assert osslsign.verify(f, up.root_cert).valid


def test_padding_refuses_unsigned_and_hostile(tmp_path: Path) -> None:
    unsigned = tmp_path / "u.dll"
    unsigned.write_bytes(pewriter.build_pe(pewriter.libegl_dll()))
    with pytest.raises(MalformedInputError, match="not signed"):
        payload.inject_signature_padding(unsigned)
    for name, data in {
        "empty": b"",
        "notpe": b"ELF" + bytes(100),
        "truncated": b"MZ" + bytes(0x3A) + struct.pack("<I", 0x80) + bytes(8),
        "bad_lfanew": b"MZ" + bytes(0x3A) + struct.pack("<I", 0xFFFFFFF0) + bytes(64),
    }.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(MalformedInputError):
            payload.inject_signature_padding(p)


def test_padding_refuses_bad_certificate_entries(tmp_path: Path) -> None:
    data = bytearray(pewriter.build_pe(pewriter.libegl_dll()))
    h = payload.read_headers(bytes(data))
    table = len(data)
    # a WIN_CERTIFICATE whose dwLength runs past the table
    data += struct.pack("<IHH", 4096, 0x0200, 0x0002) + b"\x30\x03\x02\x01\x01" + bytes(3)
    struct.pack_into("<II", data, h.security_dir_offset, table, 16)
    p = tmp_path / "bad.dll"
    p.write_bytes(bytes(data))
    with pytest.raises(MalformedInputError, match="WIN_CERTIFICATE length"):
        payload.inject_signature_padding(p)
    # DER length past the entry
    struct.pack_into("<I", data, table, 16)
    data[table + 8 : table + 10] = b"\x30\x7f"
    p.write_bytes(bytes(data))
    with pytest.raises(MalformedInputError, match="DER"):
        payload.inject_signature_padding(p)
    # table not at the end
    struct.pack_into("<II", data, h.security_dir_offset, table - 16, 16)
    p.write_bytes(bytes(data))
    with pytest.raises(MalformedInputError, match="not at the end"):
        payload.inject_signature_padding(p)


def test_patch_code(tmp_path: Path) -> None:
    f = tmp_path / "ffmpeg.dll"
    orig = pewriter.build_pe(pewriter.ffmpeg_dll())
    f.write_bytes(orig)
    pos = payload.patch_code(f, b"\xcc" * 32)
    new = f.read_bytes()
    assert new[pos : pos + 32] == b"\xcc" * 32 and len(new) == len(orig)
    h = payload.read_headers(new)
    text = next(s for s in h.sections if s[0] == ".text")
    assert text[3] <= pos < text[3] + text[4]
    assert struct.unpack_from("<I", new, h.checksum_offset)[0] == payload.pe_checksum(
        new, h.checksum_offset
    )
    with pytest.raises(MalformedInputError):
        payload.patch_code(f, b"x", section=".nope")
    with pytest.raises(MalformedInputError):
        payload.patch_code(f, b"x" * (1 << 20))
