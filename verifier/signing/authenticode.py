"""Authenticode in depth: the PE certificate table, PKCS#7 SignedData, nested signatures,
timestamps, chains, and what the signature does not cover.

Two calls (``binary.analyze`` makes them around its single streaming pass over the file):

``parse_table(data, ...)``
    Walks the WIN_CERTIFICATE entries of the certificate table (``data`` = the table's bytes
    as found in the file), parses each PKCS#7 (bounded: DER size, depth, element and
    certificate counts) with asn1crypto, collects nested signatures, and records structural
    anomalies (padding after the DER: CVE-2013-3900, data after the table, several entries).
    Never raises on bad input. ``CertificateTable.digest_algorithms`` says which Authenticode
    digests (hashlib names) the caller must compute.

``verify(table, digests, ...)``
    Compares the signed digests with the computed ones, verifies every signer's signature over
    its authenticated attributes (RSA PKCS#1 v1.5 / PSS, ECDSA, DSA via ``cryptography``),
    verifies legacy countersignatures and RFC 3161 timestamps, builds chains (code signing EKU
    for signers, time stamping EKU for TSAs) to the trust store at the proven signing time (or
    ``at``, or now), and returns ``SignatureFacts`` plus anomalies.

``primary_container_sha256`` canonical form: when the primary signer carries nested
signatures (unauthenticated attribute 1.3.6.1.4.1.311.2.4.1, what ``signtool /as`` and
``osslsigncode -nest`` append), the attribute is cut out of the primary PKCS#7's DER (its
ancestors' lengths re-encoded, an emptied unsignedAttrs field removed), the WIN_CERTIFICATE is
rebuilt with the same dwLength convention (exact or 8-aligned) and zero alignment padding
(unless the original slack was not clean alignment, in which case it is kept verbatim), and
other entries are kept as they are. Without nested signatures it equals ``container_sha256``.
Every nested signature is set aside (OpenSSL re-sorts the SET OF values, so "the one appended
last" cannot be told by position); ``SignatureFacts.nested_sha256`` lists the sha256 of each
nested PKCS#7 so a comparison can check that upstream's own nested signatures are still there,
unchanged: same ``primary_container_sha256`` and upstream's ``nested_sha256`` a subset of the
shipped file's = a vendor appended a signature; otherwise the container was modified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from verifier.errors import MalformedInputError
from verifier.model import Anomaly, SignatureFacts, SignatureKind, Signer
from verifier.signing import asn1
from verifier.signing.trust import (
    CODE_SIGNING,
    TIME_STAMPING,
    Cert,
    ChainResult,
    RootStore,
    TrustConfig,
    build_chain,
    iso,
    now_utc,
)

SIGNED_DATA = "1.2.840.113549.1.7.2"
SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
NESTED_SIGNATURE = "1.3.6.1.4.1.311.2.4.1"
COUNTER_SIGNATURE = "1.2.840.113549.1.9.6"
RFC3161_TIMESTAMP = "1.3.6.1.4.1.311.3.3.1"
TST_INFO = "1.2.840.113549.1.9.16.1.4"
_TIMESTAMP_ATTRS = {COUNTER_SIGNATURE, RFC3161_TIMESTAMP}
_NESTED_OID_DER = bytes.fromhex("060a2b060104018237020401")

WIN_CERT_REVISION_2 = 0x0200
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002

MAX_TABLE = 64 << 20  # bytes of certificate table looked at
MAX_DER = 16 << 20
MAX_ENTRIES = 16
MAX_CERTS = 64
MAX_SIGNATURES = 16
MAX_NEST_DEPTH = 4
# Unauthenticated attributes other than nested signatures and timestamps, in bytes: a few
# hundred is normal (e.g. an opus-info blob); kilobytes are room for a payload.
OVERSIZED_UNAUTH = 4096

DIGESTS = ("md5", "sha1", "sha256", "sha384", "sha512")
WEAK = {"md5", "sha1"}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

PADDING_NOTE = (
    "Windows' default Authenticode check (WinVerifyTrust) accepts this file because the "
    "digest skips the certificate table; it fails when EnableCertPaddingCheck is on "
    "(CVE-2013-3900)"
)


# --- parse -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One WIN_CERTIFICATE. Offsets are absolute file offsets."""

    offset: int
    length: int  # dwLength
    revision: int
    cert_type: int
    der_offset: int
    der: bytes | None  # the PKCS#7 DER (None when it could not be delimited)
    slack_offset: int  # first byte after the DER (or after the header)
    slack: bytes  # bytes after the DER up to the next entry / end of the table
    allowed_slack: int  # zero bytes 8-byte alignment allows there

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "length": self.length,
            "revision": f"0x{self.revision:04x}",
            "type": f"0x{self.cert_type:04x}",
            "der_offset": self.der_offset,
            "der_length": None if self.der is None else len(self.der),
            "slack_offset": self.slack_offset,
            "slack_length": len(self.slack),
            "alignment_allowed": self.allowed_slack,
        }


