"""``unpack``: a shipped artifact (directory or archive) to a flat list of members.

Directories are walked in-process; archives that must be extracted go through the sandbox
(one child process per archive), and what they wrote is walked with the same checks.
Every member is sniffed; archives found inside are opened in turn, up to
``Limits.max_depth`` layers, charging one shared budget of bytes and members.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import replace
from operator import attrgetter
from pathlib import Path

from verifier import model
from verifier.binary.sniff import sniff
from verifier.errors import ArtifactError, MalformedInputError
from verifier.hashing import sha256_bytes
from verifier.record import record
from verifier.unpack import links, pack, paths, registry, sandbox
from verifier.unpack.limits import Budget, Limits
from verifier.unpack.registry import Entry, Extractor, Reader
from verifier.unpack.result import LinkRecord, Member, Problem, Unpacked, anomaly
from verifier.unpack.walk import WalkedFile, hash_file, walk


def tree_digest(pairs: list[tuple[str, str]]) -> str:
    """sha256 of the canonical JSON of the sorted [path, sha256] pairs (docs/contract.md)."""
    # tuples sort and encode as the lists they stand for
    doc = json.dumps(sorted(pairs), separators=(",", ":"))
    return sha256_bytes(doc.encode("utf-8"))


def _location(container: tuple[str, ...], member: str) -> str:
    return "!/".join((*container, member)) if member else "!/".join(container)


@record
class _Layer:
    """An archive to open: its reader, file, and where its members go."""

    reader: Reader
    src: str  # the archive file on disk
    prefix: str  # member path prefix: '' at top level, else the archive's path + '/'
    container: tuple[str, ...]  # layers down to and including this archive
    depth: int  # 1 for the top-level archive

    @property
    def where(self) -> str:
        return "!/".join(self.container)

    @property
    def here(self) -> str:
        return self.prefix.rstrip("/")


class _Unpacker:
    def __init__(
        self, workdir: str, limits: Limits, *, hash_files: bool = True, strict_top: bool = False
    ) -> None:
        self.workdir = workdir
        self.limits = limits
        self.hash_files = hash_files
        self.strict_top = strict_top
        self.budget = Budget(limits)
        self.members: list[Member] = []
        self.links: list[model.Link] = []
        self.notes: list[model.Note] = []
        self.formats: set[str] = set()
        self.pending: list[_Layer] = []  # archives found, not opened yet
        self.problems: list[model.Anomaly] = []

    def problem(self, location: str, path: str, message: str) -> None:
        self.problems.append(anomaly(location, path, message))

    def problems_in(self, container: tuple[str, ...], prefix: str, found: list[Problem]) -> None:
        cap = self.limits.max_problems + 1  # readers may add their own summary line
        for p in found[:cap]:
            self.problem(_location(container, p.member), (prefix + p.member).rstrip("/"), p.message)
        if len(found) > cap:
            where = _location(container, "")
            self.problem(where, prefix.rstrip("/"), f"{len(found) - cap} more problems not listed")

    def layer_links(
        self,
        files: list[str],
        found: list[LinkRecord],
        prefix: str,
        container: tuple[str, ...],
    ) -> set[str]:
        """Check one layer's links with its members; record the safe ones; return the
        members to drop (they cross a link, so an extractor writes them elsewhere)."""
        safe, problems, bad = links.check(files, found)
        self.problems_in(container, prefix, problems)
        for rec in safe:
            self.links.append(
                model.Link(
                    prefix + rec.member,
                    links.normalise(rec),
                    _location(container, rec.member),
                    container,
                    "hardlink" if rec.hard else "symlink",
                )
            )
        return bad

    def add(self, f: WalkedFile, prefix: str, container: tuple[str, ...], depth: int) -> None:
        """Record one file; queue it when it is an archive that may be opened."""
        path = prefix + f.rel
        location = _location(container, f.rel)
        blob = model.Blob(f.abspath, 0, f.size)
        self.members.append(Member(path, location, container, blob, f.sha256 or None, f.magic))
        reader = f.reader
        if reader is None:
            return
        why = self._cannot_open(depth)
        if why is not None:
            self.problem(location, path, f"{reader.name} archive {why}; not opened")
            return
        self.budget.archives_left -= 1
        self.pending.append(_Layer(reader, f.abspath, path + "/", (*container, f.rel), depth + 1))

    def add_packed(self, p: pack.Packed, prefix: str, container: tuple[str, ...]) -> None:
        """Record one member of a pack (never an archive: those get files of their own)."""
        blob = model.Blob(p.pack, p.offset, p.size)
        location = _location(container, p.rel)
        sha = p.sha256 if self.hash_files else None  # as for walked files: the caller hashes
        self.members.append(Member(prefix + p.rel, location, container, blob, sha, p.magic))

    def _cannot_open(self, depth: int) -> str | None:
        """Why a nested archive at layer ``depth`` must stay closed, or None."""
        if depth >= self.limits.max_depth:
            return f"nested deeper than {self.limits.max_depth} layers"
        if self.budget.archives_left <= 0:
            return f"beyond the first {self.limits.max_archives} archives"
        if self.budget.seconds_left() <= 0:
            return f"after the {self.limits.max_seconds:g} s time budget ran out"
        return None

    def open_top(self, reader: Reader, src: str, name: str) -> None:
        """The top-level archive: unreadable as a whole is an ArtifactError."""
        self.budget.archives_left -= 1
        self._open_all([_Layer(reader, src, "", (name,), 1)], top=True)
        self.drain()

    def drain(self) -> None:
        """Open queued archives, a layer at a time (one sandbox run per layer)."""
        while self.pending:
            batch, self.pending = self.pending, []
            self._open_all(batch, top=False)

    def _open_all(self, layers: list[_Layer], *, top: bool) -> None:
        """Open ``layers`` in one sandbox run: extract archives, list asar entries."""
        # small members may be packed when the sandbox knows every reader this process does
        limits = replace(self.budget.narrowed(self.limits), pack_members=registry.builtin_only())
        timeout = min(limits.worker_timeout_s * len(layers), self.budget.seconds_left())
        try:
            jobs = [
                sandbox.Job(
                    la.reader,
                    la.src,
                    tempfile.mkdtemp(prefix=f"{la.reader.name}-", dir=self.workdir)
                    if isinstance(la.reader, Extractor)
                    else self.workdir,
                )
                for la in layers
            ]
            outcomes = sandbox.run_batch(jobs, limits, timeout, cwd=self.workdir)
        except OSError as e:
            raise ArtifactError(f"cannot run the extractor: {e}", where=layers[0].src) from None
        for layer, job, outcome in zip(layers, jobs, outcomes, strict=True):
            self.formats.add(layer.reader.name)
            if outcome.fatal is not None:
                self._unreadable(layer, outcome.fatal, top=top)
            if outcome.aborted is not None:
                self.problem(layer.where, layer.here, outcome.aborted)
            self.problems_in(layer.container, layer.prefix, outcome.problems)
            for n in outcome.notes[: self.limits.max_problems]:
                kind, text = _note(n.message)
                self.notes.append(model.Note(kind, _location(layer.container, n.member), text))
            if isinstance(layer.reader, Extractor):
                recs = list(outcome.links)
                files, found = walk(
                    job.dest,
                    self.limits,
                    self.budget,
                    hash_files=self.hash_files,
                    sniff=True,
                    links=recs,
                )
                self.problems_in(layer.container, layer.prefix, found)
                packed, found = pack.read(
                    job.dest, outcome.packs, self.limits, self.budget, {f.rel for f in files}
                )
                self.problems_in(layer.container, layer.prefix, found)
                names = [f.rel for f in files] + [p.rel for p in packed]
                bad = self.layer_links(names, recs, layer.prefix, layer.container)
                for f in links.with_hard_links(files, recs, bad):
                    self.add(f, layer.prefix, layer.container, layer.depth)
                for p in links.with_hard_links(packed, recs, bad):
                    self.add_packed(p, layer.prefix, layer.container)
            else:
                bad = self.layer_links(
                    [e.path for e in outcome.entries],
                    outcome.links,
                    layer.prefix,
                    layer.container,
                )
                self._in_place(layer, [e for e in outcome.entries if e.path not in bad])

    def _unreadable(self, layer: _Layer, message: str, *, top: bool) -> None:
        """A whole archive that cannot be read: hostile, truncated or over a cap, so a
        ``malformed-input`` problem, at top level too (docs/contract.md "Exit codes and
        precedence"); an ArtifactError only when the caller asked for it (an upstream
        ``path:`` release)."""
        text = f"unreadable {layer.reader.name} archive: {message}"
        if top and self.strict_top:
            raise ArtifactError(text, where=layer.src)
        self.problem(layer.where, layer.here, text)

    def _in_place(self, layer: _Layer, entries: list[Entry]) -> None:
        """Members stored in the archive file itself, re-checked against its size."""
        try:
            size = Path(layer.src).stat().st_size
        except OSError as e:
            self.problem(layer.where, layer.here, f"cannot read: {e.strerror or e}")
            return
        seen: set[str] = set()
        for ent in entries:
            if (
                ent.path in seen
                or ent.offset < 0
                or ent.size < 0
                or ent.offset + ent.size > size
                or _unclean(ent.path, self.limits.max_name_len)
            ):
                self.problem(
                    _location(layer.container, ent.path),
                    layer.prefix + ent.path,
                    "entry rejected on re-validation",
                )
                continue
            if self.budget.members_left <= 0:
                self.problem(layer.where, layer.here, "too many members; the rest skipped")
                break
            seen.add(ent.path)
            self.budget.members_left -= 1
            blob = model.Blob(layer.src, ent.offset, ent.size)
            loc = _location(layer.container, ent.path)
            self.members.append(Member(layer.prefix + ent.path, loc, layer.container, blob))


def _note(text: str) -> tuple[str, str]:
    """(kind, message) of an extractor's note, sent as 'kind: message'."""
    kind, sep, message = text.partition(": ")
    return (kind, message) if sep and kind.replace("-", "").isalnum() else ("note", text)


