"""Fetched upstream sources: parse SOURCE strings, fetch, prove, cache, analyse.

``electron:VERSION|auto``, ``pypi:NAME==VERSION[:FILENAME]``, ``npm:NAME@VERSION``,
``url:URL#sha256=HEX``; options may follow the source after commas (``,bundle=FILE``): they
are kept in ``SourceSpec.options`` for other stages (policy, sigstore) to read.
``,platform=win32,arch=x64`` on ``electron:`` and ``pypi:`` names the target instead of
detecting it from the shipped artifact (``electron:28.1.0,platform=darwin,arch=arm64``).

For every archive a source names::

    proof record cached?  -- yes --> reference inventory cached and intact? --> Reference
          | no                              | no --> cached archive intact? --> analyse
          v                                                  | no
    fetch independent checksums --> download --> digests agree? -- no --> reference-mismatch
                                                      | yes
                                     cache archive, analyse, cache inventory + proof record

A warm cache needs no network and no re-hash of the archive; ``offline`` uses the cache only.
A source that cannot be obtained raises ``ReferenceUnavailableError`` (exit 3). A source whose
checksums disagree gives a Reference with no files and a ``reference-mismatch`` problem: it is
never used as a reference.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from verifier import __version__, inventory
from verifier.analysis import AnalysisContext
from verifier.errors import (
    ArtifactError,
    MalformedInputError,
    ReferenceMismatchError,
    ReferenceUnavailableError,
    SchemaError,
    UsageError,
)
from verifier.jsonread import Fields
from verifier.model import Anomaly, Component, Inventory, Reference
from verifier.record import record
from verifier.upstream import electron, npm, pypi, target
from verifier.upstream.cache import Cache, is_sha256
from verifier.upstream.http import HttpClient
from verifier.upstream.options import FetchOptions
from verifier.upstream.source_options import split_options

KINDS = ("electron", "pypi", "npm", "url")


# --- parsing ------------------------------------------------------------------------------


@record
class SourceSpec:
    kind: str  # electron | pypi | npm | url
    text: str  # the SOURCE string as given (options included)
    name: str  # electron | package name | URL
    version: str | None  # None for url:, "auto" for electron:auto
    filename: str | None = None  # pypi explicit file; url: the file name of the URL
    sha256: str | None = None  # url: the pinned digest
    options: Mapping[str, str] = field(default_factory=dict)


def parse_source(text: str) -> SourceSpec:
    """Parse one fetched SOURCE; a malformed one is a ``UsageError`` (exit 2)."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS:
        raise UsageError(
            "unknown source (expected electron:VERSION|auto, pypi:NAME==VERSION[:FILE], "
            "npm:NAME@VERSION or url:URL#sha256=HEX)",
            where=text,
        )
    body, options = _split_options(rest)
    if kind == "electron":
        v = body.strip()
        version = "auto" if v == "auto" else electron.normalize_version(v)
        return SourceSpec("electron", text, "electron", version, options=options)
    if kind == "pypi":
        name, eq, ver = body.partition("==")
        ver, _, filename = ver.partition(":")
        if not eq or not pypi.valid_name(name) or not pypi.valid_version(ver):
            raise UsageError("expected pypi:NAME==VERSION[:FILENAME]", where=text)
        if filename and not pypi.valid_filename(filename):
            raise UsageError(f"bad file name {filename!r}", where=text)
        return SourceSpec("pypi", text, name, ver, filename or None, options=options)
    if kind == "npm":
        at = body.rfind("@")
        name, ver = (body[:at], body[at + 1 :]) if at > 0 else (body, "")
        if not ver or not npm.valid_name(name) or not npm.valid_version(ver):
            raise UsageError("expected npm:NAME@VERSION", where=text)
        return SourceSpec("npm", text, name, ver, options=options)
    url, hsep, frag = body.partition("#")
    digest = frag[len("sha256=") :].lower() if frag.startswith("sha256=") else ""
    if not hsep or not is_sha256(digest):
        raise UsageError("expected url:URL#sha256=HEX (a pinned sha256 is required)", where=text)
    parts = urlsplit(url)
    filename = unquote(parts.path.rsplit("/", 1)[-1])
    if parts.scheme not in ("http", "https") or not parts.netloc or not filename:
        raise UsageError("url: needs an http(s) URL naming a file", where=text)
    if "/" in filename or "\\" in filename or filename in (".", ".."):
        raise UsageError("url: file name is unsafe", where=text)
    return SourceSpec("url", text, url, None, filename, digest, options)


def _split_options(rest: str) -> tuple[str, dict[str, str]]:
    body, opts = split_options(rest)
    return body, dict(sorted(opts.items()))


