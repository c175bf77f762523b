"""biv's library API: ``verify`` an artifact against its upstream, ``inspect`` one file.

The CLI is thin wiring over these two functions; the demo and the benchmarks call them too.
Flow (docs/contract.md "Data flow"): unpack -> inventory -> references -> compare -> policy
-> Report.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from verifier import __version__, lifecycle
from verifier.analysis import AnalysisContext, analyze
from verifier.analysis_cache import AnalysisCache
from verifier.analysis_cache import default_cache_dir as default_analysis_cache_dir
from verifier.attest.intoto import verify_layout
from verifier.binary import diff, macho_compare
from verifier.checks.archive import link_anomalies, name_collision_anomalies
from verifier.checks.electron import asar_integrity_anomalies, fuse_anomalies
from verifier.checks.macos import bundle_seal_anomalies
from verifier.compare import (
    CompareOptions,
    aggregate_slices,
    compare,
    compare_pair,
    identical_by_path,
    unexplained_code,
    with_app_root,
)
from verifier.distrust import BUILTIN_KNOWN_BAD, known_bad_anomalies, revoked_signer_anomalies
from verifier.errors import (
    ArtifactError,
    ReferenceMismatchError,
    ReferenceUnavailableError,
    UsageError,
)
from verifier.inputs import check_regular
from verifier.inventory import build as build_inventory
from verifier.inventory import complete as complete_inventories
from verifier.inventory import share_identical
from verifier.model import (
    Anomaly,
    BinaryFacts,
    Blob,
    Component,
    FileEntry,
    FileFormat,
    FileResult,
    Inventory,
    Reference,
    Report,
    Severity,
    Status,
    Verdict,
)
from verifier.npmdeps import is_deps_source
from verifier.policy.evaluate import classify_own, effective_fail_on, evaluate, verdict
from verifier.policy.evaluate import exit_code as verdict_exit_code
from verifier.policy.model import Policy
from verifier.record import record
from verifier.signing.msi import msi_signature_facts
from verifier.signing.trust import TrustConfig
from verifier.unpack import Limits, unpack
from verifier.unpack.single import single_binary
from verifier.upstream import target
from verifier.upstream.ahead import UnpackAhead
from verifier.upstream.resolve import is_path_source, resolve, unpack_ahead

# Start-up (README "Performance"): ``import verifier.api`` loads no cryptography, requests,
# PyYAML, TUF or disassembler. The stages that need them are imported by the function that
# runs them (policy files, TUF references, fetched sources, npm dependencies, the divergence
# explainer; each marked ``# lazy:``); the annotations name them for the type checker.
if TYPE_CHECKING:
    from verifier.npmdeps.stage import NpmStage
    from verifier.upstream.options import FetchOptions
    from verifier.upstream.tuf_client import RefsBundle

DEFAULT_SOURCE = "electron:auto"
Progress = Callable[[str, int, int], None]


@record
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
    refs_url: str | None = None  # TUF repository of reference inventories (--refs)
    refs_root: str | None = None  # its trusted root.json (--refs-root)
    layout: str | None = None  # the vendor's signed in-toto layout (--layout)
    layout_keys: tuple[str, ...] = ()  # its public keys (--layout-key)
    links: str | None = None  # directory of in-toto link files (--links)
    today: date | None = None
    progress: Progress | None = None
    # environment for fetched sources (ELECTRON_MIRROR, npm_config_registry,
    # BIV_NPM_PUBLIC_REGISTRY); None: os.environ
    env: Mapping[str, str] | None = None
    analysis_cache: bool = True  # per-file facts by content under the cache directory


def make_context(
    trust_stores: tuple[str, ...],
    at: datetime | None,
    *,
    cache_dir: str | None = None,
    analysis_cache: bool = False,
    level: str = "full",
) -> AnalysisContext:
    """The analysis context: trust roots, judging time, and (``analysis_cache``) the
    content-addressed analysis cache under ``cache_dir`` (default: the user cache directory).
    ``level="core"`` leaves comparison digests to ``inventory.complete`` (see ``verify``)."""
    for pem in trust_stores:
        check_regular(pem, what="trust store (--trust-store)")
    cache = AnalysisCache()
    if analysis_cache:
        cache = AnalysisCache.open(cache_dir or default_analysis_cache_dir())
    trust = TrustConfig(extra_pem=tuple(trust_stores), at=at)
    return AnalysisContext(trust=trust, at=at, cache=cache, level=level)


def load_policy(path: str | None) -> Policy:
    if path is None:
        return Policy.default()
    # lazy: start-up, policy files need PyYAML (+26 modules)
    from verifier.policy.load import load_policy as load_policy_file

    return load_policy_file(path)


def verify(req: VerifyRequest) -> Report:
    """Verify one artifact; raises BivError subclasses for exit-2 conditions only."""
    policy = load_policy(req.policy)
    # files are analysed without comparison digests first; ``complete`` adds them to the
    # files that are not identical to their counterpart once both sides are known. (npm
    # dependencies are compared later, against tarballs ``complete`` does not see: with
    # deps:npm every file is analysed in full.)
    lazy = not any(is_deps_source(s) for s in _sources(req, policy))
    ctx = make_context(
        req.trust_stores,
        req.at,
        cache_dir=req.cache_dir,
        analysis_cache=req.analysis_cache,
        level="core" if lazy else "full",
    )
    workdir = req.workdir or lifecycle.make_workdir()
    os.makedirs(workdir, exist_ok=True)
    try:
        return _verify(req, policy, ctx, workdir)
    finally:
        if req.workdir is None:
            lifecycle.remove_workdir(workdir)


def _verify(req: VerifyRequest, policy: Policy, ctx: AnalysisContext, workdir: str) -> Report:
    if not os.path.exists(req.artifact):
        raise ArtifactError("artifact not found", where=req.artifact)
    sources = _sources(req, policy)
    # local references are read ahead: a reference inventory parsed in a child from now on,
    # a release unpacked (hashed) while worker processes analyse the artifact
    ahead = unpack_ahead(sources, os.path.join(workdir, "refs"), policy.sigstore_for)
    ahead.start()
    try:
        return _verify_against(req, policy, ctx, workdir, sources, ahead)
    finally:
        ahead.close()


def _verify_against(
    req: VerifyRequest,
    policy: Policy,
    ctx: AnalysisContext,
    workdir: str,
    sources: tuple[str, ...],
    ahead: UnpackAhead,
) -> Report:
    inv, single = _shipped_inventory(req, ctx, workdir, ahead.run)
    unavailable: list[str] = []
    extra: list[Anomaly] = []
    if req.layout:
        extra.extend(verify_layout(req.layout, list(req.layout_keys), req.links or ""))
    bundle = _load_refs_bundle(req, unavailable, extra)
    upstreams = tuple(s for s in sources if not is_deps_source(s))
    refs = _references(req, policy, inv, ctx, workdir, bundle, unavailable, upstreams, ahead)
    # the application root is found once: completing the inventories changes no path
    opts = with_app_root(inv, refs, CompareOptions(main_exe=req.main_exe, app_root=req.app_root))
    # (the lambda runs inside ``complete``, on the inventories it is given)
    inv, refs = complete_inventories(inv, refs, ctx, lambda: identical_by_path(inv, refs, opts))
    refs = share_identical(inv, refs)

    comparison = compare(inv, refs, lambda p, e: classify_own(p, policy), opts)
    installer = None if single else installer_entry(req.artifact, inv.sha256, ctx)
    if installer is not None:
        # the installer is the vendor's own file; its signature is checked like any other
        inv = dataclasses.replace(inv, entries=(*inv.entries, installer))
        own = FileResult(installer.path, Status.OWN, installer, None, None, {"installer": True})
        comparison = dataclasses.replace(comparison, results=(*comparison.results, own))
    npm_components: tuple[Component, ...] = ()
    npm_compared = 0
    if len(upstreams) < len(sources):
        stage = _npm_stage(req, policy, comparison.results, ctx, workdir)
        results = stage.results
        if not upstreams:  # deps:npm alone: only the dependencies are compared
            results = tuple(r for i, r in enumerate(results) if i in stage.dependency_results)
        comparison = dataclasses.replace(comparison, results=results)
        extra.extend(stage.anomalies)
        unavailable.extend(stage.unavailable)
        npm_components, npm_compared = stage.components, stage.compared
    misfit = reference_misfit(comparison.results, refs)
    if misfit is not None:
        unavailable.append(misfit)
    extra.extend(_checks(comparison.results, inv, bundle, ctx))
    extra.extend(name_collision_anomalies(inv))
    extra.extend(link_anomalies(inv, refs, comparison.app_root, lambda p: classify_own(p, policy)))
    today = req.today or datetime.now(UTC).date()
    findings = evaluate(comparison.results, inv, refs, policy, today, extra=extra)
    fail_on = effective_fail_on(req.fail_on, policy)
    outcome = verdict(findings, fail_on, inconclusive=bool(unavailable))
    if not refs and not npm_compared and not unavailable and outcome == Verdict.PASS:
        # nothing was compared: never a pass
        outcome = Verdict.INCONCLUSIVE
        if not upstreams:
            unavailable.append(
                "deps:npm: no npm dependency was found (node_modules/ in app.asar, "
                "app.asar.unpacked or resources/app) and no other source was given"
            )
        else:
            unavailable.append("no upstream reference was given or found")
    return Report(
        tool_version=__version__,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        artifact={"path": req.artifact, "sha256": inv.sha256, "size": inv.size},
        verdict=outcome,
        components=(*(r.component for r in refs), *npm_components),
        files=comparison.results,
        findings=findings,
        fail_on=fail_on,
        inconclusive_reasons=tuple(unavailable),
        app_root=comparison.app_root,
        policy=policy.describe(),
        notes=inv.notes,
    )


def _shipped_inventory(
    req: VerifyRequest,
    ctx: AnalysisContext,
    workdir: str,
    meanwhile: Callable[[], None] | None = None,
) -> tuple[Inventory, bool]:
    """The artifact's inventory, and whether it is a lone binary (else what ``unpack``
    finds in it). ``meanwhile`` runs while the files are analysed (see ``inventory``)."""
    single = single_binary(req.artifact)
    if single is not None:
        inv = build_inventory(single, ctx, _stage(req.progress, "analysing"), meanwhile)
        return dataclasses.replace(inv, sha256=inv.entries[0].sha256), True
    # the members are not kept once their entries are made (one of each per file)
    inv = build_inventory(
        unpack(req.artifact, os.path.join(workdir, "artifact")),
        ctx,
        _stage(req.progress, "analysing"),
        meanwhile,
    )
    return inv, False


def reference_misfit(results: Sequence[FileResult], refs: Sequence[Reference]) -> str | None:
    """Why the references do not explain the artifact (exit 3 unless something fails), or None.

    More than half of the shipped code files that are not the app's own matching no upstream
    file means the wrong upstream was named, or the app's own files were not declared.
    """
    if not any(r.files for r in refs):
        return None
    unexpected, total = unexplained_code(results)
    if total == 0 or unexpected * 2 <= total:
        return None
    names = ", ".join(sorted({r.component.source for r in refs if r.files}))
    return (
        f"the references do not explain this artifact: {unexpected} of {total} shipped code "
        "files (PE, Mach-O, ELF, .node) that are not the app's own match no file of "
        f"{names}; name the upstream it was built from with --against, or declare the app's "
        "own files with 'own:' globs in a policy (--policy FILE with 'extends: electron-app')"
    )


def _references(
    req: VerifyRequest,
    policy: Policy,
    inv: Inventory,
    ctx: AnalysisContext,
    workdir: str,
    bundle: RefsBundle | None,
    unavailable: list[str],
    sources: tuple[str, ...],
    ahead: UnpackAhead | None = None,
) -> list[Reference]:
    """Every source resolved; one that cannot be had is noted and the others still count."""
    refs: list[Reference] = []
    if bundle is not None and sources == (DEFAULT_SOURCE,):
        matched = select_references(bundle.references, inv)
        if matched:
            refs.extend(matched)
            sources = ()
    for source in sources:
        try:
            refs.extend(
                resolve(
                    source,
                    inv,
                    os.path.join(workdir, "refs"),
                    ctx,
                    None if is_path_source(source) else _fetch_opts(req),
                    policy.sigstore_for(source),
                    ahead,
                )
            )
        except ReferenceUnavailableError as exc:
            unavailable.append(exc.diagnostics())
        except UsageError as exc:
            if source != DEFAULT_SOURCE or req.against:
                raise
            raise UsageError(
                "no --against given, and electron:auto cannot tell which release to compare "
                f"with ({exc.message}); name the upstream with --against SOURCE",
                where=req.artifact,
            ) from exc
    return refs


def _checks(
    results: Sequence[FileResult], inv: Inventory, bundle: RefsBundle | None, ctx: AnalysisContext
) -> list[Anomaly]:
    """Checks beyond the comparison: distrust lists, Electron fuses and ASAR, bundle seals."""
    known_bad = dict(BUILTIN_KNOWN_BAD)
    out: list[Anomaly] = []
    if bundle is not None:
        known_bad.update(bundle.known_bad)
        out.extend(revoked_signer_anomalies(results, bundle.revoked))
    out.extend(known_bad_anomalies(results, known_bad))
    out.extend(fuse_anomalies(results))
    out.extend(asar_integrity_anomalies(results))
    out.extend(bundle_seal_anomalies(inv, results, ctx))
    return out


_CFB_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")


def installer_entry(artifact: str, sha256: str, ctx: AnalysisContext) -> FileEntry | None:
    """The artifact itself as a file entry when it carries a code signature of its own.

    A setup executable (NSIS, Squirrel) is a PE; an MSI is a compound file whose Authenticode
    signature sits in a stream. Archives without signatures (zip, tar) give None.
    """
    if not os.path.isfile(artifact):
        return None
    blob = Blob.of_file(artifact)
    if blob.size > Limits().max_artifact_bytes:
        return None  # over the cap: not read (unpack reported it)
    head = blob.read(0, 8)
    name = os.path.basename(artifact)
    if head[:2] == b"MZ":
        sha, facts = analyze(blob, name, ctx)
    elif head == _CFB_MAGIC:
        sig, anomalies = msi_signature_facts(artifact, ctx.trust, ctx.at)
        facts = BinaryFacts(signature=sig, anomalies=anomalies)
        sha = sha256
    else:
        return None
    return FileEntry(name, name, (), blob.size, sha, facts, blob)


def _load_refs_bundle(
    req: VerifyRequest, unavailable: list[str], extra: list[Anomaly]
) -> RefsBundle | None:
    """The TUF reference repository: an attack is a finding, an outage is inconclusive."""
    if req.refs_url is None:
        return None
    if req.refs_root is None:
        raise UsageError("--refs needs --refs-root (the repository's trusted root.json)")
    # lazy: start-up, --refs needs python-tuf and requests (+164 modules)
    from verifier.upstream.tuf_client import RefsVerificationError, load_refs

    try:
        return load_refs(req.refs_url, req.refs_root, req.cache_dir, offline=req.offline)
    except RefsVerificationError as exc:
        extra.append(
            Anomaly(
                "reference-mismatch",
                f"the reference repository failed TUF verification: {exc.message}",
                {"location": req.refs_url, "path": req.refs_url, "source": req.refs_url},
            )
        )
    except ReferenceUnavailableError as exc:
        unavailable.append(exc.diagnostics())
    return None


def select_references(refs: Sequence[Reference], inv: Inventory) -> list[Reference]:
    """The references of a TUF bundle that describe the Electron release the app was built on."""
    # lazy: start-up, Electron releases are fetched with requests (+134 modules)
    from verifier.upstream import electron

    version = electron.detect_version(inv)
    choice = target.choose(inv)
    targets = {t for option in choice.options for t in option}
    out = []
    for r in refs:
        c = r.component
        if c.version is None or version is None:
            continue
        if electron.normalize_version(c.version) != version:
            continue
        if targets and (c.platform, c.arch) not in targets:
            continue
        out.append(r)
    return out


def _sources(req: VerifyRequest, policy: Policy) -> tuple[str, ...]:
    """--against, else the policy's components (``electron:auto`` when they name no upstream)."""
    if req.against:
        return tuple(dict.fromkeys(req.against))
    return policy.effective_sources()