def _code_format(head: bytes, size: int) -> str | None:
    """'pe', 'macho' or 'elf' when ``head`` starts a lone binary, else None."""
    fmt = sniff(head, size)
    return fmt.value if fmt.is_code else None


def _unclean(name: str, max_len: int) -> bool:
    try:
        return paths.clean_name(name, max_len) != name
    except MalformedInputError:
        return True


def unpack(
    path: str,
    workdir: str,
    limits: Limits | None = None,
    *,
    hash_files: bool = True,
    strict_top: bool = False,
) -> Unpacked:
    """Every member of the artifact at ``path``; extracted files go under ``workdir``.

    ``hash_files=False`` skips hashing the members (``Member.sha256`` stays None; only each
    file's head is read, for sniffing archives), for a caller that hashes them anyway in
    its own single pass; for a directory, ``Unpacked.sha256`` is then '' and the caller
    computes ``tree_digest`` over the members whose ``container`` is empty.

    Raises ``ArtifactError`` only when the artifact cannot be opened at all: missing,
    unreadable, not a regular file or directory (a FIFO is refused without being opened
    for reading), or of no supported format (found by sniffing its first bytes, before
    anything is hashed). A hostile, truncated or over-cap archive, at top level as inside,
    is a ``malformed-input`` problem in the result (``strict_top=True``: an ArtifactError
    for a top-level archive that cannot be read, for an upstream release given by path).
    An archive larger than ``Limits.max_artifact_bytes`` is not read at all
    (``Unpacked.sha256`` is then '').
    """
    limits = limits or Limits()
    registry.load_builtin()
    st = _stat_artifact(path)
    try:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtifactError(f"cannot create work directory: {e.strerror}", where=workdir) from None
    u = _Unpacker(
        str(Path(workdir).absolute()), limits, hash_files=hash_files, strict_top=strict_top
    )
    if stat.S_ISDIR(st.st_mode):
        digest, size = _unpack_directory(u, path)
    else:
        digest, size = _unpack_file(u, path)
    members = tuple(sorted(u.members, key=attrgetter("path", "location")))
    problems = tuple(
        sorted(u.problems, key=lambda a: (str(a.evidence.get("location", "")), a.message))
    )
    found_links = tuple(sorted(u.links, key=lambda k: (k.path, k.location)))
    return Unpacked(
        path, digest, size, members, problems, found_links, frozenset(u.formats), tuple(u.notes)
    )


