"""CMS / PKCS#7 SignedData read as slices of its own bytes (RFC 5652, with BER for Apple).

``parse_signed_data(der)`` returns the skeleton every signature kind needs, without decoding
or re-encoding anything it does not have to: the encapsulated content (its type, its
element and the octets a messageDigest covers), the certificates (their DER), and each
SignerInfo with its signer identifier, digest and signature algorithms, signature value, and
signed and unsigned attributes (each value as the bytes it was encoded as, with its offset, so
a nested signature or an attribute can be located and hashed as found). Every count is capped.
Errors are ``MalformedInputError``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from verifier.errors import MalformedInputError
from verifier.record import record
from verifier.signing import algorithms, asn1
from verifier.signing.algorithms import digest_name
from verifier.signing.certs import (
    AlgorithmId,
    Cert,
    algorithm_id,
    find_by_issuer_serial,
    find_by_key_id,
)

SIGNED_DATA = "1.2.840.113549.1.7.2"
CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
SIGNING_TIME = "1.2.840.113549.1.9.5"

MAX_CERTS = 64
MAX_SIGNER_INFOS = 8
MAX_ATTRIBUTES = 64
MAX_VALUES = 16


@record
class Value:
    """One attribute value: its bytes as encoded and where they start in the document."""

    raw: bytes
    offset: int


@record
class Attribute:
    oid: str
    values: tuple[Value, ...]
    offset: int  # of the whole Attribute element in the document
    length: int


@record
class SignerInfo:
    issuer: bytes | None  # issuerAndSerialNumber: the Name as encoded
    serial: int | None
    key_id: bytes | None  # subjectKeyIdentifier form
    digest_oid: str
    signed_attrs_der: bytes | None  # DER of the signed attributes as the signature covers them
    signed_attrs: tuple[Attribute, ...]
    sig_alg: AlgorithmId
    signature: bytes
    unsigned_attrs: tuple[Attribute, ...]

    @property
    def digest_algorithm(self) -> str | None:
        return digest_name(self.digest_oid)

    def signed(self, oid: str) -> list[Value]:
        return [v for a in self.signed_attrs if a.oid == oid for v in a.values]

    def unsigned(self, oid: str) -> list[Value]:
        return [v for a in self.unsigned_attrs if a.oid == oid for v in a.values]


@record
class SignedData:
    content_type: str  # eContentType
    content: bytes | None  # the octets a messageDigest covers (None when detached)
    content_element: bytes | None  # the eContent's inner element as encoded
    certificates: tuple[bytes, ...]
    signer_infos: tuple[SignerInfo, ...]


def _der(doc: asn1.Doc, t: asn1.Tlv, depth: int = 0) -> bytes:
    """``t`` in definite-length form (BER indefinite lengths re-encoded; bounded depth)."""
    if not t.indefinite:
        return doc.raw(t)
    if depth > asn1.MAX_DEPTH:
        raise MalformedInputError("BER nested too deeply")
    inner = b"".join(_der(doc, c, depth + 1) for c in doc.children(t))
    return doc.data[t.start : t.start + t.tag_len] + asn1.encode_length(len(inner)) + inner


def _attributes(doc: asn1.Doc, t: asn1.Tlv) -> tuple[Attribute, ...]:
    out = []
    kids = doc.children(t)
    if len(kids) > MAX_ATTRIBUTES:
        raise MalformedInputError(f"more than {MAX_ATTRIBUTES} attributes")
    for a in kids:
        k = doc.children(a)
        if len(k) != 2 or k[0].tag != asn1.OID or k[1].tag != asn1.SET:
            raise MalformedInputError("malformed attribute")
        vals = doc.children(k[1])
        if len(vals) > MAX_VALUES:
            raise MalformedInputError(f"attribute with more than {MAX_VALUES} values")
        out.append(
            Attribute(
                asn1.oid(doc.value(k[0])),
                tuple(Value(_der(doc, v), v.start) for v in vals),
                a.start,
                a.end - a.start,
            )
        )
    return tuple(out)


def parse_signer_info(doc: asn1.Doc, t: asn1.Tlv) -> SignerInfo:
    if t.tag != asn1.SEQUENCE:
        raise MalformedInputError("SignerInfo is not a SEQUENCE")
    k = doc.children(t)
    if len(k) < 5 or k[0].tag != asn1.INTEGER:
        raise MalformedInputError("SignerInfo too short")
    i = 1
    issuer = serial = key_id = None
    sid = k[i]
    if sid.tag == asn1.SEQUENCE:
        ias = doc.children(sid)
        if len(ias) != 2 or ias[1].tag != asn1.INTEGER:
            raise MalformedInputError("bad issuerAndSerialNumber")
        issuer = _der(doc, ias[0])
        serial = asn1.integer(doc.value(ias[1]))
    elif sid.tag == 0x80:
        key_id = doc.value(sid)
    else:
        raise MalformedInputError("unknown SignerIdentifier")
    i += 1
    dalg = algorithm_id(doc, k[i])
    i += 1
    signed_der = None
    signed: tuple[Attribute, ...] = ()
    if i < len(k) and k[i].tag == 0xA0:
        whole = _der(doc, k[i])
        signed_der = b"\x31" + whole[1:]
        signed = _attributes(doc, k[i])
        i += 1
    if i + 1 >= len(k) or k[i + 1].tag != asn1.OCTET_STRING:
        raise MalformedInputError("SignerInfo without a signature")
    sig_alg = algorithm_id(doc, k[i])
    signature = doc.octets(k[i + 1])
    i += 2
    unsigned: tuple[Attribute, ...] = ()
    if i < len(k) and k[i].tag == 0xA1:
        unsigned = _attributes(doc, k[i])
    return SignerInfo(
        issuer, serial, key_id, dalg.oid, signed_der, signed, sig_alg, signature, unsigned
    )


def parse_signed_data(data: bytes, *, ber: bool = False) -> SignedData:
    """A ContentInfo holding SignedData (validated whole first; BER when ``ber``)."""
    doc = asn1.parse(data, ber=ber)
    ci = doc.children(doc.top)
    if len(ci) != 2 or ci[0].tag != asn1.OID or ci[1].tag != 0xA0:
        raise MalformedInputError("not a ContentInfo")
    ctype = asn1.oid(doc.value(ci[0]))
    if ctype != SIGNED_DATA:
        raise MalformedInputError(f"content type {ctype} is not signedData")
    sd = doc.child(ci[1], 0, asn1.SEQUENCE)
    k = doc.children(sd)
    if len(k) < 4 or k[0].tag != asn1.INTEGER or k[2].tag != asn1.SEQUENCE:
        raise MalformedInputError("malformed SignedData")
    eci = doc.children(k[2])
    if not eci or eci[0].tag != asn1.OID:
        raise MalformedInputError("malformed EncapsulatedContentInfo")
    etype = asn1.oid(doc.value(eci[0]))
    content = element = None
    if len(eci) > 1:
        if eci[1].tag != 0xA0:
            raise MalformedInputError("malformed eContent")
        inner = doc.child(eci[1], 0)
        element = _der(doc, inner)
        if inner.tag in (asn1.OCTET_STRING, 0x24):
            content = doc.octets(inner)
        else:  # Authenticode: a SEQUENCE, whose contents the messageDigest covers
            t = asn1.read_tlv(element, 0)
            content = element[t.content : t.end]
    certs: list[bytes] = []
    idx = 3
    if idx < len(k) and k[idx].tag == 0xA0:
        items = doc.children(k[idx])
        if len(items) > MAX_CERTS:
            raise MalformedInputError(f"{len(items)} certificates (limit {MAX_CERTS})")
        certs = [_der(doc, c) for c in items if c.tag == asn1.SEQUENCE]
        idx += 1
    if idx < len(k) and k[idx].tag == 0xA1:
        idx += 1
    if idx != len(k) - 1 or k[idx].tag != asn1.SET:
        raise MalformedInputError("malformed SignedData: no SignerInfos")
    sis = doc.children(k[idx])
    if len(sis) > MAX_SIGNER_INFOS:
        raise MalformedInputError(f"{len(sis)} SignerInfos (limit {MAX_SIGNER_INFOS})")
    return SignedData(
        etype, content, element, tuple(certs), tuple(parse_signer_info(doc, s) for s in sis)
    )


def parse_signer_info_der(data: bytes) -> SignerInfo:
    """A SignerInfo on its own (a legacy countersignature attribute value)."""
    doc = asn1.parse(data)
    return parse_signer_info(doc, doc.top)


# --- signer checks shared by every signature kind ------------------------------------------


def find_signer(si: SignerInfo, certs: Sequence[Cert]) -> Cert | None:
    """The certificate ``si`` names (issuer and serial, or subject key identifier)."""
    if si.issuer is not None and si.serial is not None:
        return find_by_issuer_serial(tuple(certs), si.issuer, si.serial)
    if si.key_id is not None:
        return find_by_key_id(tuple(certs), si.key_id)
    return None


def check_signed_attributes(si: SignerInfo, content: bytes, content_type: str | None) -> list[str]:
    """messageDigest (and contentType, when given) of ``si``'s signed attributes."""
    if si.signed_attrs_der is None:
        return ["no authenticated attributes"]
    alg = si.digest_algorithm
    if alg is None or alg not in hashlib.algorithms_available:
        return [f"unsupported digest {si.digest_oid}"]
    errs: list[str] = []
    md = si.signed(MESSAGE_DIGEST)
    if len(md) != 1:
        errs.append("messageDigest attribute missing or repeated")
    else:
        try:
            doc = asn1.parse(md[0].raw)
            want = doc.value(doc.top) if doc.top.tag == asn1.OCTET_STRING else None
        except MalformedInputError:
            want = None
        if want != hashlib.new(alg, content).digest():
            errs.append("messageDigest does not match the signed content")
    if content_type is not None:
        ct = si.signed(CONTENT_TYPE)
        ok = False
        if len(ct) == 1:
            try:
                doc = asn1.parse(ct[0].raw)
                ok = doc.top.tag == asn1.OID and asn1.oid(doc.value(doc.top)) == content_type
            except MalformedInputError:
                ok = False
        if not ok:
            errs.append(f"contentType attribute is not {content_type}")
    return errs


def verify_signer_info(si: SignerInfo, cert: Cert) -> str | None:
    """``si``'s signature over its signed attributes, checked with ``cert``'s key."""
    if si.signed_attrs_der is None:
        return "no authenticated attributes"
    return algorithms.verify(
        cert.public_key, si.sig_alg, si.signature, si.signed_attrs_der, si.digest_algorithm
    )


def load_certs(ders: Sequence[bytes]) -> tuple[tuple[Cert, ...], list[str]]:
    """Certificates from DER (unparsable ones named in the second item)."""
    out: list[Cert] = []
    errs: list[str] = []
    for d in ders:
        try:
            out.append(Cert.from_der(d))
        except ValueError as exc:
            errs.append(f"unparsable certificate: {exc}"[:200])
    return tuple(out), errs


def signing_time(si: SignerInfo) -> dt.datetime | None:
    vals = si.signed(SIGNING_TIME)
    if not vals:
        return None
    try:
        doc = asn1.parse(vals[0].raw)
        return asn1.time(doc.top.tag, doc.value(doc.top))
    except MalformedInputError:
        return None
