"""Hostile certificate tables: each ends in an anomaly (never a crash, a hang or a pass)."""

from __future__ import annotations

import random
import shutil
import struct
import time
from pathlib import Path

import pytest
from support.authenticode import check_file, rules

from verifier._scenarios import osslsign, pewriter
from verifier._scenarios import pki as P
from verifier.binary import pe
from verifier.errors import LimitExceededError, MalformedInputError
from verifier.model import Blob
from verifier.signing import asn1, authenticode
from verifier.signing.trust import TrustConfig

SPC_OID = bytes.fromhex("060a2b060104018237020104")
SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + asn1.encode_length(len(body)) + body


def win_cert(der: bytes, *, dw: int | None = None, rev: int = 0x200, ctype: int = 2) -> bytes:
    body = der + bytes(-len(der) % 8)
    return struct.pack("<IHH", dw if dw is not None else 8 + len(body), rev, ctype) + body


def run(data: bytes, *, dir_size: int | None = None, file_extra: int = 0) -> set[str]:
    """parse_table + verify on a table at offset 4096 of a file that ends with it."""
    size = len(data) if dir_size is None else dir_size
    table = authenticode.parse_table(
        data,
        table_offset=4096,
        dir_size=size,
        file_size=4096 + len(data) + file_extra,
        last_section_end=4096,
    )
    algs = table.digest_algorithms
    facts, anomalies = authenticode.verify(
        table,
        {a: "00" for a in algs},
        pe_checksum_ok=True,
        trust=TrustConfig(use_microsoft_roots=False),
        at=None,
    )
    assert facts.signed is True
    assert facts.valid is False
    assert facts.container_sha256 is not None
    return rules(anomalies)


def signed_data(certs: bytes = b"", signer_infos: bytes = b"") -> bytes:
    spc = tlv(
        0x30,
        tlv(0x30, tlv(0x06, bytes.fromhex("2b060104018237020119")))
        + tlv(
            0x30,
            tlv(0x30, tlv(0x06, bytes.fromhex("608648016503040201")) + b"\x05\x00")
            + tlv(0x04, bytes(32)),
        ),
    )
    sd = tlv(
        0x30,
        tlv(0x02, b"\x01")
        + tlv(0x31, b"")
        + tlv(0x30, SPC_OID + tlv(0xA0, spc))
        + (tlv(0xA0, certs) if certs else b"")
        + tlv(0x31, signer_infos),
    )
    return tlv(0x30, SIGNED_DATA_OID + tlv(0xA0, sd))


def test_empty_and_short_tables() -> None:
    assert "invalid-signature" in run(b"")
    assert "invalid-signature" in run(b"\x00" * 4)
    assert "invalid-signature" in run(bytes(8))


def test_dwlength_past_end_of_table() -> None:
    der = signed_data()
    assert "invalid-signature" in run(win_cert(der, dw=1 << 30))
    assert "invalid-signature" in run(win_cert(der, dw=3))


def test_table_past_end_of_file() -> None:
    der = win_cert(signed_data())
    found = run(der[:20], dir_size=len(der))
    assert "invalid-signature" in found


def test_der_with_bogus_lengths() -> None:
    assert "invalid-signature" in run(win_cert(b"\x30\x84\xff\xff\xff\xff" + bytes(32)))
    assert "invalid-signature" in run(win_cert(b"\x30\x89" + bytes(40)))
    assert "invalid-signature" in run(win_cert(b"\x30\x80" + bytes(40)))  # indefinite (BER)
    inner_lie = tlv(0x30, b"\x30\x7f" + bytes(10))
    assert "invalid-signature" in run(win_cert(inner_lie))
    assert "invalid-signature" in run(win_cert(b"\x04\x02ab"))  # not a SEQUENCE


def test_ten_thousand_certificates_hit_the_cap() -> None:
    t0 = time.monotonic()
    certs = tlv(0x30, b"") * 10_000
    found = run(win_cert(signed_data(certs=certs)))
    assert "invalid-signature" in found
    assert time.monotonic() - t0 < 5