@dataclass
class ParsedSignature:
    """One PKCS#7 signature (the primary one or a nested one)."""

    role: str  # "primary", "nested 1", "nested 1.1"...
    der: bytes
    entry_der: bytes  # DER of the WIN_CERTIFICATE's PKCS#7 it was found in (for ranges)
    entry_der_offset: int
    signed_data: cms.SignedData | None = None
    spc_content: bytes = b""  # SpcIndirectDataContent value octets (what messageDigest covers)
    digest_algorithm: str | None = None
    signed_digest: bytes = b""
    certs: tuple[Cert, ...] = ()
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CertificateTable:
    table_offset: int
    dir_size: int
    file_size: int
    container_sha256: str
    primary_container_sha256: str
    entries: tuple[Entry, ...]
    signatures: tuple[ParsedSignature, ...]  # primary first, then nested in document order
    problems: tuple[Anomaly, ...]

    @property
    def digest_algorithms(self) -> frozenset[str]:
        return frozenset(s.digest_algorithm for s in self.signatures if s.digest_algorithm)


def _align8(n: int) -> int:
    return (n + 7) & ~7


def shannon_entropy(data: bytes) -> float:
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


def _anomaly(
    rule: str, message: str, ranges: Sequence[tuple[int, int]] = (), **extra: Any
) -> Anomaly:
    ev: dict[str, Any] = {"ranges": [{"offset": o, "length": n} for o, n in ranges if n > 0]}
    ev.update(extra)
    return Anomaly(rule, message, ev)


def parse_table(
    data: bytes, *, table_offset: int, dir_size: int, file_size: int, last_section_end: int
) -> CertificateTable:
    """Parse the certificate table (``data``: its bytes as read from the file). Never raises."""
    data = bytes(data[:MAX_TABLE])
    problems: list[Anomaly] = []
    table_end = table_offset + dir_size
    if table_end > file_size:
        problems.append(
            _anomaly(
                "invalid-signature",
                f"certificate table ({dir_size} bytes at {table_offset}) runs past the end of "
                f"the file ({file_size} bytes)",
                [(table_offset, max(0, file_size - table_offset))],
            )
        )
    elif table_end < file_size:
        problems.append(
            _anomaly(
                "data-after-signature",
                f"{file_size - table_end} bytes after the certificate table: the certificate "
                "table is not at the end of the file",
                [(table_end, file_size - table_end)],
            )
        )
    if table_offset < last_section_end:
        problems.append(
            _anomaly(
                "invalid-signature",
                f"certificate table at {table_offset} overlaps section data (which ends at "
                f"{last_section_end}); the digest would skip those bytes",
                [(table_offset, min(dir_size, last_section_end - table_offset))],
            )
        )
    usable = min(dir_size, len(data), max(0, file_size - table_offset))
    entries, entry_problems = _walk_entries(data, usable, table_offset)
    problems.extend(entry_problems)
    if not entries and not any(p.rule == "invalid-signature" for p in problems):
        problems.append(
            _anomaly(
                "invalid-signature",
                f"no WIN_CERTIFICATE in the {dir_size}-byte certificate table",
                [(table_offset, usable)],
            )
        )
    if len(entries) > 1:
        problems.append(
            _anomaly(
                "multiple-certificates",
                f"{len(entries)} WIN_CERTIFICATE entries; Windows uses only the first, the "
                "others are unverified bytes",
                [(e.offset, e.length) for e in entries[1:]],
            )
        )
    signatures: list[ParsedSignature] = []
    for i, e in enumerate(entries):
        if e.der is None:
            continue
        if i == 0 and e.cert_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            problems.append(
                _anomaly(
                    "invalid-signature",
                    f"WIN_CERTIFICATE type 0x{e.cert_type:04x} is not PKCS_SIGNED_DATA",
                    [(e.offset, e.length)],
                )
            )
            continue
        if i > 0:
            continue  # Windows ignores them; multiple-certificates reports them
        _parse_signature(e.der, "primary", 0, e.der, e.der_offset, signatures)
    for s in signatures:
        if s.errors and s.signed_data is None:
            problems.append(
                _anomaly(
                    "invalid-signature",
                    f"{s.role} signature is malformed: {'; '.join(s.errors)}",
                    [_range_of(s)],
                )
            )
    whole = hashlib.sha256(data[:usable] if usable < len(data) else data).hexdigest()
    primary = _primary_container(data[:usable], entries, table_offset) or whole
    return CertificateTable(
        table_offset,
        dir_size,
        file_size,
        whole,
        primary,
        tuple(entries),
        tuple(signatures),
        tuple(problems),
    )


