"""The CMS signature of a Mach-O code signature, over its primary CodeDirectory.

Apple's CMS blob is BER, detached: its messageDigest covers the primary CodeDirectory's
bytes, and the ``cdhashes`` attributes (1.2.840.113635.100.9.1, a plist, and .2, DER) list
every CodeDirectory's hash so an alternate one cannot be swapped. Its RFC 3161 timestamps
are verified with the chain engine against the same roots.
"""

from __future__ import annotations

import plistlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from verifier.errors import MalformedInputError
from verifier.signing import asn1, cms, timestamp
from verifier.signing.algorithms import DIGEST_OIDS
from verifier.signing.apple import macho_roots
from verifier.signing.certs import Cert
from verifier.signing.codesign import (
    OID_CDHASHES_2,
    OID_CDHASHES_PLIST,
    OID_TIMESTAMP_TOKEN,
    CodeDirectory,
)
from verifier.signing.timestamp import Timestamp
from verifier.signing.trust import RootStore


@dataclass
class CmsResult:
    ok: bool
    problems: list[str]
    signer_cert: Cert | None = None
    certs: tuple[Cert, ...] = ()
    signing_time: datetime | None = None
    digest_algorithm: str | None = None
    cdhashes_plist: list[str] = field(default_factory=list)
    cdhashes2: dict[str, str] = field(default_factory=dict)
    timestamps: list[Timestamp] = field(default_factory=list)

    @property
    def timestamp_time(self) -> datetime | None:
        """The time a valid timestamp proves (None without one)."""
        return next((t.time for t in self.timestamps if t.valid and t.time), None)


def _cdhashes2(raw: bytes) -> tuple[str, str]:
    doc = asn1.parse(raw)
    k = doc.children(doc.top)
    if len(k) != 2 or k[0].tag != asn1.OID or k[1].tag != asn1.OCTET_STRING:
        raise MalformedInputError("malformed cdhashes2 value")
    oid = asn1.oid(doc.value(k[0]))
    return DIGEST_OIDS.get(oid, oid), doc.value(k[1]).hex()


def verify_cms(
    cms_der: bytes,
    content: bytes,
    cds: Sequence[CodeDirectory],
    roots: RootStore | None = None,
) -> CmsResult:
    """Verify Apple's CMS blob (BER, detached) over the primary CodeDirectory bytes; its
    RFC 3161 timestamps are verified against ``roots`` (Apple's when None)."""
    res = CmsResult(ok=False, problems=[])
    try:
        sd = cms.parse_signed_data(cms_der, ber=True)
    except MalformedInputError as exc:
        res.problems.append(f"CMS blob unreadable: {exc.message}"[:300])
        return res
    res.certs, bad = cms.load_certs(sd.certificates)
    res.problems.extend(bad)
    if len(sd.signer_infos) != 1:
        res.problems.append(f"CMS has {len(sd.signer_infos)} signers (expected 1)")
        return res
    si = sd.signer_infos[0]
    cert = cms.find_signer(si, res.certs)
    if cert is None:
        res.problems.append("CMS signer certificate not included")
        return res
    res.signer_cert = cert
    res.digest_algorithm = si.digest_algorithm
    res.signing_time = cms.signing_time(si)
    errs = cms.check_signed_attributes(si, content, None)
    res.problems.extend(
        "CMS messageDigest does not match the CodeDirectory"
        if e == "messageDigest does not match the signed content"
        else f"CMS {e}"
        for e in errs
    )
    for v in si.signed(OID_CDHASHES_PLIST):
        try:
            doc = asn1.parse(v.raw)
            pl = plistlib.loads(doc.octets(doc.top))
            res.cdhashes_plist = [bytes(h).hex() for h in pl.get("cdhashes", [])]
        except Exception:
            res.problems.append("cdhashes plist attribute unreadable")
    for v in si.signed(OID_CDHASHES_2):
        try:
            name, hexd = _cdhashes2(v.raw)
            res.cdhashes2[name] = hexd
        except MalformedInputError:
            res.problems.append("cdhashes2 attribute unreadable")
    if not errs:
        bad_sig = cms.verify_signer_info(si, cert)
        if bad_sig:
            res.problems.append(f"CMS signature: {bad_sig}")
    # cdhash attributes: each CodeDirectory's cdhash must be listed, in order
    if res.cdhashes_plist:
        mine = [cd.cdhash for cd in cds]
        if res.cdhashes_plist != mine:
            res.problems.append("cdhashes attribute does not match the CodeDirectories")
    for name, hexd in res.cdhashes2.items():
        matches = [cd for cd in cds if cd.algorithm == name]
        if matches and all(cd.cdhash_full.hex() != hexd for cd in matches):
            res.problems.append(f"cdhashes2 {name} does not match the CodeDirectory")
    store = roots if roots is not None else macho_roots()
    for v in si.unsigned(OID_TIMESTAMP_TOKEN):
        res.timestamps.append(timestamp.rfc3161(v.raw, si.signature, res.certs, store, ber=True))
    res.ok = not res.problems
    return res
