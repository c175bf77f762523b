"""The ``deps:npm`` stage: discover, obtain (concurrently), prove, judge, summarise.

``run`` takes the comparison results of the whole artifact and returns them with every file
of a verified package folder re-judged against its published tarball, one Component per
dependency (``npm:NAME@VERSION``: version, integrity, install paths, how it was proven), the
anomalies the stage found (``unverifiable-dependency``, ``unknown-dependency-version``,
``reference-mismatch``, ``malformed-input`` for unreadable manifests and lockfiles) and the
reasons some dependencies could not be obtained (the verification is then inconclusive
unless something fails).

Packages are processed from the outside in: a nested folder whose ``package.json`` the
enclosing package's own tarball holds (bundled dependencies, test fixtures) is part of that
package, compared against its tarball, and is not a dependency of its own. Each level's
dependencies are fetched concurrently, at most ``workers`` at a time; one NAME@VERSION
installed at several paths is fetched once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from verifier.analysis import AnalysisContext
from verifier.model import Anomaly, Component, FileResult, Status
from verifier.npmdeps import SOURCE
from verifier.npmdeps.discover import Discovery, Loose, PackageDir, discover
from verifier.npmdeps.judge import component_name, judge_files
from verifier.npmdeps.lockfile import parse_sri
from verifier.npmdeps.registry import Fetcher, Obtained
from verifier.record import record
from verifier.upstream import npm
from verifier.upstream.options import FetchOptions

Progress = Callable[[int, int], None]
MAX_LISTED = 10


@record
class Pin:
    """A policy pin: NAME@VERSION's tarball must also match ``integrity`` (SRI)."""

    name: str
    version: str
    integrity: str


@record
class NpmSettings:
    skip: tuple[str, ...] = ()  # package-name patterns (fnmatch, case-sensitive as npm names)
    pins: tuple[Pin, ...] = ()
    workers: int = 8


@record
class NpmStage:
    results: tuple[FileResult, ...]
    components: tuple[Component, ...]
    anomalies: tuple[Anomaly, ...]
    unavailable: tuple[str, ...]
    dependency_results: frozenset[int]  # indices of results inside dependency folders
    compared: int  # dependencies whose files were compared with their tarballs
    notes: tuple[str, ...] = ()


@dataclass
class _Dep:
    """The stage's bookkeeping for one NAME@VERSION."""

    name: str
    version: str
    paths: list[str] = field(default_factory=list)
    manifest_results: list[int] = field(default_factory=list)
    obtained: Obtained | None = None
    status: str = "pending"  # verified | unverifiable | unknown-version | mismatch | ...
    proof: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    skipped_by: str | None = None


def _skip_pattern(name: str, settings: NpmSettings) -> str | None:
    for pat in settings.skip:
        if fnmatchcase(name, pat):
            return pat
    return None


@dataclass
class _Walk:
    """What the stage learns while it walks the package folders, level by level."""

    deps: dict[tuple[str, str], _Dep] = field(default_factory=dict)
    # per package: the dependency it is, or (owner package, path prefix inside the owner)
    own_dep: dict[int, tuple[str, str]] = field(default_factory=dict)
    folded: dict[int, tuple[int, str]] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)
    extra_components: list[Component] = field(default_factory=list)


def run(
    results: Sequence[FileResult],
    settings: NpmSettings,
    opts: FetchOptions,
    workdir: str,
    ctx: AnalysisContext | None,
    progress: Progress | None = None,
) -> NpmStage:
    disc = discover(results)
    if not (disc.packages or disc.loose or disc.problems):
        return NpmStage(tuple(results), (), (), (), frozenset(), 0, tuple(disc.notes))
    walk = _Walk()
    for i, message in disc.problems:
        walk.anomalies.append(_at(results[i], "malformed-input", message))
    with Fetcher(opts, workdir, ctx) as fetcher:
        _obtain_levels(disc.packages, results, settings, fetcher, walk, progress)
        request_count = fetcher.requests

    pins = {(p.name, p.version): p for p in settings.pins}
    for p in disc.packages:
        pk = walk.own_dep.get(p.index)
        if pk is not None:
            _prove_instance(walk.deps[pk], p, disc, pins.get(pk), results, walk.anomalies)

    new, judged_files = _rejudge(disc, results, walk)
    deps = walk.deps
    unavailable = _unavailable([d for d in deps.values() if d.status == "unavailable" and d.paths])
    live = [d for d in deps.values() if d.paths]
    components = [_component(d) for d in sorted(live, key=lambda d: (d.name, d.version))]
    components.extend(walk.extra_components)
    return NpmStage(
        results=tuple(new.get(i, r) for i, r in enumerate(results)),
        components=tuple(components),
        anomalies=tuple(walk.anomalies),
        unavailable=tuple(unavailable),
        dependency_results=frozenset(judged_files),
        compared=sum(1 for d in deps.values() if d.status == "verified" and d.paths),
        notes=(*disc.notes, f"{request_count} registry request(s)"),
    )


