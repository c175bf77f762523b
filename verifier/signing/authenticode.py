"""Authenticode in depth: the PE certificate table, PKCS#7 SignedData, nested signatures,
timestamps, chains, and what the signature does not cover.

Two calls (``binary.analyze`` makes them around its single streaming pass over the file):

``parse_table(data, ...)``
    Walks the WIN_CERTIFICATE entries of the certificate table (``data`` = the table's bytes
    as found in the file), parses each PKCS#7 with the bounded reader (``signing.cms``: DER
    size, depth, element and certificate counts capped; every part kept as the slice of bytes
    it was found as, never re-encoded), collects nested signatures, and records structural
    anomalies (padding after the DER: CVE-2013-3900, data after the table, several entries).
    Never raises on bad input. ``CertificateTable.digest_algorithms`` says which Authenticode
    digests (hashlib names) the caller must compute.

``verify(table, digests, ...)``
    Compares the signed digests with the computed ones, verifies every signer's signature over
    its authenticated attributes (``signing.algorithms``), verifies legacy countersignatures
    and RFC 3161 timestamps (``signing.timestamp``), builds chains with the chain engine
    (``signing.chain``: code signing EKU for signers, time stamping EKU for TSAs) at the time a
    valid timestamp proves (else ``at``, else now), and returns ``SignatureFacts`` plus
    anomalies. The primary signature decides validity; nested ones are reported each on its
    own (``invalid-nested-signature`` when one fails under a valid primary).

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

from verifier.errors import MalformedInputError
from verifier.model import Anomaly, SignatureFacts, SignatureKind, Signer
from verifier.signing import asn1, cms, timestamp
from verifier.signing.algorithms import digest_name
from verifier.signing.certs import CODE_SIGNING, Cert, algorithm_id, iso
from verifier.signing.chain import ChainResult, build_chain
from verifier.signing.timestamp import COUNTER_SIGNATURE, Timestamp
from verifier.signing.trust import RootStore, TrustConfig, now_utc

SIGNED_DATA = "1.2.840.113549.1.7.2"
SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
NESTED_SIGNATURE = "1.3.6.1.4.1.311.2.4.1"
RFC3161_TIMESTAMP = timestamp.RFC3161_AUTHENTICODE
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
    der: bytes  # this signature's PKCS#7, as found in the file
    der_offset: int  # its absolute file offset
    signed_data: cms.SignedData | None = None
    signer_info: cms.SignerInfo | None = None
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
    rule: str,
    message: str,
    ranges: Sequence[tuple[int, int]] = (),
    *,
    region: bytes | None = None,
    **extra: Any,
) -> Anomaly:
    """An anomaly; ``region``: the bytes it is about (their sha256 decides inheritance)."""
    ev: dict[str, Any] = {"ranges": [{"offset": o, "length": n} for o, n in ranges if n > 0]}
    ev.update(extra)
    digest = hashlib.sha256(region).hexdigest() if region is not None else None
    return Anomaly(rule, message, ev, region_sha256=digest)


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
                region=data[entries[1].offset - table_offset : usable],
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
        _parse_signature(e.der, "primary", 0, e.der_offset, signatures)
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
    return (s.der_offset, len(s.der))


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
        region=slack,
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


def _spc_digest(element: bytes) -> tuple[str | None, str, bytes]:
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


def _parse_signature(
    der: bytes, role: str, depth: int, der_offset: int, out: list[ParsedSignature]
) -> None:
    """Parse one PKCS#7 (slices of its own bytes, nothing re-encoded) and its nested ones."""
    sig = ParsedSignature(role, der, der_offset)
    out.append(sig)
    try:
        if len(der) > MAX_DER:
            raise MalformedInputError(f"PKCS#7 larger than {MAX_DER} bytes")
        sd = cms.parse_signed_data(der)
        certs, bad = cms.load_certs(sd.certificates)
        sig.errors.extend(bad)
        sig.certs = certs
        if sd.content_type != SPC_INDIRECT_DATA or sd.content_element is None:
            raise MalformedInputError(f"content {sd.content_type} is not SpcIndirectDataContent")
        sig.spc_content = sd.content or b""
        alg, alg_oid, sig.signed_digest = _spc_digest(sd.content_element)
        if alg not in DIGESTS:
            raise MalformedInputError(f"unsupported Authenticode digest algorithm {alg_oid}")
        sig.digest_algorithm = alg
        if len(sd.signer_infos) != 1:
            raise MalformedInputError(
                f"{len(sd.signer_infos)} SignerInfos (Authenticode needs exactly one)"
            )
        sig.signed_data = sd
        sig.signer_info = sd.signer_infos[0]
        nested = sig.signer_info.unsigned(NESTED_SIGNATURE)
        if nested and depth >= MAX_NEST_DEPTH:
            sig.errors.append("nested signatures nested too deeply; inner ones ignored")
            nested = []
        for i, v in enumerate(nested, 1):
            if len(out) >= MAX_SIGNATURES:
                sig.errors.append(f"more than {MAX_SIGNATURES} signatures; the rest ignored")
                break
            name = f"nested {i}" if role == "primary" else f"{role}.{i}"
            _parse_signature(v.raw, name, depth + 1, der_offset + v.offset, out)
    except MalformedInputError as exc:
        sig.errors.append(exc.message[:300])
        sig.signed_data = None
        sig.signer_info = None


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
    other_unauth: list[tuple[str, int, int, bytes]]  # oid, size, absolute offset, bytes
    details: dict[str, Any]
    timestamps: list[Timestamp] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.intact and self.trusted


