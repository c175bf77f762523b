"""``path:DIR_OR_ARCHIVE``: an upstream release the user already has on disk."""

from __future__ import annotations

import os

from verifier.analysis import AnalysisContext
from verifier.errors import ArtifactError, UsageError
from verifier.hashing import sha256_file
from verifier.inventory import build_reference
from verifier.model import Component, Inventory, Reference
from verifier.upstream.ahead import UnpackAhead
from verifier.upstream.refs_document import is_refs_document, load_refs_document


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
    if os.path.isfile(location) and is_refs_document(location):
        parsed = ahead.take_document(source, location, shipped) if ahead is not None else None
        if parsed is not None:
            return parsed
        return load_refs_document(source, location, shipped)
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
