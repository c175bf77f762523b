"""Member names from untrusted archives: normalise, or reject as hostile.

'/' separates the parts of a name. A backslash is an ordinary character in the formats of
POSIX systems (tar, cpio, .deb, .rpm, a zip made on Unix): Debian's ``systemd`` ships
``system-systemd\\x2dcryptsetup.slice``, and ``tar -x`` or ``dpkg-deb -x`` write a file of
that name. It separates only in names written by Windows tools (``backslash_sep``: a zip
from an MS-DOS host, as ``unzip`` reads it; an MSI). A name that would be hostile with the
backslash read as a separator (``..\\x``, ``\\x``, ``C:\\x``) is hostile either way: an
extractor on Windows reads it so.
"""

from __future__ import annotations

import os
import posixpath
import re

from verifier.errors import MalformedInputError

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
# in a name without a backslash, anything ``clean_name`` would change or reject: a control
# character, a leading or trailing '/', '//', a '.' or '..' component, a drive letter, the
# empty name
_NOT_CLEAN = re.compile(r"[\x00-\x1f\x7f]|^/|/$|//|(?:^|/)\.{1,2}(?:/|$)|^[A-Za-z]:|^$")


def clean_name(raw: str, max_len: int, *, backslash_sep: bool = False) -> str:
    """A safe relative '/'-separated path for an archive member name, or raise.

    '.' and empty components are dropped. A backslash is kept as a character of the name
    unless ``backslash_sep``. Rejected, with the backslash read as a separator too:
    absolute paths, drive letters, UNC paths, '..' components, NUL and other control
    characters, names longer than ``max_len`` bytes, and names that are empty.
    """
    if len(raw.encode("utf-8", "surrogateescape")) > max_len:
        raise MalformedInputError(f"member name longer than {max_len} bytes")
    if _CONTROL.search(raw):
        raise MalformedInputError(f"control character in member name {raw!r}")
    windows = raw.replace("\\", "/")
    if windows.startswith("/"):
        raise MalformedInputError(f"absolute path {raw!r}")
    if _DRIVE.match(windows):
        raise MalformedInputError(f"drive letter in path {raw!r}")
    read_as_windows = [p for p in windows.split("/") if p not in ("", ".")]
    if ".." in read_as_windows:
        raise MalformedInputError(f"path traversal {raw!r}")
    if not read_as_windows:
        raise MalformedInputError(f"empty member name {raw!r}")
    if backslash_sep:
        return "/".join(read_as_windows)
    return "/".join(p for p in raw.split("/") if p not in ("", "."))


def is_clean(name: str, max_len: int) -> bool:
    """True when ``clean_name(name, max_len) == name`` (one regex search: for re-checking
    names an extractor already cleaned, by the hundred thousand)."""
    if "\\" in name:  # rare: read both ways, as ``clean_name`` does
        try:
            return clean_name(name, max_len) == name
        except MalformedInputError:
            return False
    if len(name) * 4 > max_len and len(name.encode("utf-8", "surrogateescape")) > max_len:
        return False
    return _NOT_CLEAN.search(name) is None


def link_escapes(member: str, target: str) -> bool:
    """True when symlink ``member`` -> ``target`` would point outside the archive root, read
    lexically with a backslash as a separator too (the stricter reading)."""
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
