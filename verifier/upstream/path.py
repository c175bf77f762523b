"""``path:DIR_OR_ARCHIVE``: an upstream release the user already has on disk."""

from __future__ import annotations

import os

from verifier.binary.analyze import AnalysisContext
from verifier.errors import ArtifactError, UsageError
from verifier.inventory import build_reference
from verifier.model import Component, Reference


def resolve_path(source: str, location: str, workdir: str, ctx: AnalysisContext) -> Reference:
    """Build a Reference from a local directory or archive; a bad path is a usage error."""
    if not os.path.exists(location):
        raise UsageError(f"upstream reference not found: {location}", where=source)
    if not os.access(location, os.R_OK):
        raise UsageError(f"upstream reference is not readable: {location}", where=source)
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
    return Reference(comp, ref.files, ref.problems)
