"""One Mach-O slice's code signature, judged: facts and anomalies.

``verify_slice`` takes the parsed signature (``codesign.parse_superblob``) and the page checks
streamed with the slice (``codesign_pages.PageHasher``), and checks the special slots
(Info.plist, requirements, CodeResources, entitlements), the CMS signature over the primary
CodeDirectory (``codesign_cms``), the certificate chain to Apple's roots plus
``--trust-store`` roots at the time a valid timestamp proves (else ``--at``, else now), the
team id, and the bytes after the SuperBlob (``codesign_slack``). Ad-hoc and linker-signed
signatures do not count as ``signed``. ``summarize`` makes one ``SignatureFacts`` of a file's
slices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from verifier.model import (
    Anomaly,
    MachOSignatureDetails,
    MachOSigner,
    SignatureFacts,
    SignatureKind,
    Signer,
    TimestampFacts,
)
from verifier.record import record
from verifier.signing.apple import apple_certificates, macho_roots, signer_of
from verifier.signing.certs import CODE_SIGNING, iso
from verifier.signing.chain import build_chain
from verifier.signing.codesign import (
    CS_ADHOC,
    CS_LINKER_SIGNED,
    CS_RUNTIME,
    CSSLOT_DER_ENTITLEMENTS,
    CSSLOT_ENTITLEMENTS,
    CSSLOT_REQUIREMENTS,
    HASH_TYPE_NAMES,
    SPECIAL_SLOT_NAMES,
    CodeDirectory,
    EmbeddedSignature,
    requirement_types,
)
from verifier.signing.codesign_cms import verify_cms
from verifier.signing.codesign_pages import PageDigestIndex, PageHasher, page_ranges
from verifier.signing.codesign_slack import slack_anomaly
from verifier.signing.trust import RootStore, TrustConfig


@dataclass
class _Findings:
    """What is wrong with one slice's signature, gathered while checking it."""

    arch: str
    problems: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


def _check_pages(pagers: Sequence[PageHasher], f: _Findings) -> int:
    """Code-page mismatches and pages past the end of the slice; the pages checked."""
    bad: dict[str, list[dict[str, int]]] = {}
    checked = 0
    for p in pagers:
        checked += p.checked
        if p.past_eof:
            f.problems.append(f"codeLimit {p.cd.code_limit} runs past the end of the slice")
        if p.bad_pages:
            bad[HASH_TYPE_NAMES.get(p.cd.hash_type, "?")] = page_ranges(
                p.bad_pages, p.cd.page_size or p.cd.code_limit
            )
            f.problems.append(
                f"{len(p.bad_pages)} code page(s) of {f.arch} do not match CodeDirectory "
                f"{p.cd.slot:#x}"
            )
    if bad:
        f.evidence["ranges"] = next(iter(bad.values()))
        f.evidence["page_mismatches"] = bad
    return checked


def _slot_status(
    cd: CodeDirectory, n: int, content: bytes | None, internal: bool, f: _Findings
) -> tuple[str, bool]:
    """The status of special slot ``n`` of ``cd`` and whether it overrides an earlier one."""
    name = SPECIAL_SLOT_NAMES.get(n, f"slot-{n}")
    want = cd.special_hash(n)
    if want is None:
        if content is not None and internal:
            f.problems.append(f"special slot {name} present but not hashed")
            return "unhashed", True
        return "absent", False
    if content is None:
        if internal:
            f.problems.append(f"special slot {name} hashed but its blob is missing")
            return "missing", True
        return "external", False
    if cd.hash(content) != want:
        f.problems.append(f"special slot {name} does not match its content")
        return "mismatch", True
    return "ok", False


def _check_special_slots(
    sig: EmbeddedSignature, specials: Mapping[int, bytes], f: _Findings
) -> tuple[tuple[str, str], ...]:
    """Each special slot of every CodeDirectory against its content (in the signature, or
    given: Info.plist, CodeResources); slots outside the signature not given are
    ``external`` (not verified here)."""
    internal = {
        CSSLOT_REQUIREMENTS: sig.requirements,
        CSSLOT_ENTITLEMENTS: sig.entitlements,
        CSSLOT_DER_ENTITLEMENTS: sig.der_entitlements,
    }
    results: dict[str, str] = {}
    for cd in sig.code_directories:
        for n in range(1, cd.n_special_slots + 1):
            inside = n in internal
            content = internal.get(n) if inside else specials.get(n)
            status, override = _slot_status(cd, n, content, inside, f)
            name = SPECIAL_SLOT_NAMES.get(n, f"slot-{n}")
            if override:
                results[name] = status
            else:
                results.setdefault(name, status)
    return tuple(results.items())


