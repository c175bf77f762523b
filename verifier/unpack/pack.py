"""Small members of one archive layer stored back to back in pack files, not a file each.

Creating, walking and removing a file costs far more than hashing a small member: a zip of
200,000 tiny members spent minutes in ``open(O_CREAT)`` and ``unlink``. So the extractor (in
the sandbox) appends each small member to a pack file beside its destination directory
(``Packer``, used by ``Sink``), and lists them in its answer: per pack, the members' names
and sizes, in order. The parent re-validates that index (names clean and unique, sizes
adding up to the pack file's size, the caps) and hashes the packed bytes in one sequential
read per pack (``read``). A packed member is a ``Blob`` of its pack, read in place like an
asar member.

A member gets a file of its own, as before, when:

* it is larger than ``MEMBER_MAX``, where the per-file cost no longer matters;
* an archive reader claims it, or cannot tell without the file (``registry.claims_in_memory``):
  nested archives are opened from files;
* it lies in a macOS bundle (a folder named ``*.app``): bundle seals are checked on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor

from verifier.record import record
from verifier.unpack import paths, registry
from verifier.unpack.limits import Budget, Limits
from verifier.unpack.result import Problem

MEMBER_MAX = 1 << 20  # larger members are files of their own
FILE_MAX = 1 << 30  # bytes per pack file (and never more than one member may have)
MAGIC_SIZE = 64  # bytes of each member kept for telling data from code (as walk does)
_BATCH = 8 << 20  # bytes of a pack read and hashed per task
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_OPEN = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def pack_path(dest: str, index: int) -> str:
    """The ``index``-th pack of the layer extracted into ``dest`` (beside it, never inside:
    no member name can collide with it)."""
    return f"{dest.rstrip(os.sep)}.pack{index}"


def needs_own_file(name: str, head: bytes) -> bool:
    """Whether the complete member ``name`` (first bytes ``head``) must be a file of its own."""
    return ".app/" in name.lower() or registry.claims_in_memory(head, name)


class Packer:
    """Appends members to ``DEST.pack0``, ``DEST.pack1``... (in the sandbox)."""

    def __init__(self, dest: str, limits: Limits) -> None:
        self.dest = dest
        # a pack is one file to RLIMIT_FSIZE (max_member_bytes + 1), like any member
        self.file_max = max(1, min(FILE_MAX, limits.max_member_bytes))
        self.packs: list[tuple[list[str], list[int]]] = []
        self.fd = -1
        self.size = 0

    def add(self, name: str, data: bytes) -> None:
        """Append one member (OSError on a write error: the pack is left as it was)."""
        if self.fd < 0 or self.size + len(data) > self.file_max:
            self._next()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
                os.lseek(self.fd, self.size, os.SEEK_SET)
            raise
        names, sizes = self.packs[-1]
        names.append(name)
        sizes.append(len(data))
        self.size += len(data)

    def _next(self) -> None:
        self.close()
        fd = os.open(pack_path(self.dest, len(self.packs)), _CREATE, 0o644)
        self.packs.append(([], []))
        self.fd, self.size = fd, 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def index(self) -> list[tuple[list[str], list[int]]]:
        """Per pack, in order: (names, sizes). Call after ``close``."""
        return self.packs


@record(slots=True)
class Packed:
    """One member read back from a pack: ``size`` bytes at ``offset`` of ``pack``."""

    rel: str
    pack: str
    offset: int
    size: int
    sha256: str
    magic: bytes


def read(
    dest: str,
    index: list[tuple[list[str], list[int]]],
    limits: Limits,
    budget: Budget,
    taken: set[str],
) -> tuple[list[Packed], list[Problem]]:
    """The packed members of the layer extracted into ``dest``, re-validated and hashed.

    ``index``: the extractor's answer (per pack: names and sizes). ``taken``: the names of
    the files walked in ``dest`` (a name cannot be both). A pack whose file does not match
    its index (size, type) is rejected whole; a name that is not clean, or repeated, is
    rejected alone. Members and bytes are charged to ``budget``.
    """
    problems: list[Problem] = []
    todo: list[tuple[str, list[tuple[str, int, int]]]] = []
    seen = set(taken)
    for i, (names, sizes) in enumerate(index):
        path = pack_path(dest, i)
        want = sum(sizes) if len(names) == len(sizes) else -1
        try:
            st = os.lstat(path)
        except OSError as e:
            problems.append(Problem("", f"pack {i} of the extraction unreadable: {e.strerror}"))
            continue
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_size != want
            or len(names) != len(sizes)
            or not all(0 <= n <= MEMBER_MAX for n in sizes)
        ):
            problems.append(Problem("", f"pack {i} of the extraction does not match its index"))
            continue
        items: list[tuple[str, int, int]] = []
        offset = 0
        for name, size in zip(names, sizes, strict=True):
            at, offset = offset, offset + size
            if name in seen or not paths.is_clean(name, limits.max_name_len):
                problems.append(Problem(name, "entry rejected on re-validation"))
                continue
            if budget.members_left <= 0:
                problems.append(Problem(name, "too many members; the rest skipped"))
                break
            if size > budget.bytes_left:
                problems.append(Problem(name, "total extracted size cap reached"))
                continue
            seen.add(name)
            budget.members_left -= 1
            budget.bytes_left -= size
            items.append((name, at, size))
        todo.extend((path, items[k : k + n]) for k, n in _batches(items))
    workers = max(1, min(8, os.cpu_count() or 1))
    out: list[Packed] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for got in pool.map(_hash_batch, todo):
            if isinstance(got, OSError):
                problems.append(Problem("", f"cannot read a pack: {got.strerror or got}"))
            else:
                out.extend(got)
    return out, problems


def _batches(items: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """(start, count) of consecutive runs of about ``_BATCH`` bytes."""
    runs: list[tuple[int, int]] = []
    start = total = 0
    for k, (_n, _at, size) in enumerate(items):
        total += size
        if total >= _BATCH:
            runs.append((start, k + 1 - start))
            start, total = k + 1, 0
    if start < len(items):
        runs.append((start, len(items) - start))
    return runs


def _hash_batch(job: tuple[str, list[tuple[str, int, int]]]) -> list[Packed] | OSError:
    path, items = job
    if not items:
        return []
    first = items[0][1]
    end = items[-1][1] + items[-1][2]
    try:
        fd = os.open(path, _OPEN)
        try:
            data = os.pread(fd, end - first, first)
        finally:
            os.close(fd)
    except OSError as e:
        return e
    if len(data) != end - first:
        return OSError(f"{os.path.basename(path)} shorter than its index")
    view = memoryview(data)
    sha = hashlib.sha256
    out = []
    for name, at, size in items:
        chunk = view[at - first : at - first + size]
        out.append(Packed(name, path, at, size, sha(chunk).hexdigest(), bytes(chunk[:MAGIC_SIZE])))
    return out