def _stat_artifact(path: str) -> os.stat_result:
    """The artifact's stat, if it is a directory or a regular file (else ArtifactError)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ArtifactError("no such file or directory", where=path) from None
    except OSError as e:
        raise ArtifactError(f"cannot read: {e.strerror or e}", where=path) from None
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise ArtifactError("not a regular file or a directory", where=path)
    return st


def _unpack_directory(u: _Unpacker, path: str) -> tuple[str, int]:
    """A directory artifact walked in-process: (tree digest, bytes)."""
    recs: list[LinkRecord] = []
    files, found = walk(
        path, u.limits, u.budget, count_bytes=False, hash_files=u.hash_files, sniff=True, links=recs
    )
    u.problems_in((), "", found)
    bad = u.layer_links([f.rel for f in files], recs, "", ())
    files = [f for f in files if f.rel not in bad]
    digest = tree_digest([(f.rel, f.sha256) for f in files]) if u.hash_files else ""
    size = sum(f.size for f in files)
    for f in files:
        u.add(f, "", (), 0)
    u.drain()
    return digest, size


def _unpack_file(u: _Unpacker, path: str) -> tuple[str, int]:
    """A file artifact: sniffed before anything is hashed, then opened as its archive format
    (a lone binary is ``single_binary``'s, not unpack's): (sha256, bytes)."""
    try:
        head = hash_file(path, full=False)  # sniff first: nothing hashed yet
    except OSError as e:
        raise ArtifactError(f"cannot read: {e.strerror or e}", where=path) from None
    reader = registry.find(head.head, path)
    name = Path(path).name
    size = head.size
    kind = reader.name if reader is not None else _code_format(head.head, size)
    if kind is None:
        raise ArtifactError("not a directory or a supported archive", where=path)
    if size > u.limits.max_artifact_bytes:
        if reader is not None:
            u.formats.add(reader.name)
        u.problem(
            name,
            "",
            f"{kind} file of {size} bytes is larger than the "
            f"{u.limits.max_artifact_bytes}-byte cap; not read",
        )
        return "", size
    if reader is None:  # a lone binary: api.single_binary analyses it, not unpack
        raise ArtifactError("not a directory or a supported archive", where=path)
    try:
        digest = hash_file(path).sha256
    except OSError as e:
        raise ArtifactError(f"cannot read: {e.strerror or e}", where=path) from None
    u.open_top(reader, path, name)
    return digest, size