def _range_of(s: ParsedSignature) -> tuple[int, int]:
    pos = s.entry_der.find(s.der) if s.der is not s.entry_der else 0
    return (s.entry_der_offset + max(pos, 0), len(s.der))


def _plausible_entry(data: bytes, pos: int, usable: int) -> bool:
    """A well-formed WIN_CERTIFICATE header at ``pos`` whose body starts with a DER SEQUENCE."""
    length, rev, ctype = struct.unpack_from("<IHH", data, pos)
    if length < 10 or pos + length > usable or rev not in (0x0100, 0x0200) or ctype > 4:
        return False
    try:
        return asn1.read_tlv(data, pos + 8, pos + length).tag == 0x30
    except MalformedInputError:
        return False


def _walk_entries(data: bytes, usable: int, base: int) -> tuple[list[Entry], list[Anomaly]]:
    entries: list[Entry] = []
    problems: list[Anomaly] = []
    pos = 0
    raw: list[tuple[int, int, int, int, int, int | None]] = []  # pos, len, rev, type, der_end
    while pos < usable:
        if len(raw) >= MAX_ENTRIES:
            problems.append(
                _anomaly(
                    "invalid-signature",
                    f"more than {MAX_ENTRIES} WIN_CERTIFICATE entries",
                    [(base + pos, usable - pos)],
                )
            )
            break
        if pos + 8 > usable:
            if not raw:
                problems.append(
                    _anomaly(
                        "invalid-signature",
                        "certificate table too short for a WIN_CERTIFICATE header",
                        [(base + pos, usable - pos)],
                    )
                )
            break
        length, rev, ctype = struct.unpack_from("<IHH", data, pos)
        if raw and not _plausible_entry(data, pos, usable):
            # Not a second WIN_CERTIFICATE: bytes after the first one, judged as its slack
            # (signature-padding), the way Windows skips them by default.
            break
        if length < 8 or pos + length > usable:
            if not raw or length != 0:
                problems.append(
                    _anomaly(
                        "invalid-signature",
                        f"WIN_CERTIFICATE at {base + pos}: dwLength {length} does not fit the "
                        f"{usable - pos} bytes left in the table",
                        [(base + pos, usable - pos)],
                    )
                )
            if raw:
                break
            # A first entry that lies about its length: take what is there, so the PKCS#7 can
            # still be looked at, but it is already an invalid signature.
            length = usable - pos
            if length < 8:
                break
        der_end: int | None = None
        if not raw and rev != WIN_CERT_REVISION_2 and rev != 0x0100:
            problems.append(
                _anomaly(
                    "invalid-signature",
                    f"WIN_CERTIFICATE at {base + pos}: unknown revision 0x{rev:04x}",
                    [(base + pos, 8)],
                )
            )
        try:
            if length - 8 > MAX_DER:
                raise MalformedInputError(f"PKCS#7 larger than {MAX_DER} bytes")
            tlv = asn1.read_tlv(data, pos + 8, pos + length)
            if tlv.tag != 0x30:
                raise MalformedInputError("PKCS#7 does not start with a SEQUENCE")
            der_end = tlv.end
        except MalformedInputError as exc:
            problems.append(
                _anomaly(
                    "invalid-signature",
                    f"WIN_CERTIFICATE at {base + pos}: {exc.message}",
                    [(base + pos, length)],
                )
            )
        raw.append((pos, length, rev, ctype, pos + 8, der_end))
        pos += _align8(length)
    for i, (p, length, rev, ctype, der_start, der_end) in enumerate(raw):
        nxt = raw[i + 1][0] if i + 1 < len(raw) else usable
        slack_start = der_end if der_end is not None else min(p + length, usable)
        slack_end = max(nxt, slack_start)
        slack = data[slack_start:slack_end]
        allowed = (-slack_start) % 8
        entries.append(
            Entry(
                offset=base + p,
                length=length,
                revision=rev,
                cert_type=ctype,
                der_offset=base + der_start,
                der=None if der_end is None else data[der_start:der_end],
                slack_offset=base + slack_start,
                slack=slack,
                allowed_slack=allowed,
            )
        )
        if der_end is not None and (len(slack) > allowed or any(slack)):
            problems.append(_padding_anomaly(entries[-1], base + usable))
    return entries, problems


