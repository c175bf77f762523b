"""Links inside one archive layer, resolved the way an extractor's file system would.

biv never creates nor follows a link; it records each one (path, target) and checks the
layer as a whole (docs/contract.md "Archives as real extractors see them"). Symbolic links:

* a link whose target leaves the tree (absolute, a drive, or climbing above the root once
  every link on the way is followed) is hostile;
* a link loop (``la -> lb``, ``lb -> la``), or a chain longer than the kernel would follow
  (``MAX_HOPS``, Linux's ELOOP limit), is hostile;
* a member whose path crosses a link of the same layer (``sub -> .`` then ``sub/x``) is
  hostile: GNU tar, unzip and the like write it *through* the link, somewhere else than its
  name says.

Targets are kept as text relative to the link's own directory (``normalise``); an asar
link, stored relative to the archive's root, is rewritten to that form. A backslash in a
target is an ordinary character, as for the kernel that follows the link; a target that
would leave the tree with the backslash read as a separator (``..\\..\\etc``), as an
extractor on Windows reads it, is hostile too.

Hard links (tar ``LNKTYPE``): GNU tar gives the stored file several names, one inode. Each
name is a file of the tree (its bytes are the stored file's: ``with_hard_links``), and the
names of one inode are also reported as links, independently of the order the archive stored
them in: every name but the first in sorted order is a hard link to that first one
(``hard_groups``). One whose name crosses a symlink, or whose file was dropped, is hostile.
Directories walked on disk report no hard links: file systems make them to save space
(pnpm's store, ``cp -al``, ``nix-store --optimise``), no installer carries them, and each
name is compared as the file it is.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from verifier.unpack.result import LinkRecord, Problem

MAX_HOPS = 40  # links followed while resolving one path (Linux: ELOOP after 40)
_DRIVE = re.compile(r"^[A-Za-z]:")


class _Bad(Exception):
    """``escape`` (the link leads outside the tree) or ``loop``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _absolute(target: str) -> bool:
    t = target.replace("\\", "/")
    return not t or t.startswith("/") or bool(_DRIVE.match(t)) or "\x00" in t


def _resolve(path: str, links: Mapping[str, LinkRecord], *, windows: bool = False) -> str:
    """``path`` with every link on the way followed (lexically, as the kernel would).

    ``windows``: a backslash separates too (``links`` keyed by names read that way)."""
    out: list[str] = []
    todo = deque((path.replace("\\", "/") if windows else path).split("/"))
    hops = 0
    while todo:
        part = todo.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise _Bad("escape")
            out.pop()
            continue
        out.append(part)
        rec = links.get("/".join(out))
        if rec is None:
            continue
        hops += 1
        if hops > MAX_HOPS:
            raise _Bad("loop")
        if _absolute(rec.target):
            raise _Bad("escape")
        out.pop()
        if rec.from_root:
            out.clear()
        target = rec.target.replace("\\", "/") if windows else rec.target
        todo.extendleft(reversed(target.split("/")))
    return "/".join(out)


def normalise(rec: LinkRecord) -> str:
    """The target relative to the link's directory, '/'-separated, without '.' parts."""
    t = rec.target
    base = posixpath.dirname(rec.member)
    if rec.from_root:
        return posixpath.relpath(posixpath.normpath(t) if t else ".", base or ".")
    return posixpath.normpath(t) if t else ""


class _Named(Protocol):
    @property
    def rel(self) -> str: ...


_F = TypeVar("_F", bound=_Named)


def check(
    files: Iterable[str], links: Iterable[LinkRecord]
) -> tuple[list[LinkRecord], list[Problem], set[str]]:
    """(the safe links, one problem per hostile link or member, the hostile paths).

    ``files``: every other member path of the layer. A member in the hostile paths must be
    dropped: an extractor would have written it somewhere else than its name says. Safe hard
    links come back as ``hard_groups`` names them.
    """
    by_path: dict[str, LinkRecord] = {}
    hard: list[LinkRecord] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for rec in links:
        if rec.member in seen:
            problems.append(Problem(rec.member, f"duplicate entry {rec.member!r}"))
            continue
        seen.add(rec.member)
        if rec.hard:
            hard.append(rec)
        else:
            by_path[rec.member] = rec
    if not by_path and not hard:
        return [], problems, set()
    bad: set[str] = set()
    names = [*files, *by_path, *(h.member for h in hard)] if by_path else []
    for p in names:
        parts = p.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in by_path:
                problems.append(
                    Problem(p, f"path crosses the symlink {prefix!r} inside the archive")
                )
                bad.add(p)
                break
    # the same links read with a backslash as a separator: only an escape counts there
    windows = (
        {p.replace("\\", "/"): r for p, r in by_path.items()}
        if any("\\" in p or "\\" in r.target for p, r in by_path.items())
        else None
    )
    for path, rec in by_path.items():
        if path in bad:
            continue
        try:
            _resolve(path, by_path)
            if windows is not None:
                _escape_only(path, windows)
        except _Bad as e:
            why = (
                f"symlink escapes the archive: -> {rec.target!r}"
                if e.kind == "escape"
                else f"symlink loop (more than {MAX_HOPS} links followed from here)"
            )
            problems.append(Problem(path, why))
            bad.add(path)
    safe = [r for p, r in by_path.items() if p not in bad]
    if hard:
        present = set(files)
        kept: list[LinkRecord] = []
        for h in hard:
            if h.member in bad:
                continue
            if h.target in bad or h.target not in present:
                problems.append(Problem(h.member, f"hard link to a dropped member {h.target!r}"))
                bad.add(h.member)
                continue
            kept.append(h)
        safe += hard_groups(kept)
    return safe, problems, bad


def _escape_only(path: str, windows: Mapping[str, LinkRecord]) -> None:
    """Raise ``_Bad("escape")`` when ``path`` leaves the tree read the Windows way."""
    try:
        _resolve(path, windows, windows=True)
    except _Bad as e:
        if e.kind == "escape":
            raise


def hard_groups(hard: Sequence[LinkRecord]) -> list[LinkRecord]:
    """The hard links of a layer as the tree holds them, whatever order the archive used:
    each group of names sharing one stored file (``hard`` records name it as ``target``),
    sorted, gives one link per name but the first, to that first name, as text relative to
    the link's directory like a symlink's."""
    groups: dict[str, list[str]] = {}
    for h in hard:
        groups.setdefault(h.target, [h.target]).append(h.member)
    out: list[LinkRecord] = []
    for names in groups.values():
        names.sort()
        first = names[0]
        for n in names[1:]:
            rel = posixpath.relpath(first, posixpath.dirname(n) or ".")
            out.append(LinkRecord(n, rel, hard=True))
    return out


def with_hard_links(files: Sequence[_F], found: Sequence[LinkRecord], bad: set[str]) -> list[_F]:
    """``files`` less the hostile ones, plus one per hard link ``found`` (as extracted: each
    ``target`` names the stored file): the same bytes under the link's name."""
    out = [f for f in files if f.rel not in bad]
    hard = [h for h in found if h.hard and h.member not in bad and h.target not in bad]
    if not hard:
        return out
    by_rel = {f.rel: f for f in out}
    for h in hard:
        f = by_rel.get(h.target)
        if f is not None:
            out.append(dataclasses.replace(f, rel=h.member))  # type: ignore[type-var]
    return out
