"""SOURCE strings -> References. ``path:`` is local; every other scheme is fetched and proven.

A source may require a Sigstore bundle (``,bundle=FILE,identity=ID,issuer=ISSUER`` after the
SOURCE, or the policy component's ``sigstore`` entry): the archive is verified against it,
offline, before the reference is trusted. A bundle that fails gives a Reference with no files
and a ``reference-mismatch`` problem: it is never used for comparison.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping

from verifier.binary.analyze import AnalysisContext
from verifier.errors import ReferenceMismatchError, UsageError
from verifier.model import Anomaly, Inventory, Reference
from verifier.upstream.path import resolve_path

REMOTE_SCHEMES = ("electron:", "pypi:", "npm:", "url:")
_OPTION = re.compile(r"^[a-z][a-z0-9_-]{0,31}=")

# Policy lookup of a source's declared Sigstore identity (policy.sigstore_for)
SigstoreLookup = Callable[[str], object | None]


def is_path_source(source: str) -> bool:
    if source.startswith("path:"):
        return True
    return not source.startswith(REMOTE_SCHEMES) and (
        os.path.exists(source) or "/" in source or source.startswith(".")
    )


def split_options(text: str) -> tuple[str, dict[str, str]]:
    """``LOCATION,key=value,...`` -> (LOCATION, options); a location may itself hold commas."""
    parts = text.split(",")
    opts: dict[str, str] = {}
    while len(parts) > 1 and _OPTION.match(parts[-1]):
        k, _, v = parts.pop().partition("=")
        opts[k] = v
    return ",".join(parts), opts


def resolve(
    source: str,
    shipped: Inventory,
    workdir: str,
    ctx: AnalysisContext,
    fetch_options: object | None = None,
    sigstore_declared: object | None = None,
) -> list[Reference]:
    """Resolve one SOURCE; raises ReferenceUnavailableError (exit 3) for unobtainable remotes."""
    if is_path_source(source):
        body = source[len("path:") :] if source.startswith("path:") else source
        location, options = split_options(body)
        ident = _identity(options, sigstore_declared)
        if ident is not None:
            if not os.path.isfile(location):
                raise UsageError(
                    "a Sigstore bundle needs a file (archive), not a folder", where=source
                )
            proof, failed = _check(location, ident, source)
            if failed is not None:
                return [failed]
            return [_with_proof(resolve_path(source, location, workdir, ctx), proof)]
        return [resolve_path(source, location, workdir, ctx)]
    if not source.startswith(REMOTE_SCHEMES):
        raise UsageError(
            "unknown source (expected path:DIR, electron:VERSION|auto, pypi:NAME==VER, "
            "npm:NAME@VER or url:URL#sha256=HEX)",
            where=source,
        )
    from verifier.upstream import sources

    spec = sources.parse_source(source)
    ident = _identity(spec.options, sigstore_declared)
    if ident is None:
        return sources.resolve_remote(spec, shipped, fetch_options, workdir, ctx)
    # the bundle covers the source's primary archive: prove it before analysing anything
    try:
        archives = sources.fetch_source(spec, shipped, fetch_options)  # type: ignore[arg-type]
    except ReferenceMismatchError:
        archives = []
    proof = ()
    if archives:
        proof, failed = _check(archives[0][1], ident, source)
        if failed is not None:
            return [failed]
    refs = sources.resolve_remote(spec, shipped, fetch_options, workdir, ctx)
    if refs and proof:
        refs[0] = _with_proof(refs[0], proof)
    return refs


def _identity(options: Mapping[str, str], declared: object | None) -> object | None:
    from verifier.attest.sigstore_verify import identity_for_source

    return identity_for_source(options, declared)  # type: ignore[arg-type]


def _check(archive: str, ident: object, source: str) -> tuple[tuple[str, ...], Reference | None]:
    """(proof lines, None) when the bundle verifies; else a Reference holding the mismatch."""
    from verifier.attest.sigstore_verify import check_source
    from verifier.model import Component

    proof, problems = check_source(archive, ident)  # type: ignore[arg-type]
    if not problems:
        return tuple(proof), None
    comp = Component(name=os.path.basename(archive), version=None, source=source)
    fixed = tuple(
        Anomaly(a.rule, a.message, {**a.evidence, "location": source, "path": source}, a.arch)
        for a in problems
    )
    return (), Reference(comp, (), fixed)


def _with_proof(ref: Reference, proof: tuple[str, ...]) -> Reference:
    comp = dataclasses.replace(ref.component, proof=(*ref.component.proof, *proof))
    return dataclasses.replace(ref, component=comp)
