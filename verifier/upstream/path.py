"""``path:DIR_OR_ARCHIVE``: an upstream release the user already has on disk."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from verifier.analysis import AnalysisContext
from verifier.errors import ArtifactError, SchemaError, UsageError
from verifier.hashing import sha256_file
from verifier.inventory import build_reference, unpack_reference
from verifier.jsonread import Fields
from verifier.model import Component, FileEntry, Inventory, Reference
from verifier.unpack import Unpacked


class UnpackAhead:
    """Local references (``path:DIR``, ``path:ARCHIVE``) unpacked, hashed included, while
    forked workers analyse the shipped files (``run`` is the analysis' ``meanwhile``): the
    parent is otherwise idle then, and hashing is most of a reference's cost. ``resolve_path``
    takes the result, or the error, as if it had unpacked the reference then."""

    def __init__(self, sources: Sequence[tuple[str, str]], workdir: str) -> None:
        self._todo = list(sources)  # (source, location)
        self._workdir = workdir
        self._done: dict[tuple[str, str], Unpacked | Exception] = {}

    def run(self) -> None:
        todo, self._todo = self._todo, []
        for source, location in todo:
            try:
                if not os.path.exists(location) or not os.access(location, os.R_OK):
                    continue  # resolve_path says what is wrong
                if os.path.isfile(location) and _is_refs_document(location):
                    continue  # an inventory: no bytes to hash
                self._done[(source, location)] = unpack_reference(location, self._workdir)
            except Exception as exc:  # raised again where the reference is resolved
                self._done[(source, location)] = exc

    def take(self, source: str, location: str) -> Unpacked | None:
        got = self._done.pop((source, location), None)
        if isinstance(got, Exception):
            raise got
        return got


def resolve_path(
    source: str,
    location: str,
    workdir: str,
    ctx: AnalysisContext,
    ahead: UnpackAhead | None = None,
    shipped: Inventory | None = None,
) -> Reference:
    """Build a Reference from a local directory or archive; a bad path is a usage error.
    ``shipped``: the artifact's inventory, whose identical data files a reference inventory
    shares (``FileEntry.read_plain``)."""
    if not os.path.exists(location):
        raise UsageError(f"upstream reference not found: {location}", where=source)
    if not os.access(location, os.R_OK):
        raise UsageError(f"upstream reference is not readable: {location}", where=source)
    if os.path.isfile(location) and _is_refs_document(location):
        return _load_refs_document(source, location, shipped)
    comp = Component(
        name=os.path.basename(os.path.normpath(location)) or "path",
        version=None,
        source=source,
        proof=("local path given by the user (trusted as is)",),
    )
    try:
        unpacked = ahead.take(source, location) if ahead is not None else None
        ref = build_reference(comp, location, workdir, ctx, unpacked=unpacked)
    except ArtifactError as exc:
        raise UsageError(f"upstream reference cannot be read: {exc.message}", where=source) from exc
    digests = {}
    if os.path.isfile(location):
        digests[os.path.basename(location)] = sha256_file(location)
    comp = Component(comp.name, None, source, digests=digests, proof=comp.proof)
    return Reference(comp, ref.files, ref.problems, ref.anomalies, ref.links)


_REFS_CAP = 256 << 20


def _is_refs_document(location: str) -> bool:
    """A JSON object: no release archive or binary starts with '{'."""
    with open(location, "rb") as fh:
        head = fh.read(64).lstrip()
    return head.startswith(b"{")


class _FilesHook:
    """``json.load``'s object hook: each ``files`` item (it has a path, a size and a sha256)
    becomes a FileEntry as soon as it is parsed, read strictly; the parsed document of
    100,000 files would otherwise hold ten times the memory of the entries. A data file
    equal to the shipped file at its path (``shipped``) shares that entry's objects."""

    def __init__(self, shipped: Mapping[str, FileEntry]) -> None:
        self.count = 0
        self.shipped = shipped

    def __call__(self, d: dict[str, Any]) -> object:
        if not ("path" in d and "sha256" in d and "size" in d):
            return d
        if d.get("normalized_sha256") == d["sha256"]:
            d["normalized_sha256"] = d["sha256"]  # one string for both (data files)
        self.count += 1
        path = d["path"]
        like = self.shipped.get(path) if type(path) is str else None
        entry = FileEntry.read_plain(d, like=like)
        if entry is not None:
            return entry
        entry = FileEntry.read(Fields(d, f"files[{self.count - 1}]"))
        if (
            like is not None
            and entry.sha256 == like.sha256
            and entry.size == like.size
            and entry.path == like.path
            and entry.facts == like.facts
        ):
            return FileEntry(like.path, like.path, (), like.size, like.sha256, like.facts, None)
        return entry


def _load_refs_document(source: str, location: str, shipped: Inventory | None = None) -> Reference:
    """A ``biv.refs/v1`` inventory (``biv refs build``): digests only, no upstream bytes.

    Statuses are the same as against the release itself; byte counts of differing sections
    are not available (``differing_bytes: null``).
    """
    if os.path.getsize(location) > _REFS_CAP:
        raise UsageError("reference inventory larger than 256 MiB", where=source)
    try:
        with open(location, encoding="utf-8") as fh:
            by_path = {e.path: e for e in shipped.entries} if shipped is not None else {}
            doc = json.load(fh, object_hook=_FilesHook(by_path))
        ref = _reference(doc)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise UsageError(f"not a valid biv.refs/v1 document: {exc}", where=source) from None
    except SchemaError as exc:
        raise UsageError(
            f"not a valid biv.refs/v1 document: {exc.diagnostics()}", where=source
        ) from exc
    proof = (*ref.component.proof, f"reference inventory {os.path.basename(location)}")
    comp = Component(
        ref.component.name,
        ref.component.version,
        source,
        ref.component.platform,
        ref.component.arch,
        ref.component.digests,
        proof,
    )
    return Reference(comp, ref.files, ref.problems, ref.anomalies, ref.links)


def _reference(doc: object) -> Reference:
    """The Reference of a document whose ``files`` the hook has read already."""
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        return Reference.from_dict(doc)  # raises: no object, or no list of files
    files = doc["files"]
    for i, item in enumerate(files):
        if not isinstance(item, FileEntry):  # not recognised as a file: say what is wrong
            FileEntry.read(Fields(item, f"files[{i}]"))
            raise SchemaError("not a file entry", where=f"files[{i}]")
    ref = Reference.from_dict({**doc, "files": []})
    return dataclasses.replace(ref, files=tuple(files))