def _padding_anomaly(e: Entry, table_end: int) -> Anomaly:
    slack = e.slack
    nz = [i for i, b in enumerate(slack) if b]
    if nz:
        lo, hi = nz[0], nz[-1] + 1
    else:
        lo, hi = e.allowed_slack, len(slack)
    payload = slack[lo:hi]
    entry_end = e.offset + e.length
    why = []
    if nz:
        why.append(f"{len(payload)} non-zero bytes")
    if len(slack) > e.allowed_slack:
        why.append(f"{len(slack)} bytes where 8-byte alignment needs {e.allowed_slack}")
    if entry_end - (e.slack_offset + len(slack)) < -7 or (
        e.slack_offset + len(slack) - _align8(entry_end) > 0
    ):
        why.append(f"dwLength ends at {entry_end} but the directory runs to {table_end}")
    return _anomaly(
        "signature-padding",
        f"bytes after the PKCS#7 signature inside the certificate table at {e.slack_offset}: "
        f"{', '.join(why)}. {PADDING_NOTE}.",
        [(e.slack_offset, len(slack))],
        windows_default_check="passes",
        enable_cert_padding_check="fails",
        payload={
            "offset": e.slack_offset + lo,
            "length": len(payload),
            "entropy": round(shannon_entropy(payload), 3),
            "first_bytes": payload[:32].hex(),
        },
        alignment_allowed=e.allowed_slack,
        dw_length=e.length,
    )


def _parse_signature(
    der: bytes,
    role: str,
    depth: int,
    entry_der: bytes,
    entry_der_offset: int,
    out: list[ParsedSignature],
) -> None:
    sig = ParsedSignature(role, der, entry_der, entry_der_offset)
    out.append(sig)
    try:
        if len(der) > MAX_DER:
            raise MalformedInputError(f"PKCS#7 larger than {MAX_DER} bytes")
        asn1.check_der(der)
        ci = cms.ContentInfo.load(der)
        if ci["content_type"].dotted != SIGNED_DATA:
            raise MalformedInputError(f"content type {ci['content_type'].dotted} is not signedData")
        sd = ci["content"]
        certs_field = sd["certificates"]
        n_certs = len(certs_field) if _present(certs_field) else 0
        if n_certs > MAX_CERTS:
            raise MalformedInputError(f"{n_certs} certificates (limit {MAX_CERTS})")
        certs = []
        for c in certs_field if n_certs else ():
            if c.name != "certificate":
                continue
            try:
                certs.append(Cert.from_der(c.chosen.dump()))
            except ValueError as exc:
                sig.errors.append(f"unparsable certificate: {exc}")
        sig.certs = tuple(certs)
        eci = sd["encap_content_info"]
        if eci["content_type"].dotted != SPC_INDIRECT_DATA:
            raise MalformedInputError(
                f"content {eci['content_type'].dotted} is not SpcIndirectDataContent"
            )
        raw = asn1.unwrap_explicit(eci["content"].dump())
        tlv = asn1.read_tlv(raw, 0)
        spc = asn1.SpcIndirectDataContent.load(raw[: tlv.end])
        sig.spc_content = raw[tlv.content : tlv.end]
        alg = spc["message_digest"]["digest_algorithm"]["algorithm"].native
        sig.signed_digest = spc["message_digest"]["digest"].native
        if alg not in DIGESTS:
            raise MalformedInputError(f"unsupported Authenticode digest algorithm {alg}")
        sig.digest_algorithm = alg
        sis = sd["signer_infos"]
        if len(sis) != 1:
            raise MalformedInputError(f"{len(sis)} SignerInfos (Authenticode needs exactly one)")
        sig.signed_data = sd
        si = sis[0]
        nested_vals: list[bytes] = []
        if _present(si["unsigned_attrs"]):
            for attr in si["unsigned_attrs"]:
                if attr["type"].dotted == NESTED_SIGNATURE:
                    nested_vals.extend(v.dump() for v in attr["values"])
        if nested_vals and depth >= MAX_NEST_DEPTH:
            sig.errors.append("nested signatures nested too deeply; inner ones ignored")
            nested_vals = []
        for i, v in enumerate(nested_vals, 1):
            if len(out) >= MAX_SIGNATURES:
                sig.errors.append(f"more than {MAX_SIGNATURES} signatures; the rest ignored")
                break
            name = f"nested {i}" if role == "primary" else f"{role}.{i}"
            _parse_signature(v, name, depth + 1, entry_der, entry_der_offset, out)
    except (MalformedInputError, ValueError, TypeError, KeyError, RecursionError) as exc:
        msg = (
            exc.message if isinstance(exc, MalformedInputError) else f"{type(exc).__name__}: {exc}"
        )
        sig.errors.append(msg[:300])
        sig.signed_data = None


# --- primary container ------------------------------------------------------------------------


