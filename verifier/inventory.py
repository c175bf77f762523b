"""Unpacked members -> Inventory: analyse every file (format, digests, signatures) in parallel.

Hashing releases the GIL, so a thread pool keeps both cores busy on large trees while each
file is still read exactly once (``binary.analyze`` does all of its digests in one pass).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from verifier.binary.analyze import AnalysisContext, analyze, sniff
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

Progress = Callable[[int, int], None]

# Bump whenever analysis output (BinaryFacts) changes: it keys cached reference inventories.
ANALYSIS_VERSION = "4"  # 2: one chain engine, signature-slack, region digests; 3: reference
# inventories carry anomalies (inheritance); 4: and symlinks


def _workers() -> int:
    return max(2, min(8, (os.cpu_count() or 2)))


def analyze_members(
    members: Sequence[Member], ctx: AnalysisContext, progress: Progress | None = None
) -> tuple[tuple[FileEntry, ...], tuple[Anomaly, ...]]:
    """Analyse members in parallel; results keep the members' order."""

    def one(m: Member) -> FileEntry:
        return _entry(m, *_facts_once(m, ctx))

    # plain data files are settled inline; only binaries go to the thread pool
    total = len(members)
    done: dict[int, FileEntry] = {}
    todo: list[tuple[int, Member]] = []
    for i, m in enumerate(members):
        plain = _known_plain(m)
        if plain is None:
            todo.append((i, m))
        else:
            done[i] = _entry(m, *plain)
    if progress is not None:
        progress(len(done), total)
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for i, entry in zip((i for i, _ in todo), pool.map(one, (m for _, m in todo)), strict=True):
            done[i] = entry
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


_PLAIN = (FileFormat.DATA, FileFormat.ASAR)
_PAGE = 4096


def _facts_once(m: Member, ctx: AnalysisContext) -> tuple[str, BinaryFacts]:
    """Each byte read once: a data file that unpack already hashed is not read again."""
    plain = _known_plain(m)
    if plain is not None:
        return plain
    return analyze(m.blob, m.path.rsplit("/", 1)[-1], ctx)


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


def build(unpacked: Unpacked, ctx: AnalysisContext, progress: Progress | None = None) -> Inventory:
    """Analyse every member of an unpacked artifact into an Inventory."""
    entries, _ = analyze_members(unpacked.members, ctx, progress)
    return Inventory(
        source=unpacked.source,
        sha256=unpacked.sha256,
        size=unpacked.size,
        entries=entries,
        problems=tuple(unpacked.problems),
        links=unpacked.links,
        formats=unpacked.formats,
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


def build_reference(
    component: Component,
    archive_path: str,
    workdir: str,
    ctx: AnalysisContext,
    progress: Progress | None = None,
) -> Reference:
    """Unpack and analyse an upstream release (directory or archive) into a Reference."""
    os.makedirs(workdir, exist_ok=True)
    sub = tempfile.mkdtemp(prefix="ref-", dir=workdir)
    from verifier.unpack.single import single_binary

    # a lone binary is a reference of one file (``--against path:node.exe``)
    unpacked = single_binary(archive_path) or unpack(archive_path, sub, strict_top=True)
    entries, problems = analyze_members(unpacked.members, ctx, progress)
    from verifier.macos_checks import bundle_seal_anomalies

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
            Link(k.path[cut:], k.target, k.location, k.container)
            for k in unpacked.links
            if len(k.path) > cut
        ),
    )


def _top_dir_cut(before: Sequence[FileEntry], after: Sequence[FileEntry]) -> int:
    """How many characters ``strip_single_top_dir`` removed from each path (0 or dir + '/')."""
    if not before or before[0].path == after[0].path:
        return 0
    return len(before[0].path) - len(after[0].path)
