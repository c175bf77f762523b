"""Inherited anomalies (docs/contract.md "Judge the change, not the upstream").

An anomaly of a shipped file is inherited when the upstream file it is paired with shows the
same rule, in the same slice, about the same content:

- an anomaly about a region of bytes (padding, slack, trailing data...) carries the sha256 of
  those bytes (``Anomaly.region_sha256``): the digests must be equal (offsets may move when a
  file is re-signed; content decides);
- an anomaly about no region (an untrusted chain, a malformed signature) is the same when the
  signature container is byte for byte upstream's and the message says the same thing (the
  file's own name set aside);
- for a file whose status is ``identical``, every anomaly is upstream's.

``malformed-input`` is never inherited: biv could not read the shipped file safely.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from verifier.model import Anomaly, FileEntry, FileResult, Reference, Status

NEVER_INHERITED = frozenset({"malformed-input"})


def inherited_from(a: Anomaly, shipped: FileEntry, result: FileResult | None) -> str | None:
    """The upstream path whose file has the same anomaly, or None when it is the vendor's."""
    if a.rule in NEVER_INHERITED or result is None or result.reference is None:
        return None
    ref = result.reference
    if result.status == Status.IDENTICAL and shipped.sha256 == ref.sha256:
        return ref.path
    for b in ref.facts.anomalies:
        if same_anomaly(a, shipped, b, ref):
            return ref.path
    return None


def bundle_inherited_from(a: Anomaly, refs: Sequence[Reference]) -> str | None:
    """A bundle-seal anomaly (evidence ``bundle``/``path``) that upstream's bundle has too:
    same rule, slice and words, about the same place inside the bundle."""
    bundle = str(a.evidence.get("bundle") or "")
    if not bundle or a.rule in NEVER_INHERITED:
        return None
    mine = _bundle_key(a)
    for r in refs:
        for b in r.anomalies:
            if _bundle_key(b) == mine:
                return str(b.evidence.get("path") or b.evidence.get("bundle") or "")
    return None


def _bundle_key(a: Anomaly) -> tuple[str, str | None, str, str]:
    bundle = posixpath.basename(str(a.evidence.get("bundle") or "").rstrip("/"))
    path = str(a.evidence.get("path") or "")
    mark = f"{bundle}/" if bundle else ""
    at = path.rfind(mark) if mark else -1
    inner = path[at + len(mark) :] if at >= 0 else ("" if path.endswith(bundle) else path)
    words = a.message.replace(bundle, "{bundle}") if bundle else a.message
    return a.rule, a.arch, words, inner


def same_anomaly(a: Anomaly, shipped: FileEntry, b: Anomaly, upstream: FileEntry) -> bool:
    if a.rule != b.rule or a.arch != b.arch or a.rule in NEVER_INHERITED:
        return False
    if a.region_sha256 is not None or b.region_sha256 is not None:
        return a.region_sha256 == b.region_sha256
    mine, theirs = _container(shipped, a.arch), _container(upstream, b.arch)
    if mine != theirs:
        return False
    return _words(a.message, shipped) == _words(b.message, upstream)


def _container(e: FileEntry, arch: str | None) -> str | None:
    if arch is not None:
        for s in e.facts.slices:
            if s.arch == arch:
                return s.signature.container_sha256
    return e.facts.signature.container_sha256


def _words(message: str, e: FileEntry) -> str:
    """The message with the file's own path and name set aside (renamed files say the same)."""
    text = message.replace(e.path, "{file}")
    name = posixpath.basename(e.path)
    return text.replace(name, "{file}") if name else text