def _timestamps(si: cms.SignerInfo, certs: Sequence[Cert], roots: RootStore) -> list[Timestamp]:
    out: list[Timestamp] = []
    for v in si.unsigned(COUNTER_SIGNATURE):
        out.append(timestamp.countersignature(v.raw, si.signature, certs, roots))
    for v in si.unsigned(RFC3161_TIMESTAMP):
        out.append(timestamp.rfc3161(v.raw, si.signature, certs, roots))
    return out


def _verify_one(
    s: ParsedSignature,
    digests: Mapping[str, str],
    roots: RootStore,
    at: dt.datetime | None,
) -> _Result:
    d: dict[str, Any] = {"role": s.role, "digest_algorithm": s.digest_algorithm}
    errors = list(s.errors)
    res = _Result(s.role, None, False, False, errors, None, s.digest_algorithm in WEAK, [], d)
    si = s.signer_info
    if s.signed_data is None or si is None:
        d["errors"] = errors
        d["valid"] = False
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
    cert = cms.find_signer(si, s.certs)
    res.signer = cert
    sig_ok = False
    if cert is None:
        errors.append("signer certificate not in the signature")
    else:
        d["signer"] = cert.summary()
        e2 = cms.check_signed_attributes(si, s.spc_content, SPC_INDIRECT_DATA)
        errors.extend(e2)
        bad = None if e2 else cms.verify_signer_info(si, cert)
        if bad:
            errors.append(bad)
        sig_ok = not e2 and bad is None
    d["signature_ok"] = sig_ok
    # unauthenticated attributes: timestamps, nested signatures, the rest
    sizes = []
    for a in si.unsigned_attrs:
        sizes.append({"oid": a.oid, "size": a.length})
        if a.oid not in (COUNTER_SIGNATURE, RFC3161_TIMESTAMP, NESTED_SIGNATURE):
            raw = s.der[a.offset : a.offset + a.length]
            res.other_unauth.append((a.oid, a.length, s.der_offset + a.offset, raw))
    res.timestamps = _timestamps(si, s.certs, roots)
    d["unauthenticated_attributes"] = sizes
    d["timestamps"] = [t.to_dict() for t in res.timestamps]
    proven = next((t.time for t in res.timestamps if t.valid and t.time is not None), None)
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
    d["valid"] = res.valid
    return res


