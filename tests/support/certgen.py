"""Test-only certificate factory for chain-engine tests: any extension set, any validity, and
any issuer signature hash (SHA-1 and MD5 included, which ``cryptography`` will not sign with:
the certificate is built with SHA-256, then its signature algorithm is swapped in the DER and
the to-be-signed bytes re-signed with the issuer's key).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from verifier._scenarios.pki import make_key
from verifier.signing import asn1
from verifier.signing.certs import Cert

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2049, 1, 1, tzinfo=dt.UTC)
CODE = ExtendedKeyUsageOID.CODE_SIGNING
TSA = ExtendedKeyUsageOID.TIME_STAMPING
SERVER = ExtendedKeyUsageOID.SERVER_AUTH

_RSA_OIDS = {
    "sha256": "1.2.840.113549.1.1.11",
    "sha1": "1.2.840.113549.1.1.5",
    "md5": "1.2.840.113549.1.1.4",
}
_HASH = {"sha256": hashes.SHA256, "sha1": hashes.SHA1, "md5": hashes.MD5}


@dataclass(frozen=True)
class Made:
    name: x509.Name
    key: rsa.RSAPrivateKey
    der: bytes

    @property
    def cert(self) -> Cert:
        return Cert.from_der(self.der)

    @property
    def pem(self) -> bytes:
        return x509.load_der_x509_certificate(self.der).public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def usage(*, cert_sign: bool, digital_signature: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + asn1.encode_length(len(body)) + body


def _resign(der: bytes, key: rsa.RSAPrivateKey, alg: str) -> bytes:
    """``der`` (signed with SHA-256) re-signed by ``key`` with ``alg`` (sha1, md5, sha256)."""
    if alg == "sha256":
        return der
    doc = asn1.parse(der)
    tbs_t, _alg_t, _sig_t = doc.children(doc.top)
    old = _tlv(asn1.OID, asn1.encode_oid(_RSA_OIDS["sha256"]))
    new = _tlv(asn1.OID, asn1.encode_oid(_RSA_OIDS[alg]))
    tbs = doc.raw(tbs_t)
    assert tbs.count(old) == 1
    tbs = tbs.replace(old, new)
    sig = key.sign(tbs, padding.PKCS1v15(), _HASH[alg]())
    algid = _tlv(asn1.SEQUENCE, new + b"\x05\x00")
    return _tlv(asn1.SEQUENCE, tbs + algid + _tlv(asn1.BIT_STRING, b"\0" + sig))


def make(
    cn: str,
    issuer: Made | None = None,
    *,
    ca: bool | None = True,
    path_len: int | None = None,
    key_usage: x509.KeyUsage | None = None,
    eku: tuple[x509.ObjectIdentifier, ...] | None = None,
    not_before: dt.datetime = T0,
    not_after: dt.datetime = T1,
    sig_hash: str = "sha256",
    key_label: str | None = None,
    aki: bool = True,
    eku_critical: bool = False,
) -> Made:
    """A certificate for ``cn`` issued by ``issuer`` (self-signed when None).

    ``ca=None`` leaves basicConstraints out; ``key_usage=None`` picks the usual one (CA or
    signing leaf); ``eku=None`` leaves the EKU extension out.
    """
    # keys are slow to make: certificates share a few unless a test needs a distinct one
    key = make_key(key_label or f"certgen:{hashlib.sha256(cn.encode()).digest()[0] % 3}")
    assert isinstance(key, rsa.RSAPrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_name = issuer.name if issuer else name
    signer_key = issuer.key if issuer else key
    serial = int.from_bytes(hashlib.sha256(cn.encode()).digest()[:16], "big") | 1
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), True)
    ku = key_usage or usage(cert_sign=bool(ca))
    b = b.add_extension(ku, True)
    if issuer is not None and aki:
        akid = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
        b = b.add_extension(akid, False)
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), eku_critical)
    der = b.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return Made(name, key, _resign(der, signer_key, sig_hash))
