"""Signature and digest algorithms of real code signing, checked with the signer's key.

One function, ``verify(key, algorithm, signature, data, digest)``, serves certificates (the
issuer's signature over ``tbs``), Authenticode and CMS SignerInfos (over the signed
attributes) and timestamps: RSA PKCS#1 v1.5 (with SHA-1, SHA-2, and the digest given
separately for ``rsaEncryption``), RSA-PSS (parameters read from their DER), ECDSA, DSA and
Ed25519. MD5 and MD2 are recognised but never trusted. It never raises on bad input: it
returns None when the signature verifies, otherwise the reason.

``cryptography``'s ``verify_directly_issued_by`` is deliberately not used: it refuses
sha1WithRSAEncryption, which most timestamp authorities used until 2020.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from verifier.errors import MalformedInputError
from verifier.signing import asn1
from verifier.signing.certs import AlgorithmId

if TYPE_CHECKING:  # cryptography is loaded when a signature is checked (start-up)
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
    from cryptography.hazmat.primitives.hashes import HashAlgorithm


def preload() -> None:
    """Import what ``verify`` imports on first use (before worker processes fork)."""
    _hashes()
    from cryptography.exceptions import InvalidSignature  # noqa: F401
    from cryptography.hazmat.primitives import serialization  # noqa: F401  (Cert.public_key)
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa  # noqa: F401


@functools.cache
def _hashes() -> dict[str, type[HashAlgorithm]]:
    from cryptography.hazmat.primitives import hashes

    return {
        "sha1": hashes.SHA1,
        "sha224": hashes.SHA224,
        "sha256": hashes.SHA256,
        "sha384": hashes.SHA384,
        "sha512": hashes.SHA512,
    }


NEVER_TRUSTED = frozenset({"md5", "md2"})

DIGEST_OIDS: dict[str, str] = {
    "1.2.840.113549.2.2": "md2",
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
}

_RSA = "1.2.840.113549.1.1."
# signature algorithm OID -> (key kind, hash name or None for "the digest algorithm's")
SIGNATURE_OIDS: dict[str, tuple[str, str | None]] = {
    _RSA + "1": ("rsa", None),
    _RSA + "2": ("rsa", "md2"),
    _RSA + "4": ("rsa", "md5"),
    _RSA + "5": ("rsa", "sha1"),
    _RSA + "10": ("rsa-pss", None),
    _RSA + "11": ("rsa", "sha256"),
    _RSA + "12": ("rsa", "sha384"),
    _RSA + "13": ("rsa", "sha512"),
    _RSA + "14": ("rsa", "sha224"),
    "1.3.14.3.2.3": ("rsa", "md5"),  # OIW md5WithRSA
    "1.3.14.3.2.29": ("rsa", "sha1"),  # OIW sha1WithRSASignature
    "1.2.840.10045.2.1": ("ecdsa", None),  # id-ecPublicKey, used as a SignerInfo algorithm
    "1.2.840.10045.4.1": ("ecdsa", "sha1"),
    "1.2.840.10045.4.3.1": ("ecdsa", "sha224"),
    "1.2.840.10045.4.3.2": ("ecdsa", "sha256"),
    "1.2.840.10045.4.3.3": ("ecdsa", "sha384"),
    "1.2.840.10045.4.3.4": ("ecdsa", "sha512"),
    "1.2.840.10040.4.1": ("dsa", None),
    "1.2.840.10040.4.3": ("dsa", "sha1"),
    "2.16.840.1.101.3.4.3.1": ("dsa", "sha224"),
    "2.16.840.1.101.3.4.3.2": ("dsa", "sha256"),
    "1.3.101.112": ("ed25519", None),
}


def digest_name(oid: str) -> str | None:
    """hashlib name of a digest algorithm OID (signature OIDs that imply one count too)."""
    if oid in DIGEST_OIDS:
        return DIGEST_OIDS[oid]
    kind = SIGNATURE_OIDS.get(oid)
    return kind[1] if kind is not None else None


def signature_hash(alg: AlgorithmId, digest: str | None = None) -> str | None:
    """The hash a signature algorithm uses (``digest`` where the OID does not say)."""
    spec = SIGNATURE_OIDS.get(alg.oid)
    if spec is None:
        return None
    if spec[0] == "rsa-pss":
        try:
            return _pss(alg.params)[0]
        except MalformedInputError:
            return None
    return spec[1] or digest


def _pss(params: bytes | None) -> tuple[str, str, int]:
    """(hash, MGF1 hash, salt length) of RSASSA-PSS-params (RFC 4055 defaults: SHA-1, 20)."""
    h, mgf_h, salt = "sha1", "sha1", 20
    if params is None or params == b"\x05\x00":
        return h, mgf_h, salt
    doc = asn1.parse(params)
    for t in doc.children(doc.top):
        inner = doc.children(t)
        if not inner:
            raise MalformedInputError("empty RSASSA-PSS parameter")
        if t.tag == 0xA0:
            oid = asn1.oid(doc.value(doc.child(inner[0], 0, asn1.OID)))
            h = DIGEST_OIDS.get(oid, oid)
        elif t.tag == 0xA1:
            mgf = doc.children(inner[0])
            if len(mgf) < 2 or asn1.oid(doc.value(mgf[0])) != _RSA + "8":
                raise MalformedInputError("RSASSA-PSS mask generation is not MGF1")
            oid = asn1.oid(doc.value(doc.child(mgf[1], 0, asn1.OID)))
            mgf_h = DIGEST_OIDS.get(oid, oid)
        elif t.tag == 0xA2:
            salt = asn1.integer(doc.value(inner[0]))
    return h, mgf_h, salt


def verify(
    key: PublicKeyTypes | None,
    alg: AlgorithmId,
    signature: bytes,
    data: bytes,
    digest: str | None = None,
) -> str | None:
    """Check ``signature`` over ``data`` with ``key``; None when it verifies, else why not.

    ``digest`` is the hashlib name of the digest algorithm for algorithm OIDs that do not name
    one (``rsaEncryption``, ``id-ecPublicKey``). MD5/MD2 are never trusted.
    """
    spec = SIGNATURE_OIDS.get(alg.oid)
    if spec is None:
        return f"unsupported signature algorithm {alg.oid}"
    kind, h = spec
    if key is None:
        return "the signer's public key cannot be read"
    try:
        if kind == "rsa-pss":
            h, mgf_h, salt = _pss(alg.params)
        else:
            h = h or digest
            mgf_h, salt = "", 0
    except MalformedInputError as exc:
        return f"malformed signature parameters: {exc.message}"
    except (ValueError, TypeError) as exc:
        return f"signature cannot be checked: {exc}"[:300]
    if h in NEVER_TRUSTED:
        return f"signed with {h.upper()}, which is recognised but never trusted"
    return _check(key, kind, h or "", (mgf_h, salt), signature, data)


def _check(
    key: PublicKeyTypes,
    kind: str,
    h: str,
    pss: tuple[str, int],
    signature: bytes,
    data: bytes,
) -> str | None:
    """``verify`` with the algorithm resolved: the key's own check (``cryptography``)."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

    hcls = _hashes().get(h)
    if hcls is None:
        return f"unsupported hash {h}"
    try:
        if kind in ("rsa", "rsa-pss"):
            if not isinstance(key, rsa.RSAPublicKey):
                return "an RSA signature, but the signer's key is not RSA"
            if kind == "rsa-pss":
                mgf_h, salt = pss
                mcls = _hashes().get(mgf_h)
                if mcls is None or salt < 0:
                    return f"unsupported RSA-PSS parameters ({mgf_h}, salt {salt})"
                key.verify(signature, data, padding.PSS(padding.MGF1(mcls()), salt), hcls())
            else:
                key.verify(signature, data, padding.PKCS1v15(), hcls())
        elif kind == "ecdsa":
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return "an ECDSA signature, but the signer's key is not EC"
            key.verify(signature, data, ec.ECDSA(hcls()))
        elif kind == "dsa":
            if not isinstance(key, dsa.DSAPublicKey):
                return "a DSA signature, but the signer's key is not DSA"
            key.verify(signature, data, hcls())
        else:
            if not isinstance(key, ed25519.Ed25519PublicKey):
                return "an Ed25519 signature, but the signer's key is not Ed25519"
            key.verify(signature, data)
    except InvalidSignature:
        return "signature does not verify with the signer's public key"
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        return f"signature cannot be checked: {exc}"[:300]
    return None
