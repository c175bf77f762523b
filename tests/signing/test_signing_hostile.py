"""Hostile input to the signing layer's own parsers: the BER/DER reader, CMS SignedData,
certificates, timestamps. A clear ``MalformedInputError`` / ``ValueError`` or an invalid
verdict, never another exception, a hang or a pass. Plus: revoked certificates are still
honoured with the timestamp the chain engine proved.
"""

from __future__ import annotations

import random
import struct
import zipfile
from pathlib import Path

import pytest
from support.fetch import msvc_wheel

from verifier.binary import pe
from verifier.errors import LimitExceededError, MalformedInputError
from verifier.model import Blob
from verifier.signing import asn1, cms, timestamp
from verifier.signing.certs import Cert
from verifier.signing.trust import RootStore


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + asn1.encode_length(len(body)) + body


def indef(tag: int, body: bytes) -> bytes:
    return bytes([tag, 0x80]) + body + b"\0\0"


# --- the reader ----------------------------------------------------------------------------


def test_ber_indefinite_lengths_are_read_in_ber_mode_only() -> None:
    data = indef(0x30, tlv(0x06, b"\x2a\x03") + indef(0xA0, indef(0x30, tlv(0x02, b"\x01"))))
    with pytest.raises(MalformedInputError, match="indefinite"):
        asn1.parse(data)
    doc = asn1.parse(data, ber=True)
    assert doc.top.end == len(data) and doc.top.indefinite
    oid, wrap = doc.children(doc.top)
    assert asn1.oid(doc.value(oid)) == "1.2.3"
    (inner,) = doc.children(wrap)
    (num,) = doc.children(inner)
    assert asn1.integer(doc.value(num)) == 1


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x80\x02\x01\x01",  # no end-of-contents
        b"\x30\x80\x02\x01\x01\x00",  # half an end-of-contents
        b"\x04\x80\x00\x00",  # indefinite primitive
        indef(0x30, b"") + b"x",  # trailing bytes
        b"\x30\x80\x30\x80\x00\x00",  # inner closed, outer not
        b"\x30\x84\xff\xff\xff\xff",  # length past the end
    ],
)
def test_malformed_ber(data: bytes) -> None:
    with pytest.raises(MalformedInputError):
        asn1.parse(data, ber=True)


def test_deep_indefinite_nesting_hits_the_cap() -> None:
    data = b"\x30\x80" * 10_000 + b"\x00\x00" * 10_000
    with pytest.raises(LimitExceededError):
        asn1.parse(data, ber=True)


def test_element_count_cap() -> None:
    body = tlv(0x05, b"") * (asn1.MAX_ELEMENTS + 1)
    with pytest.raises(LimitExceededError):
        asn1.parse(tlv(0x30, body))


def test_value_decoders_refuse_garbage() -> None:
    for bad in (b"", b"\x80", b"\xff" * 70):
        with pytest.raises(MalformedInputError):
            asn1.oid(bad)
    with pytest.raises(MalformedInputError):
        asn1.time(asn1.UTC_TIME, b"2401011200")  # no Z
    with pytest.raises(MalformedInputError):
        asn1.time(asn1.GENERALIZED_TIME, b"20241301000000Z")  # month 13
    assert asn1.time(asn1.UTC_TIME, b"490101000000Z").year == 2049
    assert asn1.time(asn1.UTC_TIME, b"500101000000Z").year == 1950
    assert asn1.oid(asn1.encode_oid("1.2.840.113549.1.9.16.2.47")) == "1.2.840.113549.1.9.16.2.47"


# --- CMS and certificates from a real Microsoft signature -----------------------------------


