"""The strict anomalies, one by one, with exact byte ranges: multiple-certificates,
oversized-unauthenticated-attributes, pe-checksum-mismatch, weak-digest, and the
primary-container canonical form."""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import pytest
from asn1crypto import cms, core
from support.authenticode import check_file, rules

from verifier._scenarios import osslsign, pewriter
from verifier._scenarios import pki as P
from verifier.binary import pe
from verifier.model import Blob
from verifier.signing.trust import TrustConfig

pytestmark = pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="no osslsigncode")


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrustConfig]:
    d = tmp_path_factory.mktemp("anomalies")
    paths = P.vendor_pki().write(d / "pki")
    src = d / "u.exe"
    src.write_bytes(pewriter.build_pe(pewriter.PESpec()))
    out = d / "s.exe"
    osslsign.sign(src, out, paths.signer_cert, paths.signer_key, paths.intermediate_cert)
    return out, TrustConfig(extra_pem=(paths.root_cert,))


def replace_table(src: Path, dst: Path, table: bytes) -> int:
    """Write ``src`` with its certificate table replaced by ``table``; return its offset."""
    data = bytearray(src.read_bytes())
    info = pe.read_pe_info(Blob.of_file(src))
    del data[info.cert_offset :]
    data += table
    struct.pack_into("<I", data, info.security_dir_offset + 4, len(table))
    off = info.checksum_offset
    struct.pack_into("<I", data, off, 0)
    struct.pack_into("<I", data, off, pe.pe_checksum(bytes(data), off))
    dst.write_bytes(bytes(data))
    return info.cert_offset


def entry(der: bytes) -> bytes:
    body = der + bytes(-len(der) % 8)
    return struct.pack("<IHH", 8 + len(body), 0x200, 2) + body


def pkcs7(path: Path) -> bytes:
    info = pe.read_pe_info(Blob.of_file(path))
    raw = Blob.of_file(path).read(info.cert_offset, info.cert_size)
    (n,) = struct.unpack_from("<I", raw)
    ci = cms.ContentInfo.load(raw[8:n], strict=False)
    return bytes(ci.dump())


def test_clean_file_has_no_anomalies(signed: tuple[Path, TrustConfig]) -> None:
    f, trust = signed
    facts, anomalies, _ = check_file(f, trust)
    assert facts.valid is True and anomalies == ()
    assert facts.primary_container_sha256 == facts.container_sha256
    assert facts.nested_sha256 == ()


def test_second_win_certificate(signed: tuple[Path, TrustConfig], tmp_path: Path) -> None:
    f, trust = signed
    der = pkcs7(f)
    first = entry(der)
    second = entry(b"\x30\x03\x02\x01\x01")
    out = tmp_path / "two.exe"
    off = replace_table(f, out, first + second)
    facts, anomalies, table = check_file(out, trust)
    assert len(table.entries) == 2
    (a,) = [a for a in anomalies if a.rule == "multiple-certificates"]
    assert a.evidence["ranges"] == [{"offset": off + len(first), "length": len(second)}]
    assert a.region_sha256 == hashlib.sha256(second).hexdigest()  # the extra entry's bytes
    assert facts.valid is True  # Windows only looks at the first; the rule flags the rest


def test_oversized_unauthenticated_attribute(
    signed: tuple[Path, TrustConfig], tmp_path: Path
) -> None:
    f, trust = signed
    ci = cms.ContentInfo.load(pkcs7(f))
    si = ci["content"]["signer_infos"][0]
    blob = core.OctetString(b"\xfe\xed\xfa\xce" + bytes(range(256)) * 40)
    attr = cms.CMSAttribute(
        {"type": "1.3.6.1.4.1.42921.1.2.1", "values": [core.Any.load(blob.dump())]}
    )
    si["unsigned_attrs"] = cms.CMSAttributes([attr])
    der = ci.dump(force=True)
    out = tmp_path / "blob.exe"
    off = replace_table(f, out, entry(der))
    facts, anomalies, _ = check_file(out, trust)
    assert facts.valid is True  # unauthenticated: the signature still verifies
    (a,) = [a for a in anomalies if a.rule == "oversized-unauthenticated-attributes"]
    (rng,) = a.evidence["ranges"]
    raw = out.read_bytes()
    assert raw[rng["offset"] : rng["offset"] + rng["length"]] == attr.dump()
    assert rng["offset"] > off
    assert a.region_sha256 == hashlib.sha256(attr.dump()).hexdigest()
    sizes = facts.details_dict()["signatures"][0]["unauthenticated_attributes"]
    assert sizes == [{"oid": "1.3.6.1.4.1.42921.1.2.1", "size": len(attr.dump())}]
    clean, _, _ = check_file(f, trust)
    assert facts.signers == clean.signers
    assert facts.primary_container_sha256 != clean.primary_container_sha256


