"""Path globs used by policies.

Semantics (documented in ``policies/README.md``):

- Paths are relative to the application root, ``/``-separated; matching ignores case
  (Windows and default macOS file systems do too, so ``FFMPEG.DLL`` is ``ffmpeg.dll``).
- A pattern without ``/`` matches the file name at any depth (``Update.exe``,
  ``Uninstall *.exe``, ``Electron Framework``), like ``.gitignore``.
- A pattern with ``/`` is anchored at the application root; ``**`` as a whole segment matches
  zero or more directories (``**/app.asar.unpacked/**``).
- ``*`` matches within one segment, ``?`` one character, ``[abc]``/``[!abc]`` a class.
- Rejected (``GlobError``): empty patterns, absolute paths, backslashes, ``..`` or ``.``
  segments, ``**`` inside a segment (``a**``), unterminated or empty ``[...]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


class GlobError(ValueError):
    """A pattern that is not a valid biv path glob."""


def _segment_regex(seg: str, pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            if i + 1 < len(seg) and seg[i + 1] == "*":
                raise GlobError(
                    f"'**' must be a whole path segment (like 'dir/**/name') in {pattern!r}"
                )
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = seg.find("]", i + 1)
            if j < 0:
                raise GlobError(f"unterminated '[' in {pattern!r}")
            body = seg[i + 1 : j]
            neg = body.startswith("!")
            if neg:
                body = body[1:]
            if not body:
                raise GlobError(f"empty character class '[]' in {pattern!r}")
            body = body.replace("^", "\\^").replace("[", "\\[")
            out.append(f"[^/{body}]" if neg else f"[{body}]")
            i = j
        elif c == "]":
            raise GlobError(f"unmatched ']' in {pattern!r}")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=1024)
def _glob_body(pattern: str) -> str:
    """The regular expression of ``pattern``, without its anchors (GlobError when invalid)."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise GlobError("empty pattern")
    if "\\" in pattern:
        raise GlobError(f"use '/' not '\\' in {pattern!r}")
    if pattern.startswith("/"):
        raise GlobError(f"pattern must be relative to the application root: {pattern!r}")
    if "\0" in pattern:
        raise GlobError(f"NUL byte in {pattern!r}")
    segs = pattern.rstrip("/").split("/")
    if any(s in ("", ".", "..") for s in segs):
        raise GlobError(f"empty, '.' or '..' path segment in {pattern!r}")
    anchored = "/" in pattern.rstrip("/")
    parts: list[str] = []
    for n, seg in enumerate(segs):
        last = n == len(segs) - 1
        if seg == "**":
            # zero or more whole segments; a trailing '**' needs at least one
            parts.append(".+" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(seg, pattern) + ("" if last else "/"))
    body = "".join(parts)
    prefix = "" if anchored else "(?:.*/)?"
    return f"{prefix}{body}"


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` to an anchored, case-insensitive regular expression."""
    try:
        return re.compile(f"^{_glob_body(pattern)}$", re.IGNORECASE | re.DOTALL)
    except re.error as e:
        raise GlobError(f"invalid pattern {pattern!r}: {e}") from None


@lru_cache(maxsize=256)
def _any_regex(patterns: tuple[str, ...], parents: bool) -> re.Pattern[str]:
    """One regular expression matching a path that one of ``patterns`` matches (with
    ``parents``: that one of them matches, or matches one of its parent folders).

    A pre-filter only: most paths match no pattern, and one search of this costs what
    one pattern does, where trying the patterns on the path and each parent costs their
    number times the path's depth. Which pattern matched is still found one by one."""
    for p in patterns:
        compile_glob(p)  # each one valid on its own (GlobError otherwise)
    either = "|".join(f"(?:{_glob_body(p)})" for p in patterns)
    tail = "(?:/.*)?" if parents else ""
    return re.compile(f"^(?:{either}){tail}$", re.IGNORECASE | re.DOTALL)


def check_glob(pattern: str) -> None:
    """Raise ``GlobError`` when ``pattern`` is not a valid glob."""
    compile_glob(pattern)


def glob_match(path: str, pattern: str) -> bool:
    return compile_glob(pattern).match(path) is not None


def match_any(path: str, patterns: Iterable[str]) -> str | None:
    """The first pattern of ``patterns`` that matches ``path``, else None."""
    pats = tuple(patterns)
    if len(pats) > 1 and _any_regex(pats, False).match(path) is None:
        return None
    for p in pats:
        if glob_match(path, p):
            return p
    return None


def covers(path: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that matches ``path`` or one of its parents, else None.

    A pattern naming a directory or an archive covers what is inside it: ``app.asar`` covers
    ``resources/app.asar/dist/main.js`` (a member of the archive), ``default_app.asar`` covers
    the members of a missing ``resources/default_app.asar``.
    """
    pats = tuple(patterns)
    if not pats or _any_regex(pats, True).match(path) is None:
        return None
    hit = match_any(path, pats)
    if hit is not None:
        return hit
    parts = path.split("/")
    for n in range(len(parts) - 1, 0, -1):
        hit = match_any("/".join(parts[:n]), pats)
        if hit is not None:
            return hit
    return None
