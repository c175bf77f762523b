"""biv's library API: ``verify`` an artifact against its upstream, ``inspect`` one file.

The CLI is thin wiring over these two functions; the demo and the benchmarks call them too.
Flow (DESIGN.md): unpack -> inventory -> references -> compare -> policy -> Report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from verifier import __version__
from verifier.binary.analyze import AnalysisContext, analyze
from verifier.compare import CompareOptions, compare
from verifier.errors import ReferenceUnavailableError, UsageError
from verifier.inventory import build as build_inventory
from verifier.model import Blob, Inventory, Reference, Report, Severity, Verdict
from verifier.policy.evaluate import classify_own, evaluate, verdict
from verifier.policy.model import Policy
from verifier.unpack import unpack
from verifier.upstream.resolve import resolve

DEFAULT_SOURCE = "electron:auto"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class VerifyRequest:
    artifact: str
    against: tuple[str, ...] = ()
    policy: str | None = None
    fail_on: Severity | None = None
    trust_stores: tuple[str, ...] = ()
    at: datetime | None = None
    offline: bool = False
    cache_dir: str | None = None
    mirror: str | None = None
    main_exe: str | None = None
    app_root: str | None = None
    workdir: str | None = None  # kept when given; a temporary one is removed afterwards
    today: date | None = None
    progress: Progress | None = None


def make_context(trust_stores: tuple[str, ...], at: datetime | None) -> AnalysisContext:
    from verifier.signing.trust import TrustConfig

    for pem in trust_stores:
        if not os.path.isfile(pem):
            raise UsageError(f"trust store not found: {pem}", where="--trust-store")
    return AnalysisContext(trust=TrustConfig(extra_pem=tuple(trust_stores), at=at), at=at)


def load_policy(path: str | None) -> Policy:
    if path is None:
        return Policy.default()
    from verifier.policy.load import load_policy as _load

    return _load(path)


def verify(req: VerifyRequest) -> Report:
    """Verify one artifact; raises BivError subclasses for exit-2 conditions only."""
    policy = load_policy(req.policy)
    ctx = make_context(req.trust_stores, req.at)
    workdir = req.workdir or tempfile.mkdtemp(prefix="biv-")
    os.makedirs(workdir, exist_ok=True)
    try:
        return _verify(req, policy, ctx, workdir)
    finally:
        if req.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _verify(req: VerifyRequest, policy: Policy, ctx: AnalysisContext, workdir: str) -> Report:
    if not os.path.exists(req.artifact):
        from verifier.errors import ArtifactError

        raise ArtifactError("artifact not found", where=req.artifact)
    unpacked = unpack(req.artifact, os.path.join(workdir, "artifact"))
    inv = build_inventory(unpacked, ctx, _stage(req.progress, "analysing"))

    refs: list[Reference] = []
    unavailable: list[str] = []
    for source in _sources(req, policy):
        try:
            refs.extend(resolve(source, inv, os.path.join(workdir, "refs"), ctx, _fetch_opts(req)))
        except ReferenceUnavailableError as exc:
            unavailable.append(exc.diagnostics())

    comparison = compare(
        inv,
        refs,
        lambda p, e: classify_own(p, policy),
        CompareOptions(main_exe=req.main_exe, app_root=req.app_root),
    )
    today = req.today or datetime.now(UTC).date()
    findings = evaluate(comparison.results, inv, refs, policy, today)
    fail_on = req.fail_on or policy.fail_on or Severity.HIGH
    outcome = verdict(findings, fail_on, inconclusive=bool(unavailable))
    if not refs and not unavailable and outcome == Verdict.PASS:
        # nothing was compared: never a pass
        outcome = Verdict.INCONCLUSIVE
        unavailable.append("no upstream reference was given or found")
    return Report(
        tool_version=__version__,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        artifact={"path": req.artifact, "sha256": inv.sha256, "size": inv.size},
        verdict=outcome,
        components=tuple(r.component for r in refs),
        files=comparison.results,
        findings=findings,
        fail_on=fail_on,
        inconclusive_reasons=tuple(unavailable),
        app_root=comparison.app_root,
        policy=policy.describe(),
    )


def _sources(req: VerifyRequest, policy: Policy) -> tuple[str, ...]:
    if req.against:
        return req.against
    declared = tuple(policy.sources())
    return declared or (DEFAULT_SOURCE,)


def _fetch_opts(req: VerifyRequest) -> object:
    from verifier.upstream.options import FetchOptions

    return FetchOptions(
        cache_dir=req.cache_dir,
        offline=req.offline,
        mirror=req.mirror,
        progress=req.progress is not None,
    )


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    p = progress
    return lambda done, total: p(name, done, total)


def exit_code(report: Report) -> int:
    """DESIGN.md precedence: 1 (failed) beats 3 (inconclusive) beats 0 (exit 2 is an error)."""
    if report.verdict == Verdict.FAIL:
        return 1
    if report.verdict == Verdict.INCONCLUSIVE:
        return 3
    return 0


def inspect(
    path: str, trust_stores: tuple[str, ...] = (), at: datetime | None = None
) -> dict[str, Any]:
    """Format and signature facts of one file, as a JSON-able dict."""
    if not os.path.isfile(path):
        from verifier.errors import ArtifactError

        raise ArtifactError("not a readable file", where=path)
    ctx = make_context(trust_stores, at)
    sha, facts = analyze(Blob.of_file(path), os.path.basename(path), ctx)
    d = facts.to_ref_dict()
    d["signature"]["details"] = dict(facts.signature.details)
    for s, sl in zip(d["slices"], facts.slices, strict=True):
        s["signature"]["details"] = dict(sl.signature.details)
    return {
        "schema": "biv.inspect/v1",
        "tool": {"name": "biv", "version": __version__},
        "path": path,
        "size": os.path.getsize(path),
        "sha256": sha,
        **d,
        "anomalies": [
            {"rule": a.rule, "message": a.message, "arch": a.arch, "evidence": dict(a.evidence)}
            for a in facts.anomalies
        ],
    }


def inventory_of(path: str, ctx: AnalysisContext, workdir: str) -> Inventory:
    return build_inventory(unpack(path, workdir), ctx)