# --- analysis hook ------------------------------------------------------------------------


@record
class Analyzer:
    """Turns a proven archive into a Reference (default: ``inventory.build_reference``).

    ``version`` keys the cached inventories: a new analysis version re-analyses archives.
    """

    build: Callable[[Component, str, str, AnalysisContext], Reference]
    version: str


def default_analyzer() -> Analyzer:
    version = f"{__version__}+{inventory.ANALYSIS_VERSION}"
    # the inventory is cached and compared against later builds: every digest, always
    return Analyzer(inventory.build_reference_full, version)


# --- plans: what to fetch, and how to prove it (network only on a cache miss) -------------


@record
class Expectation:
    url: str
    filename: str
    sha256: str | None  # the digest independent sources agreed on
    sha512: str | None = None  # npm dist.integrity
    proof: tuple[str, ...] = ()
    problems: tuple[Anomaly, ...] = ()  # sources disagree: do not even download


@record
class Planned:
    key: str  # proof cache key
    component: Component  # digests and proof filled in once proven
    prove: Callable[[], Expectation]
    # a second acceptable reference (Electron's ffmpeg zip): skipped when it cannot be had,
    # but a mismatch still fails
    optional: bool = False


def _mismatch(message: str, **evidence: Any) -> Anomaly:
    return Anomaly("reference-mismatch", message, dict(evidence))


def target_choice(spec: SourceSpec, shipped: Inventory) -> target.TargetChoice | None:
    """How the target of ``electron:`` and ``pypi:`` is chosen (None: the source has none)."""
    if spec.kind not in ("electron", "pypi") or (spec.kind == "pypi" and spec.filename):
        return None
    explicit = _explicit_target(spec)
    if explicit:
        return target.TargetChoice((), (tuple(explicit),), "named in the source")
    return target.choose(shipped)


def _plan(
    spec: SourceSpec,
    shipped: Inventory,
    opts: FetchOptions,
    http: HttpClient,
    tmp: str,
    targets: Sequence[target.Target] | None = None,
) -> list[Planned]:
    if targets is None:
        choice = target_choice(spec, shipped)
        targets = choice.options[0] if choice is not None and choice.options else ()
    if spec.kind == "electron":
        return _plan_electron(spec, shipped, opts, http, tmp, targets)
    if spec.kind == "pypi":
        hints = pypi.shipped_wheel_tags(shipped.entries)
        return [_plan_pypi(spec, opts, http, targets[0] if targets else (None, None), hints)]
    if spec.kind == "npm":
        return [_plan_npm(spec, opts, http)]
    return [_plan_url(spec)]


def _plan_electron(
    spec: SourceSpec,
    shipped: Inventory,
    opts: FetchOptions,
    http: HttpClient,
    tmp: str,
    chosen: Sequence[target.Target],
) -> list[Planned]:
    version = spec.version
    if version == "auto" or version is None:
        version = electron.detect_version(shipped)
        if version is None:
            raise UsageError(
                "cannot detect the Electron version of the artifact; name it: electron:X.Y.Z",
                where=spec.text,
            )
    targets = list(chosen)
    if not targets:
        raise UsageError(
            "cannot detect the platform/architecture of the artifact's Electron binaries",
            where=spec.text,
        )
    memo: dict[str, electron.ReleaseChecksums | ReferenceMismatchError] = {}

    def checksums() -> electron.ReleaseChecksums:
        """Both checksum documents, fetched once per release (a mismatch is remembered too)."""
        if "c" not in memo:
            try:
                memo["c"] = electron.fetch_checksums(http, opts, version, tmp)
            except ReferenceMismatchError as exc:
                memo["c"] = exc
        got = memo["c"]
        if isinstance(got, ReferenceMismatchError):
            raise got
        return got

    base = electron.release_base(opts, version)
    artifacts = [("electron", "electron")]
    if opts.ffmpeg:
        artifacts.append(("ffmpeg", "electron-ffmpeg"))
    plans: list[Planned] = []
    for platform, arch in targets:
        for artifact, comp_name in artifacts:
            fn = electron.zip_name(artifact, version, platform, arch)

            def prove(fn: str = fn) -> Expectation:
                try:
                    c = checksums()
                except ReferenceMismatchError as exc:
                    return Expectation(
                        base + fn, fn, None, problems=(_mismatch(exc.diagnostics()),)
                    )
                a, b = c.shasums.get(fn), c.npm.get(fn)
                ev = {"file": fn, "shasums_url": c.shasums_url, "npm_url": c.npm_url}
                if a is None or b is None:
                    where = "SHASUMS256.txt" if a is None else "npm checksums.json"
                    msg = f"{fn} is not listed in {where}: the release cannot be proven"
                    return Expectation(base + fn, fn, None, problems=(_mismatch(msg, **ev),))
                if a != b:
                    msg = (
                        f"{fn}: SHASUMS256.txt ({c.shasums_url}) and the electron npm package's "
                        f"checksums.json disagree ({a} vs {b})"
                    )
                    return Expectation(
                        base + fn,
                        fn,
                        None,
                        problems=(_mismatch(msg, shasums_sha256=a, npm_sha256=b, **ev),),
                    )
                proof = (
                    f"sha256 {a} listed in {c.shasums_url}",
                    f"same sha256 in checksums.json of electron@{version} from the npm registry "
                    f"({c.npm_url}, tarball verified against dist.integrity sha512)",
                )
                return Expectation(base + fn, fn, a, proof=proof)

            comp = Component(comp_name, version, spec.text, platform, arch)
            key = f"electron:{version}:{fn}"
            plans.append(Planned(key, comp, prove, optional=artifact == "ffmpeg"))
    return plans