def _npm_stage(
    req: VerifyRequest,
    policy: Policy,
    results: Sequence[FileResult],
    ctx: AnalysisContext,
    workdir: str,
) -> NpmStage:
    """deps:npm: the app's npm dependencies against their registry's tarballs."""
    # lazy: start-up, deps:npm fetches tarballs with requests (+139 modules)
    from verifier.npmdeps.stage import NpmSettings, Pin
    from verifier.npmdeps.stage import run as run_npm_stage

    pins = tuple(Pin(p.name, p.version, p.integrity) for p in policy.npm_pins)
    settings = NpmSettings(skip=policy.npm_skip, pins=pins)
    opts = _fetch_opts(req)
    return run_npm_stage(
        results, settings, opts, workdir, ctx, _stage(req.progress, "npm dependencies")
    )


def _fetch_opts(req: VerifyRequest) -> FetchOptions:
    from verifier.upstream.options import FetchOptions  # lazy: start-up, requests (+125 modules)

    limits: dict[str, Any] = {}
    for env, key, kind in (
        ("BIV_DOWNLOAD_DEADLINE", "deadline", float),
        ("BIV_DOWNLOAD_MIN_RATE", "min_rate", int),
        ("BIV_DOWNLOAD_RATE_WINDOW", "rate_window", float),
    ):
        value = os.environ.get(env)
        if value:
            try:
                limits[key] = kind(value)
            except ValueError:
                raise UsageError(f"{env}={value!r} is not a number") from None
    return FetchOptions(
        cache_dir=req.cache_dir,
        offline=req.offline,
        mirror=req.mirror,
        progress=req.progress is not None,
        env=req.env,
        **limits,
    )


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    p = progress
    return lambda done, total: p(name, done, total)


