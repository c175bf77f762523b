"""Walking a directory tree (an artifact, or what an extractor wrote) without trusting it.

Symlinks are never followed: they are handed back to the caller (``links``), which checks
them with the whole tree (``links.py``); without that list, one that points outside the tree
is a problem and one that stays inside is skipped. Devices, FIFOs and sockets are problems
and are never opened. Files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked to be
regular after opening. Every file is hashed (sha256) while its first bytes are kept for
sniffing: by this process and a forked child (``forkwalk``) for a tree of many files, else in
a thread pool.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from verifier.record import record
from verifier.unpack import forkwalk, paths, registry
from verifier.unpack.limits import Budget, Limits
from verifier.unpack.registry import HEAD_SIZE
from verifier.unpack.result import LinkRecord, Problem

_CHUNK = 1 << 20
_SMALL = 64 * 1024  # files under this are read whole in one call (HEAD_SIZE or less)
MAGIC_SIZE = 64  # bytes kept per file: every format biv sniffs shows within them
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


@record(slots=True)
class WalkedFile:
    rel: str  # '/'-separated path relative to the root
    abspath: str
    size: int
    sha256: str  # '' when the walk was asked not to hash
    # the archive reader that claims it (sniff=True); the head it sniffed is not kept, so
    # memory does not grow with the number of files
    reader: registry.Reader | None = None
    magic: bytes = b""  # the first MAGIC_SIZE bytes


@record
class _Hashed:
    size: int
    sha256: str
    head: bytes


def hash_file(path: str, *, full: bool = True) -> _Hashed:
    """sha256, size and head of a regular file (OSError if it is not one).

    ``full=False``: read the head only; ``sha256`` is then ''.
    """
    return _Hashed(*read_hashed(path, full))


def read_hashed(path: str, full: bool = True) -> tuple[int, str, bytes]:
    """``hash_file`` as a (size, sha256, head) tuple: no record to build per file."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        if full and st.st_size < _SMALL:
            # most files of a tree: one read of its size (a buffer sized to the file, as
            # below: the allocator keeps what it gives), then one more that must find the end
            # (a file that grew, or a short read, takes the loop below from the start); raw
            # calls on the descriptor, no file object (2 us of a small file's 21)
            data = os.read(fd, st.st_size + 1)
            if len(data) <= st.st_size and not os.read(fd, 1):
                return len(data), hashlib.sha256(data).hexdigest(), data[:HEAD_SIZE]
            os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            if not full:
                return st.st_size, "", f.read(HEAD_SIZE) or b""
            h = hashlib.sha256()
            # a buffer the size of the file (up to 1 MiB): a 1 MiB buffer per tiny file, from
            # 8 threads, leaves the allocator holding hundreds of MiB on a 200,000-file tree
            buf = bytearray(max(4096, min(_CHUNK, st.st_size + 1)))
            mv = memoryview(buf)
            head = b""
            size = 0
            while True:
                n = f.readinto(mv)
                if not n:
                    break
                if size < HEAD_SIZE:
                    head += bytes(mv[: min(n, HEAD_SIZE - size)])
                h.update(mv[:n])
                size += n
        return size, h.hexdigest(), head
    finally:
        os.close(fd)


