"""Local references read ahead of their turn (``verify``), in time biv would otherwise leave
idle: a release unpacked while forked workers analyse the artifact, a reference inventory
parsed in a forked child while the artifact is unpacked."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from collections.abc import Sequence

from verifier import lifecycle, procpool
from verifier.inventory import unpack_reference
from verifier.model import Anomaly, Component, FileEntry, Inventory, Link, Reference, is_plain_data
from verifier.unpack import Unpacked
from verifier.upstream.refs_document import is_refs_document, load_refs_document, shared


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
                if os.path.isfile(location) and is_refs_document(location):
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
            and is_refs_document(location)
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
            data = pickle.dumps(_compact(load_refs_document(source, location)), protocol=5)
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
            files.append(shared(item, by_path.get(item.path)))
    return Reference(component, tuple(files), problems, anomalies, links)
