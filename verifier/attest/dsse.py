"""DSSE envelopes (https://github.com/secure-systems-lab/dsse), signed with a PEM key file.

Keys: Ed25519 or ECDSA P-256 (signature: ASN.1 DER over SHA-256, the ``ecdsa-sha2-nistp256``
scheme of securesystemslib), loaded with ``cryptography``. The ``keyid`` is the sha256 of the
public key's DER SubjectPublicKeyInfo, so anyone holding the public key can recompute it.

The signature covers ``PAE(payloadType, payload)``::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from verifier.errors import BivError, UsageError
from verifier.record import record

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_ENVELOPE_BYTES = 16 << 20
MAX_SIGNATURES = 16

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class AttestationError(BivError):
    """An attestation that does not verify (bad signature, wrong subject, bad format).

    Exit code 1: the thing checked failed verification (not a usage error).
    """

    exit_code = 1


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def _read_pem(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {what}: {e.strerror or e}", where=path) from None
    if len(data) > 1 << 20:
        raise UsageError(f"{what} is too large to be a PEM key", where=path)
    return data


def load_private_key(path: str, password: bytes | None = None) -> PrivateKey:
    """An Ed25519 or ECDSA P-256 private key from a PEM file (PKCS#8 or traditional)."""
    data = _read_pem(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise UsageError(f"not a usable PEM private key ({e})", where=path) from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise UsageError("signing key must be Ed25519 or ECDSA P-256", where=path)


def load_public_key(path: str) -> PublicKey:
    """An Ed25519 or ECDSA P-256 public key from a PEM file (also accepts a private key)."""
    data = _read_pem(path, "public key")
    key: Any
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise UsageError(f"not a usable PEM public key ({e})", where=path) from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise UsageError("public key must be Ed25519 or ECDSA P-256", where=path)


def keyid(public_key: PublicKey) -> str:
    """sha256 of the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def scheme_of(public_key: PublicKey) -> str:
    """securesystemslib's name for the key's signature scheme."""
    return "ed25519" if isinstance(public_key, ed25519.Ed25519PublicKey) else "ecdsa-sha2-nistp256"


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _verify(key: PublicKey, sig: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@record
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": k, "sig": base64.b64encode(s).decode("ascii")} for k, s in self.signatures
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: object) -> Envelope:
        if not isinstance(d, dict):
            raise AttestationError("a DSSE envelope must be a JSON object")
        try:
            ptype = d["payloadType"]
            payload = base64.b64decode(d["payload"], validate=True)
            sigs = tuple(
                (str(s.get("keyid", "")), base64.b64decode(s["sig"], validate=True))
                for s in d["signatures"]
            )
        except (KeyError, TypeError, AttributeError, binascii.Error) as e:
            raise AttestationError(f"not a DSSE envelope ({type(e).__name__}: {e})") from None
        if not isinstance(ptype, str):
            raise AttestationError("payloadType must be a string")
        if not sigs:
            raise AttestationError("the DSSE envelope carries no signature")
        if len(sigs) > MAX_SIGNATURES:
            raise AttestationError(f"more than {MAX_SIGNATURES} signatures in the envelope")
        return cls(ptype, payload, sigs)


def sign_envelope(
    payload: bytes, key: PrivateKey, payload_type: str = INTOTO_PAYLOAD_TYPE
) -> Envelope:
    sig = _sign(key, pae(payload_type, payload))
    return Envelope(payload_type, payload, ((keyid(key.public_key()), sig),))


def verify_envelope(env: Envelope, key: PublicKey) -> str:
    """Check that ``key`` signed ``env``; return its keyid. Raises ``AttestationError``."""
    data = pae(env.payload_type, env.payload)
    kid = keyid(key)
    # keyid is only a hint (DSSE spec): try every signature, ours first
    ordered = sorted(env.signatures, key=lambda ks: ks[0] != kid)
    for _, sig in ordered:
        if _verify(key, sig, data):
            return kid
    raise AttestationError(
        f"no signature in the envelope verifies with the given key (keyid {kid[:16]}...)"
    )


def read_envelope_json(path: str) -> Any:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_ENVELOPE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read attestation: {e.strerror or e}", where=path) from None
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise AttestationError("attestation file too large", where=path)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise AttestationError(f"not JSON: {e}", where=path) from None