def _obtain_levels(
    pkgs: Sequence[PackageDir],
    results: Sequence[FileResult],
    settings: NpmSettings,
    fetcher: Fetcher,
    walk: _Walk,
    progress: Progress | None,
) -> None:
    """Outside in, one depth at a time: fold what an enclosing tarball holds, then fetch the
    level's dependencies concurrently (each NAME@VERSION once)."""
    total = len({(p.name, p.version) for p in pkgs if p.name})
    done = 0
    for level in sorted({p.depth for p in pkgs}):
        level_pkgs = [p for p in pkgs if p.depth == level]
        wanted = _claim(level_pkgs, pkgs, results, settings, walk)
        for key, got in _obtain_all(fetcher, wanted, settings.workers):
            walk.deps[key].obtained = got
            done += 1
            if progress is not None:
                progress(done, total)
        _renamed(level_pkgs, walk.deps, walk.own_dep, fetcher, settings)


def _claim(
    level_pkgs: Sequence[PackageDir],
    pkgs: Sequence[PackageDir],
    results: Sequence[FileResult],
    settings: NpmSettings,
    walk: _Walk,
) -> list[tuple[str, str]]:
    """Assign each folder of one level to its dependency (or its owner's tarball); returns
    the NAME@VERSIONs first seen at this level that must be fetched."""
    wanted: list[tuple[str, str]] = []
    for p in level_pkgs:
        fold = _fold_target(p, pkgs, walk.folded, walk.own_dep, walk.deps)
        if fold is not None:
            walk.folded[p.index] = fold
            continue
        if p.name is None or p.version is None:
            walk.anomalies.append(_nameless(p, results))
            walk.extra_components.append(_nameless_component(p))
            continue
        key = (p.name, p.version)
        dep = walk.deps.get(key)
        if dep is None:
            dep = walk.deps[key] = _Dep(p.name, p.version)
            dep.skipped_by = _skip_pattern(p.name, settings)
            if dep.skipped_by is None:
                wanted.append(key)
        dep.paths.append(p.where)
        dep.manifest_results.append(p.manifest_result)
        walk.own_dep[p.index] = key
    return wanted


def _rejudge(
    disc: Discovery, results: Sequence[FileResult], walk: _Walk
) -> tuple[dict[int, FileResult], set[int]]:
    """New results for the files of package folders (against the tarball when the package is
    verified, else the app's own with the reason), and the indices of every such file."""
    pkgs = disc.packages
    new: dict[int, FileResult] = {}
    judged_files: set[int] = set()
    files_of: dict[int, list[tuple[str, int]]] = {p.index: list(p.files) for p in pkgs}
    for idx, (owner, prefix) in walk.folded.items():
        files_of.setdefault(owner, []).extend(
            (f"{prefix}/{rel}", i) for rel, i in files_of.get(idx, ())
        )
        files_of[idx] = []
    for p in pkgs:
        for _, i in files_of.get(p.index, ()):
            judged_files.add(i)
    for p in pkgs:
        if p.index in walk.folded:
            continue
        pk = walk.own_dep.get(p.index)
        d = walk.deps[pk] if pk is not None else None
        ob = d.obtained if d is not None else None
        pkg_files = files_of.get(p.index, ())
        if d is not None and d.status == "verified" and ob and ob.published is not None:
            for i, fr in judge_files(d.name, d.version, p, pkg_files, ob.published, results):
                new[i] = fr
            continue
        why = d.status if d is not None else "unverifiable"
        label = f"{d.name}@{d.version}" if d is not None else p.where
        comp = component_name(d.name, d.version) if d is not None else f"npm:{p.where}"
        for rel, i in pkg_files:
            new[i] = _not_compared(results[i], comp, label, rel, p.where, why)
    for loose in disc.loose:
        judged_files.update(loose.results)
        for i in loose.results:
            new[i] = _not_compared(
                results[i], f"npm:{loose.where}", loose.where, "", loose.where, "unverifiable"
            )
        walk.anomalies.append(_loose_anomaly(loose, results))
        walk.extra_components.append(
            Component(
                name=f"npm:{loose.where}",
                version=None,
                source=SOURCE,
                proof=("no package.json: nothing identifies this folder",),
                npm={"status": "unverifiable", "paths": [loose.where]},
            )
        )
    return new, judged_files


