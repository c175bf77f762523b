"""Writing untrusted members into a destination directory, with names checked and caps counted.

Shared by the zip and tar extractors (they run in the sandbox). Sizes are counted as bytes
are written, never taken from archive headers. With ``pack=True`` small members go to pack
files instead of files of their own (``pack.py``); the extractor must then return
``Sink.result()``, whose ``packs`` list them.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Protocol

from verifier.errors import LimitExceededError, MalformedInputError
from verifier.unpack import pack as packs
from verifier.unpack import paths
from verifier.unpack.limits import Limits
from verifier.unpack.registry import HEAD_SIZE
from verifier.unpack.result import Extraction, LinkRecord, Problem

CHUNK = 1 << 20
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class StopExtraction(Exception):
    """A cap on the whole archive was reached: extract nothing more."""


class SourceError(Exception):
    """Reading the member's bytes failed (corrupt, truncated, bad CRC): ``__cause__`` says why."""


class Sink:
    def __init__(
        self,
        dest: str,
        limits: Limits,
        *,
        stream_compressed: int | None = None,
        pack: bool = False,
    ) -> None:
        self.dest = os.path.realpath(dest)
        self.packer = packs.Packer(self.dest, limits) if pack else None
        # with packs, not every file is on disk: what a file system would refuse (a file
        # where a folder is, or in a path through a file) is refused from these instead
        self.files: set[str] = set()
        self.folders: set[str] = {""}
        self.limits = limits
        # for a single compressed stream (tar.gz...): its size, to cap the overall ratio
        self.stream_compressed = stream_compressed
        self.total = 0  # bytes written
        self.count = 0  # files written
        self.seen: set[str] = set()  # cleaned names of files, directories and links
        self.problems: list[Problem] = []
        self.links: dict[str, LinkRecord] = {}  # recorded, never created
        self.hard: dict[str, LinkRecord] = {}  # hard links: recorded, never created
        self.notes: list[Problem] = []  # what an external tool cannot represent
        self.dirs: set[str] = set()  # directories made and checked (relative, '' = dest)

    def result(self) -> Extraction:
        index: list[tuple[list[str], list[int]]] = []
        if self.packer is not None:
            self.packer.close()
            index = self.packer.index()
        found = [*self.links.values(), *self.hard.values()]
        return Extraction(self.problems, found, self.count, self.total, self.notes, index)

    # --- problems ------------------------------------------------------------------------

    def problem(self, member: str, message: str) -> None:
        cap = self.limits.max_problems
        if len(self.problems) < cap:
            self.problems.append(Problem(member, message))
        elif len(self.problems) == cap:
            self.problems.append(Problem("", f"more than {cap} problems; the rest not listed"))

    # --- names ---------------------------------------------------------------------------

    def name(self, raw: str, *, is_dir: bool = False, backslash_sep: bool = False) -> str | None:
        """The cleaned name for ``raw``, or None (problem recorded) when it must be skipped.

        ``backslash_sep``: '\\' separates (a name written by a Windows tool, ``paths.py``)."""
        if is_dir and raw.replace("\\", "/").strip("/") in ("", "."):
            return None  # the archive's root ('./' as made by `tar -C dir .`): nothing to do
        if "\\" not in raw and paths.is_clean(raw, self.limits.max_name_len):
            # clean already (most names): what clean_name returns, read either way, for a
            # name without a backslash
            name = raw
        else:
            try:
                name = paths.clean_name(raw, self.limits.max_name_len, backslash_sep=backslash_sep)
            except MalformedInputError as e:
                self.problem(raw, e.message)
                return None
        if name in self.seen:
            if is_dir:
                return None  # a repeated directory entry is harmless
            self.problem(raw, f"duplicate entry {name!r}; only the first is kept")
            return None
        if name.count("/") >= self.limits.max_dir_depth:
            self.problem(raw, f"more than {self.limits.max_dir_depth} directory levels")
            return None
        if self.links:
            parts = name.split("/")
            for i in range(1, len(parts)):
                prefix = "/".join(parts[:i])
                if prefix in self.links:
                    self.problem(raw, f"path crosses the symlink {prefix!r} inside the archive")
                    return None
        return name

    def link(self, raw: str, name: str, target: str) -> None:
        """Record symlink ``name`` -> ``target`` (counted as a member; never created)."""
        self.admit_file(raw)
        self.seen.add(name)
        self.links[name] = LinkRecord(name, target)

    def hardlink(self, raw: str, name: str, linkname: str) -> None:
        """Record hard link ``name`` to the earlier member ``linkname`` (never created).

        As GNU tar's ``linkat``: the target must be a member already extracted (a regular
        file, or a symlink, which the new name then is too, with the same text); one that
        is missing, later in the archive, a directory or outside the tree is a problem.
        A chain (``c`` -> ``b`` -> ``a``) names the stored file ``a``.
        """
        try:
            target = paths.clean_name(linkname, self.limits.max_name_len)
        except MalformedInputError as e:
            self.problem(raw, f"hard link escapes the archive: {e.message}")
            return
        if target in self.links:  # linkat does not follow a symlink: a second name for it
            self.link(raw, name, self.links[target].target)
            return
        if target in self.hard:
            target = self.hard[target].target
        src = Path(self.dest, *target.split("/"))
        if target == name or src.is_symlink() or not src.is_file():
            self.problem(raw, f"hard link to a member not extracted before it: {target!r}")
            return
        self.admit_file(raw)
        self.seen.add(name)
        self.hard[name] = LinkRecord(name, target, hard=True)

    def admit_file(self, raw: str) -> None:
        """Count one more file against ``max_members`` (raise StopExtraction past it)."""
        if self.count >= self.limits.max_members:
            self.problem(raw, f"more than {self.limits.max_members} members; the rest skipped")
            raise StopExtraction
        self.count += 1

    # --- writing -------------------------------------------------------------------------

    def _target(self, name: str) -> str:
        parent = name.rpartition("/")[0]
        if parent not in self.dirs:  # each directory made and checked once, not per file
            p = Path(self.dest, *parent.split("/")) if parent else Path(self.dest)
            p.mkdir(mode=0o755, parents=True, exist_ok=True)
            if not paths.inside(self.dest, str(p)):
                raise MalformedInputError(f"{name!r} would be written outside the destination")
            self.dirs.add(parent)
        return os.path.join(self.dest, *name.split("/"))

    def _claim(self, name: str, *, folder: bool) -> None:
        """With packs: refuse ``name`` as a file system would (FileExistsError), else note it."""
        if self.packer is None:
            return
        parent = name.rpartition("/")[0]
        if parent not in self.folders:
            parts = parent.split("/")
            for i in range(1, len(parts) + 1):
                if "/".join(parts[:i]) in self.files:
                    raise FileExistsError(errno.EEXIST, "a file is in the way", name)
        if folder:
            if name in self.files:
                raise FileExistsError(errno.EEXIST, "a file is in the way", name)
        elif name in self.folders:
            raise FileExistsError(errno.EEXIST, "a folder is in the way", name)
        while parent not in self.folders:
            self.folders.add(parent)
            parent = parent.rpartition("/")[0]
        (self.folders if folder else self.files).add(name)

    def mkdir(self, name: str) -> None:
        self.seen.add(name)
        self._claim(name, folder=True)
        target = self._target(name)
        Path(target).mkdir(mode=0o755, parents=True, exist_ok=True)
        if not paths.inside(self.dest, target):
            raise MalformedInputError(f"{name!r} would be written outside the destination")

    def write(self, name: str, src: Readable, compressed: int | None = None) -> int:
        """Copy ``src`` to ``name`` under the caps; return the bytes written.

        On a cap (LimitExceededError) or a read error (SourceError) the partial file is
        removed. When the whole-archive byte cap is hit, raises StopExtraction after
        recording the problem.
        """
        self.seen.add(name)
        self._claim(name, folder=False)
        first: list[bytes] = []
        written = 0
        if self.packer is not None:
            # read a small member whole: it goes to a pack unless it needs a file
            while written <= packs.MEMBER_MAX:
                chunk = self._read(src)
                if not chunk:
                    data = b"".join(first)
                    if packs.needs_own_file(name, data[:HEAD_SIZE]):
                        break
                    self.packer.add(name, data)
                    self.total += written
                    return written
                written += len(chunk)
                self._check(name, written, compressed)
                first.append(chunk)
        target = self._target(name)
        fd = os.open(target, _CREATE, 0o644)
        ok = False
        try:
            for chunk in first:
                self._put(fd, chunk)
            first = []
            while True:
                chunk = self._read(src)
                if not chunk:
                    break
                written += len(chunk)
                self._check(name, written, compressed)
                self._put(fd, chunk)
            ok = True
        finally:
            os.close(fd)
            if not ok:
                with contextlib.suppress(OSError):
                    os.unlink(target)
        self.total += written
        return written

    @staticmethod
    def _read(src: Readable) -> bytes:
        try:
            return src.read(CHUNK)
        except Exception as e:
            raise SourceError(f"{type(e).__name__}: {e}") from e

    @staticmethod
    def _put(fd: int, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]

    def _check(self, name: str, written: int, compressed: int | None) -> None:
        """Per-member caps (skip this member) first, then whole-archive caps (stop)."""
        lim = self.limits
        if written > lim.max_member_bytes:
            raise LimitExceededError(f"member larger than {lim.max_member_bytes} bytes")
        if (
            compressed is not None
            and written > lim.ratio_min_bytes
            and written > max(compressed, 1) * lim.max_ratio
        ):
            raise LimitExceededError(
                f"compression ratio above {lim.max_ratio} (zip bomb?): "
                f"{compressed} compressed bytes expand past {written}"
            )
        overall = self.total + written
        if overall > lim.max_total_bytes:
            self.problem(
                name, f"total extracted size exceeds {lim.max_total_bytes} bytes; rest skipped"
            )
            raise StopExtraction
        sc = self.stream_compressed
        if (
            sc is not None
            and overall > lim.ratio_min_bytes
            and overall > max(sc, 1) * lim.max_ratio
        ):
            self.problem(
                name,
                f"compression ratio above {lim.max_ratio} (bomb?): the {sc}-byte archive "
                f"expands past {overall} bytes; rest skipped",
            )
            raise StopExtraction
