"""SOURCE strings -> References. ``path:`` is local; every other scheme is fetched and proven.

A source may require a Sigstore bundle (``,bundle=FILE,identity=ID,issuer=ISSUER`` after the
SOURCE, or the policy component's ``sigstore`` entry): the archive is verified against it,
offline, before the reference is trusted. A bundle that fails gives a Reference with no files
and a ``reference-mismatch`` problem: it is never used for comparison.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from verifier.analysis import AnalysisContext
from verifier.errors import ReferenceMismatchError, UsageError
from verifier.model import Anomaly, Component, Inventory, Reference, SigstoreIdentity
from verifier.upstream.ahead import UnpackAhead
from verifier.upstream.path import resolve_path
from verifier.upstream.sigstore import check_source, identity_for_source
from verifier.upstream.source_options import split_options

if TYPE_CHECKING:
    from verifier.upstream.options import FetchOptions

REMOTE_SCHEMES = ("electron:", "pypi:", "npm:", "url:")

# Policy lookup of a source's declared Sigstore identity (policy.sigstore_for)
SigstoreLookup = Callable[[str], SigstoreIdentity | None]


def is_path_source(source: str) -> bool:
    if source.startswith("path:"):
        return True
    return not source.startswith(REMOTE_SCHEMES) and (
        os.path.exists(source) or "/" in source or source.startswith(".")
    )


def unpack_ahead(
    sources: Sequence[str],
    workdir: str,
    sigstore_declared: Callable[[str], SigstoreIdentity | None] = lambda _s: None,
) -> UnpackAhead:
    """The plain ``path:`` sources, to unpack while the shipped files are analysed
    (``UnpackAhead.run``). Not one with options or a Sigstore identity the policy declares
    (``sigstore_declared``): its bundle is checked before anything of it is read."""
    todo = []
    for source in sources:
        if is_path_source(source):
            body = source[len("path:") :] if source.startswith("path:") else source
            location, options = split_options(body)
            if not options and sigstore_declared(source) is None:
                todo.append((source, location))
    return UnpackAhead(todo, workdir)


def resolve(
    source: str,
    shipped: Inventory,
    workdir: str,
    ctx: AnalysisContext,
    fetch_options: FetchOptions | None = None,
    sigstore_declared: SigstoreIdentity | None = None,
    ahead: UnpackAhead | None = None,
) -> list[Reference]:
    """Resolve one SOURCE; raises ReferenceUnavailableError (exit 3) for unobtainable remotes.
    ``ahead``: local references unpacked already (``unpack_ahead``)."""
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
            return [_with_proof(resolve_path(source, location, workdir, ctx, None, shipped), proof)]
        return [resolve_path(source, location, workdir, ctx, ahead, shipped)]
    if not source.startswith(REMOTE_SCHEMES):
        raise UsageError(
            "unknown source (expected path:DIR, electron:VERSION|auto, pypi:NAME==VER, "
            "npm:NAME@VER or url:URL#sha256=HEX)",
            where=source,
        )
    # lazy: start-up, fetched sources need requests (+136 modules): loaded when one is fetched
    from verifier.upstream import sources

    spec = sources.parse_source(source)
    ident = _identity(spec.options, sigstore_declared)
    if ident is None:
        return sources.resolve_remote(spec, shipped, fetch_options, workdir, ctx)
    # the bundle covers the source's primary archive: prove it before analysing anything
    try:
        archives = sources.fetch_source(spec, shipped, fetch_options)
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


def _identity(
    options: Mapping[str, str], declared: SigstoreIdentity | None
) -> SigstoreIdentity | None:
    return identity_for_source(options, declared)


def _check(
    archive: str, ident: SigstoreIdentity, source: str
) -> tuple[tuple[str, ...], Reference | None]:
    """(proof lines, None) when the bundle verifies; else a Reference holding the mismatch."""
    proof, problems = check_source(archive, ident)
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
