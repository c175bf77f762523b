"""``path:DIR_OR_ARCHIVE``: an upstream release the user already has on disk."""

from __future__ import annotations

import json
import os

from verifier.binary.analyze import AnalysisContext
from verifier.errors import ArtifactError, SchemaError, UsageError
from verifier.hashing import sha256_file
from verifier.inventory import build_reference
from verifier.model import Component, Reference


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
        digests[os.path.basename(location)] = sha256_file(location)
    comp = Component(comp.name, None, source, digests=digests, proof=comp.proof)
    return Reference(comp, ref.files, ref.problems, ref.anomalies)


_REFS_CAP = 256 << 20


def _is_refs_document(location: str) -> bool:
    """A JSON object: no release archive or binary starts with '{'."""
    with open(location, "rb") as fh:
        head = fh.read(64).lstrip()
    return head.startswith(b"{")


def _load_refs_document(source: str, location: str) -> Reference:
    """A ``biv.refs/v1`` inventory (``biv refs build``): digests only, no upstream bytes.

    Statuses are the same as against the release itself; byte counts of differing sections
    are not available (``differing_bytes: null``).
    """
    if os.path.getsize(location) > _REFS_CAP:
        raise UsageError("reference inventory larger than 256 MiB", where=source)
    try:
        with open(location, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise UsageError(f"not a valid biv.refs/v1 document: {exc}", where=source) from None
    try:
        ref = Reference.from_dict(doc)
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
    return Reference(comp, ref.files, ref.problems, ref.anomalies)