_PLATFORMS = ("win32", "darwin", "linux", "mas")


def _explicit_target(spec: SourceSpec) -> list[tuple[str, str]]:
    """``,platform=win32,arch=x64`` options (e.g. to publish references with no artifact)."""
    plat, arch = spec.options.get("platform"), spec.options.get("arch")
    if plat is None and arch is None:
        return []
    norm = target.normalize_arch(arch) if arch is not None else None
    if plat not in _PLATFORMS or norm is None:
        raise UsageError(
            f"platform= must be one of {', '.join(_PLATFORMS)} and arch= one of "
            "x64, ia32, arm64, armv7l (both together)",
            where=spec.text,
        )
    return [(plat, norm)]


def _plan_pypi(
    spec: SourceSpec,
    opts: FetchOptions,
    http: HttpClient,
    chosen: tuple[str | None, str | None],
    shipped_tags: set[str] | None = None,
) -> Planned:
    assert spec.version is not None
    name, version = spec.name, spec.version
    platform, arch = chosen
    where = pypi.release_url(opts.pypi_url, name, version)

    def prove() -> Expectation:
        files = pypi.release_files(http, opts.pypi_url, name, version)
        if spec.filename:
            match = [f for f in files if f.filename == spec.filename]
            if not match:
                raise ReferenceUnavailableError(
                    f"{name}=={version} has no file {spec.filename}", where=where
                )
            f = match[0]
        else:
            f = pypi.choose_file(files, platform, arch, where, shipped_tags)
        return Expectation(f.url, f.filename, f.sha256, proof=(f"sha256 {f.sha256} from {where}",))

    which = spec.filename or f"{platform or 'any'}-{arch or 'any'}"
    if shipped_tags and not spec.filename:
        which += ":" + ",".join(sorted(shipped_tags))
    comp = Component(name, version, spec.text, platform, arch)
    return Planned(f"pypi:{name.lower()}=={version}:{which}", comp, prove)


def _plan_npm(spec: SourceSpec, opts: FetchOptions, http: HttpClient) -> Planned:
    assert spec.version is not None
    name, version = spec.name, spec.version
    where = npm.version_doc_url(opts.npm_registry, name, version)

    def prove() -> Expectation:
        try:
            doc = npm.version_doc(http, opts.npm_registry, name, version)
            tarball, sha512 = npm.dist_of(doc, where)
        except ReferenceMismatchError as exc:
            return Expectation(
                where,
                f"{name}-{version}.tgz",
                None,
                problems=(_mismatch(exc.diagnostics(), url=where),),
            )
        fn = unquote(urlsplit(tarball).path.rsplit("/", 1)[-1]) or f"{version}.tgz"
        proof = (f"sha512 {sha512[:16]}... from dist.integrity at {where}",)
        return Expectation(tarball, fn, None, sha512, proof=proof)

    comp = Component(name, version, spec.text)
    return Planned(f"npm:{name}@{version}", comp, prove)


def _plan_url(spec: SourceSpec) -> Planned:
    assert spec.sha256 is not None and spec.filename is not None
    url, fn, sha = spec.name, spec.filename, spec.sha256

    def prove() -> Expectation:
        return Expectation(url, fn, sha, proof=(f"sha256 {sha} pinned in the source",))

    comp = Component(fn, None, spec.text)
    return Planned(f"url:{url}#sha256={sha}", comp, prove)


# --- materialise --------------------------------------------------------------------------