def test_ten_thousand_real_certificates_hit_a_cap() -> None:
    cert = P.vendor_pki().signer.cert_der
    t0 = time.monotonic()
    found = run(win_cert(signed_data(certs=cert * 10_000)))
    assert "invalid-signature" in found
    assert time.monotonic() - t0 < 10


def test_deeply_nested_asn1() -> None:
    body = b""
    for _ in range(50_000):
        body = tlv(0x30, body)
    with pytest.raises(LimitExceededError):
        asn1.check_der(body)
    t0 = time.monotonic()
    assert "invalid-signature" in run(win_cert(body))
    nested_in_attrs = signed_data(signer_infos=body[: 1 << 16])
    assert "invalid-signature" in run(win_cert(nested_in_attrs))
    assert time.monotonic() - t0 < 10


def test_check_der_reports_trailing_and_truncated() -> None:
    with pytest.raises(MalformedInputError):
        asn1.check_der(tlv(0x30, b"") + b"x")
    with pytest.raises(MalformedInputError):
        asn1.check_der(b"\x30\x05\x02\x01")
    assert asn1.check_der(tlv(0x30, tlv(0x02, b"\x01"))).end == 5


def test_wrong_certificate_type_and_revision() -> None:
    der = signed_data()
    assert "invalid-signature" in run(win_cert(der, ctype=1))
    assert "invalid-signature" in run(win_cert(der, rev=0x7777))


def test_too_many_entries() -> None:
    entry = win_cert(signed_data())
    found = run(entry * 40)
    assert {"invalid-signature", "multiple-certificates"} <= found


def test_no_signer_info() -> None:
    assert "invalid-signature" in run(win_cert(signed_data()))


@pytest.fixture(scope="module")
def signed_pe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, P.PkiPaths]:
    if shutil.which("osslsigncode") is None:
        pytest.skip("osslsigncode not installed")
    d = tmp_path_factory.mktemp("hostile")
    paths = P.vendor_pki().write(d / "pki")
    src = d / "u.exe"
    src.write_bytes(pewriter.build_pe(pewriter.PESpec()))
    out = d / "s.exe"
    osslsign.sign(src, out, paths.signer_cert, paths.signer_key, paths.intermediate_cert)
    return out, paths


def test_mutated_tables_never_crash(signed_pe: tuple[Path, P.PkiPaths]) -> None:
    """Flip, truncate and splice bytes all over a real table: always a clean verdict."""
    f, paths = signed_pe
    trust = TrustConfig(extra_pem=(paths.root_cert,), use_microsoft_roots=False)
    blob = Blob.of_file(f)
    info = pe.read_pe_info(blob)
    table = blob.read(info.cert_offset, info.cert_size)
    facts, anomalies, _ = check_file(f, trust)
    assert facts.valid is True and not anomalies
    signers = facts.signers
    good = {"sha256": facts.details_dict()["signatures"][0]["computed_digest"]}
    rnd = random.Random(3900)
    t0 = time.monotonic()
    outcomes: set[bool | None] = set()
    for i in range(300):
        data = bytearray(table)
        if i % 3 == 0:
            for _ in range(rnd.randint(1, 4)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        elif i % 3 == 1:
            del data[rnd.randrange(8, len(data)) :]
        else:
            a = rnd.randrange(8, len(data))
            data[a:a] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 64)))
        t = authenticode.parse_table(
            bytes(data),
            table_offset=info.cert_offset,
            dir_size=len(data),
            file_size=info.cert_offset + len(data),
            last_section_end=info.last_section_end,
        )
        facts, anomalies = authenticode.verify(
            t,
            good if i else {},
            pe_checksum_ok=True,
            trust=trust,
            at=None,
        )
        outcomes.add(facts.valid)
        if facts.valid:
            # a byte changed outside what the signature covers (e.g. inside an embedded
            # certificate that is not on the validated chain) can keep it valid, as on
            # Windows; but a mutation never makes a different identity valid
            assert facts.signers == signers, f"mutation {i} is valid with another signer"
    assert False in outcomes
    assert time.monotonic() - t0 < 30