def exit_code(report: Report) -> int:
    """The report's exit code: the one verdict-to-code map (``policy.evaluate.exit_code``;
    exit 2 is an error, raised before there is a report)."""
    return verdict_exit_code(report.verdict)


def inspect(
    path: str, trust_stores: tuple[str, ...] = (), at: datetime | None = None
) -> dict[str, Any]:
    """Format and signature facts of one file, as a JSON-able dict."""
    if not os.path.isfile(path):
        raise ArtifactError("not a readable file", where=path)
    ctx = make_context(trust_stores, at)
    sha, facts = analyze(Blob.of_file(path), os.path.basename(path), ctx)
    d = facts.to_ref_dict()
    d["signature"]["details"] = facts.signature.details_dict()
    for s, sl in zip(d["slices"], facts.slices, strict=True):
        s["signature"]["details"] = sl.signature.details_dict()
    return {
        "schema": "biv.inspect/v1",
        "tool": {"name": "biv", "version": __version__},
        "path": path,
        "size": os.path.getsize(path),
        "sha256": sha,
        **d,
        "anomalies": [
            {
                "rule": a.rule,
                "message": a.message,
                "arch": a.arch,
                "evidence": dict(a.evidence),
                "region_sha256": a.region_sha256,
                "severity": a.severity.value if a.severity else None,
            }
            for a in facts.anomalies
        ],
    }


