"""One installed package folder against its published tarball: a status per file.

- a file the tarball has: ``identical``, or compared like any upstream file (normalised for
  signatures: a re-signed ``.node`` is ``identical-except-signature``; a changed one is
  ``divergent``, which policy turns into ``divergent-content`` or, signed,
  ``signed-divergent-content``); a ``#!`` script whose CRLF line end npm turned into LF on
  install is identical;
- ``package.json``: compared as parsed JSON (``manifest.compare_manifests``);
- a file the tarball lacks: ``own`` when it is the native module the package builds at
  install time (``Published.install_built``), else ``unexpected`` (policy: ``unexpected-file``);
- files the tarball has and the app lacks are not reported: apps prune packages.

Every result carries evidence naming the package, its version and the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verifier.binary import macho_compare
from verifier.compare import aggregate_slices, compare_pair
from verifier.errors import MalformedInputError
from verifier.model import FileEntry, FileFormat, FileResult, Status
from verifier.npmdeps.discover import PackageDir
from verifier.npmdeps.manifest import MAX_MANIFEST_BYTES, compare_manifests, parse_manifest
from verifier.npmdeps.tarball import Published


def component_name(name: str, version: str) -> str:
    return f"npm:{name}@{version}"


def judge_files(
    name: str,
    version: str,
    pkg: PackageDir,
    files: Sequence[tuple[str, int]],
    pub: Published,
    results: Sequence[FileResult],
) -> list[tuple[int, FileResult]]:
    """New results for ``files`` ((path inside the package, result index)) of one package."""
    comp = component_name(name, version)
    out: list[tuple[int, FileResult]] = []
    for rel, i in files:
        r = results[i]
        shipped = r.shipped
        if shipped is None:
            continue
        ev: dict[str, Any] = {
            "npm": f"{name}@{version}",
            "package": name,
            "version": version,
            "file": rel,
            "install_path": pkg.where,
        }
        ref = pub.files.get(rel)
        if ref is None:
            why = pub.install_built(rel)
            if why is not None:
                ev["built_at_install"] = why
                out.append((i, FileResult(r.path, Status.OWN, shipped, None, comp, ev)))
            else:
                ev["actual_sha256"] = shipped.sha256
                out.append((i, FileResult(r.path, Status.UNEXPECTED, shipped, None, comp, ev)))
            continue
        if rel == "package.json" and pub.manifest is not None:
            status, more = _manifest_status(shipped, pub, r.path)
        else:
            status, more, slices = compare_file(shipped, ref, pub.alt_sha256.get(rel))
            if slices:
                ev.update(more)
                out.append((i, FileResult(r.path, status, shipped, ref, comp, ev, slices)))
                continue
        ev.update(more)
        out.append((i, FileResult(r.path, status, shipped, ref, comp, ev)))
    return out


def compare_file(
    shipped: FileEntry, ref: FileEntry, alt_sha256: str | None = None
) -> tuple[Status, dict[str, Any], tuple[Any, ...]]:
    """Status, evidence and (Mach-O) slice results of one file against its published copy."""
    if shipped.sha256 == ref.sha256 and shipped.size == ref.size:
        return Status.IDENTICAL, {}, ()
    if alt_sha256 is not None and shipped.sha256 == alt_sha256:
        return Status.IDENTICAL, {"installed_as": "#! line end CRLF -> LF (npm bin-links)"}, ()
    if shipped.format == FileFormat.MACHO and ref.format == FileFormat.MACHO:
        slices, evidence = macho_compare.compare_slices(shipped, [ref])
        ev = {"expected_sha256": ref.sha256, "actual_sha256": shipped.sha256, **evidence}
        return (aggregate_slices(slices) if slices else Status.DIVERGENT), ev, tuple(slices)
    status, ev = compare_pair(shipped, ref)
    return status, ev, ()


def _manifest_status(
    shipped: FileEntry, pub: Published, path: str
) -> tuple[Status, dict[str, Any]]:
    assert pub.manifest is not None
    ev: dict[str, Any] = {"compared_as": "json"}
    if shipped.blob is None:
        return Status.DIVERGENT, {**ev, "reason": "the installed package.json cannot be read"}
    try:
        doc = parse_manifest(shipped.blob.read(0, MAX_MANIFEST_BYTES + 1), path)
    except (MalformedInputError, OSError) as e:
        return Status.DIVERGENT, {**ev, "reason": str(getattr(e, "message", e))}
    diff = compare_manifests(doc, pub.manifest, has_binding_gyp=pub.has_binding_gyp)
    if diff.tolerated:
        ev["keys_allowed_to_differ"] = list(diff.tolerated)
    if not diff.divergent:
        return Status.IDENTICAL, ev
    if diff.changed:
        ev["keys_changed"] = list(diff.changed)
    if diff.added:
        ev["keys_added"] = list(diff.added)
    if diff.removed:
        ev["keys_removed"] = list(diff.removed)
    ev["detail"] = diff.describe()
    return Status.DIVERGENT, ev
