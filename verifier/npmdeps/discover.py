"""Find the npm packages an Electron app ships, and the files of each package folder.

Where: the app's code trees, ``resources/app.asar`` (read in place by the asar reader) merged
with ``resources/app.asar.unpacked/`` (the files the archive marks ``unpacked``),
``resources/app/``, and the same under macOS ``Contents/Resources/`` (``app-x64.asar`` and
``app-arm64.asar`` of universal apps included); or the artifact itself when it is an asar or a
folder with ``node_modules/`` at its top.

What: every ``node_modules/NAME/package.json`` and ``node_modules/@scope/NAME/package.json``,
nested ``node_modules`` included. A file belongs to the deepest package folder it sits in;
files directly inside a ``node_modules`` folder or in its dot-folders (``.bin``,
``.package-lock.json``) are npm's own bookkeeping and belong to no package. A folder under
``node_modules`` without a ``package.json`` (Node still loads its ``index.js``) is "loose":
inside a package it counts as that package's files, at the top of a tree it is reported.

Bounded: at most ``MAX_PACKAGES`` packages per artifact; ``package.json`` files are read with
a size cap and parsed defensively (``manifest.parse_manifest``). Only paths the artifact
already holds are used; nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from verifier.errors import MalformedInputError
from verifier.model import FileResult
from verifier.npmdeps import lockfile
from verifier.npmdeps.manifest import MAX_MANIFEST_BYTES, identity, parse_manifest
from verifier.record import record

MAX_PACKAGES = 50_000
_TREE_ASAR = re.compile(r"^app(-[A-Za-z0-9_]+)?\.asar(\.unpacked)?$")


@record
class PackageDir:
    """One installed package folder (``install_path`` relative to its tree)."""

    index: int  # position in Discovery.packages
    tree: str  # '' or the shipped path of the tree (``resources/app.asar``)
    install_path: str  # ``node_modules/a/node_modules/@s/b``
    manifest_result: int  # index of package.json's FileResult
    name: str | None
    version: str | None
    problem: str | None  # why it has no registry identity (None: it has one)
    malformed: str | None  # package.json cannot be read at all (message)
    parent: int | None  # the enclosing package's index
    depth: int  # number of enclosing packages
    files: tuple[tuple[str, int], ...] = ()  # (path inside the package, FileResult index)

    @property
    def where(self) -> str:
        return f"{self.tree}/{self.install_path}" if self.tree else self.install_path

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"


@record
class Loose:
    """A ``node_modules`` folder at the top of a tree without a usable ``package.json``."""

    tree: str
    install_path: str
    results: tuple[int, ...]

    @property
    def where(self) -> str:
        return f"{self.tree}/{self.install_path}" if self.tree else self.install_path


@dataclass
class Discovery:
    packages: list[PackageDir] = field(default_factory=list)
    loose: list[Loose] = field(default_factory=list)
    # per tree: (folder holding the lockfile, relative to the tree; its entries)
    lockfiles: dict[str, list[tuple[str, lockfile.Lockfiles]]] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (result index, message)
    notes: list[str] = field(default_factory=list)

    def lock_entries(self, pkg: PackageDir) -> list[lockfile.LockEntry]:
        out: list[lockfile.LockEntry] = []
        if pkg.name is None or pkg.version is None:
            return out
        for folder, lf in self.lockfiles.get(pkg.tree, ()):
            prefix = f"{folder}/" if folder else ""
            if pkg.install_path.startswith(prefix):
                out.extend(lf.lookup(pkg.install_path[len(prefix) :], pkg.name, pkg.version))
        return out


def split_tree(path: str) -> tuple[str, str] | None:
    """(tree, path inside the tree) for a file of an app code tree, else None."""
    segs = path.split("/")
    for k, seg in enumerate(segs[:-1]):
        m = _TREE_ASAR.match(seg)
        if m is not None:
            tree_seg = seg[: -len(".unpacked")] if m.group(2) else seg
            return "/".join([*segs[:k], tree_seg]), "/".join(segs[k + 1 :])
        if seg == "app" and k > 0 and segs[k - 1] in ("resources", "Resources"):
            return "/".join(segs[: k + 1]), "/".join(segs[k + 1 :])
    if segs[0] == "node_modules" or path in _ROOT_LOCKFILES:
        return "", path
    return None


_ROOT_LOCKFILES = frozenset(lockfile.LOCKFILE_NAMES)


def _roots(logical: str) -> list[tuple[str, bool]]:
    """Every package-folder position along ``logical``: (install path, is a dot-folder).

    A file directly inside a node_modules folder ends the walk with a dot marker (it belongs
    to no package).
    """
    segs = logical.split("/")
    out: list[tuple[str, bool]] = []
    j = 0
    n = len(segs)
    while j < n - 1:
        if segs[j] != "node_modules":
            j += 1
            continue
        name = segs[j + 1]
        if j + 2 >= n:  # a file directly inside node_modules
            out.append(("/".join(segs[: j + 1]), True))
            break
        if name.startswith("."):
            out.append(("/".join(segs[: j + 2]), True))
            break
        if name.startswith("@"):
            if j + 3 >= n:  # a file directly inside a scope folder
                out.append(("/".join(segs[: j + 2]), True))
                break
            out.append(("/".join(segs[: j + 3]), False))
            j += 3
        else:
            out.append(("/".join(segs[: j + 2]), False))
            j += 2
    return out


def discover(results: Sequence[FileResult]) -> Discovery:
    """Packages, loose folders and lockfiles of every app code tree in ``results``."""
    disc = Discovery()
    located: list[tuple[int, str, str]] = []  # (result index, tree, logical path)
    manifests: dict[tuple[str, str], int] = {}
    for i, r in enumerate(results):
        if r.shipped is None:
            continue
        hit = split_tree(r.path)
        if hit is None:
            continue
        tree, logical = hit
        located.append((i, tree, logical))
        if logical.endswith("/package.json"):
            folder = logical[: -len("/package.json")]
            roots = _roots(logical)
            if roots and roots[-1] == (folder, False):
                manifests.setdefault((tree, folder), i)
    if len(manifests) > MAX_PACKAGES:
        disc.notes.append(
            f"more than {MAX_PACKAGES} package folders: only the first {MAX_PACKAGES} are checked"
        )
        manifests = dict(sorted(manifests.items())[:MAX_PACKAGES])
    _read_lockfiles(results, located, disc)

    # the packages, ordered so that a parent always comes before its children
    order = sorted(manifests, key=lambda k: (k[0], k[1].count("/"), k[1]))
    index_of: dict[tuple[str, str], int] = {}
    pkgs: list[PackageDir] = []
    for key in order:
        tree, folder = key
        parent = None
        for root, dot in reversed(_roots(folder + "/package.json")[:-1]):
            if not dot and (tree, root) in index_of:
                parent = index_of[(tree, root)]
                break
        depth = pkgs[parent].depth + 1 if parent is not None else 0
        pkg = _package(len(pkgs), tree, folder, manifests[key], results, parent, depth)
        index_of[key] = pkg.index
        pkgs.append(pkg)

    files: dict[int, list[tuple[str, int]]] = {}
    loose: dict[tuple[str, str], list[int]] = {}
    for i, tree, logical in located:
        roots = _roots(logical)
        if not roots or roots[-1][1]:
            continue  # not in node_modules, or npm's bookkeeping (.bin, .package-lock.json)
        owner: int | None = None
        owner_root = ""
        for root, _ in roots:
            if (tree, root) in index_of:
                owner, owner_root = index_of[(tree, root)], root
        if owner is not None:
            files.setdefault(owner, []).append((logical[len(owner_root) + 1 :], i))
        else:
            loose.setdefault((tree, roots[0][0]), []).append(i)
    disc.packages = [
        PackageDir(
            p.index,
            p.tree,
            p.install_path,
            p.manifest_result,
            p.name,
            p.version,
            p.problem,
            p.malformed,
            p.parent,
            p.depth,
            tuple(sorted(files.get(p.index, ()))),
        )
        for p in pkgs
    ]
    disc.loose = [Loose(t, f, tuple(ix)) for (t, f), ix in sorted(loose.items())]
    return disc


def _package(
    index: int,
    tree: str,
    folder: str,
    result: int,
    results: Sequence[FileResult],
    parent: int | None,
    depth: int,
) -> PackageDir:
    r = results[result]
    assert r.shipped is not None and r.shipped.blob is not None
    try:
        doc = parse_manifest(r.shipped.blob.read(0, MAX_MANIFEST_BYTES + 1), r.path)
    except MalformedInputError as e:
        return PackageDir(
            index, tree, folder, result, None, None, e.message, e.message, parent, depth
        )
    except OSError as e:
        msg = f"cannot read package.json: {e.strerror or e}"
        return PackageDir(index, tree, folder, result, None, None, msg, msg, parent, depth)
    ident = identity(doc)
    if isinstance(ident, str):
        return PackageDir(index, tree, folder, result, None, None, ident, None, parent, depth)
    name, version = ident
    return PackageDir(index, tree, folder, result, name, version, None, None, parent, depth)


def _read_lockfiles(
    results: Sequence[FileResult], located: list[tuple[int, str, str]], disc: Discovery
) -> None:
    for i, tree, logical in located:
        folder, _, base = logical.rpartition("/")
        if logical.endswith("node_modules/.package-lock.json"):
            folder = logical[: -len("node_modules/.package-lock.json")].rstrip("/")
            base = "node_modules/.package-lock.json"
        elif base not in lockfile.LOCKFILE_NAMES or "node_modules" in folder.split("/"):
            continue
        r = results[i]
        if r.shipped is None or r.shipped.blob is None:
            continue
        lf = lockfile.Lockfiles()
        try:
            data = r.shipped.blob.read(0, lockfile.MAX_LOCKFILE_BYTES + 1)
            if base == lockfile.YARN_LOCKFILE:
                lockfile.read_yarn_lockfile(data, r.path, lf)
            else:
                lockfile.read_npm_lockfile(data, r.path, lf)
        except MalformedInputError as e:
            disc.problems.append((i, e.message))
            continue
        except OSError as e:
            disc.problems.append((i, f"cannot read lockfile: {e.strerror or e}"))
            continue
        disc.notes.extend(lf.notes)
        disc.lockfiles.setdefault(tree, []).append((folder, lf))