def _strip_nested(der: bytes) -> bytes | None:
    """The PKCS#7 with its nested-signature attribute(s) cut out, or None if it has none."""
    try:
        changed = False
        for _ in range(8):
            top = asn1.read_tlv(der, 0)
            ci = asn1.children(der, top)
            wrap = ci[1]
            sd = asn1.read_tlv(der, wrap.content, wrap.end)
            sd_children = asn1.children(der, sd)
            sis = sd_children[-1]
            si = asn1.children(der, sis)[0]
            si_children = asn1.children(der, si)
            unauth = si_children[-1]
            if unauth.tag != 0xA1:
                break
            attrs = asn1.children(der, unauth)
            nested = [
                a
                for a in attrs
                if der[a.content : a.content + len(_NESTED_OID_DER)] == _NESTED_OID_DER
            ]
            if not nested:
                break
            path = [top, wrap, sd, sis, si]
            if len(attrs) == 1:
                der = asn1.splice_out(der, path, unauth)
            else:
                der = asn1.splice_out(der, [*path, unauth], nested[0])
            changed = True
        return der if changed else None
    except (MalformedInputError, IndexError):
        return None


def _primary_container(data: bytes, entries: Sequence[Entry], base: int) -> str | None:
    if not entries or entries[0].der is None:
        return None
    e = entries[0]
    if e.der is None:
        return None
    stripped = _strip_nested(e.der)
    if stripped is None:
        return None
    old_der_len = len(e.der)
    exact = e.length == 8 + old_der_len
    dw = 8 + len(stripped) if exact else _align8(8 + len(stripped))
    clean = len(e.slack) <= e.allowed_slack and not any(e.slack)
    if clean:
        body = stripped + bytes(_align8(8 + len(stripped)) - 8 - len(stripped))
        if not exact:
            dw = 8 + len(body)
    else:
        body = stripped + e.slack
        dw = e.length - old_der_len + len(stripped)
    head = struct.pack("<IHH", dw, e.revision, e.cert_type)
    rest_start = (entries[1].offset - base) if len(entries) > 1 else len(data)
    out = head + body + data[rest_start:]
    return hashlib.sha256(out).hexdigest()


# --- verify ------------------------------------------------------------------------------------


def _present(value: Any) -> bool:
    """An optional asn1crypto field that is there (without computing its ``.native``)."""
    return not isinstance(value, core.Void)


def _hash(alg: str, data: bytes) -> bytes:
    return hashlib.new(alg, data).digest()


def _attr(attrs: Any, oid: str) -> list[Any]:
    if not _present(attrs):
        return []
    out: list[Any] = []
    for a in attrs:
        if a["type"].dotted == oid:
            out.extend(a["values"])
    return out


def _find_cert(sid: Any, certs: Sequence[Cert]) -> Cert | None:
    if sid.name == "issuer_and_serial_number":
        serial = sid.chosen["serial_number"].native
        issuer_der = sid.chosen["issuer"].dump()
        for c in certs:
            if c.obj.serial_number == serial and c.obj.issuer.public_bytes() == issuer_der:
                return c
        for c in certs:  # name encodings can differ (string types); serial + name text
            if c.obj.serial_number == serial:
                return c
        return None
    if sid.name == "subject_key_identifier":
        ski = sid.chosen.native
        for c in certs:
            try:
                ext = c.obj.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except (x509.ExtensionNotFound, ValueError):
                continue
            if ext.value.digest == ski:
                return c
    return None


def _signed_attrs_bytes(si: Any) -> bytes:
    raw: bytes = si["signed_attrs"].dump()
    return b"\x31" + raw[1:]


def _verify_signer_info(si: Any, cert: Cert, data: bytes) -> str | None:
    """Check ``si``'s signature over ``data`` with ``cert``'s key; None when it verifies."""
    digest_name = si["digest_algorithm"]["algorithm"].native
    sig_alg = si["signature_algorithm"]
    try:
        kind = sig_alg.signature_algo
    except ValueError:
        return f"unsupported signature algorithm {sig_alg['algorithm'].dotted}"
    try:
        h_name = sig_alg.hash_algo
    except ValueError:
        h_name = digest_name
    if kind == "rsassa_pss":
        params = sig_alg["parameters"]
        h_name = params["hash_algorithm"]["algorithm"].native
    hcls = _HASHES.get(h_name)
    if hcls is None:
        return f"unsupported hash {h_name}"
    signature = si["signature"].native
    try:
        key = cert.obj.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            if kind == "rsassa_pss":
                params = sig_alg["parameters"]
                mgf_h = _HASHES.get(params["mask_gen_algorithm"]["parameters"]["algorithm"].native)
                if mgf_h is None:
                    return "unsupported PSS MGF hash"
                key.verify(
                    signature,
                    data,
                    padding.PSS(padding.MGF1(mgf_h()), params["salt_length"].native),
                    hcls(),
                )
            else:
                key.verify(signature, data, padding.PKCS1v15(), hcls())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hcls()))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, hcls())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return f"unsupported key type {type(key).__name__}"
    except InvalidSignature:
        return "signature does not verify with the signer's public key"
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        return f"signature cannot be checked: {exc}"
    return None


