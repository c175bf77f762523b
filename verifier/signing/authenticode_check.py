"""One Authenticode signature (primary or nested), verified.

The signed digest is compared with the file's Authenticode digest, the signer's signature
over its authenticated attributes is checked (``signing.algorithms``), legacy
countersignatures and RFC 3161 timestamps are verified (``signing.timestamp``), and the chain
is built (``signing.chain``, code signing EKU) at the time a valid timestamp proves (else
``--at``, else now). Whatever goes wrong deep inside a hostile PKCS#7 ends as an error of
this signature, never an exception.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from verifier.model import (
    AuthenticodeSignatureDetails,
    Signer,
    SignerCheck,
    TrustVerdict,
)
from verifier.signing import cms, timestamp
from verifier.signing.authenticode_spc import NESTED_SIGNATURE, SPC_INDIRECT_DATA, ParsedSignature
from verifier.signing.certs import CODE_SIGNING, Cert, iso
from verifier.signing.chain import ChainResult, build_chain
from verifier.signing.timestamp import COUNTER_SIGNATURE, Timestamp
from verifier.signing.trust import RootStore, now_utc

RFC3161_TIMESTAMP = timestamp.RFC3161_AUTHENTICODE
WEAK = {"md5", "sha1"}


def signer_of(c: Cert) -> Signer:
    return Signer(subject=c.subject, issuer=c.issuer, serial=c.serial, sha256=c.sha256)


@dataclass
class SignatureCheck:
    """The outcome of verifying one signature."""

    role: str
    signer: Cert | None
    intact: bool
    trusted: bool
    errors: list[str]
    chain: ChainResult | None
    weak: bool
    other_unauth: list[tuple[str, int, int, bytes]]  # oid, size, absolute offset, bytes
    details: AuthenticodeSignatureDetails
    timestamps: list[Timestamp] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.intact and self.trusted

    def why_not(self) -> str:
        if not self.intact:
            return "; ".join(self.errors) or "not valid"
        reason = self.chain.reason if self.chain else "no chain"
        bad_ts = [t for t in self.timestamps if not t.valid]
        if bad_ts and not any(t.valid for t in self.timestamps):
            reason += f" (timestamp not valid: {bad_ts[0].reason})"
        return reason


def _timestamps(si: cms.SignerInfo, certs: Sequence[Cert], roots: RootStore) -> list[Timestamp]:
    out: list[Timestamp] = []
    for v in si.unsigned(COUNTER_SIGNATURE):
        out.append(timestamp.countersignature(v.raw, si.signature, certs, roots))
    for v in si.unsigned(RFC3161_TIMESTAMP):
        out.append(timestamp.rfc3161(v.raw, si.signature, certs, roots))
    return out


def _signature_ok(si: cms.SignerInfo, s: ParsedSignature, cert: Cert, errors: list[str]) -> bool:
    """The signer's signature over its authenticated attributes (which bind the content)."""
    e2 = cms.check_signed_attributes(si, s.spc_content, SPC_INDIRECT_DATA)
    errors.extend(e2)
    bad = None if e2 else cms.verify_signer_info(si, cert)
    if bad:
        errors.append(bad)
    return not e2 and bad is None


def _digest_ok(s: ParsedSignature, computed: str | None, errors: list[str]) -> bool:
    ok = computed is not None and computed.lower() == s.signed_digest.hex()
    if computed is None:
        errors.append(f"the file's {s.digest_algorithm} Authenticode digest was not computed")
    elif not ok:
        errors.append("the file's Authenticode digest does not match the signed digest")
    return ok


def _unauthenticated(
    s: ParsedSignature, si: cms.SignerInfo
) -> tuple[tuple[tuple[str, int], ...], list[tuple[str, int, int, bytes]]]:
    """(oid, size) of every unauthenticated attribute, and those that are neither a
    timestamp nor a nested signature with their offsets and bytes."""
    other: list[tuple[str, int, int, bytes]] = []
    for a in si.unsigned_attrs:
        if a.oid not in (COUNTER_SIGNATURE, RFC3161_TIMESTAMP, NESTED_SIGNATURE):
            raw = s.der[a.offset : a.offset + a.length]
            other.append((a.oid, a.length, s.der_offset + a.offset, raw))
    return tuple((a.oid, a.length) for a in si.unsigned_attrs), other


def verify_one(
    s: ParsedSignature,
    digests: Mapping[str, str],
    roots: RootStore,
    at: dt.datetime | None,
) -> SignatureCheck:
    """Verify one parsed signature against the file's Authenticode ``digests``."""
    errors = list(s.errors)
    si = s.signer_info
    if s.signed_data is None or si is None:
        details = AuthenticodeSignatureDetails(s.role, s.digest_algorithm, tuple(errors), False)
        return SignatureCheck(
            s.role, None, False, False, errors, None, s.digest_algorithm in WEAK, [], details
        )
    computed = digests.get(s.digest_algorithm or "")
    digest_ok = _digest_ok(s, computed, errors)
    cert = cms.find_signer(si, s.certs)
    summary = cert.summary() if cert is not None else None
    if cert is None:
        errors.append("signer certificate not in the signature")
        sig_ok = False
    else:
        sig_ok = _signature_ok(si, s, cert, errors)
    attrs, other = _unauthenticated(s, si)
    stamps = _timestamps(si, s.certs, roots)
    proven = next((t.time for t in stamps if t.valid and t.time is not None), None)
    when = proven or at
    intact = digest_ok and sig_ok and not s.errors
    chain = build_chain(cert, s.certs, roots, CODE_SIGNING, when) if cert is not None else None
    trusted = chain is not None and chain.trusted
    check = SignerCheck(
        signed_digest=s.signed_digest.hex(),
        computed_digest=computed,
        digest_ok=digest_ok,
        signer=summary,
        signature_ok=sig_ok,
        unauthenticated_attributes=attrs,
        timestamps=tuple(t.facts() for t in stamps),
        verified_at=iso(when or now_utc()),
        time_source="timestamp" if proven else ("--at" if at else "now"),
        chain=tuple(c.summary() for c in chain.chain) if chain is not None else None,
        trusted=TrustVerdict(chain.trusted, chain.reason, chain.anchor_source)
        if chain is not None
        else None,
    )
    details = AuthenticodeSignatureDetails(
        s.role, s.digest_algorithm, tuple(errors), intact and trusted, check
    )
    weak = s.digest_algorithm in WEAK
    return SignatureCheck(
        s.role, cert, intact, trusted, errors, chain, weak, other, details, stamps
    )


def verify_safely(
    s: ParsedSignature, digests: Mapping[str, str], roots: RootStore, at: dt.datetime | None
) -> SignatureCheck:
    """``verify_one``, turning a failure deep inside the PKCS#7 into an error."""
    try:
        return verify_one(s, digests, roots, at)
    except Exception as exc:  # hostile input must end in a verdict, whatever breaks
        msg = f"malformed signature: {type(exc).__name__}: {exc}"[:300]
        details = AuthenticodeSignatureDetails(
            s.role, s.digest_algorithm, (msg,), False, crashed=True
        )
        return SignatureCheck(s.role, None, False, False, [msg], None, False, [], details)
