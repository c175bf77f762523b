"""SOURCE strings -> References. ``path:`` is local; every other scheme is fetched and proven."""

from __future__ import annotations

import os

from verifier.binary.analyze import AnalysisContext
from verifier.errors import UsageError
from verifier.model import Inventory, Reference
from verifier.upstream.path import resolve_path

REMOTE_SCHEMES = ("electron:", "pypi:", "npm:", "url:")


def is_path_source(source: str) -> bool:
    if source.startswith("path:"):
        return True
    return not source.startswith(REMOTE_SCHEMES) and (
        os.path.exists(source) or "/" in source or source.startswith(".")
    )


def resolve(
    source: str,
    shipped: Inventory,
    workdir: str,
    ctx: AnalysisContext,
    fetch_options: object | None = None,
) -> list[Reference]:
    """Resolve one SOURCE; raises ReferenceUnavailableError (exit 3) for unobtainable remotes."""
    if is_path_source(source):
        location = source[len("path:") :] if source.startswith("path:") else source
        return [resolve_path(source, location, workdir, ctx)]
    if not source.startswith(REMOTE_SCHEMES):
        raise UsageError(
            "unknown source (expected path:DIR, electron:VERSION|auto, pypi:NAME==VER, "
            "npm:NAME@VER or url:URL#sha256=HEX)",
            where=source,
        )
    from verifier.upstream import sources

    return sources.resolve_remote(source, shipped, fetch_options, workdir, ctx)
