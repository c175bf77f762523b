"""osslsigncode wrapper (verifier._scenarios.osslsign) and the local TSAs (tests/support/tsa.py).

Real osslsigncode, real PE files from the PE writer, real timestamps from 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
from support.tsa import LocalTSA

from verifier._scenarios import osslsign, pewriter, pki
from verifier.errors import BivError, ToolMissingError

pytestmark = pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="needs osslsigncode")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("osslsign")
    vendor = pki.vendor_pki().write(d / "vendor")
    upstream = pki.upstream_pki().write(d / "upstream")
    unsigned = d / "app.dll"
    unsigned.write_bytes(pewriter.build_pe(pewriter.libegl_dll()))
    signed = d / "signed.dll"
    osslsign.sign(unsigned, signed, vendor.signer_chain, vendor.signer_key, description="t")
    return {
        "dir": d,
        "vendor": vendor,
        "upstream": upstream,
        "unsigned": unsigned,
        "signed": signed,
    }


def test_tool_info_detects_version_and_flags() -> None:
    info = osslsign.tool_info()
    assert info.version >= (2,)
    for flag in ("-nest", "-ts", "-t", "-CAfile", "-TSA-CAfile"):
        assert info.has(flag), flag
    if info.version >= (2, 9):
        assert info.has("-ignore-cdp") and info.has("-ignore-crl")


def test_parse_version_and_flags_from_text() -> None:
    assert osslsign.parse_version("osslsigncode 2.9, using:\n\tOpenSSL 3.0.13") == (2, 9)
    assert osslsign.parse_version("osslsigncode 2.5") == (2, 5)
    assert osslsign.parse_version("something else") == ()
    flags = osslsign.parse_flags(
        " verify [ -in ] <infile>\n  [ -ignore-cdp ]\n [ -TSA-CAfile <f> ]"
    )
    assert {"-in", "-ignore-cdp", "-TSA-CAfile"} <= flags
    assert "-cdp" not in flags


def test_verify_valid_signature(env: dict[str, object]) -> None:
    vendor = env["vendor"]
    assert isinstance(vendor, pki.PkiPaths)
    r = osslsign.verify(env["signed"], vendor.root_cert)  # type: ignore[arg-type]
    assert r.signed and r.valid and r.pe_checksum_ok
    assert len(r.signatures) == 1
    s = r.signatures[0]
    assert s.primary and s.digest_algorithm == "sha256" and s.digest_match and s.chain_verified
    assert s.signer_cn == "ACME Desktop Ltd"
    assert s.signer_subject == "/C=XX/O=ACME Desktop Ltd/CN=ACME Desktop Ltd"
    assert s.signer_issuer is not None and "Vendor Test CA Intermediate" in s.signer_issuer
    assert s.signer_serial == format(pki.vendor_pki().signer.cert.serial_number, "X").zfill(
        len(s.signer_serial or "")
    )
    assert s.timestamp_time is None and s.signing_time is not None
    assert r.verified_count == 1


def test_verify_untrusted_root_is_invalid_but_digest_matches(env: dict[str, object]) -> None:
    upstream = env["upstream"]
    assert isinstance(upstream, pki.PkiPaths)
    r = osslsign.verify(env["signed"], upstream.root_cert)  # type: ignore[arg-type]
    assert r.signed and not r.valid
    s = r.signatures[0]
    assert s.digest_match and not s.chain_verified
    assert any("local issuer" in e for e in s.errors)


def test_verify_unsigned(env: dict[str, object]) -> None:
    r = osslsign.verify(env["unsigned"])  # type: ignore[arg-type]
    assert not r.signed and not r.valid and r.signatures == ()


def test_verify_changed_byte_is_digest_mismatch(env: dict[str, object], tmp_path: Path) -> None:
    vendor = env["vendor"]
    assert isinstance(vendor, pki.PkiPaths)
    data = bytearray(Path(env["signed"]).read_bytes())  # type: ignore[arg-type]
    data[0x400 + 3] ^= 0xFF  # inside .text, covered by the Authenticode digest
    bad = tmp_path / "bad.dll"
    bad.write_bytes(bytes(data))
    r = osslsign.verify(bad, vendor.root_cert)
    assert r.signed and not r.valid
    s = r.signatures[0]
    assert not s.digest_match and s.current_digest and s.calculated_digest
    assert r.pe_checksum_ok is False


def test_verify_non_pe_does_not_crash(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"MZ" + os.urandom(300))
    r = osslsign.verify(junk)
    assert not r.valid and not r.signed
    r2 = osslsign.parse_verify_output("x", "garbage\nSignature Index: 0\nnothing useful\n")
    assert not r2.valid and r2.signatures[0].current_digest is None


def test_nested_signature_both_verified(env: dict[str, object], tmp_path: Path) -> None:
    vendor, upstream = env["vendor"], env["upstream"]
    assert isinstance(vendor, pki.PkiPaths) and isinstance(upstream, pki.PkiPaths)
    nested = tmp_path / "nested.dll"
    osslsign.sign(env["signed"], nested, upstream.signer_chain, upstream.signer_key,  # type: ignore[arg-type]
                  digest="sha512", nest=True)  # fmt: skip
    r = osslsign.verify(nested, [vendor.root_cert, upstream.root_cert])
    assert r.valid and len(r.signatures) == 2
    assert [s.digest_algorithm for s in r.signatures] == ["sha256", "sha512"]
    assert r.signatures[1].signer_cn == "Microsoft-like upstream signer"
    assert not r.signatures[1].primary
    # trusting only the vendor: the nested one fails although osslsigncode may say "Succeeded"
    r2 = osslsign.verify(nested, vendor.root_cert)
    assert not r2.valid and r2.signatures[0].verified and not r2.signatures[1].verified


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_sign_digests(env: dict[str, object], tmp_path: Path, digest: str) -> None:
    vendor = env["vendor"]
    assert isinstance(vendor, pki.PkiPaths)
    out = tmp_path / f"{digest}.dll"
    osslsign.sign(env["unsigned"], out, vendor.signer_cert, vendor.signer_key,  # type: ignore[arg-type]
                  chain=vendor.intermediate_cert, digest=digest)  # fmt: skip
    r = osslsign.verify(out, vendor.root_cert)
    assert r.valid and r.signatures[0].digest_algorithm == digest


def test_sign_replaces_existing_output_and_is_deterministic(
    env: dict[str, object], tmp_path: Path
) -> None:
    vendor = env["vendor"]
    assert isinstance(vendor, pki.PkiPaths)
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    out = tmp_path / "o.dll"
    out.write_bytes(b"old")
    osslsign.sign(env["unsigned"], out, vendor.signer_chain, vendor.signer_key, signing_time=when)  # type: ignore[arg-type]
    first = out.read_bytes()
    osslsign.sign(env["unsigned"], out, vendor.signer_chain, vendor.signer_key, signing_time=when)  # type: ignore[arg-type]
    assert out.read_bytes() == first != b"old"
    r = osslsign.verify(out, vendor.root_cert)
    assert r.signatures[0].signing_time == when


def test_sign_errors(env: dict[str, object], tmp_path: Path) -> None:
    vendor = env["vendor"]
    assert isinstance(vendor, pki.PkiPaths)
    with pytest.raises(osslsign.OsslsigncodeError, match="does not exist"):
        osslsign.sign(tmp_path / "nope.exe", tmp_path / "o", vendor.signer_chain, vendor.signer_key)
    junk = tmp_path / "junk.exe"
    junk.write_bytes(b"not a PE at all")
    with pytest.raises(osslsign.OsslsigncodeError, match="signing failed") as ei:
        osslsign.sign(junk, tmp_path / "o", vendor.signer_chain, vendor.signer_key)
    assert isinstance(ei.value, BivError) and ei.value.where == str(junk)
    with pytest.raises(osslsign.OsslsigncodeError, match="digest"):
        osslsign.sign(junk, tmp_path / "o", vendor.signer_chain, vendor.signer_key, digest="crc")
    assert not (tmp_path / "o").exists()


def test_missing_tool_is_tool_missing_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not osslsign.available()
    with pytest.raises(ToolMissingError, match="apt-get install osslsigncode"):
        osslsign.verify(__file__)


def test_rfc3161_timestamp_from_local_tsa(env: dict[str, object], tmp_path: Path) -> None:
    vendor = env["vendor"]
    assert isinstance(vendor, pki.PkiPaths)
    out = tmp_path / "ts.dll"
    with LocalTSA(pki.vendor_pki()) as tsa:
        osslsign.sign(env["unsigned"], out, vendor.signer_chain, vendor.signer_key, ts_url=tsa.url)  # type: ignore[arg-type]
        assert tsa.requests == [("/rfc3161", 200)]
    r = osslsign.verify(out, vendor.root_cert, vendor.root_cert)
    s = r.signatures[0]
    assert r.valid and s.timestamp_kind == "rfc3161" and s.timestamp_verified
    assert s.timestamp_time is not None
    assert abs((s.timestamp_time - dt.datetime.now(dt.UTC)).total_seconds()) < 300


def test_legacy_timestamp_makes_expired_signer_valid(
    env: dict[str, object], tmp_path: Path
) -> None:
    vendor = env["vendor"]
    assert isinstance(vendor, pki.PkiPaths)
    stamped = tmp_path / "legacy.dll"
    bare = tmp_path / "bare.dll"
    with LocalTSA(pki.vendor_pki(), legacy_time=pki.EXPIRED_SIGNING_TIME) as tsa:
        osslsign.sign(env["unsigned"], stamped, vendor.expired_signer_chain,  # type: ignore[arg-type]
                      vendor.expired_signer_key, legacy_ts_url=tsa.legacy_url)  # fmt: skip
        assert tsa.requests == [("/authenticode", 200)]
    osslsign.sign(env["unsigned"], bare, vendor.expired_signer_chain, vendor.expired_signer_key)  # type: ignore[arg-type]
    r = osslsign.verify(stamped, vendor.root_cert)
    s = r.signatures[0]
    assert r.valid, r.output
    assert s.timestamp_kind == "authenticode" and s.timestamp_verified
    assert s.timestamp_time == pki.EXPIRED_SIGNING_TIME
    r2 = osslsign.verify(bare, vendor.root_cert)
    assert not r2.valid and r2.signatures[0].digest_match
    assert any("expired" in e for e in r2.signatures[0].errors)


def test_builtin_tsa_backdated_timestamp(env: dict[str, object], tmp_path: Path) -> None:
    vendor = env["vendor"]
    assert isinstance(vendor, pki.PkiPaths)
    out = tmp_path / "b.dll"
    osslsign.sign(env["unsigned"], out, vendor.expired_signer_chain, vendor.expired_signer_key,  # type: ignore[arg-type]
                  tsa_cert=vendor.tsa_chain, tsa_key=vendor.tsa_key,
                  tsa_time=pki.EXPIRED_SIGNING_TIME)  # fmt: skip
    r = osslsign.verify(out, vendor.root_cert)
    assert r.valid and r.signatures[0].timestamp_time == pki.EXPIRED_SIGNING_TIME


def test_tsa_rejects_garbage() -> None:
    with LocalTSA(pki.vendor_pki()) as tsa:
        import requests

        r = requests.post(tsa.legacy_url, data=b"!!!not base64", timeout=10)
        assert r.status_code == 500
        r = requests.post(tsa.url, data=b"\x30\x03\x02\x01\x01", timeout=10)
        # RFC 3161: a bad query is answered with a TimeStampResp whose status is not granted
        from asn1crypto import core

        if r.status_code == 200:
            status_info = core.Sequence.load(r.content)[0]
            pki_status = core.Sequence.load(status_info.dump())[0]
            assert core.Integer.load(pki_status.dump()).native != 0  # 0 = granted
        else:
            assert r.status_code == 500
        r = requests.post(tsa.base_url + "/other", data=b"x", timeout=10)
        assert r.status_code == 404


def test_extract_and_remove_signature(env: dict[str, object], tmp_path: Path) -> None:
    der = osslsign.extract_signature(env["signed"], tmp_path / "sig.der")  # type: ignore[arg-type]
    assert der[:1] == b"\x30" and len(der) > 500
    osslsign.remove_signature(env["signed"], tmp_path / "plain.dll")  # type: ignore[arg-type]
    assert not osslsign.verify(tmp_path / "plain.dll").signed
    with pytest.raises(osslsign.OsslsigncodeError):
        osslsign.extract_signature(env["unsigned"], tmp_path / "none.der")  # type: ignore[arg-type]
