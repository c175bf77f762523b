"""A ``biv.refs/v1`` reference inventory file (``biv refs build``), read strictly."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from verifier.errors import SchemaError, UsageError
from verifier.jsonread import Fields
from verifier.model import Component, FileEntry, Inventory, Reference

_REFS_CAP = 256 << 20


def is_refs_document(location: str) -> bool:
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
        return shared(FileEntry.read(Fields(d, f"files[{self.count - 1}]")), like)


def shared(entry: FileEntry, like: FileEntry | None) -> FileEntry:
    """``entry`` (a reference's file, location its path), or the same values held by the
    shipped entry ``like``'s objects when it is this very file."""
    if (
        like is not None
        and entry.sha256 == like.sha256
        and entry.size == like.size
        and entry.path == like.path
        and entry.facts == like.facts
    ):
        return FileEntry(like.path, like.path, (), like.size, like.sha256, like.facts, None)
    return entry


def load_refs_document(source: str, location: str, shipped: Inventory | None = None) -> Reference:
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
