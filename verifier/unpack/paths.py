"""Member names from untrusted archives: normalise, or reject as hostile."""

from __future__ import annotations

import os
import posixpath
import re

from verifier.errors import MalformedInputError

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def clean_name(raw: str, max_len: int) -> str:
    """A safe relative '/'-separated path for an archive member name, or raise.

    Backslashes count as separators; '.' and empty components are dropped. Rejected:
    absolute paths, drive letters, UNC paths, '..' components, NUL and other control
    characters, names longer than ``max_len`` bytes, and names that are empty.
    """
    if len(raw.encode("utf-8", "surrogateescape")) > max_len:
        raise MalformedInputError(f"member name longer than {max_len} bytes")
    if _CONTROL.search(raw):
        raise MalformedInputError(f"control character in member name {raw!r}")
    name = raw.replace("\\", "/")
    if name.startswith("/"):
        raise MalformedInputError(f"absolute path {raw!r}")
    if _DRIVE.match(name):
        raise MalformedInputError(f"drive letter in path {raw!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise MalformedInputError(f"path traversal {raw!r}")
    if not parts:
        raise MalformedInputError(f"empty member name {raw!r}")
    return "/".join(parts)


def link_escapes(member: str, target: str) -> bool:
    """True when symlink ``member`` -> ``target`` would point outside the archive root."""
    t = target.replace("\\", "/")
    if not t or t.startswith("/") or _DRIVE.match(t) or "\x00" in t:
        return True
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member), t))
    return joined == ".." or joined.startswith("../")


def inside(root: str, path: str) -> bool:
    """True when ``path`` (after resolving symlinks) lies within ``root``."""
    r = os.path.realpath(root)
    p = os.path.realpath(path)
    return p == r or p.startswith(r + os.sep)