@pytest.fixture(scope="module")
def pkcs7(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("hostile-cms")
    with zipfile.ZipFile(msvc_wheel()) as z:
        name = next(n for n in z.namelist() if n.endswith("vcruntime140_1.dll"))
        (d / "v.dll").write_bytes(z.read(name))
    blob = Blob.of_file(d / "v.dll")
    info = pe.read_pe_info(blob)
    raw = blob.read(info.cert_offset, info.cert_size)
    (n,) = struct.unpack_from("<I", raw)
    return raw[8 : asn1.read_tlv(raw, 8, n).end]


@pytest.mark.network
def test_real_signature_parses(pkcs7: bytes) -> None:
    sd = cms.parse_signed_data(pkcs7)
    assert sd.content_type == "1.3.6.1.4.1.311.2.1.4"
    (si,) = sd.signer_infos
    certs, bad = cms.load_certs(sd.certificates)
    assert not bad and cms.find_signer(si, certs) is not None
    assert si.unsigned("1.3.6.1.4.1.311.2.4.1")  # Microsoft signs twice: a nested signature
    # every value is the slice it was found as: the nested PKCS#7 sits at its offset
    v = si.unsigned("1.3.6.1.4.1.311.2.4.1")[0]
    assert pkcs7[v.offset : v.offset + len(v.raw)] == v.raw


@pytest.mark.network
def test_truncated_signature_is_a_clear_error(pkcs7: bytes) -> None:
    for cut in range(0, len(pkcs7), max(1, len(pkcs7) // 200)):
        with pytest.raises(MalformedInputError):
            cms.parse_signed_data(pkcs7[:cut])


@pytest.mark.network
def test_mutated_signatures_never_raise_anything_else(pkcs7: bytes) -> None:
    rng = random.Random(11)
    for _ in range(300):
        data = bytearray(pkcs7)
        for _k in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            sd = cms.parse_signed_data(bytes(data), ber=rng.random() < 0.5)
        except MalformedInputError:
            continue
        certs, _bad = cms.load_certs(sd.certificates)
        for c in certs:  # lazily decoded parts must not raise either
            c.ekus(), c.basic_constraints, c.key_usage, c.subject_key_id, c.authority_key_id
            assert isinstance(c.subject, str)
        for si in sd.signer_infos:
            for v in si.unsigned(timestamp.RFC3161_AUTHENTICODE):
                t = timestamp.rfc3161(v.raw, si.signature, certs, RootStore())
                assert t.valid is False  # no roots: never a pass


def test_garbage_certificates_are_value_errors() -> None:
    for data in (b"", b"\x30\x00", tlv(0x30, tlv(0x30, b"") * 3), b"\x30\x82\xff\xff"):
        with pytest.raises(ValueError):
            Cert.from_der(data)


def test_malformed_timestamps_are_invalid_not_errors() -> None:
    for data in (b"", b"\x30\x03\x02\x01\x01", b"\x30\x80\x00\x00", tlv(0x30, b"\xff" * 40)):
        t = timestamp.rfc3161(data, b"sig", [], RootStore())
        assert t.valid is False and t.reason
        c = timestamp.countersignature(data, b"sig", [], RootStore())
        assert c.valid is False and c.reason


# --- revoked certificates, judged at the proven time -------------------------------------


@pytest.mark.network
def test_revoked_signer_is_judged_at_the_timestamp(tmp_path: Path) -> None:
    from support.authenticode import check_file

    from verifier.distrust import revoked_signer_anomalies
    from verifier.model import FileEntry, FileResult, Status
    from verifier.upstream.tuf_publish import RevokedCert

    with zipfile.ZipFile(msvc_wheel()) as z:
        name = next(n for n in z.namelist() if n.endswith("vcruntime140_1.dll"))
        f = tmp_path / "vcruntime140_1.dll"
        f.write_bytes(z.read(name))
    facts, _, _ = check_file(f)
    signed_at = facts.details_dict()["timestamps"][0]["time"]
    assert facts.valid is True and facts.details_dict()["time_source"] == "timestamp"
    from verifier.analysis import AnalysisContext, analyze

    sha, bf = analyze(Blob.of_file(f), f.name, AnalysisContext())
    entry = FileEntry(f.name, f.name, (), f.stat().st_size, sha, bf, Blob.of_file(f))
    results = [FileResult(f.name, Status.OWN, entry, None)]
    thumb = facts.signers[0].sha256
    later = RevokedCert(thumb, "2099-01-01T00:00:00Z", reason="compromised later")
    earlier = RevokedCert(thumb, "2000-01-01T00:00:00Z", reason="compromised long ago")
    assert revoked_signer_anomalies(results, [later]) == []  # signed (proven) before
    (a,) = revoked_signer_anomalies(results, [earlier])
    assert a.rule == "untrusted-signer" and signed_at[:10] in a.message