def resolve_remote(
    spec: str | SourceSpec,
    shipped: Inventory,
    opts: FetchOptions | None,
    workdir: str,
    ctx: AnalysisContext | None = None,
    *,
    analyzer: Analyzer | None = None,
) -> list[Reference]:
    """Fetch, prove, cache and analyse one remote SOURCE into References."""
    if isinstance(spec, str):
        spec = parse_source(spec)
    if opts is None:
        opts = FetchOptions()
    cache = Cache(opts.resolved_cache_dir())
    with HttpClient(opts) as http:
        tmp = cache.tmp_dir()
        choice = target_choice(spec, shipped)
        options: Sequence[Sequence[target.Target] | None] = (
            choice.options if choice is not None and len(choice.options) > 1 else [None]
        )
        got: list[tuple[Sequence[target.Target] | None, list[Reference]]] = []
        first_error: ReferenceUnavailableError | None = None
        for option in options:
            try:
                plans = _plan(spec, shipped, opts, http, tmp, option)
                got.append(
                    (option, _materialize_all(plans, spec, cache, http, workdir, ctx, analyzer))
                )
            except ReferenceUnavailableError as exc:
                if len(options) == 1:
                    raise
                first_error = first_error or exc
        if not got:
            assert first_error is not None
            raise first_error
    if choice is None:
        return got[0][1]
    if len(got) > 1:
        # candidates remain: keep the upstream that explains the most shipped files
        scored = [(tuple(o or ()), target.score(shipped, refs)) for o, refs in got]
        choice = target.decide(choice, scored)
        refs = next(r for o, r in got if tuple(o or ()) == choice.chosen())
    else:
        refs = got[0][1]
        if len(options) > 1:  # the other candidates could not be had
            choice = target.decide(choice, [(tuple(got[0][0] or ()), target.score(shipped, refs))])
    described = choice.to_dict()
    return [replace(r, component=replace(r.component, target=described)) for r in refs]


def _materialize_all(
    plans: Sequence[Planned],
    spec: SourceSpec,
    cache: Cache,
    http: HttpClient,
    workdir: str,
    ctx: AnalysisContext | None,
    analyzer: Analyzer | None,
) -> list[Reference]:
    an = analyzer
    refs = []
    for p in plans:
        if an is None:
            # only needed on a cold cache for the inventory; the key needs its version
            an = default_analyzer()
        try:
            refs.append(_materialize(p, spec, cache, http, an, workdir, ctx))
        except ReferenceUnavailableError:
            if not p.optional:
                raise
    return refs


def _materialize(
    p: Planned,
    spec: SourceSpec,
    cache: Cache,
    http: HttpClient,
    an: Analyzer,
    workdir: str,
    ctx: AnalysisContext | None,
) -> Reference:
    with cache.lock(p.key):
        warm = _from_cache(p, spec, cache, an, workdir, ctx)
        if warm is not None:
            return warm
        got = _download_proven(p, spec, cache, http)
        if isinstance(got, Reference):
            return got
        comp, path, sha = got
        return _analyse(p.key, comp, path, sha, cache, an, workdir, ctx)


def _offline_miss(p: Planned, spec: SourceSpec, cache: Cache) -> ReferenceUnavailableError:
    return ReferenceUnavailableError(
        "offline mode and this reference is not in the cache "
        f"({cache.root}); run once online or drop --offline",
        where=f"{spec.text} ({p.component.name} {p.key.split(':', 2)[-1]})",
    )


def _download_proven(
    p: Planned, spec: SourceSpec, cache: Cache, http: HttpClient
) -> Reference | tuple[Component, str, str]:
    """Prove, download, check: (component, cached archive path, sha256), or a mismatch."""
    if http.opts.offline:
        raise _offline_miss(p, spec, cache)
    exp = p.prove()
    comp = replace(p.component, proof=exp.proof)
    if exp.problems:
        return Reference(comp, (), exp.problems)
    got = http.download(exp.url, cache.tmp_dir(), label=exp.filename)
    problems: list[Anomaly] = []
    if exp.sha256 is not None and got.sha256 != exp.sha256:
        problems.append(
            _mismatch(
                f"{exp.url}: downloaded sha256 {got.sha256} does not match the proven {exp.sha256}",
                url=exp.url,
                expected_sha256=exp.sha256,
                actual_sha256=got.sha256,
            )
        )
    if exp.sha512 is not None and got.sha512 != exp.sha512:
        problems.append(
            _mismatch(
                f"{exp.url}: downloaded sha512 does not match dist.integrity",
                url=exp.url,
                expected_sha512=exp.sha512,
                actual_sha512=got.sha512,
                actual_sha256=got.sha256,
            )
        )
    if problems:
        with contextlib.suppress(OSError):
            Path(got.path).unlink()
        comp = replace(comp, digests={exp.filename: got.sha256})
        return Reference(comp, (), tuple(problems))
    path = cache.put_blob_file(got.path, got.sha256)
    comp = replace(
        comp,
        digests={exp.filename: got.sha256},
        proof=(*exp.proof, f"downloaded from {exp.url}, sha256 {got.sha256} verified"),
    )
    return comp, path, got.sha256