def _check_attributes(
    si: Any, content: bytes, content_type: str | None
) -> tuple[list[str], dict[str, Any]]:
    """messageDigest (and contentType) of ``si``'s signed attributes against ``content``."""
    errs: list[str] = []
    info: dict[str, Any] = {}
    if not _present(si["signed_attrs"]):
        return ["no authenticated attributes"], info
    dalg = si["digest_algorithm"]["algorithm"].native
    if dalg not in _HASHES:
        return [f"unsupported digest {dalg}"], info
    md = _attr(si["signed_attrs"], "1.2.840.113549.1.9.4")
    if len(md) != 1:
        errs.append("messageDigest attribute missing or repeated")
    else:
        want = md[0].native
        got = _hash(dalg, content)
        info["message_digest_ok"] = want == got
        if want != got:
            errs.append("messageDigest does not match the signed content")
    if content_type is not None:
        ct = _attr(si["signed_attrs"], "1.2.840.113549.1.9.3")
        if len(ct) != 1 or ct[0].dotted != content_type:
            errs.append(f"contentType attribute is not {content_type}")
    return errs, info


@dataclass
class _Timestamp:
    kind: str
    time: dt.datetime | None
    signer: Cert | None
    valid: bool
    reason: str
    chain: ChainResult | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "time": iso(self.time),
            "signer": self.signer.summary() if self.signer else None,
            "valid": self.valid,
            "reason": self.reason,
            "chain": self.chain.to_dict() if self.chain else None,
        }


def _legacy_safely(
    cs: Any, signature: bytes, certs: Sequence[Cert], roots: RootStore
) -> _Timestamp:
    try:
        return _legacy_timestamp(cs, signature, certs, roots)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        return _Timestamp(
            "legacy", None, None, False, f"malformed countersignature: {exc}"[:300], None
        )


def _legacy_timestamp(
    cs: Any, signature: bytes, certs: Sequence[Cert], roots: RootStore
) -> _Timestamp:
    cert = _find_cert(cs["sid"], certs)
    t = None
    st = _attr(cs["signed_attrs"], "1.2.840.113549.1.9.5")
    if st:
        t = st[0].native
    if cert is None:
        return _Timestamp("legacy", t, None, False, "countersigner certificate not found", None)
    errs, _ = _check_attributes(cs, signature, None)
    if not errs:
        bad = _verify_signer_info(cs, cert, _signed_attrs_bytes(cs))
        if bad:
            errs.append(bad)
    if t is None:
        errs.append("no signingTime")
    if errs:
        return _Timestamp("legacy", t, cert, False, "; ".join(errs), None)
    chain = build_chain(cert, certs, roots, TIME_STAMPING, t)
    return _Timestamp(
        "legacy", t, cert, chain.trusted, "ok" if chain.trusted else chain.reason, chain
    )


def _ess_mismatch(si: Any, cert: Cert) -> str | None:
    """RFC 3161/5035: the ESS signingCertificate(V2) attribute must name the TSA certificate."""
    for oid, default_alg in (
        ("1.2.840.113549.1.9.16.2.47", "sha256"),  # signingCertificateV2
        ("1.2.840.113549.1.9.16.2.12", "sha1"),  # signingCertificate
    ):
        vals = _attr(si["signed_attrs"], oid)
        if not vals:
            continue
        certs = vals[0]["certs"]
        if not len(certs):
            return "empty ESS signingCertificate attribute"
        first = certs[0]
        alg = default_alg
        if oid.endswith(".47"):
            alg = first["hash_algorithm"]["algorithm"].native
        if alg not in _HASHES:
            return f"unsupported ESS certificate hash {alg}"
        if first["cert_hash"].native != _hash(alg, cert.der):
            return "ESS signingCertificate does not match the TSA certificate"
        return None
    return None


