"""Pair shipped files with reference files, one to one (docs/contract.md "Pairing").

Each shipped file is paired with at most one reference path and each reference path with at
most one shipped file, trying in order:

1. ``path``: the same path (relative to the application root, after bundle renames);
2. ``versioned-path``: the same path once version-bearing segments are normalised (a wheel's
   ``NAME-VER.data/``, ``NAME-VER.dist-info/``, an egg's ``NAME-VER.egg-info/``);
3. ``main-exe``: Electron's main executable shipped under the product's name;
4. ``content``: identical bytes (sha256), then identical code once signatures are removed
   (normalised sha256); a reference file of the same name is preferred among several;
5. ``name``: a code file whose name is unique among the unpaired files on both sides, with the
   same format and architecture.

The application's own files (``is_own``) are paired only by path: they are the vendor's.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum

from verifier.model import FileEntry, Reference
from verifier.record import record

Candidates = list[tuple[Reference, FileEntry]]
IsOwn = Callable[[str, FileEntry], bool]

# the main executable of an Electron release, by platform
MAIN_EXECUTABLES = ("electron.exe", "electron", "Contents/MacOS/Electron")


class PairedBy(StrEnum):
    PATH = "path"
    VERSIONED_PATH = "versioned-path"
    MAIN_EXE = "main-exe"
    CONTENT = "content"
    NAME = "name"


@record
class Pairing:
    pairs: Mapping[str, Candidates]  # shipped path -> the reference file(s) it is paired with
    how: Mapping[str, PairedBy]  # shipped path -> how it was paired
    renames: Mapping[str, str]  # reference path -> shipped path, where they differ
    unpaired_refs: Mapping[str, Candidates]  # reference path -> files no shipped file took
    unpaired_shipped: tuple[str, ...]  # sorted
    own: frozenset[str] = frozenset()  # those of them that are the app's own (``is_own``)


# NAME-VER.data / NAME-VER.dist-info / NAME-VER.egg-info (a wheel's or an egg's folders)
_VERSIONED = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._]*[A-Za-z0-9])?)-(?P<ver>[0-9][A-Za-z0-9.+!_]*)"
    r"(?P<suffix>\.data|\.dist-info|\.egg-info)$"
)


def versionless(path: str) -> str | None:
    """``path`` with version-bearing segments normalised, or None when it has none."""
    parts = path.split("/")
    changed = False
    for i, seg in enumerate(parts):
        m = _VERSIONED.match(seg)
        if m is not None:
            name = re.sub(r"[-_.]+", "-", m.group("name")).lower()
            parts[i] = f"{name}-*{m.group('suffix')}"
            changed = True
    return "/".join(parts) if changed else None


def pair_files(
    mapped: Mapping[str, Candidates],
    rel: Mapping[str, FileEntry],
    is_own: IsOwn,
    main_override: str | None = None,
) -> Pairing:
    """Pair ``rel`` (shipped, by app-root-relative path) with ``mapped`` (reference paths)."""
    # the candidate lists move from ``refs`` to ``pairs`` whole, never changed: not copied
    refs: dict[str, Candidates] = dict(mapped)
    free = {p: e for p, e in rel.items()}  # shipped files not paired yet
    pairs: dict[str, Candidates] = {}
    how: dict[str, PairedBy] = {}
    renames: dict[str, str] = {}

    def take(shipped_path: str, ref_path: str, by: PairedBy) -> None:
        pairs[shipped_path] = refs.pop(ref_path)
        how[shipped_path] = by
        del free[shipped_path]
        if ref_path != shipped_path:
            renames[ref_path] = shipped_path

    # (lists, not sets of 100,000 paths: the same pairs, in the same order, with less memory)
    for p in sorted([p for p in free if p in refs]):
        take(p, p, PairedBy.PATH)

    # beyond the path, only files that are not the app's own
    for p in [p for p, e in free.items() if is_own(p, e)]:
        del free[p]
    own_left = sorted([p for p in rel if p not in pairs and p not in free])

    for s_path, r_path in _unique_keys(free, refs, versionless):
        take(s_path, r_path, PairedBy.VERSIONED_PATH)

    for r_path, s_path in find_renamed_main(refs, free, main_override).items():
        take(s_path, r_path, PairedBy.MAIN_EXE)

    for s_path, r_path in _by_content(free, refs):
        take(s_path, r_path, PairedBy.CONTENT)

    for s_path, r_path in _unique_keys(
        {p: e for p, e in free.items() if e.format.is_code},
        {p: c for p, c in refs.items() if c[0][1].format.is_code},
        posixpath.basename,
        same=_same_kind,
    ):
        take(s_path, r_path, PairedBy.NAME)

    unpaired = tuple(sorted([*free, *own_left]))
    return Pairing(pairs, how, renames, refs, unpaired, frozenset(own_left))


def _unique_keys(
    shipped: Mapping[str, FileEntry],
    refs: Mapping[str, Candidates],
    key: Callable[[str], str | None],
    same: Callable[[FileEntry, FileEntry], bool] | None = None,
) -> list[tuple[str, str]]:
    """(shipped path, reference path) whose key is equal and unique on both sides."""
    r_keys = _index(refs, key)
    if not r_keys:
        return []  # (most often: no reference file left) no key of the shipped side needed
    s_keys = _index(shipped, key)
    out = []
    for k in sorted(set(s_keys) & set(r_keys)):
        if len(s_keys[k]) != 1 or len(r_keys[k]) != 1:
            continue
        s, r = s_keys[k][0], r_keys[k][0]
        if same is not None and not same(shipped[s], refs[r][0][1]):
            continue
        out.append((s, r))
    return out


def _index(paths: Iterable[str], key: Callable[[str], str | None]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        k = key(p)
        if k is not None:
            out[k].append(p)
    return out


def _archs(e: FileEntry) -> tuple[str, ...]:
    return tuple(sorted({s.arch for s in e.facts.slices} | set(e.facts.archs)))


def _same_kind(a: FileEntry, b: FileEntry) -> bool:
    return a.format == b.format and _archs(a) == _archs(b)


def _by_content(
    shipped: Mapping[str, FileEntry], refs: Mapping[str, Candidates]
) -> list[tuple[str, str]]:
    """Identical bytes first, then identical normalised code; one to one, names preferred."""
    out: list[tuple[str, str]] = []
    taken_s: set[str] = set()
    taken_r: set[str] = set()
    for digest in (_sha256, _normalized):
        index: dict[str, list[str]] = defaultdict(list)
        for r_path, cands in sorted(refs.items()):
            if r_path in taken_r:
                continue
            for d in {digest(f) for _, f in cands} - {None}:
                assert d is not None
                index[d].append(r_path)
        if not index:
            continue  # no reference file left with such a digest: nothing to pair
        for s_path, e in sorted(shipped.items()):
            d = digest(e)
            if s_path in taken_s or d is None:
                continue
            options = [r for r in index.get(d, ()) if r not in taken_r]
            if not options:
                continue
            name = posixpath.basename(s_path)
            same_name = [r for r in options if posixpath.basename(r) == name]
            r_path = (same_name or options)[0]
            taken_s.add(s_path)
            taken_r.add(r_path)
            out.append((s_path, r_path))
    return out


def _sha256(e: FileEntry) -> str | None:
    return e.sha256 if e.size > 0 else None


def _normalized(e: FileEntry) -> str | None:
    if not e.format.is_code or not e.facts.normalized_sha256:
        return None
    return f"{e.format.value}:{e.facts.normalized_sha256}"


# --- Electron's renamed main executable -----------------------------------------------------


def find_renamed_main(
    mapped: Mapping[str, Candidates],
    rel: Mapping[str, FileEntry],
    override: str | None,
) -> dict[str, str]:
    """Electron's main executable shipped under the product's name: ref path -> shipped path.

    ``rel`` holds the shipped files still unpaired (the app's own excluded).
    """
    out: dict[str, str] = {}
    for main in MAIN_EXECUTABLES:
        if main not in mapped:
            continue
        ref_entry = mapped[main][0][1]
        if override is not None:
            if override in rel and override not in out.values():
                out[main] = override
            continue
        folder = posixpath.dirname(main)  # the renamed file sits where the original did
        candidates = [
            (p, e)
            for p, e in rel.items()
            if posixpath.dirname(p) == folder
            and e.format == ref_entry.format
            and e.format.is_code
            and p not in out.values()
        ]
        best = _pick_main(candidates, ref_entry)
        if best is not None:
            out[main] = best
    return out


def _pick_main(candidates: Sequence[tuple[str, FileEntry]], ref: FileEntry) -> str | None:
    """The candidate with Electron's markers, then the most code sections shared with ref."""

    def score(e: FileEntry) -> tuple[int, int]:
        marked = int(e.facts.fuses is not None or "electron_version" in e.facts.markers)
        ref_secs = {s.masked_sha256 or s.sha256 for s in ref.facts.sections}
        shared = sum(1 for s in e.facts.sections if (s.masked_sha256 or s.sha256) in ref_secs)
        return marked, shared

    scored = [(score(e), p) for p, e in candidates]
    scored = [(s, p) for s, p in scored if s[0] or s[1]]
    if not scored:
        return None
    scored.sort(key=lambda t: (-t[0][0], -t[0][1], t[1]))
    return scored[0][1]
