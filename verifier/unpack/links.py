"""Symbolic links inside one archive layer, resolved the way an extractor's file system would.

biv never creates nor follows a link; it records each one (path, target) and checks the
layer as a whole (DESIGN.md "Archives as real extractors see them"):

* a link whose target leaves the tree (absolute, a drive, or climbing above the root once
  every link on the way is followed) is hostile;
* a link loop (``la -> lb``, ``lb -> la``), or a chain longer than the kernel would follow
  (``MAX_HOPS``, Linux's ELOOP limit), is hostile;
* a member whose path crosses a link of the same layer (``sub -> .`` then ``sub/x``) is
  hostile: GNU tar, unzip and the like write it *through* the link, somewhere else than its
  name says.

Targets are kept as text relative to the link's own directory (``normalise``); an asar
link, stored relative to the archive's root, is rewritten to that form.
"""

from __future__ import annotations

import posixpath
import re
from collections import deque
from collections.abc import Iterable, Mapping

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


def _resolve(path: str, links: Mapping[str, LinkRecord]) -> str:
    """``path`` with every link on the way followed (lexically, as the kernel would)."""
    out: list[str] = []
    todo = deque(path.split("/"))
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
        todo.extendleft(reversed(rec.target.replace("\\", "/").split("/")))
    return "/".join(out)


def normalise(rec: LinkRecord) -> str:
    """The target relative to the link's directory, '/'-separated, without '.' parts."""
    t = rec.target.replace("\\", "/")
    base = posixpath.dirname(rec.member)
    if rec.from_root:
        return posixpath.relpath(posixpath.normpath(t) if t else ".", base or ".")
    return posixpath.normpath(t) if t else ""


def check(
    files: Iterable[str], links: Iterable[LinkRecord]
) -> tuple[list[LinkRecord], list[Problem], set[str]]:
    """(the safe links, one problem per hostile link or member, the hostile paths).

    ``files``: every other member path of the layer. A member in the hostile paths must be
    dropped: an extractor would have written it somewhere else than its name says.
    """
    by_path: dict[str, LinkRecord] = {}
    problems: list[Problem] = []
    for rec in links:
        if rec.member in by_path:
            problems.append(Problem(rec.member, f"duplicate entry {rec.member!r}"))
            continue
        by_path[rec.member] = rec
    if not by_path:
        return [], problems, set()
    bad: set[str] = set()
    for p in [*files, *by_path]:
        parts = p.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in by_path:
                problems.append(
                    Problem(p, f"path crosses the symlink {prefix!r} inside the archive")
                )
                bad.add(p)
                break
    for path, rec in by_path.items():
        if path in bad:
            continue
        try:
            _resolve(path, by_path)
        except _Bad as e:
            why = (
                f"symlink escapes the archive: -> {rec.target!r}"
                if e.kind == "escape"
                else f"symlink loop (more than {MAX_HOPS} links followed from here)"
            )
            problems.append(Problem(path, why))
            bad.add(path)
    return [r for p, r in by_path.items() if p not in bad], problems, bad