@dataclass
class _Cms:
    """What the CMS signature says: who signed, when, and why the chain is not trusted."""

    signed: bool = False
    signers: tuple[Signer, ...] = ()
    untrusted: str = ""
    timestamps: tuple[TimestampFacts, ...] = ()
    signer: MachOSigner | None = None


@record
class CmsCheck:
    """The CMS signature of a slice checked ahead of its pass (``check_cms``): it needs
    nothing the pass computes."""

    cms: _Cms
    problems: tuple[str, ...]


def check_cms(
    sig: EmbeddedSignature, trust: TrustConfig | None, at: datetime | None
) -> CmsCheck | None:
    """``verify_slice``'s check of the CMS signature, done early (beside the pass over the
    file); None when the slice has no CMS signature."""
    if sig.cms is None or len(sig.cms) == 0:
        return None
    f = _Findings("")
    extra = tuple(str(p) for p in trust.extra_pem) if trust is not None else ()
    cms = _check_cms(sig, macho_roots(extra), at, f)
    return CmsCheck(cms, tuple(f.problems))


def _check_cms(sig: EmbeddedSignature, roots: RootStore, at: datetime | None, f: _Findings) -> _Cms:
    assert sig.cms is not None
    out = _Cms()
    res = verify_cms(sig.cms, sig.primary.raw, sig.code_directories, roots)
    f.problems.extend(res.problems)
    out.timestamps = tuple(t.facts() for t in res.timestamps)
    if res.signer_cert is None:
        return out
    out.signed = True
    leaf = res.signer_cert
    out.signers = (signer_of(leaf),)
    proven = res.timestamp_time
    when = proven or at or datetime.now(UTC)
    chain = build_chain(leaf, [*res.certs, *apple_certificates()], roots, CODE_SIGNING, when)
    summaries = tuple(c.summary() for c in chain.chain)
    if not chain.trusted:
        out.untrusted = chain.reason
        bad_ts = [t for t in res.timestamps if not t.valid]
        if bad_ts and proven is None:
            out.untrusted += f" (timestamp not valid: {bad_ts[0].reason})"
    out.signer = MachOSigner(
        digest_algorithm=res.digest_algorithm,
        time_source="timestamp" if proven else ("--at" if at else "now"),
        signing_time=iso(res.signing_time),
        verified_at=iso(when),
        chain=summaries,
        trusted=chain.trusted,
        trust_reason=out.untrusted or (f"chains to {summaries[-1].subject}" if summaries else ""),
    )
    best = sig.best
    team = out.signers[0].team_id
    if team and best.team_id and team != best.team_id:
        f.problems.append(
            f"CodeDirectory team id {best.team_id} differs from the certificate's {team}"
        )
    return out


def _details(
    sig: EmbeddedSignature,
    pages_checked: int,
    slots: tuple[tuple[str, str], ...],
    cms: _Cms,
    cms_present: bool,
) -> MachOSignatureDetails:
    best = sig.best
    return MachOSignatureDetails(
        code_directories=tuple(cd.facts() for cd in sig.code_directories),
        identifier=best.identifier,
        team_id=best.team_id,
        cdhash=best.cdhash,
        flags=", ".join(best.flag_names),
        adhoc=bool(best.flags & CS_ADHOC),
        linker_signed=bool(best.flags & CS_LINKER_SIGNED),
        runtime=bool(best.flags & CS_RUNTIME),
        page_size=best.page_size,
        code_limit=best.code_limit,
        hash_types=tuple(HASH_TYPE_NAMES.get(cd.hash_type, "?") for cd in sig.code_directories),
        signature_size=sig.size,
        pages_checked=pages_checked,
        special_slots=slots,
        entitlements=sig.entitlements[8:].decode("utf-8", "replace")[:4096]
        if sig.entitlements is not None
        else None,
        der_entitlements_size=len(sig.der_entitlements) - 8
        if sig.der_entitlements is not None
        else None,
        requirements_sha256=hashlib.sha256(sig.requirements).hexdigest()
        if sig.requirements is not None
        else None,
        requirements=tuple(requirement_types(sig.requirements))
        if sig.requirements is not None
        else (),
        cms=cms_present,
        timestamps=cms.timestamps,
        signer=cms.signer,
        untrusted=cms.untrusted if cms.untrusted and cms.signed else None,
    )


