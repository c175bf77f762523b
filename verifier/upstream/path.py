"""``path:DIR_OR_ARCHIVE``: an upstream release the user already has on disk."""

from __future__ import annotations

import os
from typing import Any

from verifier.analysis import AnalysisContext
from verifier.errors import ArtifactError, UsageError
from verifier.inventory import build_reference
from verifier.model import Component, FileEntry, Reference


def resolve_path(source: str, location: str, workdir: str, ctx: AnalysisContext) -> Reference:
    """Build a Reference from a local directory or archive; a bad path is a usage error."""
    if not os.path.exists(location):
        raise UsageError(f"upstream reference not found: {location}", where=source)
    if not os.access(location, os.R_OK):
        raise UsageError(f"upstream reference is not readable: {location}", where=source)
    if os.path.isfile(location) and _is_refs_document(location):
        return _load_refs_document(source, location)
    comp = Component(
        name=os.path.basename(os.path.normpath(location)) or "path",
        version=None,
        source=source,
        proof=("local path given by the user (trusted as is)",),
    )
    try:
        ref = build_reference(comp, location, workdir, ctx)
    except ArtifactError as exc:
        raise UsageError(f"upstream reference cannot be read: {exc.message}", where=source) from exc
    digests = {}
    if os.path.isfile(location):
        from verifier.hashing import sha256_file

        digests[os.path.basename(location)] = sha256_file(location)
    comp = Component(comp.name, None, source, digests=digests, proof=comp.proof)
    return Reference(comp, ref.files, ref.problems, ref.anomalies, ref.links)


_REFS_CAP = 256 << 20


def _is_refs_document(location: str) -> bool:
    """A JSON object: no release archive or binary starts with '{'."""
    with open(location, "rb") as fh:
        head = fh.read(64).lstrip()
    return head.startswith(b"{")


def _file_entry_hook(d: dict[str, Any]) -> Any:
    """A ``files`` item (it has a path, a size and a sha256) as a FileEntry, else ``d``."""
    if "path" in d and "sha256" in d and "size" in d:
        if d.get("normalized_sha256") == d["sha256"]:
            d["normalized_sha256"] = d["sha256"]  # one string for both (data files)
        return FileEntry.from_ref_dict(d)
    return d


def _load_refs_document(source: str, location: str) -> Reference:
    """A ``biv.refs/v1`` inventory (``biv refs build``): digests only, no upstream bytes.

    Statuses are the same as against the release itself; byte counts of differing sections
    are not available (``differing_bytes: null``).
    """
    import json

    from verifier.errors import MalformedInputError

    if os.path.getsize(location) > _REFS_CAP:
        raise UsageError("reference inventory larger than 256 MiB", where=source)
    try:
        with open(location, encoding="utf-8") as fh:
            # each file entry becomes a FileEntry as soon as it is parsed: the parsed
            # document of 100,000 files would hold ten times the memory of the entries
            doc = json.load(fh, object_hook=_file_entry_hook)
        files = doc.get("files", []) if isinstance(doc, dict) else None
        if not isinstance(files, list) or not all(isinstance(f, FileEntry) for f in files):
            raise ValueError("'files' must be a list of file entries")
        ref = Reference.from_dict({**doc, "files": []})
        ref = Reference(ref.component, tuple(files), ref.problems)
    except (ValueError, KeyError, TypeError, MalformedInputError) as exc:
        raise UsageError(f"not a valid biv.refs/v1 document: {exc}", where=source) from exc
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