def _rfc3161_timestamp(
    token: Any, signature: bytes, outer_certs: Sequence[Cert], roots: RootStore
) -> _Timestamp:
    try:
        if token["content_type"].dotted != SIGNED_DATA:
            return _Timestamp("rfc3161", None, None, False, "token is not signedData", None)
        sd = token["content"]
        eci = sd["encap_content_info"]
        if eci["content_type"].dotted != TST_INFO:
            return _Timestamp("rfc3161", None, None, False, "token content is not TSTInfo", None)
        tst_der = eci["content"].contents if hasattr(eci["content"], "contents") else b""
        content = eci["content"]
        tst_der = content.chosen.contents if hasattr(content, "chosen") else content.contents
        tst = tsp.TSTInfo.load(tst_der)
        t = tst["gen_time"].native
        imprint = tst["message_imprint"]
        halg = imprint["hash_algorithm"]["algorithm"].native
        errs: list[str] = []
        if halg not in _HASHES:
            errs.append(f"unsupported imprint hash {halg}")
        elif imprint["hashed_message"].native != _hash(halg, signature):
            errs.append("messageImprint does not match the signature it timestamps")
        certs = list(outer_certs)
        if _present(sd["certificates"]):
            if len(sd["certificates"]) > MAX_CERTS:
                return _Timestamp("rfc3161", t, None, False, "too many certificates", None)
            for c in sd["certificates"]:
                if c.name == "certificate":
                    try:
                        certs.append(Cert.from_der(c.chosen.dump()))
                    except ValueError:
                        continue
        sis = sd["signer_infos"]
        if len(sis) != 1:
            return _Timestamp("rfc3161", t, None, False, "token needs exactly one signer", None)
        si = sis[0]
        cert = _find_cert(si["sid"], certs)
        if cert is None:
            return _Timestamp("rfc3161", t, None, False, "TSA certificate not found", None)
        e2, _ = _check_attributes(si, tst_der, TST_INFO)
        errs.extend(e2)
        ess = _ess_mismatch(si, cert)
        if ess:
            errs.append(ess)
        if not e2:
            bad = _verify_signer_info(si, cert, _signed_attrs_bytes(si))
            if bad:
                errs.append(bad)
        if errs:
            return _Timestamp("rfc3161", t, cert, False, "; ".join(errs), None)
        chain = build_chain(cert, certs, roots, TIME_STAMPING, t)
        return _Timestamp(
            "rfc3161", t, cert, chain.trusted, "ok" if chain.trusted else chain.reason, chain
        )
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        return _Timestamp("rfc3161", None, None, False, f"malformed token: {exc}"[:300], None)


def _signer(c: Cert) -> Signer:
    return Signer(subject=c.subject, issuer=c.issuer, serial=c.serial, sha256=c.sha256)


@dataclass
class _Result:
    role: str
    signer: Cert | None
    intact: bool
    trusted: bool
    errors: list[str]
    chain: ChainResult | None
    weak: bool
    other_unauth: list[tuple[str, int, int]]  # oid, size, absolute offset
    details: dict[str, Any]


def _verify_one(
    s: ParsedSignature,
    digests: Mapping[str, str],
    roots: RootStore,
    at: dt.datetime | None,
) -> _Result:
    d: dict[str, Any] = {"role": s.role, "digest_algorithm": s.digest_algorithm}
    errors = list(s.errors)
    res = _Result(s.role, None, False, False, errors, None, s.digest_algorithm in WEAK, [], d)
    sd = s.signed_data
    if sd is None:
        d["errors"] = errors
        return res
    computed = digests.get(s.digest_algorithm or "")
    d["signed_digest"] = s.signed_digest.hex()
    d["computed_digest"] = computed
    digest_ok = computed is not None and computed.lower() == s.signed_digest.hex()
    d["digest_ok"] = digest_ok
    if computed is None:
        errors.append(f"the file's {s.digest_algorithm} Authenticode digest was not computed")
    elif not digest_ok:
        errors.append("the file's Authenticode digest does not match the signed digest")
    si = sd["signer_infos"][0]
    cert = _find_cert(si["sid"], s.certs)
    res.signer = cert
    sig_ok = False
    if cert is None:
        errors.append("signer certificate not in the signature")
    else:
        d["signer"] = cert.summary()
        e2, _ = _check_attributes(si, s.spc_content, SPC_INDIRECT_DATA)
        errors.extend(e2)
        bad = None if e2 else _verify_signer_info(si, cert, _signed_attrs_bytes(si))
        if bad:
            errors.append(bad)
        sig_ok = not e2 and bad is None
    d["signature_ok"] = sig_ok
    # unauthenticated attributes: timestamps, nested signatures, the rest
    signature = si["signature"].native
    timestamps: list[_Timestamp] = []
    sizes = []
    if _present(si["unsigned_attrs"]):
        for a in si["unsigned_attrs"]:
            oid = a["type"].dotted
            raw = a.dump()
            sizes.append({"oid": oid, "size": len(raw)})
            if oid == COUNTER_SIGNATURE:
                for cs in a["values"]:
                    timestamps.append(_legacy_safely(cs, signature, s.certs, roots))
            elif oid == RFC3161_TIMESTAMP:
                for tok in a["values"]:
                    timestamps.append(_rfc3161_timestamp(tok, signature, s.certs, roots))
            elif oid != NESTED_SIGNATURE:
                pos = s.entry_der.find(raw)
                res.other_unauth.append((oid, len(raw), s.entry_der_offset + max(pos, 0)))
    d["unauthenticated_attributes"] = sizes
    d["timestamps"] = [t.to_dict() for t in timestamps]
    proven = next((t.time for t in timestamps if t.valid and t.time is not None), None)
    when = proven or at
    d["verified_at"] = iso(when or now_utc())
    d["time_source"] = "timestamp" if proven else ("--at" if at else "now")
    res.intact = digest_ok and sig_ok and not s.errors
    if cert is not None:
        chain = build_chain(cert, s.certs, roots, CODE_SIGNING, when)
        res.chain = chain
        res.trusted = chain.trusted
        d["chain"] = [c.summary() for c in chain.chain]
        d["trusted"] = {"ok": chain.trusted, "reason": chain.reason, "anchor": chain.anchor_source}
    d["errors"] = errors
    return res


