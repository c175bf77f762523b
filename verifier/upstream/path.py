"""``path:DIR_OR_ARCHIVE``: an upstream release the user already has on disk."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from verifier import lifecycle, procpool
from verifier.analysis import AnalysisContext
from verifier.errors import ArtifactError, SchemaError, UsageError
from verifier.hashing import sha256_file
from verifier.inventory import build_reference, unpack_reference
from verifier.jsonread import Fields
from verifier.model import (
    Anomaly,
    Component,
    FileEntry,
    Inventory,
    Link,
    Reference,
    is_plain_data,
)
from verifier.unpack import Unpacked


class UnpackAhead:
    """Local references read ahead of their turn, in time biv would otherwise leave idle;
    ``resolve_path`` takes each result, or its error, as if it had read the reference then.

    * ``path:DIR`` and ``path:ARCHIVE`` are unpacked (hashed included) while forked workers
      analyse the shipped files (``run`` is the analysis' ``meanwhile``): hashing is most of
      a reference's cost.
    * ``path:REFS.json`` (a ``biv.refs/v1`` inventory of at most ``PARSE_AHEAD_MAX`` bytes)
      is parsed in a forked child from ``start`` on, while biv unpacks and hashes the
      artifact: the JSON decoding leaves the critical path. The child reads it exactly as
      biv would; when the child fails for any reason, biv reads the document itself.

    ``close`` stops and reaps a child whose result nobody took.
    """

    def __init__(self, sources: Sequence[tuple[str, str]], workdir: str) -> None:
        self._todo = list(sources)  # (source, location)
        self._workdir = workdir
        self._done: dict[tuple[str, str], Unpacked | Exception] = {}
        self._children: dict[tuple[str, str], tuple[int, int]] = {}  # -> (pid, read fd)

    def start(self) -> None:
        """Fork a child for each reference inventory (call before biv's threads start work)."""
        for source, location in self._todo:
            if _readable_document(location):
                child = _parse_in_child(source, location)
                if child is not None:
                    self._children[(source, location)] = child

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

    def take_document(
        self, source: str, location: str, shipped: Inventory | None
    ) -> Reference | None:
        """The inventory the child parsed (sharing ``shipped``'s identical entries), or None
        when there was no child or it failed (the caller then reads the document)."""
        child = self._children.pop((source, location), None)
        if child is None:
            return None
        payload = _collect(*child)
        return None if payload is None else _rebuild(payload, shipped)

    def close(self) -> None:
        for pid, fd in self._children.values():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            _collect(pid, fd)
        self._children.clear()


# the largest reference inventory parsed ahead (about 17,000 files as ``biv refs build``
# writes them; the child's parse holds a few times this beside biv): a larger one is read by
# biv itself, which turns its entries into objects while it parses
PARSE_AHEAD_MAX = 16 << 20

_Payload = tuple[
    tuple[Component, tuple[Anomaly, ...], tuple[Anomaly, ...], tuple[Link, ...]],
    list["tuple[str, int, str] | FileEntry"],
]


def _readable_document(location: str) -> bool:
    try:
        return (
            os.path.isfile(location)
            and os.access(location, os.R_OK)
            and os.path.getsize(location) <= PARSE_AHEAD_MAX
            and _is_refs_document(location)
        )
    except OSError:
        return False


def _parse_in_child(source: str, location: str) -> tuple[int, int] | None:
    """(pid, read end of its pipe) of a child parsing the document, or None (no fork here:
    not Linux, or ``BIV_ANALYSIS_PROCESSES=0``). Forked where ``procpool`` forks: before
    biv starts work in threads (an idle pool thread holds no lock the child needs)."""
    if not procpool.available():
        return None
    parent = os.getpid()
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:  # the child: parse, send, exit (never returns)
        code = 1
        try:
            os.close(r)
            procpool.child_init(parent)
            data = pickle.dumps(_compact(_load_refs_document(source, location)), protocol=5)
            with os.fdopen(w, "wb") as fh:
                fh.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    lifecycle.track_process(pid)
    return pid, r


def _compact(ref: Reference) -> _Payload:
    """What the child sends: a plain data file as (path, size, sha256), others whole."""
    items: list[tuple[str, int, str] | FileEntry] = [
        (e.path, e.size, e.sha256)
        if e.location == e.path and is_plain_data(e.facts, e.sha256)
        else e
        for e in ref.files
    ]
    return (ref.component, ref.problems, ref.anomalies, ref.links), items


def _collect(pid: int, fd: int) -> _Payload | None:
    """The child's payload, or None if it did not finish cleanly."""
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read()
    except OSError:
        data = b""
    finally:
        try:
            _pid, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = -1
        lifecycle.untrack_process(pid)
    if status != 0 or not data:
        return None
    try:
        # our own forked child's bytes, through a pipe only it and biv hold
        payload: _Payload = pickle.loads(data)  # noqa: S301
    except Exception:
        return None
    return payload


def _rebuild(payload: _Payload, shipped: Inventory | None) -> Reference:
    (component, problems, anomalies, links), items = payload
    by_path = {e.path: e for e in shipped.entries} if shipped is not None else {}
    files = []
    for item in items:
        if isinstance(item, tuple):
            path, size, sha = item
            files.append(FileEntry.plain(path, size, sha, by_path.get(path)))
        else:
            files.append(_shared(item, by_path.get(item.path)))
    return Reference(component, tuple(files), problems, anomalies, links)


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
        ahead_ref = ahead.take_document(source, location, shipped) if ahead is not None else None
        return ahead_ref or _load_refs_document(source, location, shipped)
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
        return _shared(FileEntry.read(Fields(d, f"files[{self.count - 1}]")), like)


def _shared(entry: FileEntry, like: FileEntry | None) -> FileEntry:
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
