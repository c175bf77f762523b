"""Checks on the shape of the shipped tree itself (DESIGN.md "Archives as real extractors see
them"): links compared with upstream's, and names that collide on Windows or macOS.

* ``unexpected-link``: a symlink that no reference has at the same path with the same target
  (a macOS framework's ``Versions/Current -> A`` that upstream has too is fine).
* ``name-collision``: two members of one archive layer whose names are equal ignoring case or
  after Unicode normalisation (NFC/NFD), when the artifact targets Windows or macOS, where
  one would overwrite the other on disk. A Linux package may hold such pairs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from verifier.model import Anomaly, FileFormat, Inventory, Reference

#: archive layers that only ship to Windows or macOS
_DESKTOP_FORMATS = frozenset({"msi", "nsis", "dmg"})


def targets_windows_or_macos(inv: Inventory) -> bool:
    """The artifact holds PE or Mach-O code, or is an MSI, NSIS, DMG or Squirrel package."""
    if inv.formats & _DESKTOP_FORMATS:
        return True
    if inv.source.lower().endswith(".nupkg"):
        return True
    for e in inv.entries:
        if e.format in (FileFormat.PE, FileFormat.MACHO):
            return True
        if any(c.lower().endswith(".nupkg") for c in e.container):
            return True
    return False


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def name_collision_anomalies(inv: Inventory) -> list[Anomaly]:
    """One ``name-collision`` per member whose name folds to one already seen in its layer."""
    if not targets_windows_or_macos(inv):
        return []
    seen: dict[tuple[tuple[str, ...], str], str] = {}
    out: list[Anomaly] = []
    items = [(e.container, e.path, e.location) for e in inv.entries]
    items += [(k.container, k.path, k.location) for k in inv.links]
    for container, path, location in sorted(items):
        key = (container, _fold(path))
        first = seen.get(key)
        if first is None:
            seen[key] = path
            continue
        if first == path:
            continue
        why = "case" if first.lower() == path.lower() else "Unicode normalisation or case"
        out.append(
            Anomaly(
                "name-collision",
                f"{path!r} and {first!r} differ only by {why}: on Windows and macOS one "
                "overwrites the other",
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
    """``unexpected-link`` for each shipped symlink upstream lacks or points elsewhere."""
    if not inv.links:
        return []
    upstream: dict[str, set[str]] = {}
    for r in refs:
        for k in r.links:
            upstream.setdefault(k.path, set()).add(k.target)
    out: list[Anomaly] = []
    for k in inv.links:
        rel = _relative(k.path, app_root)
        if is_own(rel):
            continue
        targets = upstream.get(rel)
        if targets is not None and k.target in targets:
            continue
        ev: dict[str, object] = {"location": k.location, "path": rel, "target": k.target}
        if targets:
            ev["expected_target"] = sorted(targets)[0]
            msg = f"symlink -> {k.target!r}; upstream's points to {sorted(targets)[0]!r}"
        else:
            msg = f"symlink -> {k.target!r} that upstream does not have"
        out.append(Anomaly("unexpected-link", msg, ev))
    return out