def _folder_name(install_path: str) -> str:
    """The package name a folder is installed under (what ``require`` resolves)."""
    return install_path.rsplit("node_modules/", 1)[-1]


def _renamed(
    level: Sequence[PackageDir],
    deps: dict[tuple[str, str], _Dep],
    own_dep: dict[int, tuple[str, str]],
    fetcher: Fetcher,
    settings: NpmSettings,
) -> None:
    """A folder whose package.json claims a name no registry has, installed under a name
    the registry does have at that version, is compared with that package: renaming a
    patched dependency does not make it "unverifiable" (npm aliases keep the real name in
    package.json, so an honest install never looks like this)."""
    moves: dict[tuple[str, str], list[PackageDir]] = {}
    for p in level:
        key = own_dep.get(p.index)
        got = deps[key].obtained if key is not None else None
        if key is None or got is None or got.status != "unknown-name":
            continue
        folder = _folder_name(p.install_path)
        if folder != key[0] and npm.valid_name(folder):
            moves.setdefault((folder, key[1]), []).append(p)
    if not moves:
        return
    wanted = [k for k in moves if k not in deps]
    answers = dict(_obtain_all(fetcher, wanted, settings.workers))
    for alt, moved in moves.items():
        dep = deps.get(alt)
        got = dep.obtained if dep is not None else answers.get(alt)
        if got is None or got.status not in ("ok", "unknown-version", "mismatch"):
            continue
        if dep is None:
            dep = deps[alt] = _Dep(alt[0], alt[1], obtained=got)
        for p in moved:
            old = deps[own_dep[p.index]]
            old.paths.remove(p.where)
            old.manifest_results.remove(p.manifest_result)
            dep.paths.append(p.where)
            dep.manifest_results.append(p.manifest_result)
            dep.proof.append(
                f"{p.where}/package.json calls it {old.name!r}, a name no registry has; it is "
                f"installed as {alt[0]!r}, so it is compared with {alt[0]}@{alt[1]}"
            )
            own_dep[p.index] = alt


def _unavailable(missing: Sequence[_Dep]) -> list[str]:
    """One line per reason: which dependencies could not be obtained."""
    by_reason: dict[str, list[str]] = {}
    for d in missing:
        reason = d.obtained.reason if d.obtained is not None else "not fetched"
        by_reason.setdefault(reason, []).append(f"{d.name}@{d.version}")
    out = []
    for reason, names in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        listed = ", ".join(names[:MAX_LISTED])
        more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
        n = len(names)
        out.append(
            f"{SOURCE}: {n} npm dependenc{'y' if n == 1 else 'ies'} could not be obtained "
            f"({reason}): {listed}{more}"
        )
    return out


def _not_compared(
    r: FileResult, comp: str, label: str, rel: str, where: str, why: str
) -> FileResult:
    """A file of a dependency that could not be compared: the app's own, with the reason."""
    ev: dict[str, Any] = {"npm": label, "file": rel, "install_path": where, "not_compared": why}
    return FileResult(r.path, Status.OWN, r.shipped, None, comp, ev)


def _obtain_all(
    fetcher: Fetcher, wanted: list[tuple[str, str]], workers: int
) -> list[tuple[tuple[str, str], Obtained]]:
    """Cached answers first, in this thread (parsing JSON gains nothing from threads); the
    misses are fetched concurrently, at most ``workers`` at a time."""
    out: list[tuple[tuple[str, str], Obtained]] = []
    misses: list[tuple[str, str]] = []
    for k in wanted:
        hit = fetcher.cached(*k)
        if hit is None:
            misses.append(k)
        else:
            out.append((k, hit))
    if len(misses) <= 1 or workers <= 1:
        return out + [(k, fetcher.obtain(*k)) for k in misses]
    with ThreadPoolExecutor(max_workers=min(workers, len(misses))) as pool:
        got = list(pool.map(lambda k: fetcher.obtain(*k), misses))
    return out + list(zip(misses, got, strict=True))


