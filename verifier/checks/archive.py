"""Checks on the shape of the shipped tree itself (docs/contract.md "Archives as real
extractors see them"): links compared with upstream's, and names that collide on Windows or macOS.

* ``unexpected-link``: a symlink or tar hard link that no reference has at the same path,
  of the same kind, with the same target (a macOS framework's ``Versions/Current -> A`` that
  upstream has too is fine).
* ``name-collision``: two members of one archive layer whose names are equal ignoring case or
  after Unicode normalisation (NFC/NFD), when the artifact targets Windows or macOS, where
  one would overwrite the other on disk; for Windows, also with a backslash read as the
  separator it is there (``a\\b`` and ``a/b``). A Linux package may hold such pairs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from verifier.model import Anomaly, FileFormat, Inventory, Reference

#: archive layers that only ship to Windows
_WINDOWS_FORMATS = frozenset({"msi", "nsis"})


def targets_windows_or_macos(inv: Inventory) -> bool:
    """The artifact holds PE or Mach-O code, or is an MSI, NSIS, DMG or Squirrel package."""
    return bool(_targets(inv))


def _targets(inv: Inventory) -> set[str]:
    """Of 'windows' and 'macos', those the artifact targets (by its formats and code)."""
    out: set[str] = set()
    if inv.formats & _WINDOWS_FORMATS or inv.source.lower().endswith(".nupkg"):
        out.add("windows")
    if "dmg" in inv.formats:
        out.add("macos")
    in_nupkg: dict[tuple[str, ...], bool] = {}  # per container (shared by its members)
    for e in inv.entries:
        nupkg = in_nupkg.get(e.container)
        if nupkg is None:
            nupkg = in_nupkg[e.container] = any(c.lower().endswith(".nupkg") for c in e.container)
        if e.format is FileFormat.PE or nupkg:
            out.add("windows")
        elif e.format is FileFormat.MACHO:
            out.add("macos")
        if len(out) == 2:
            break
    return out


def _fold(name: str, windows: bool) -> str:
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    return folded.replace("\\", "/") if windows else folded


def name_collision_anomalies(inv: Inventory) -> list[Anomaly]:
    """One ``name-collision`` per member whose name folds to one already seen in its layer."""
    targets = _targets(inv)
    if not targets:
        return []
    windows = "windows" in targets
    seen: dict[tuple[tuple[str, ...], str], str] = {}
    out: list[Anomaly] = []
    items = [(e.container, e.path, e.location) for e in inv.entries]
    items += [(k.container, k.path, k.location) for k in inv.links]
    for container, path, location in sorted(items):
        key = (container, _fold(path, windows))
        first = seen.get(key)
        if first is None:
            seen[key] = path
            continue
        if first == path:
            continue
        where = "Windows and macOS"
        if first.lower() == path.lower():
            why = "case"
        elif _fold(first, False) != _fold(path, False):
            why, where = "a backslash for a slash (a separator there) or case", "Windows"
        else:
            why = "Unicode normalisation or case"
        out.append(
            Anomaly(
                "name-collision",
                f"{path!r} and {first!r} differ only by {why}: on {where} one overwrites the other",
                {"location": location, "path": path, "colliding_with": first},
            )
        )
    return out


def _relative(path: str, root: str) -> str:
    if root and path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return path


def link_anomalies(
    inv: Inventory,
    refs: Sequence[Reference],
    app_root: str,
    is_own: Callable[[str], bool] = lambda p: False,
) -> list[Anomaly]:
    """``unexpected-link`` for each shipped link (symlink or tar hard link) upstream lacks,
    or whose kind or target differs from upstream's."""
    if not inv.links:
        return []
    upstream: dict[str, set[tuple[str, str]]] = {}
    for r in refs:
        for k in r.links:
            upstream.setdefault(k.path, set()).add((k.kind, k.target))
    out: list[Anomaly] = []
    for k in inv.links:
        rel = _relative(k.path, app_root)
        if is_own(rel):
            continue
        theirs = upstream.get(rel)
        if theirs is not None and (k.kind, k.target) in theirs:
            continue
        what = "hard link to" if k.kind == "hardlink" else "symlink ->"
        ev: dict[str, object] = {
            "location": k.location,
            "path": rel,
            "target": k.target,
            "kind": k.kind,
        }
        if theirs:
            kind, target = sorted(theirs)[0]
            ev["expected_target"] = target
            ev["expected_kind"] = kind
            them = "a hard link to" if kind == "hardlink" else "a symlink to"
            msg = f"{what} {k.target!r}; upstream's is {them} {target!r}"
        else:
            msg = f"{what} {k.target!r} that upstream does not have"
        out.append(Anomaly("unexpected-link", msg, ev))
    return out