def _listing(
    root: str, limits: Limits, budget: Budget, links: list[LinkRecord] | None
) -> tuple[list[tuple[str, str]], list[Problem]]:
    files: list[tuple[str, str]] = []
    problems: list[Problem] = []
    stack: list[tuple[str, str, int]] = [(root, "", 0)]
    entries_left = 4 * limits.max_members + 1000  # directories, links and the like too
    while stack:
        absdir, prefix, depth = stack.pop()
        try:
            with os.scandir(absdir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems.append(Problem(prefix.rstrip("/"), f"cannot list directory: {e.strerror}"))
            continue
        entries_left -= len(entries)
        if entries_left < 0:
            problems.append(Problem(prefix.rstrip("/"), "too many directory entries; rest skipped"))
            return files, problems
        for entry in reversed(entries):
            rel = prefix + entry.name
            if len(rel.encode("utf-8", "surrogateescape")) > limits.max_name_len:
                problems.append(Problem(rel, f"path longer than {limits.max_name_len} bytes"))
                continue
            try:
                if entry.is_symlink():
                    target = os.readlink(entry.path)
                    if links is not None:
                        links.append(LinkRecord(rel, target))  # checked with the layer
                    elif paths.link_escapes(rel, target):
                        problems.append(
                            Problem(rel, f"symlink points outside the tree: -> {target}")
                        )
                elif entry.is_dir(follow_symlinks=False):
                    if depth + 1 >= limits.max_dir_depth:
                        problems.append(Problem(rel, "directories nested too deeply"))
                    else:
                        stack.append((entry.path, rel + "/", depth + 1))
                elif entry.is_file(follow_symlinks=False):
                    if budget.members_left <= 0:
                        problems.append(Problem(rel, "too many members; the rest skipped"))
                        return files, problems
                    budget.members_left -= 1
                    files.append((rel, entry.path))
                else:
                    problems.append(Problem(rel, "special file (device, FIFO or socket)"))
            except OSError as e:
                problems.append(Problem(rel, f"cannot read: {e.strerror or e}"))
    return files, problems


def walk(
    root: str,
    limits: Limits,
    budget: Budget,
    *,
    count_bytes: bool = True,
    hash_files: bool = True,
    sniff: bool = False,
    links: list[LinkRecord] | None = None,
) -> tuple[list[WalkedFile], list[Problem]]:
    """Regular files under ``root`` (sorted by path), hashed; plus what was skipped and why.

    ``count_bytes``: charge file sizes to ``budget.bytes_left`` (for extracted trees;
    a directory artifact given by the user is already on disk and is only counted).
    ``hash_files=False``: read only each file's head (``sha256`` is '').
    ``sniff``: also find each file's archive reader (in the same worker threads, since
    some sniffers read the file's tail).
    ``links``: symlinks are appended here (to be checked with ``links.check``) instead of
    being skipped, or reported when they point outside the tree.
    """
    listed, problems = _listing(root, limits, budget, links)
    listed.sort()
    out: list[WalkedFile] = []

    def one(path: str) -> forkwalk.Hashed:
        size, sha256, head = read_hashed(path, hash_files)
        reader = registry.find(head, path) if sniff else None
        return size, sha256, head[:MAGIC_SIZE], reader  # the rest of the head dropped

    results = forkwalk.run([path for _, path in listed], one)
    if results is None:
        results = _in_threads(listed, one)
    for (rel, path), item in zip(listed, results, strict=True):
        if isinstance(item, OSError):
            problems.append(Problem(rel, f"cannot read file: {item.strerror or item}"))
            continue
        size, sha256, head, reader = item
        if count_bytes:
            if size > budget.bytes_left:
                problems.append(Problem(rel, "total extracted size cap reached"))
                continue
            budget.bytes_left -= size
        out.append(WalkedFile(rel, path, size, sha256, reader, head))
    cap = limits.max_problems
    if len(problems) > cap:
        dropped = len(problems) - cap
        problems = [*problems[:cap], Problem("", f"{dropped} more problems not listed")]
    return out, problems


def _in_threads(
    listed: list[tuple[str, str]], one: Callable[[str], forkwalk.Hashed]
) -> list[forkwalk.Hashed | OSError]:
    """``one(path)`` for every listed file, in a thread pool (an OSError is the item)."""
    workers = max(1, min(8, os.cpu_count() or 1))

    def batch(items: list[tuple[str, str]]) -> list[forkwalk.Hashed | OSError]:
        res: list[forkwalk.Hashed | OSError] = []
        for _, path in items:
            try:
                res.append(one(path))
            except OSError as e:
                res.append(e)
        return res

    # contiguous batches: one task per file costs more than hashing a small file
    step = max(1, min(256, len(listed) // (workers * 4) + 1))
    batches = [listed[i : i + step] for i in range(0, len(listed), step)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [r for rs in pool.map(batch, batches) for r in rs]