def _fold_target(
    p: PackageDir,
    pkgs: Sequence[PackageDir],
    folded: Mapping[int, tuple[int, str]],
    own_dep: Mapping[int, tuple[str, str]],
    deps: Mapping[tuple[str, str], _Dep],
) -> tuple[int, str] | None:
    """(owner package, prefix) when the enclosing package's tarball holds this folder."""
    if p.parent is None:
        return None
    parent = pkgs[p.parent]
    rel = p.install_path[len(parent.install_path) + 1 :]
    owner, prefix = parent.index, ""
    if parent.index in folded:
        owner, prefix = folded[parent.index]
    key = own_dep.get(owner)
    got = deps[key].obtained if key is not None else None
    if got is None or got.published is None:
        return None
    inner = f"{prefix}/{rel}" if prefix else rel
    if f"{inner}/package.json" in got.published.files:
        return owner, inner
    return None


def _prove_instance(
    dep: _Dep,
    p: PackageDir,
    disc: Discovery,
    pin: Pin | None,
    results: Sequence[FileResult],
    anomalies: list[Anomaly],
) -> None:
    """The dependency's status, plus what this install's lockfile entries and pin say."""
    got = dep.obtained
    if dep.skipped_by is not None:
        dep.status = "skipped"
        return
    if got is None:
        dep.status = "unavailable"
        return
    manifest = results[p.manifest_result]
    if got.status in ("unknown-name", "unknown-version"):
        anomalies.append(_unlisted(dep, p, got, manifest))
        return
    if got.status == "unavailable":
        dep.status = "unavailable"
        return
    if got.status == "mismatch":
        if dep.status != "mismatch":
            dep.status = "mismatch"
            for a in got.problems:
                anomalies.append(_at(manifest, a.rule, a.message, **_with_comp(a, dep, p)))
        return
    if dep.status == "pending":
        dep.status = "verified"
        dep.proof.extend(got.proof)
        dep.sources.extend(got.sources)
    mismatches = _check_hashes(dep, p, got, _expected_hashes(disc, p, pin), manifest)
    anomalies.extend(mismatches)
    if mismatches:
        dep.status = "mismatch"


def _unlisted(dep: _Dep, p: PackageDir, got: Obtained, manifest: FileResult) -> Anomaly:
    """A name (``unverifiable-dependency``) or version (``unknown-dependency-version``) the
    registry does not have."""
    if dep.status == "pending":
        dep.status = "unverifiable" if got.status == "unknown-name" else "unknown-version"
        dep.proof.append(got.reason)
    where = dict(
        package=dep.name,
        version=dep.version,
        install_path=p.where,
        component=component_name(dep.name, dep.version),
    )
    if got.status == "unknown-name":
        message = (
            f"{p.where} is {dep.name}@{dep.version}, which no registry can vouch for "
            f"({got.reason}): a private or local package; review it"
        )
        return _at(manifest, "unverifiable-dependency", message, **where)
    message = (
        f"{p.where} is {dep.name}@{dep.version}, a version the registry never "
        f"published ({got.reason}): a patched dependency with a bumped version "
        "looks like this"
    )
    return _at(manifest, "unknown-dependency-version", message, **where)


def _expected_hashes(disc: Discovery, p: PackageDir, pin: Pin | None) -> list[tuple[str, str, str]]:
    """(source label, algorithm, expected hex): this install's lockfile entries, the pin."""
    checks: list[tuple[str, str, str]] = []
    for entry in disc.lock_entries(p):
        for alg, hexd in entry.hashes:
            checks.append((entry.label(), alg, hexd))
    if pin is not None:
        for alg, hexd in parse_sri(pin.integrity):
            checks.append((f"policy pin for {pin.name}@{pin.version}", alg, hexd))
    return checks