def test_pe_checksum_mismatch(signed: tuple[Path, TrustConfig], tmp_path: Path) -> None:
    f, trust = signed
    data = bytearray(f.read_bytes())
    info = pe.read_pe_info(Blob.of_file(f))
    struct.pack_into("<I", data, info.checksum_offset, 0x12345678)
    out = tmp_path / "cks.exe"
    out.write_bytes(bytes(data))
    facts, anomalies, _ = check_file(out, trust)
    assert facts.valid is True  # the checksum is not covered by the digest
    assert rules(anomalies) == {"pe-checksum-mismatch"}


@pytest.mark.parametrize("digest", ["md5", "sha1", "sha384"])
def test_weak_digest(signed: tuple[Path, TrustConfig], tmp_path: Path, digest: str) -> None:
    _, trust = signed
    paths = P.vendor_pki().write(tmp_path / "pki")
    src = tmp_path / "u.exe"
    src.write_bytes(pewriter.build_pe(pewriter.PESpec()))
    out = tmp_path / f"{digest}.exe"
    osslsign.sign(
        src, out, paths.signer_cert, paths.signer_key, paths.intermediate_cert, digest=digest
    )
    facts, anomalies, table = check_file(out, trust)
    assert table.digest_algorithms == {digest}
    assert osslsign.verify(out, paths.root_cert).valid is True
    assert ("weak-digest" in rules(anomalies)) == (digest in ("md5", "sha1"))
    if digest == "md5":
        # MD5 is recognised but never trusted (osslsigncode accepts it: a documented exception)
        assert facts.valid is False
        (bad,) = [a for a in anomalies if a.rule == "invalid-signature"]
        assert "MD5" in bad.message and "never trusted" in bad.message
    else:
        assert facts.valid is True


def test_directory_larger_than_dwlength(signed: tuple[Path, TrustConfig], tmp_path: Path) -> None:
    """Only the directory size grows (dwLength unchanged): the extra bytes are padding."""
    f, trust = signed
    info = pe.read_pe_info(Blob.of_file(f))
    table = Blob.of_file(f).read(info.cert_offset, info.cert_size)
    out = tmp_path / "dir.exe"
    off = replace_table(f, out, table + bytes(24))
    facts, anomalies, _ = check_file(out, trust)
    assert facts.valid is True
    (a,) = [a for a in anomalies if a.rule == "signature-padding"]
    assert "dwLength ends at" in a.message
    (rng,) = a.evidence["ranges"]
    assert rng["offset"] + rng["length"] == off + len(table) + 24
    assert a.evidence["payload"]["length"] == 24
    assert a.evidence["payload"]["entropy"] == 0.0
    raw = out.read_bytes()
    region = raw[rng["offset"] : rng["offset"] + rng["length"]]
    assert a.region_sha256 == hashlib.sha256(region).hexdigest()


def test_dwlength_larger_than_directory(signed: tuple[Path, TrustConfig], tmp_path: Path) -> None:
    f, trust = signed
    info = pe.read_pe_info(Blob.of_file(f))
    table = bytearray(Blob.of_file(f).read(info.cert_offset, info.cert_size))
    struct.pack_into("<I", table, 0, len(table) + 64)
    out = tmp_path / "dw.exe"
    replace_table(f, out, bytes(table))
    facts, anomalies, _ = check_file(out, trust)
    assert facts.valid is False
    assert "invalid-signature" in rules(anomalies)


def test_data_after_the_table_has_its_content_digest(
    signed: tuple[Path, TrustConfig], tmp_path: Path
) -> None:
    """Through ``analysis.analyze`` (the one streaming pass): the trailing bytes' sha256."""
    from verifier.analysis import AnalysisContext, analyze

    f, trust = signed
    out = tmp_path / "tail.exe"
    tail = b"TRAILING" * 100
    out.write_bytes(f.read_bytes() + tail)
    _sha, facts = analyze(Blob.of_file(out), "tail.exe", AnalysisContext(trust=trust))
    (a,) = [a for a in facts.anomalies if a.rule == "data-after-signature"]
    assert a.region_sha256 == hashlib.sha256(tail).hexdigest()
