"""The code signatures of a Mach-O file, around the one pass over it (the dispatcher the
analysis calls for Mach-O; ``pe_signature`` is PE's).

``prepare`` reads and parses a slice's embedded signature (``codesign``) and gives the views
that check its code pages (and, when its slack holds non-zero bytes, index the slice's
pages) during the pass over the file; ``finish`` judges the slice (``codesign_verify``) once
the pass is done; ``file_signature`` makes the file's ``SignatureFacts`` of its slices'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from verifier.binary.macho_digests import SlicePlan
from verifier.errors import MalformedInputError
from verifier.hashing import View
from verifier.model import (
    UNSIGNED,
    Anomaly,
    Blob,
    MachOFileDetails,
    MachOSignatureDetails,
    MachOSignatureError,
    SignatureFacts,
    SignatureKind,
    SliceFacts,
)
from verifier.signing import codesign
from verifier.signing.codesign_pages import PageDigestIndex, PageHasher
from verifier.signing.codesign_slack import MAX_REMNANT_SLICE
from verifier.signing.codesign_verify import CmsCheck, check_cms, summarize, verify_slice
from verifier.signing.trust import TrustConfig

MAX_INFO_PLIST = 1 << 20


@dataclass
class SliceSignature:
    """One slice's embedded signature between parsing and judging."""

    arch: str
    base: int  # the slice's offset in the file
    dataoff: int  # the signature's offset in the slice
    sig: codesign.EmbeddedSignature | None = None
    error: str | None = None  # why the signature could not be parsed
    specials: dict[int, bytes] = field(default_factory=dict)
    pagers: list[PageHasher] = field(default_factory=list)
    remnant: PageDigestIndex | None = None  # only when the signature's slack is not zero
    cms_checked: CmsCheck | None = None  # its CMS signature checked early (``check_early``)

    def views(self) -> list[View]:
        """The views the pass over the file must feed for this signature."""
        return [*self.pagers, *(self.remnant.views() if self.remnant is not None else [])]


def prepare(
    blob: Blob, p: SlicePlan, specials: Mapping[int, bytes] | None = None
) -> SliceSignature | None:
    """The signature of the parsed slice ``p`` (None when it has no LC_CODE_SIGNATURE).

    ``specials`` gives the content of external special slots (1: Info.plist, 3:
    CodeResources) when the caller knows them (a bundle); Info.plist embedded in the binary
    (``__TEXT,__info_plist``) is read from it; other slots are reported as ``external``.
    """
    if p.header is None or p.header.code_signature is None:
        return None
    _cmd, dataoff, datasize = p.header.code_signature
    out = SliceSignature(p.arch, p.offset, dataoff)
    plist = p.info_plist
    if plist is not None and plist.size <= MAX_INFO_PLIST:
        out.specials[codesign.CSSLOT_INFOSLOT] = blob.read(p.offset + plist.offset, plist.size)
    out.specials.update(specials or {})
    if datasize > codesign.MAX_SIGNATURE_SIZE:
        out.error = f"code signature of {datasize} bytes exceeds the cap"
        return out
    try:
        out.sig = codesign.parse_superblob(blob.read(p.offset + dataoff, datasize))
    except MalformedInputError as exc:
        out.error = exc.message
        return out
    out.pagers = [PageHasher(cd, p.offset, p.size) for cd in out.sig.code_directories]
    if out.sig.trailing_nonzero and p.size <= MAX_REMNANT_SLICE:
        out.remnant = PageDigestIndex(p.offset, min(dataoff, p.size), out.pagers)
    return out


def check_early(
    s: SliceSignature, *, trust: TrustConfig | None, at: datetime | None, verify_signatures: bool
) -> None:
    """Check what ``finish`` would check that needs nothing of the pass (the CMS signature),
    so it can run while the pass hashes the file; ``finish`` takes the result (same
    ``trust`` and ``at``)."""
    if s.sig is not None and verify_signatures:
        s.cms_checked = check_cms(s.sig, trust, at)


def finish(
    s: SliceSignature,
    name: str,
    *,
    trust: TrustConfig | None,
    at: datetime | None,
    verify_signatures: bool,
) -> tuple[SignatureFacts, tuple[Anomaly, ...]]:
    """The slice's signature facts and anomalies, once the pass fed its views."""
    if s.sig is None:
        msg = f"{name}: malformed code signature in {s.arch}: {s.error}"
        anomaly = Anomaly("invalid-signature", msg, {"arch": s.arch, "problems": [msg]}, s.arch)
        facts = SignatureFacts(
            kind=SignatureKind.MACHO,
            signed=False,
            valid=False,
            anomalies=("invalid-signature",),
            details=MachOSignatureError(s.error or ""),
        )
        return facts, (anomaly,)
    for pg in s.pagers:
        pg.finish()
    return verify_slice(
        s.sig,
        s.pagers,
        arch=s.arch,
        specials=s.specials,
        trust=trust,
        at=at,
        verify_signatures=verify_signatures,
        sig_offset=s.base + s.dataoff,
        remnant_index=s.remnant,
        cms_checked=s.cms_checked,
    )


def file_signature(
    slices: Sequence[SliceFacts], unparsed: bool, anomalies: Sequence[Anomaly]
) -> SignatureFacts:
    """A Mach-O file's signature from its slices': valid only when every slice is; a slice
    that could not be parsed (``unparsed``) leaves it unknown, never 'valid'."""
    sigs = [s.signature for s in slices]
    if unparsed:
        sigs.append(SignatureFacts())
    summary = summarize(sigs)
    if summary.kind == SignatureKind.NONE:
        return UNSIGNED
    per_slice: dict[str, MachOSignatureDetails | MachOSignatureError | None] = {}
    for sl in slices:
        d = sl.signature.details
        per_slice[sl.arch] = (
            d if isinstance(d, MachOSignatureDetails | MachOSignatureError) else None
        )
    return SignatureFacts(
        kind=summary.kind,
        signed=summary.signed,
        valid=summary.valid,
        signers=summary.signers,
        anomalies=tuple(sorted({a.rule for a in anomalies} | set(summary.anomalies))),
        container_sha256=summary.container_sha256,
        primary_container_sha256=summary.primary_container_sha256,
        details=MachOFileDetails(len(sigs), tuple(per_slice.items())),
    )