def _check_hashes(
    dep: _Dep,
    p: PackageDir,
    got: Obtained,
    checks: Sequence[tuple[str, str, str]],
    manifest: FileResult,
) -> list[Anomaly]:
    """Each expected hash against the published tarball's: a match is a line of proof, a
    difference a ``reference-mismatch``."""
    assert got.digests is not None
    out: list[Anomaly] = []
    for label, alg, expected in checks:
        actual = got.digests.get(alg)
        if actual == expected:
            line = f"{alg} matches {label}"
            if alg == "sha1":
                line += " (sha1 is checked, but it is not enough alone)"
            if line not in dep.proof:
                dep.proof.append(line)
            src = label.split(" (", 1)[0]
            if alg != "sha1" and src not in dep.sources:
                dep.sources.append(src)
            continue
        out.append(
            _at(
                manifest,
                "reference-mismatch",
                f"{dep.name}@{dep.version} at {p.where}: the published tarball's {alg} is "
                f"{actual}, but {label} says {expected}",
                package=dep.name,
                version=dep.version,
                install_path=p.where,
                component=component_name(dep.name, dep.version),
                source_of_hash=label,
                algorithm=alg,
                expected_digest=expected,
                actual_digest=actual,
            )
        )
    return out


def _with_comp(a: Anomaly, dep: _Dep, p: PackageDir) -> dict[str, Any]:
    ev = dict(a.evidence)
    ev.pop("path", None)
    ev.pop("location", None)
    ev.update(
        package=dep.name,
        version=dep.version,
        install_path=p.where,
        component=component_name(dep.name, dep.version),
    )
    return ev


def _at(r: FileResult, rule: str, message: str, **evidence: Any) -> Anomaly:
    """An anomaly located at one shipped file (its sha256 lets a waiver cover it)."""
    e = r.shipped
    ev: dict[str, Any] = {"path": r.path, "location": e.location if e else r.path}
    if e is not None:
        ev["actual_sha256"] = e.sha256
    ev.update(evidence)
    return Anomaly(rule, message, ev)


def _nameless(p: PackageDir, results: Sequence[FileResult]) -> Anomaly:
    r = results[p.manifest_result]
    if p.malformed is not None:
        return _at(r, "malformed-input", f"{p.where}/package.json: {p.malformed}")
    return _at(
        r,
        "unverifiable-dependency",
        f"{p.where} cannot be looked up on a registry: {p.problem}",
        install_path=p.where,
        reason=p.problem,
    )


def _nameless_component(p: PackageDir) -> Component:
    return Component(
        name=f"npm:{p.where}",
        version=None,
        source=SOURCE,
        proof=(p.problem or "package.json unreadable",),
        npm={"status": "unverifiable", "paths": [p.where]},
    )


def _loose_anomaly(loose: Loose, results: Sequence[FileResult]) -> Anomaly:
    r = results[loose.results[0]]
    return Anomaly(
        "unverifiable-dependency",
        f"{loose.where} has no package.json: nothing identifies it, yet Node loads its "
        f"index.js for require({loose.install_path.rsplit('node_modules/', 1)[-1]!r})",
        {
            "path": r.path,
            "location": r.shipped.location if r.shipped else r.path,
            "install_path": loose.where,
            "files": len(loose.results),
        },
    )


def _component(d: _Dep) -> Component:
    got = d.obtained
    info: dict[str, Any] = {
        "package": d.name,
        "status": d.status,
        "paths": sorted(d.paths),
    }
    digests: dict[str, str] = {}
    proof = list(d.proof)
    if d.status == "skipped":
        proof = [f"not checked: the policy skips {d.skipped_by!r}"]
    elif d.status == "unavailable" and got is not None:
        proof = [f"not obtained: {got.reason}"]
    elif d.status == "mismatch" and got is not None and not proof:
        proof = [f"not proven: {got.reason}"]
    if got is not None and got.integrity:
        info["integrity"] = got.integrity
    if got is not None and got.digests is not None:
        digests[got.tarball_url.rsplit("/", 1)[-1] if got.tarball_url else "tarball"] = (
            got.digests.sha256
        )
    if d.sources:
        info["proven_by"] = list(d.sources)
        if d.status == "verified" and len(d.sources) == 1:
            proof.append(f"proven by one source only ({d.sources[0]})")
    return Component(
        name=component_name(d.name, d.version),
        version=d.version,
        source=SOURCE,
        digests=digests,
        proof=tuple(proof),
        npm=info,
    )