def fetch_source(
    spec: str | SourceSpec, shipped: Inventory, opts: FetchOptions | None = None
) -> list[tuple[Component, str]]:
    """Proven archives of a SOURCE in the cache, without analysing them.

    Raises ``ReferenceUnavailableError`` (exit 3) when one cannot be obtained and
    ``ReferenceMismatchError`` when one fails its proof. Cached archives are re-hashed.
    """
    if isinstance(spec, str):
        spec = parse_source(spec)
    opts = opts or FetchOptions()
    cache = Cache(opts.resolved_cache_dir())
    out: list[tuple[Component, str]] = []
    with HttpClient(opts) as http:
        for p in _plan(spec, shipped, opts, http, cache.tmp_dir()):
            with cache.lock(p.key):
                cached = _cached_archive(cache, p.key)
                if cached is not None:
                    comp, path = cached
                    out.append((replace(comp, source=spec.text), path))
                    continue
                got = _download_proven(p, spec, cache, http)
                if isinstance(got, Reference):
                    raise ReferenceMismatchError(got.problems[0].message, where=spec.text)
                comp, path, sha = got
                cache.put_proof(p.key, {"component": comp.to_dict(), "archive_sha256": sha})
                out.append((comp, path))
    return out


def _proof_record(cache: Cache, key: str) -> tuple[Component, str, str | None] | None:
    """(component, archive sha256, reference inventory sha256) of a cached proof record; an
    unreadable record is dropped (a miss)."""
    rec = cache.get_proof(key)
    if rec is None:
        return None
    try:
        f = Fields(rec)
        comp = Component.from_dict(rec.get("component"), "component")
        sha = f.sha256("archive_sha256")
        ref_sha = f.opt_sha256("ref_sha256")
    except SchemaError:
        cache.drop_proof(key)
        return None
    return comp, sha, ref_sha


def _cached_archive(cache: Cache, key: str) -> tuple[Component, str] | None:
    """The proven archive of a cached proof record, re-hashed (None: a miss)."""
    rec = _proof_record(cache, key)
    if rec is None:
        return None
    path = cache.get_blob(rec[1])
    return (rec[0], path) if path is not None else None


def _from_cache(
    p: Planned,
    spec: SourceSpec,
    cache: Cache,
    an: Analyzer,
    workdir: str,
    ctx: AnalysisContext | None,
) -> Reference | None:
    rec = _proof_record(cache, p.key)
    if rec is None:
        return None
    comp, sha, ref_sha = rec
    comp = replace(comp, source=spec.text)
    doc = cache.get_ref(sha, an.version, ref_sha)
    if isinstance(doc, dict):
        try:
            cached: Reference | None = Reference.from_dict(doc)
        except MalformedInputError:
            cached = None
        if cached is not None:
            proof = (*comp.proof, f"reference inventory from the cache ({cache.root})")
            return Reference(
                replace(comp, proof=proof), cached.files, (), cached.anomalies, cached.links
            )
    path = cache.get_blob(sha)  # re-hashed: a corrupted or swapped archive is a miss
    if path is None:
        cache.drop_proof(p.key)
        return None
    return _analyse(p.key, comp, path, sha, cache, an, workdir, ctx)


def _analyse(
    key: str,
    comp: Component,
    path: str,
    sha: str,
    cache: Cache,
    an: Analyzer,
    workdir: str,
    ctx: AnalysisContext | None,
) -> Reference:
    try:
        ref = an.build(comp, path, workdir, ctx or AnalysisContext())
    except (ArtifactError, MalformedInputError) as exc:
        raise ReferenceUnavailableError(
            f"proven upstream archive cannot be unpacked: {exc.message}", where=path
        ) from exc
    ref = Reference(comp, ref.files, ref.problems, ref.anomalies, ref.links)
    if not ref.problems:
        ref_sha = cache.put_ref(sha, an.version, ref.to_dict())
        cache.put_proof(
            key, {"component": comp.to_dict(), "archive_sha256": sha, "ref_sha256": ref_sha}
        )
    return ref


def new_workdir() -> str:
    return tempfile.mkdtemp(prefix="biv-ref-")