def inspect_against(
    path: str, upstream: str, trust_stores: tuple[str, ...] = (), at: datetime | None = None
) -> dict[str, Any]:
    """One shipped file against its upstream file: status and the full explanation of what
    changed (docs/contract.md "Explaining a divergence"), as a JSON-able dict (no file bytes)."""
    # lazy: start-up, the explainer (layouts, symbol tables, disassembler front end: 9 modules)
    from verifier.binary import explain

    ctx = make_context(trust_stores, at)
    entries = []
    for p in (path, upstream):
        if not os.path.isfile(p):
            raise ArtifactError("not a readable file", where=p)
        blob = Blob.of_file(p)
        sha, facts = analyze(blob, os.path.basename(p), ctx)
        name = os.path.basename(p)
        entries.append(FileEntry(name, p, (), blob.size, sha, facts, blob))
    shipped, ref = entries
    ev: dict[str, Any]
    if shipped.format == FileFormat.MACHO and ref.format == FileFormat.MACHO:
        slices, ev = macho_compare.compare_slices(shipped, [ref])
        status = aggregate_slices(slices) if slices else Status.DIVERGENT
        if shipped.sha256 == ref.sha256:
            status = Status.IDENTICAL
        if status != Status.IDENTICAL:
            ev.update(diff.describe_macho_divergence(shipped, [ref], ev, explain.FULL))
    else:
        status, ev = compare_pair(shipped, ref)
        if status != Status.IDENTICAL and shipped.format in (FileFormat.PE, FileFormat.ELF):
            ev.update(diff.explain_pair(shipped, ref, explain.FULL))
    return {
        "schema": "biv.inspect-against/v1",
        "tool": {"name": "biv", "version": __version__},
        "path": path,
        "size": shipped.size,
        "sha256": shipped.sha256,
        "format": shipped.format.value,
        "against": {
            "path": upstream,
            "size": ref.size,
            "sha256": ref.sha256,
            "format": ref.format.value,
        },
        "status": status.value,
        "evidence": ev,
    }


