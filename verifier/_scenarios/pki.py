"""Throwaway test PKIs for the demo and the tests: root CA, intermediate, code-signing leaf, TSA.

Everything is generated with ``cryptography``. Names, serial numbers and validity dates are
deterministic; keys are generated once per process and cached by label (RSA 2048 keygen costs
~50 ms, so a demo that needs eight keys stays fast). Nothing here is meant to be secure.

    pki = build_pki("Vendor Test", signer_cn="ACME Desktop Ltd", org="ACME Desktop Ltd")
    paths = pki.write(directory)          # PEM files osslsigncode and openssl understand
    paths.signer_chain                    # leaf + intermediate, for ``osslsigncode -certs``
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from verifier.record import record

KeyKind = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# Fixed validity windows, so certificates are reproducible apart from their keys.
VALID_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
VALID_UNTIL = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
EXPIRED_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
EXPIRED_UNTIL = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
# A moment inside the expired window: sign and timestamp "then" to make an expired signer valid.
EXPIRED_SIGNING_TIME = dt.datetime(2020, 6, 1, 12, 0, 0, tzinfo=dt.UTC)

CODE_SIGNING_EKU = ExtendedKeyUsageOID.CODE_SIGNING  # 1.3.6.1.5.5.7.3.3
TIME_STAMPING_EKU = ExtendedKeyUsageOID.TIME_STAMPING  # 1.3.6.1.5.5.7.3.8

_key_cache: dict[tuple[str, KeyKind], PrivateKey] = {}
_key_lock = threading.Lock()


def make_key(label: str, kind: KeyKind = "rsa") -> PrivateKey:
    """Return the process-wide key for ``label`` (generated on first use)."""
    with _key_lock:
        key = _key_cache.get((label, kind))
        if key is None:
            if kind == "rsa":
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            elif kind == "ec":
                key = ec.generate_private_key(ec.SECP256R1())
            else:  # pragma: no cover - Literal guards it
                raise ValueError(f"unknown key kind {kind!r}")
            _key_cache[(label, kind)] = key
        return key


@record
class Identity:
    """A certificate and its private key."""

    label: str
    cert: x509.Certificate
    key: PrivateKey

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def sha256(self) -> str:
        """Thumbprint as biv reports it: sha256 of the certificate's DER."""
        return hashlib.sha256(self.cert_der).hexdigest()


def _name(cn: str, org: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "XX")]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _serial(label: str) -> int:
    # Deterministic, positive, < 2**159 (RFC 5280 allows 20 octets).
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:19], "big") | 1


def _sign_alg(key: PrivateKey) -> hashes.SHA256:
    return hashes.SHA256()


def _issue(
    label: str,
    subject: x509.Name,
    key: PrivateKey,
    issuer: Identity | None,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    ca: bool,
    path_length: int | None = None,
    eku: tuple[x509.ObjectIdentifier, ...] = (),
    eku_critical: bool = False,
    key_usage: x509.KeyUsage,
) -> Identity:
    issuer_name = issuer.cert.subject if issuer else subject
    signing_key = issuer.key if issuer else key
    pub = key.public_key()
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(pub)
        .serial_number(_serial(label))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
    )
    if issuer is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=eku_critical)
    cert = b.sign(signing_key, _sign_alg(signing_key))
    return Identity(label, cert, key)


