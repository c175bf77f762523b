"""Unpacked members -> Inventory: analyse every file (format, digests, signatures) in parallel.

Hashing releases the GIL, so a thread pool keeps both cores busy on large trees while each
file is still read exactly once (``analysis.analyze`` does all of its digests in one pass).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, fields, replace
from typing import TypeVar

from verifier import procpool
from verifier.analysis import AnalysisContext, analyze
from verifier.analysis.context import preload
from verifier.analysis_cache import AnalysisCache
from verifier.binary.sniff import sniff
from verifier.checks.macos import bundle_seal_anomalies
from verifier.model import (
    Anomaly,
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    Inventory,
    Link,
    Reference,
)
from verifier.unpack import Member, Unpacked, unpack
from verifier.unpack.single import single_binary

Progress = Callable[[int, int], None]

# Bump whenever analysis output (BinaryFacts) changes: it keys cached reference inventories.
# (The per-file analysis cache is keyed by the source of the analysis modules as well.)
# 2: one chain engine, signature-slack, region digests; 3: reference inventories carry
# anomalies (inheritance); 4: complete digests for cached inventories (lazy analysis);
# 5: reference inventories carry their symlinks; 6: and their tar hard links
ANALYSIS_VERSION = "6"


def _workers() -> int:
    return max(2, min(8, (os.cpu_count() or 2)))


def analyze_members(
    members: Sequence[Member],
    ctx: AnalysisContext,
    progress: Progress | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> tuple[tuple[FileEntry, ...], tuple[Anomaly, ...]]:
    """Analyse members in parallel; results keep the members' order. ``meanwhile`` runs once
    while forked workers analyse, if they do (work of the caller's that does not need these
    results: it uses the cores the parent leaves idle), else not at all.

    Each content is analysed once: members with the same sha256 and name share one analysis,
    and ``ctx.cache`` (an ``AnalysisCache``) gives facts known from the other tree, an
    earlier run or an earlier release without reading the file again.
    """
    cache = ctx.cache if isinstance(ctx.cache, AnalysisCache) else None
    total = len(members)
    done: dict[int, FileEntry] = {}
    groups: dict[tuple[str, str], list[int]] = {}
    loose: list[int] = []  # no sha256 from unpack (read in place): analysed one by one
    for i, m in enumerate(members):
        plain = _known_plain(m)  # data files are settled inline, from what unpack read
        if plain is not None:
            done[i] = _entry(m, *plain)
        elif m.sha256 is None:
            loose.append(i)
        else:
            groups.setdefault((m.sha256, _name(m)), []).append(i)
    todo: list[tuple[list[int], tuple[str, str] | None]] = []
    for key, idx in groups.items():
        facts = cache.get(key[0], key[1], ctx) if cache is not None else None
        if facts is None:
            todo.append((idx, key))
        else:
            for i in idx:
                done[i] = _entry(members[i], key[0], facts)
    todo += [([i], None) for i in loose]
    # largest first: a large file started last would leave the other workers idle at the end
    todo.sort(key=lambda job: members[job[0][0]].blob.size, reverse=True)
    if progress is not None:
        progress(len(done), total)

    def one(job: tuple[list[int], tuple[str, str] | None]) -> tuple[str, BinaryFacts]:
        idx, key = job
        m = members[idx[0]]
        if cache is None or key is None:
            return analyze(m.blob, _name(m), ctx, m.sha256)
        t0 = cache.judging_window(ctx)
        sha, facts = analyze(m.blob, key[1], ctx, key[0])
        if sha == key[0]:
            cache.put(sha, key[1], facts, m.blob, _level_of(facts, ctx), t0)
        return sha, facts

    def kept(j: int, result: tuple[str, BinaryFacts]) -> None:
        """In the parent, for a job a forked worker did: its facts for this run."""
        key = todo[j][1]
        if cache is not None and key is not None and result[0] == key[0]:
            cache.remember(key[0], key[1], result[1], _level_of(result[1], ctx))

    # (a large tree's reference waits until the tree's members are freed: memory)
    later = meanwhile if total <= MEANWHILE_MAX_MEMBERS else None
    for j, (sha, facts) in _parallel(len(todo), lambda j: one(todo[j]), ctx, kept, later):
        for i in todo[j][0]:
            done[i] = _entry(members[i], sha, facts)
        if progress is not None:
            progress(len(done), total)
    entries = [done[i] for i in range(total)]
    problems: list[Anomaly] = []
    for e in entries:
        for a in e.facts.anomalies:
            if a.rule == "malformed-input":
                ev = dict(a.evidence)
                ev.setdefault("location", e.location)
                problems.append(Anomaly(a.rule, a.message, ev, a.arch))
    return tuple(entries), tuple(problems)


# fewer files to analyse than this: threads only (forking costs more than it saves)
PROCESS_MIN_JOBS = 4
# more members than this: no ``meanwhile`` work while they are held
MEANWHILE_MAX_MEMBERS = 20_000
_R = TypeVar("_R")


def _parallel(
    n: int,
    job: Callable[[int], _R],
    ctx: AnalysisContext,
    kept: Callable[[int, _R], None] = lambda _j, _r: None,
    meanwhile: Callable[[], None] | None = None,
) -> Iterator[tuple[int, _R]]:
    """``(j, job(j))`` for every ``j < n``, in any order: in forked processes when there are
    enough jobs (``procpool``: analysis is mostly Python, which threads run one at a time),
    else in threads. ``kept(j, result)`` runs in the parent for a job a process did (the
    process's own bookkeeping is lost with it); the cache's counters are carried back.
    ``meanwhile`` runs once while the processes work (not at all with threads)."""
    rest: Sequence[int] = range(n)
    if n >= PROCESS_MIN_JOBS and procpool.available():
        preload(ctx)
        cache = ctx.cache if isinstance(ctx.cache, AnalysisCache) else None

        def counted(j: int) -> tuple[_R, tuple[int, ...] | None]:
            before = astuple(cache.stats) if cache is not None else None
            result = job(j)
            if cache is None or before is None:
                return result, None
            return result, tuple(a - b for a, b in zip(astuple(cache.stats), before, strict=True))

        try:
            for j, (result, delta) in procpool.run(counted, n, min(n, _workers()), meanwhile):
                if cache is not None and delta is not None:
                    for f, d in zip(fields(cache.stats), delta, strict=True):
                        setattr(cache.stats, f.name, getattr(cache.stats, f.name) + d)
                kept(j, result)
                yield j, result
            return
        except procpool.PoolBroken as exc:  # a worker was killed: the rest in-process
            rest = [j for j in range(n) if j not in exc.done]
    if rest:
        with ThreadPoolExecutor(max_workers=_workers()) as pool:
            yield from zip(rest, pool.map(job, rest), strict=True)


def _name(m: Member) -> str:
    return m.path.rsplit("/", 1)[-1]


# the formats whose "core" analysis leaves digests out
_LAZY = (FileFormat.PE, FileFormat.ELF, FileFormat.MACHO)


def _level_of(facts: BinaryFacts, ctx: AnalysisContext) -> AnalysisContext:
    """``ctx``, or ``ctx`` at level "full" when the facts are complete whatever was asked."""
    return ctx if facts.format in _LAZY else replace(ctx, level="full")


def complete(
    inventory: Inventory,
    refs: Sequence[Reference],
    ctx: AnalysisContext,
    settled: Callable[[], tuple[set[int], set[int]]] | None = None,
) -> tuple[Inventory, list[Reference]]:
    """Add the comparison digests to the files analysed at level "core" that may need them.

    A file needs no section or normalised digests when every file of the other side that
    bears its name (the shipped tree against all references, and back) has its sha256: it
    can only be paired with an identical file (by path, by name or by content). Nor does a
    file that pairing pairs by path with identical files only (``settled``: the ``id`` of
    such shipped and reference files, from ``compare.identical_by_path``; asked only when
    some file would otherwise be analysed again: a tool's binary beside a shell completion
    of the same name). Every other file (renamed, changed, new) is analysed in full, so the
    comparison sees exactly what it would see had everything been analysed in full.
    """
    cache = ctx.cache if isinstance(ctx.cache, AnalysisCache) else None
    if ctx.level != "core" or cache is None:
        return inventory, list(refs)
    partial = cache.partial()
    if not partial:
        return inventory, list(refs)
    todo = _needing_digests(inventory.entries, [f for r in refs for f in r.files], partial)
    if not todo:
        return inventory, list(refs)
    full = replace(ctx, level="full")
    done: dict[tuple[str, str], BinaryFacts] = {}
    for key in list(todo):
        known = cache.get(key[0], key[1], full)  # a warm run: no analysis, no question
        if known is not None:
            done[key] = known
            del todo[key]
    if todo and settled is not None:
        ok = set().union(*settled())
        todo = {k: es for k, es in todo.items() if any(id(e) not in ok for e in es)}
    # largest first (see ``analyze_members``)
    jobs = sorted(((k, es[0]) for k, es in todo.items()), key=lambda j: j[1].size, reverse=True)

    def one(item: tuple[tuple[str, str], FileEntry]) -> BinaryFacts:
        (sha, name), e = item
        assert e.blob is not None
        t0 = cache.judging_window(full)
        got, facts = analyze(e.blob, name, full, sha)
        if got == sha:
            cache.put(sha, name, facts, e.blob, full, t0)
        return facts

    def kept(j: int, facts: BinaryFacts) -> None:
        cache.remember(jobs[j][0][0], jobs[j][0][1], facts, full)

    for j, facts in _parallel(len(jobs), lambda j: one(jobs[j]), full, kept):
        done[jobs[j][0]] = facts
    if not done:  # every candidate was settled by path: nothing to replace
        return inventory, list(refs)

    def upgrade(e: FileEntry) -> FileEntry:
        facts = done.get((e.sha256, _basename(e.path)))
        return e if facts is None else replace(e, facts=facts)

    inventory = replace(inventory, entries=tuple(upgrade(e) for e in inventory.entries))
    return inventory, [replace(r, files=tuple(upgrade(f) for f in r.files)) for r in refs]


def _needing_digests(
    shipped: Sequence[FileEntry], ref_files: Sequence[FileEntry], partial: set[tuple[str, str]]
) -> dict[tuple[str, str], list[FileEntry]]:
    """The files analysed at level "core" (by sha256 and name) that share their name with a
    different file of the other side, or bear a name the other side lacks."""
    todo: dict[tuple[str, str], list[FileEntry]] = {}
    for entries, others in ((shipped, ref_files), (ref_files, shipped)):
        maybe = [
            e
            for e in entries
            if e.format in _LAZY and e.blob is not None and (e.sha256, _basename(e.path)) in partial
        ]
        if not maybe:
            continue
        # the other side's digests by name, for these names only (not a set per file)
        other = _shas_by_name(others, {_basename(e.path) for e in maybe})
        for e in maybe:
            name = _basename(e.path)
            if other.get(name) != {e.sha256}:
                todo.setdefault((e.sha256, name), []).append(e)
    return todo


def share_identical(inventory: Inventory, refs: Sequence[Reference]) -> list[Reference]:
    """``refs``, each file equal to the shipped file at its path (size, sha256 and facts)
    holding the shipped entry's path, digest and facts objects instead of copies of its own.

    The values are the same (frozen objects, compared by value everywhere), so the
    comparison is the same; a tree of 100,000 files identical to upstream's holds one copy
    of each instead of two (about 300 bytes a file)."""
    shipped = {e.path: e for e in inventory.entries}
    out = []
    for r in refs:
        files = []
        for f in r.files:
            s = shipped.get(f.path)
            if s is not None and f.facts is s.facts and f.path is s.path:
                files.append(f)  # shared already, when it was read (``read_plain``)
                continue
            if s is None or f.sha256 != s.sha256 or f.size != s.size or f.facts != s.facts:
                files.append(f)
                continue
            location = s.path if f.location == f.path else f.location
            files.append(
                FileEntry(s.path, location, f.container, s.size, s.sha256, s.facts, f.blob)
            )
        out.append(replace(r, files=tuple(files)))
    return out


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _shas_by_name(entries: Sequence[FileEntry], names: set[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in entries:
        name = _basename(e.path)
        if name in names:
            out.setdefault(name, set()).add(e.sha256)
    return out


_PLAIN = (FileFormat.DATA, FileFormat.ASAR)
_PAGE = 4096


def _entry(m: Member, sha: str, facts: BinaryFacts) -> FileEntry:
    return FileEntry(m.path, m.location, m.container, m.blob.size, sha, facts, m.blob)


def _known_plain(m: Member) -> tuple[str, BinaryFacts] | None:
    """A data file that unpack already hashed: its facts without opening it again."""
    if m.sha256 is None:
        return None
    # the first bytes tell every format apart except a PE whose header lies further in; an
    # 'MZ' file goes to analyze, which reads what it needs
    head = m.magic if len(m.magic) >= min(64, m.blob.size) else m.blob.read(0, _PAGE)
    if head[:2] == b"MZ":
        return None
    fmt = sniff(head, m.blob.size)
    if fmt not in _PLAIN:
        return None
    return m.sha256, BinaryFacts(format=fmt, normalized_sha256=m.sha256)


def build(
    unpacked: Unpacked,
    ctx: AnalysisContext,
    progress: Progress | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> Inventory:
    """Analyse every member of an unpacked artifact into an Inventory (``meanwhile``: see
    ``analyze_members``)."""
    entries, _ = analyze_members(unpacked.members, ctx, progress, meanwhile)
    return Inventory(
        source=unpacked.source,
        sha256=unpacked.sha256,
        size=unpacked.size,
        entries=entries,
        problems=tuple(unpacked.problems),
        links=unpacked.links,
        formats=unpacked.formats,
        notes=unpacked.notes,
    )


def strip_single_top_dir(entries: Sequence[FileEntry]) -> tuple[FileEntry, ...]:
    """A release archive that wraps everything in one folder is read from inside it."""
    if not entries:
        return tuple(entries)
    tops = {e.path.split("/", 1)[0] for e in entries}
    if len(tops) != 1 or any("/" not in e.path for e in entries):
        return tuple(entries)
    top = next(iter(tops))
    if top.endswith(".app") or top == "Contents":  # a macOS bundle's layout: keep it
        return tuple(entries)
    cut = len(top) + 1
    return tuple(_with_path(e, e.path[cut:]) for e in entries)


def _with_path(e: FileEntry, path: str) -> FileEntry:
    return FileEntry(path, e.location, e.container, e.size, e.sha256, e.facts, e.blob)


def build_reference_full(
    component: Component,
    archive_path: str,
    workdir: str,
    ctx: AnalysisContext,
    progress: Progress | None = None,
) -> Reference:
    """``build_reference`` with every digest: for inventories that are kept (cached)."""
    return build_reference(component, archive_path, workdir, replace(ctx, level="full"), progress)


def unpack_reference(archive_path: str, workdir: str) -> Unpacked:
    """An upstream release (directory, archive or lone binary) unpacked under ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    sub = tempfile.mkdtemp(prefix="ref-", dir=workdir)
    # a lone binary is a reference of one file (``--against path:node.exe``)
    return single_binary(archive_path) or unpack(archive_path, sub, strict_top=True)


def build_reference(
    component: Component,
    archive_path: str,
    workdir: str,
    ctx: AnalysisContext,
    progress: Progress | None = None,
    unpacked: Unpacked | None = None,
) -> Reference:
    """Unpack (unless ``unpacked`` has it already) and analyse an upstream release
    (directory or archive) into a Reference."""
    if unpacked is None:
        unpacked = unpack_reference(archive_path, workdir)
    entries, problems = analyze_members(unpacked.members, ctx, progress)
    # upstream's own bundle-seal anomalies, so a shipped bundle can inherit them
    seals = bundle_seal_anomalies(Inventory(component.source, "0" * 64, 0, entries), (), ctx)
    files = strip_single_top_dir(entries)
    cut = _top_dir_cut(entries, files)
    return Reference(
        component=component,
        files=files,
        problems=tuple(unpacked.problems) + problems,
        anomalies=tuple(seals),
        links=tuple(
            Link(k.path[cut:], k.target, k.location, k.container, k.kind)
            for k in unpacked.links
            if len(k.path) > cut
        ),
    )


def _top_dir_cut(before: Sequence[FileEntry], after: Sequence[FileEntry]) -> int:
    """How many characters ``strip_single_top_dir`` removed from each path (0 or dir + '/')."""
    if not before or before[0].path == after[0].path:
        return 0
    return len(before[0].path) - len(after[0].path)