def inventory_of(path: str, ctx: AnalysisContext, workdir: str) -> Inventory:
    return build_inventory(unpack(path, workdir), ctx)


def build_reference_documents(
    source: str, cache_dir: str | None = None, offline: bool = False
) -> list[dict[str, Any]]:
    """The ``biv.refs/v1`` inventory of one SOURCE (for ``biv refs build`` / publishing).

    A remote source must name its target (``electron:28.1.0,platform=win32,arch=x64``):
    there is no artifact to detect it from.
    """
    ctx = make_context((), None, cache_dir=cache_dir, analysis_cache=True)
    empty = Inventory(source, "0" * 64, 0, ())
    req = VerifyRequest(artifact="", cache_dir=cache_dir, offline=offline)
    with tempfile.TemporaryDirectory(prefix="biv-refs-") as work:
        refs = resolve(source, empty, work, ctx, _fetch_opts(req))
        bad = [a for r in refs for a in r.problems if a.rule == "reference-mismatch"]
        if bad:
            raise ReferenceMismatchError(bad[0].message, where=source)
        return [_labelled(r).to_dict() for r in refs]


def _labelled(ref: Reference) -> Reference:
    """Name the Electron version and target of a local release from its own binaries."""
    from verifier.upstream import electron  # lazy: start-up, requests (+134 modules)

    c = ref.component
    if c.version is not None:
        return ref
    inv = Inventory(c.source, "0" * 64, 0, ref.files)
    version = electron.detect_version(inv)
    targets = electron.detect_targets(inv)
    if version is None or len(targets) != 1:
        return ref
    platform, arch = targets[0]
    return dataclasses.replace(
        ref, component=dataclasses.replace(c, version=version, platform=platform, arch=arch)
    )