def _verify_safely(
    s: ParsedSignature, digests: Mapping[str, str], roots: RootStore, at: dt.datetime | None
) -> _Result:
    """``_verify_one``, turning a failure deep inside the PKCS#7 into an error."""
    try:
        return _verify_one(s, digests, roots, at)
    except Exception as exc:  # hostile input must end in a verdict, whatever breaks
        msg = f"malformed signature: {type(exc).__name__}: {exc}"[:300]
        return _Result(s.role, None, False, False, [msg], None, False, [], {"errors": [msg]})


def _why_not(r: _Result) -> str:
    if not r.intact:
        return "; ".join(r.errors) or "not valid"
    reason = r.chain.reason if r.chain else "no chain"
    bad_ts = [t for t in r.timestamps if not t.valid]
    if bad_ts and not any(t.valid for t in r.timestamps):
        reason += f" (timestamp not valid: {bad_ts[0].reason})"
    return reason


def verify(
    table: CertificateTable,
    digests: Mapping[str, str],
    *,
    pe_checksum_ok: bool,
    trust: TrustConfig | None,
    at: dt.datetime | None,
) -> tuple[SignatureFacts, tuple[Anomaly, ...]]:
    """Verify every signature of ``table`` against the file's Authenticode ``digests``.

    The primary signature decides validity (Windows' rule); each nested signature is verified
    and reported on its own, and one that fails under a valid primary is an
    ``invalid-nested-signature`` anomaly.
    """
    cfg = trust if trust is not None else TrustConfig()
    when = at if at is not None else cfg.at
    anomalies: list[Anomaly] = list(table.problems)
    roots = cfg.roots()
    results = [_verify_safely(s, digests, roots, when) for s in table.signatures]
    primary = results[0] if results and results[0].role == "primary" else None
    structural = any(a.rule == "invalid-signature" for a in table.problems)
    valid = primary is not None and primary.valid and not structural
    for r, s in zip(results, table.signatures, strict=True):
        is_primary = r is primary
        if not is_primary and not r.valid:
            if valid:
                anomalies.append(
                    _anomaly(
                        "invalid-nested-signature",
                        f"{r.role} signature does not verify under a valid primary signature: "
                        f"{_why_not(r)}",
                        [_range_of(s)],
                        region=s.der,
                        digest_algorithm=s.digest_algorithm,
                        signer_actual=r.signer.subject if r.signer else None,
                    )
                )
        elif is_primary and not r.intact and s.signed_data is not None:
            anomalies.append(
                _anomaly(
                    "invalid-signature",
                    f"{r.role} signature: {_why_not(r)}",
                    [_range_of(s)],
                    digest_algorithm=s.digest_algorithm,
                    signed_digest=r.details.get("signed_digest"),
                    computed_digest=r.details.get("computed_digest"),
                )
            )
        elif is_primary and r.intact and not r.trusted:
            anomalies.append(
                _anomaly(
                    "untrusted-signer",
                    f"{r.role} signer {r.signer.subject if r.signer else '?'}: {_why_not(r)}",
                    [_range_of(s)],
                    signer_actual=r.signer.subject if r.signer else None,
                )
            )
        other = sum(n for _, n, _, _ in r.other_unauth)
        if other > OVERSIZED_UNAUTH:
            anomalies.append(
                _anomaly(
                    "oversized-unauthenticated-attributes",
                    f"{r.role} signature carries {other} bytes of unauthenticated attributes "
                    "other than timestamps and nested signatures "
                    f"({', '.join(o for o, _, _, _ in r.other_unauth)})",
                    [(off, n) for _, n, off, _ in r.other_unauth],
                    region=b"".join(raw for _, _, _, raw in r.other_unauth),
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
    if primary is not None:
        # the primary signature's timestamps and judging time, where every consumer of the
        # facts (distrust lists, reports) finds them
        details["timestamps"] = primary.details.get("timestamps", [])
        details["verified_at"] = primary.details.get("verified_at")
        details["time_source"] = primary.details.get("time_source")
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