def verify_slice(
    sig: EmbeddedSignature,
    pagers: Sequence[PageHasher],
    *,
    arch: str,
    specials: Mapping[int, bytes] | None = None,
    trust: TrustConfig | None = None,
    at: datetime | None = None,
    verify_signatures: bool = True,
    sig_offset: int | None = None,
    remnant_index: PageDigestIndex | None = None,
    cms_checked: CmsCheck | None = None,
) -> tuple[SignatureFacts, tuple[Anomaly, ...]]:
    """Turn a parsed signature plus streamed page results into facts and anomalies.

    ``sig_offset``: the signature's absolute offset in the file (for evidence);
    ``remnant_index``: page digests of the slice, streamed when the signature's slack holds
    non-zero bytes (``PageDigestIndex``), to tell a remnant of an earlier signature;
    ``cms_checked``: the CMS signature already checked (``check_cms``, same ``trust`` and
    ``at``).
    """
    f = _Findings(arch, evidence={"arch": arch})
    pages_checked = _check_pages(pagers, f)
    slots = _check_special_slots(sig, specials or {}, f)
    cms_present = sig.cms is not None and len(sig.cms) > 0
    cms = _Cms(signed=cms_present)
    if cms_present and verify_signatures:
        if cms_checked is None:
            cms_checked = check_cms(sig, trust, at)
        if cms_checked is not None:
            f.problems.extend(cms_checked.problems)
            cms = cms_checked.cms
    anomalies: list[Anomaly] = []
    slack = slack_anomaly(sig, arch, sig_offset, remnant_index)
    if slack is not None:
        anomalies.append(slack)
    valid: bool | None
    if f.problems:
        valid = False
        problems = list(dict.fromkeys(f.problems))
        anomalies.append(
            Anomaly(
                "invalid-signature",
                f"{arch}: " + "; ".join(problems),
                {**f.evidence, "problems": problems},
                arch=arch,
            )
        )
    elif cms_present and not verify_signatures:
        valid = None
    else:
        valid = True
    if cms.untrusted and cms.signed:
        anomalies.append(
            Anomaly(
                "untrusted-signer",
                f"{arch}: {cms.untrusted}",
                {"arch": arch, "signer_actual": cms.signers[0].subject if cms.signers else None},
                arch=arch,
            )
        )
        # as for Authenticode: a signature is valid only when intact AND its chain reaches
        # a trusted root (the untrusted-signer finding says why not)
        valid = False if valid is True else valid
    facts = SignatureFacts(
        kind=SignatureKind.MACHO,
        signed=cms.signed,
        valid=valid,
        signers=cms.signers,
        anomalies=tuple(a.rule for a in anomalies),
        container_sha256=sig.sha256,
        primary_container_sha256=sig.sha256,
        details=_details(sig, pages_checked, slots, cms, cms_present),
    )
    return facts, tuple(anomalies)


def summarize(per_slice: Iterable[SignatureFacts]) -> SignatureFacts:
    """One SignatureFacts for a file from its slices: valid only if every slice is."""
    items = list(per_slice)
    if not items or all(s.kind == SignatureKind.NONE for s in items):
        return SignatureFacts()
    signers: list[Signer] = []
    for s in items:
        for g in s.signers:
            if g not in signers:
                signers.append(g)
    valids = [s.valid if s.kind != SignatureKind.NONE else None for s in items]
    valid: bool | None
    if any(v is False for v in valids):
        valid = False
    elif all(v is True for v in valids):
        valid = True
    else:
        valid = None  # some slice unsigned or not verified
    containers = [s.container_sha256 or "" for s in items]
    agg = hashlib.sha256("\n".join(containers).encode()).hexdigest()
    return SignatureFacts(
        kind=SignatureKind.MACHO,
        signed=any(s.signed for s in items),
        valid=valid,
        signers=tuple(signers),
        anomalies=tuple(sorted({a for s in items for a in s.anomalies})),
        container_sha256=agg,
        primary_container_sha256=agg,
    )
