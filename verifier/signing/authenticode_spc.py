"""One Authenticode PKCS#7 and the signatures nested in it, parsed as slices of its bytes.

Each signature is a SignedData whose content is an ``SpcIndirectDataContent`` (what the
signer's messageDigest covers) holding the file's Authenticode digest; its signer may carry
nested signatures (unauthenticated attribute 1.3.6.1.4.1.311.2.4.1, what ``signtool /as``
and ``osslsigncode -nest`` append), each parsed the same way, depth- and count-capped. Parsed
values are kept as the bytes they were found as, never re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from verifier.errors import MalformedInputError
from verifier.signing import asn1, cms
from verifier.signing.algorithms import digest_name
from verifier.signing.authenticode_table import MAX_DER
from verifier.signing.certs import Cert, algorithm_id

SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
NESTED_SIGNATURE = "1.3.6.1.4.1.311.2.4.1"
MAX_SIGNATURES = 16
MAX_NEST_DEPTH = 4
DIGESTS = ("md5", "sha1", "sha256", "sha384", "sha512")


@dataclass
class ParsedSignature:
    """One PKCS#7 signature (the primary one or a nested one)."""

    role: str  # "primary", "nested 1", "nested 1.1"...
    der: bytes  # this signature's PKCS#7, as found in the file
    der_offset: int  # its absolute file offset
    signed_data: cms.SignedData | None = None
    signer_info: cms.SignerInfo | None = None
    spc_content: bytes = b""  # SpcIndirectDataContent value octets (what messageDigest covers)
    digest_algorithm: str | None = None
    signed_digest: bytes = b""
    certs: tuple[Cert, ...] = ()
    errors: list[str] = field(default_factory=list)

    @property
    def range(self) -> tuple[int, int]:
        """(file offset, length) of this signature's PKCS#7."""
        return (self.der_offset, len(self.der))


def spc_digest(element: bytes) -> tuple[str | None, str, bytes]:
    """(hashlib name, OID, signed digest) of an SpcIndirectDataContent element."""
    doc = asn1.parse(element)
    k = doc.children(doc.top)
    if len(k) != 2 or k[1].tag != asn1.SEQUENCE:
        raise MalformedInputError("malformed SpcIndirectDataContent")
    di = doc.children(k[1])
    if len(di) != 2 or di[1].tag != asn1.OCTET_STRING:
        raise MalformedInputError("malformed DigestInfo in SpcIndirectDataContent")
    alg = algorithm_id(doc, di[0])
    return digest_name(alg.oid), alg.oid, doc.value(di[1])


def _read(sig: ParsedSignature) -> cms.SignerInfo:
    """Fill ``sig`` from its DER; its one SignerInfo (raises ``MalformedInputError``)."""
    der = sig.der
    if len(der) > MAX_DER:
        raise MalformedInputError(f"PKCS#7 larger than {MAX_DER} bytes")
    sd = cms.parse_signed_data(der)
    certs, bad = cms.load_certs(sd.certificates)
    sig.errors.extend(bad)
    sig.certs = certs
    if sd.content_type != SPC_INDIRECT_DATA or sd.content_element is None:
        raise MalformedInputError(f"content {sd.content_type} is not SpcIndirectDataContent")
    sig.spc_content = sd.content or b""
    alg, alg_oid, sig.signed_digest = spc_digest(sd.content_element)
    if alg not in DIGESTS:
        raise MalformedInputError(f"unsupported Authenticode digest algorithm {alg_oid}")
    sig.digest_algorithm = alg
    if len(sd.signer_infos) != 1:
        raise MalformedInputError(
            f"{len(sd.signer_infos)} SignerInfos (Authenticode needs exactly one)"
        )
    sig.signed_data = sd
    sig.signer_info = sd.signer_infos[0]
    return sig.signer_info


def parse_signature(
    der: bytes, role: str, depth: int, der_offset: int, out: list[ParsedSignature]
) -> None:
    """Parse one PKCS#7 (slices of its own bytes, nothing re-encoded) and its nested ones,
    appending them to ``out`` (this one first). Never raises: problems go to ``errors``."""
    sig = ParsedSignature(role, der, der_offset)
    out.append(sig)
    try:
        nested = _read(sig).unsigned(NESTED_SIGNATURE)
        if nested and depth >= MAX_NEST_DEPTH:
            sig.errors.append("nested signatures nested too deeply; inner ones ignored")
            nested = []
        for i, v in enumerate(nested, 1):
            if len(out) >= MAX_SIGNATURES:
                sig.errors.append(f"more than {MAX_SIGNATURES} signatures; the rest ignored")
                break
            name = f"nested {i}" if role == "primary" else f"{role}.{i}"
            parse_signature(v.raw, name, depth + 1, der_offset + v.offset, out)
    except MalformedInputError as exc:
        sig.errors.append(exc.message[:300])
        sig.signed_data = None
        sig.signer_info = None
