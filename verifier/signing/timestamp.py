"""Timestamps: proof that a signature existed at a time, so it is judged at that time.

Two kinds, both checked the same way and chained by the chain engine with the time-stamping
EKU at the timestamp's own time (roots that have expired since then included, as Windows
does):

* ``countersignature``: the legacy Authenticode/PKCS#9 countersignature (unsigned attribute
  1.2.840.113549.1.9.6), a SignerInfo whose messageDigest covers the outer signature value,
  timed by its signingTime;
* ``rfc3161``: an RFC 3161 token (Authenticode's 1.3.6.1.4.1.311.3.3.1, CMS's
  id-aa-timeStampToken 1.2.840.113549.1.9.16.2.14), a SignedData over a TSTInfo whose
  messageImprint covers the outer signature value, timed by genTime; the ESS
  signingCertificate(V2) attribute must name the TSA certificate.

Never raises on bad input: a malformed timestamp is a ``Timestamp`` with ``valid=False`` and
the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from verifier.errors import BivError, MalformedInputError
from verifier.model import JSON, TimestampFacts
from verifier.record import record
from verifier.signing import asn1, cms
from verifier.signing.algorithms import DIGEST_OIDS
from verifier.signing.certs import TIME_STAMPING, Cert, iso
from verifier.signing.chain import ChainResult, build_chain
from verifier.signing.trust import RootStore

COUNTER_SIGNATURE = "1.2.840.113549.1.9.6"
RFC3161_AUTHENTICODE = "1.3.6.1.4.1.311.3.3.1"
RFC3161_TOKEN = "1.2.840.113549.1.9.16.2.14"  # noqa: S105 - an OID
TST_INFO = "1.2.840.113549.1.9.16.1.4"
ESS_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
ESS_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"


@record
class Timestamp:
    kind: str  # "legacy" | "rfc3161"
    time: dt.datetime | None
    signer: Cert | None
    valid: bool
    reason: str
    chain: ChainResult | None = None

    def facts(self) -> TimestampFacts:
        return TimestampFacts(
            kind=self.kind,
            time=iso(self.time),
            signer=self.signer.summary() if self.signer else None,
            valid=self.valid,
            reason=self.reason,
            chain=self.chain.facts() if self.chain else None,
        )

    def to_dict(self) -> JSON:
        return self.facts().to_dict()


def _finish(
    kind: str,
    t: dt.datetime | None,
    cert: Cert,
    errs: list[str],
    pool: Sequence[Cert],
    roots: RootStore,
) -> Timestamp:
    if t is None:
        errs.append("no time")
    if errs:
        return Timestamp(kind, t, cert, False, "; ".join(errs))
    chain = build_chain(cert, pool, roots, TIME_STAMPING, t)
    return Timestamp(kind, t, cert, chain.trusted, "ok" if chain.trusted else chain.reason, chain)


def countersignature(
    value: bytes, signature: bytes, certs: Sequence[Cert], roots: RootStore
) -> Timestamp:
    """A legacy countersignature (``value``: the SignerInfo) over ``signature``."""
    try:
        si = cms.parse_signer_info_der(value)
        t = cms.signing_time(si)
        cert = cms.find_signer(si, certs)
        if cert is None:
            return Timestamp("legacy", t, None, False, "countersigner certificate not found")
        errs = cms.check_signed_attributes(si, signature, None)
        if not errs:
            bad = cms.verify_signer_info(si, cert)
            if bad:
                errs.append(bad)
        return _finish("legacy", t, cert, errs, certs, roots)
    except (BivError, ValueError, IndexError) as exc:
        return Timestamp("legacy", None, None, False, f"malformed countersignature: {exc}"[:300])


@record
class TstInfo:
    time: dt.datetime
    imprint_alg: str | None
    imprint: bytes


def parse_tst_info(der: bytes) -> TstInfo:
    doc = asn1.parse(der)
    k = doc.children(doc.top)
    if len(k) < 5 or k[2].tag != asn1.SEQUENCE:
        raise MalformedInputError("TSTInfo too short")
    mi = doc.children(k[2])
    if len(mi) != 2 or mi[1].tag != asn1.OCTET_STRING:
        raise MalformedInputError("bad messageImprint")
    alg_oid = asn1.oid(doc.value(doc.child(mi[0], 0, asn1.OID)))
    gen = k[4]
    if gen.tag != asn1.GENERALIZED_TIME:
        raise MalformedInputError("TSTInfo genTime missing")
    return TstInfo(asn1.time(gen.tag, doc.value(gen)), DIGEST_OIDS.get(alg_oid), doc.value(mi[1]))


def _ess_problem(si: cms.SignerInfo, cert: Cert) -> str | None:
    """RFC 3161/5035: the ESS signingCertificate(V2) attribute must name the TSA certificate."""
    for oid, v2 in ((ESS_SIGNING_CERTIFICATE_V2, True), (ESS_SIGNING_CERTIFICATE, False)):
        vals = si.signed(oid)
        if not vals:
            continue
        doc = asn1.parse(vals[0].raw)
        ids = doc.children(doc.child(doc.top, 0, asn1.SEQUENCE))
        if not ids:
            return "empty ESS signingCertificate attribute"
        first = doc.children(ids[0])
        alg = "sha1"
        if v2:
            alg = "sha256"
            if first and first[0].tag == asn1.SEQUENCE:
                o = asn1.oid(doc.value(doc.child(first[0], 0, asn1.OID)))
                alg = DIGEST_OIDS.get(o, o)
                first = first[1:]
        if not first or first[0].tag != asn1.OCTET_STRING:
            return "malformed ESS signingCertificate attribute"
        if alg not in hashlib.algorithms_available:
            return f"unsupported ESS certificate hash {alg}"
        if doc.value(first[0]) != hashlib.new(alg, cert.der).digest():
            return "ESS signingCertificate does not match the TSA certificate"
        return None
    return None


def rfc3161(
    token: bytes,
    signature: bytes,
    outer_certs: Sequence[Cert],
    roots: RootStore,
    *,
    ber: bool = False,
) -> Timestamp:
    """An RFC 3161 token (``token``: its ContentInfo) over ``signature``."""
    t: dt.datetime | None = None
    try:
        sd = cms.parse_signed_data(token, ber=ber)
        if sd.content_type != TST_INFO or sd.content is None:
            return Timestamp("rfc3161", None, None, False, "token content is not TSTInfo")
        tst = parse_tst_info(sd.content)
        t = tst.time
        errs: list[str] = []
        if tst.imprint_alg is None or tst.imprint_alg not in hashlib.algorithms_available:
            errs.append("unsupported imprint hash")
        elif tst.imprint != hashlib.new(tst.imprint_alg, signature).digest():
            errs.append("messageImprint does not match the signature it timestamps")
        own, _bad = cms.load_certs(sd.certificates)
        pool = (*own, *outer_certs)
        if len(sd.signer_infos) != 1:
            return Timestamp("rfc3161", t, None, False, "token needs exactly one signer")
        si = sd.signer_infos[0]
        cert = cms.find_signer(si, pool)
        if cert is None:
            return Timestamp("rfc3161", t, None, False, "TSA certificate not found")
        e2 = cms.check_signed_attributes(si, sd.content, TST_INFO)
        errs.extend(e2)
        ess = _ess_problem(si, cert)
        if ess:
            errs.append(ess)
        if not e2:
            bad = cms.verify_signer_info(si, cert)
            if bad:
                errs.append(bad)
        return _finish("rfc3161", t, cert, errs, pool, roots)
    except (BivError, ValueError, IndexError) as exc:
        return Timestamp("rfc3161", t, None, False, f"malformed token: {exc}"[:300])