def _verify_safely(
    s: ParsedSignature, digests: Mapping[str, str], roots: RootStore, at: dt.datetime | None
) -> _Result:
    """``_verify_one``, turning a parse failure deep inside the PKCS#7 into an error."""
    try:
        return _verify_one(s, digests, roots, at)
    except Exception as exc:  # hostile input must end in a verdict, whatever breaks
        msg = f"malformed signature: {type(exc).__name__}: {exc}"[:300]
        return _Result(s.role, None, False, False, [msg], None, False, [], {"errors": [msg]})


def verify(
    table: CertificateTable,
    digests: Mapping[str, str],
    *,
    pe_checksum_ok: bool,
    trust: TrustConfig | None,
    at: dt.datetime | None,
) -> tuple[SignatureFacts, tuple[Anomaly, ...]]:
    """Verify every signature of ``table`` against the file's Authenticode ``digests``."""
    cfg = trust if trust is not None else TrustConfig()
    when = at if at is not None else cfg.at
    anomalies: list[Anomaly] = list(table.problems)
    roots = cfg.roots()
    results = [_verify_safely(s, digests, roots, when) for s in table.signatures]
    for r, s in zip(results, table.signatures, strict=True):
        if not r.intact and s.signed_data is not None:
            anomalies.append(
                _anomaly(
                    "invalid-signature",
                    f"{r.role} signature: {'; '.join(r.errors) or 'not valid'}",
                    [_range_of(s)],
                    digest_algorithm=s.digest_algorithm,
                    signed_digest=r.details.get("signed_digest"),
                    computed_digest=r.details.get("computed_digest"),
                )
            )
        elif r.intact and not r.trusted:
            reason = r.chain.reason if r.chain else "no chain"
            bad_ts = [t for t in r.details.get("timestamps", []) if not t["valid"]]
            if bad_ts:
                reason += f" (timestamp not valid: {bad_ts[0]['reason']})"
            anomalies.append(
                _anomaly(
                    "untrusted-signer",
                    f"{r.role} signer {r.signer.subject if r.signer else '?'}: {reason}",
                    [_range_of(s)],
                    signer_actual=r.signer.subject if r.signer else None,
                )
            )
        other = sum(n for _, n, _ in r.other_unauth)
        if other > OVERSIZED_UNAUTH:
            anomalies.append(
                _anomaly(
                    "oversized-unauthenticated-attributes",
                    f"{r.role} signature carries {other} bytes of unauthenticated attributes "
                    "other than timestamps and nested signatures "
                    f"({', '.join(o for o, _, _ in r.other_unauth)})",
                    [(off, n) for _, n, off in r.other_unauth],
                    bytes=other,
                )
            )
    algs = {s.digest_algorithm for s in table.signatures if s.digest_algorithm}
    if algs and algs <= WEAK:
        anomalies.append(
            _anomaly(
                "weak-digest",
                f"the signature relies on {'/'.join(sorted(algs)).upper()} only",
                [],
                algorithms=sorted(algs),
            )
        )
    if not pe_checksum_ok:
        anomalies.append(_anomaly("pe-checksum-mismatch", "the PE checksum field is wrong"))
    primary = results[0] if results and results[0].role == "primary" else None
    valid = (
        bool(results)
        and all(r.intact and r.trusted for r in results)
        and not any(a.rule == "invalid-signature" for a in table.problems)
    )
    nested_signers = tuple(_signer(r.signer) for r in results[1:] if r.signer is not None)
    details: dict[str, Any] = {
        "table": {"offset": table.table_offset, "size": table.dir_size},
        "entries": [e.to_dict() for e in table.entries],
        "signatures": [r.details for r in results],
        "padding": [
            {
                "offset": e.slack_offset,
                "length": len(e.slack),
                "alignment_allowed": e.allowed_slack,
                "clean": len(e.slack) <= e.allowed_slack and not any(e.slack),
            }
            for e in table.entries
        ],
    }
    facts = SignatureFacts(
        kind=SignatureKind.AUTHENTICODE,
        signed=True,
        valid=valid,
        signers=(_signer(primary.signer),) if primary and primary.signer else (),
        anomalies=tuple(dict.fromkeys(a.rule for a in anomalies)),
        container_sha256=table.container_sha256,
        primary_container_sha256=table.primary_container_sha256,
        nested_signers=nested_signers,
        details=details,
        nested_sha256=tuple(
            sorted(hashlib.sha256(x.der).hexdigest() for x in table.signatures[1:])
        ),
    )
    return facts, tuple(anomalies)
