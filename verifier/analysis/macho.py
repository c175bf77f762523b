"""A Mach-O file (thin or fat) in one pass: headers and the views of the pass
(``binary.macho_digests``), each slice's code signature (``signing.macho_signature``)."""

from __future__ import annotations

from collections.abc import Mapping

from verifier.analysis.context import AnalysisContext
from verifier.binary import macho_digests
from verifier.hashing import digest_beside
from verifier.model import UNSIGNED, BinaryFacts, Blob, SignatureFacts, SliceFacts
from verifier.signing import macho_signature


def analyze_macho(
    blob: Blob,
    name: str,
    ctx: AnalysisContext | None = None,
    known: str | None = None,
    *,
    specials: Mapping[int, bytes] | None = None,
) -> tuple[str, BinaryFacts]:
    """Analyse a thin or fat Mach-O in one streaming pass; never raises on bad input.

    The pass feeds the whole-file sha256 (unless ``known``), each slice's sha256 and
    normalised digest, segment and section digests (level "full"), the code-page checks of
    every CodeDirectory and the Electron fuse scan. ``specials`` gives the content of
    external special slots (1: Info.plist, 3: CodeResources) when the caller knows them (a
    bundle); otherwise those slots are reported as ``external`` (not verified here).
    """
    ctx = ctx or AnalysisContext()
    plan = macho_digests.plan_file(blob, name, core=ctx.core, known=known)
    parsed = plan.parsed()
    sigs = [macho_signature.prepare(blob, p, specials) for p in parsed]
    views = plan.views() + [v for s in sigs if s is not None for v in s.views()]

    def cms_signatures() -> None:  # checked while the pass hashes a large file
        for s in sigs:
            if s is not None:
                macho_signature.check_early(
                    s,
                    trust=ctx.trust,
                    at=ctx.judging_time,
                    verify_signatures=ctx.verify_signatures,
                )

    digest_beside(blob.path, views, blob.offset, blob.size, cms_signatures)
    slices: list[SliceFacts] = []
    for p, s in zip(parsed, sigs, strict=True):
        tail = macho_digests.tail_anomaly(name, p)
        if tail is not None:
            plan.anomalies.append(tail)
        sig: SignatureFacts = UNSIGNED
        if s is not None:
            sig, extra = macho_signature.finish(
                s,
                name,
                trust=ctx.trust,
                at=ctx.judging_time,
                verify_signatures=ctx.verify_signatures,
            )
            plan.anomalies.extend(extra)
        slices.append(macho_digests.slice_facts(blob, p, sig))
    unparsed = len(parsed) < len(plan.slices)
    summary = macho_signature.file_signature(slices, unparsed, plan.anomalies)
    return plan.sha256(known), macho_digests.file_facts(plan, slices, summary)