def _key_usage(*, cert_sign: bool = False, non_repudiation: bool = False) -> x509.KeyUsage:
    """digitalSignature, plus keyCertSign/cRLSign for CAs or nonRepudiation for TSAs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


_CA_USAGE = _key_usage(cert_sign=True)
_SIGN_USAGE = _key_usage()
_TSA_USAGE = _key_usage(non_repudiation=True)


def make_root(cn: str, org: str | None = None, *, kind: KeyKind = "rsa") -> Identity:
    label = f"root:{cn}"
    return _issue(
        label,
        _name(cn, org),
        make_key(label, kind),
        None,
        not_before=VALID_FROM,
        not_after=VALID_UNTIL,
        ca=True,
        key_usage=_CA_USAGE,
    )


def make_intermediate(
    cn: str, issuer: Identity, org: str | None = None, *, kind: KeyKind = "rsa"
) -> Identity:
    label = f"intermediate:{cn}"
    return _issue(
        label,
        _name(cn, org),
        make_key(label, kind),
        issuer,
        not_before=VALID_FROM,
        not_after=VALID_UNTIL,
        ca=True,
        path_length=0,
        key_usage=_CA_USAGE,
    )


def make_code_signer(
    cn: str,
    issuer: Identity,
    org: str | None = None,
    *,
    kind: KeyKind = "rsa",
    expired: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Identity:
    """A code-signing leaf: EKU codeSigning (1.3.6.1.5.5.7.3.3), KeyUsage digitalSignature."""
    label = f"signer:{cn}:{'expired' if expired else 'valid'}"
    return _issue(
        label,
        _name(cn, org),
        make_key(label, kind),
        issuer,
        not_before=not_before or (EXPIRED_FROM if expired else VALID_FROM),
        not_after=not_after or (EXPIRED_UNTIL if expired else VALID_UNTIL),
        ca=False,
        eku=(CODE_SIGNING_EKU,),
        key_usage=_SIGN_USAGE,
    )


def make_tsa(
    cn: str, issuer: Identity, org: str | None = None, *, kind: KeyKind = "rsa"
) -> Identity:
    """A time-stamping leaf: EKU timeStamping, critical (RFC 3161 section 2.3)."""
    label = f"tsa:{cn}"
    return _issue(
        label,
        _name(cn, org),
        make_key(label, kind),
        issuer,
        not_before=VALID_FROM,
        not_after=VALID_UNTIL,
        ca=False,
        eku=(TIME_STAMPING_EKU,),
        eku_critical=True,
        key_usage=_TSA_USAGE,
    )


@record
class PkiPaths:
    """PEM files written by ``Pki.write``."""

    directory: str
    root_cert: str  # the trust anchor (what ``--trust-store`` / ``-CAfile`` takes)
    intermediate_cert: str
    signer_cert: str
    signer_key: str
    signer_chain: str  # leaf + intermediate (``osslsigncode -certs``)
    tsa_cert: str
    tsa_key: str
    tsa_chain: str  # TSA leaf + intermediate
    expired_signer_cert: str
    expired_signer_key: str
    expired_signer_chain: str


@record
class Pki:
    """One test certificate hierarchy: root -> intermediate -> {signer, expired signer, TSA}."""

    name: str
    root: Identity
    intermediate: Identity
    signer: Identity
    expired_signer: Identity
    tsa: Identity

    def write(self, directory: str | os.PathLike[str]) -> PkiPaths:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        stem = _slug(self.name)

        def put(suffix: str, data: bytes) -> str:
            p = d / f"{stem}-{suffix}"
            p.write_bytes(data)
            return str(p)

        inter = self.intermediate.cert_pem
        return PkiPaths(
            directory=str(d),
            root_cert=put("root.pem", self.root.cert_pem),
            intermediate_cert=put("intermediate.pem", inter),
            signer_cert=put("signer.pem", self.signer.cert_pem),
            signer_key=put("signer.key", self.signer.key_pem),
            signer_chain=put("signer-chain.pem", self.signer.cert_pem + inter),
            tsa_cert=put("tsa.pem", self.tsa.cert_pem),
            tsa_key=put("tsa.key", self.tsa.key_pem),
            tsa_chain=put("tsa-chain.pem", self.tsa.cert_pem + inter),
            expired_signer_cert=put("expired-signer.pem", self.expired_signer.cert_pem),
            expired_signer_key=put("expired-signer.key", self.expired_signer.key_pem),
            expired_signer_chain=put(
                "expired-signer-chain.pem", self.expired_signer.cert_pem + inter
            ),
        )


def _slug(name: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in name).strip("-")


_pki_cache: dict[tuple[str, str, str | None, KeyKind], Pki] = {}


def build_pki(name: str, *, signer_cn: str, org: str | None = None, kind: KeyKind = "rsa") -> Pki:
    """Build (or return the cached) hierarchy ``name`` -> ``"<name> Intermediate"`` -> leaves."""
    ck = (name, signer_cn, org, kind)
    cached = _pki_cache.get(ck)
    if cached is not None:
        return cached
    root = make_root(name, org, kind=kind)
    inter = make_intermediate(f"{name} Intermediate", root, org, kind=kind)
    pki = Pki(
        name=name,
        root=root,
        intermediate=inter,
        signer=make_code_signer(signer_cn, inter, org, kind=kind),
        expired_signer=make_code_signer(
            f"{signer_cn} (expired)", inter, org, kind=kind, expired=True
        ),
        tsa=make_tsa(f"{name} Timestamping Authority", inter, org, kind=kind),
    )
    _pki_cache[ck] = pki
    return pki


UPSTREAM_CA_NAME = "Electron Upstream Test CA"
UPSTREAM_SIGNER = "Microsoft-like upstream signer"
VENDOR_CA_NAME = "Vendor Test CA"
VENDOR_SIGNER = "ACME Desktop Ltd"


def upstream_pki(kind: KeyKind = "rsa") -> Pki:
    """The CA that signs d3dcompiler_47.dll in the demo's upstream release."""
    return build_pki(
        UPSTREAM_CA_NAME, signer_cn=UPSTREAM_SIGNER, org="Upstream Test Corporation", kind=kind
    )


def vendor_pki(kind: KeyKind = "rsa") -> Pki:
    """The vendor's throwaway CA (the demo's "3CX")."""
    return build_pki(VENDOR_CA_NAME, signer_cn=VENDOR_SIGNER, org=VENDOR_SIGNER, kind=kind)
