"""Hashing a walk's files in this process and in one forked child at once.

Why: hashing releases the GIL, but the work around it for each file (open, fstat, read,
sniff, the records) does not, and a tree is mostly small files, so the walk's two threads
spend much of their time waiting for each other. Measured on the bench's combined tree
(7,666 files, 433 MiB, 2 cores, in-process, 5 runs each): the walk took 0.31-0.35 s in
threads and 0.29-0.31 s here; reading heads only, 0.17-0.25 s and 0.11 s. A warm ``biv
verify`` of that tree, interleaved, median of 10: 0.889 s before, 0.827 s with the fork,
0.808 s with the collector frozen as below. A cold one was unchanged (2.00 and 2.01 s,
median of 7): its analysis keeps both cores busy anyway.

How: the files are cut into numbered batches, and every batch number is written to a pipe
before the fork. This process and the child each read the next number (a 4-byte read from
a pipe is atomic) until the pipe is empty, so whoever is free takes the next batch. The
child writes each file's result into a fixed-size slot of shared anonymous memory, its
status byte last; this process reads the slots once the child has exited. A file the child
could not read (any exception), or never reached (it was killed), is hashed again here, so
errors are raised in this process exactly as on the thread path.

``run`` returns None where it does not fork (the caller uses threads): fewer than
``MIN_FILES`` files, not Linux or ``BIV_ANALYSIS_PROCESSES=0`` (``procpool.available``),
other threads running (a fork copies no thread but may copy a lock one of them holds), or
a pipe too small for the batch numbers.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import signal
import struct
import threading
from collections.abc import Callable, Sequence

from verifier import lifecycle, procpool
from verifier.unpack import registry
from verifier.unpack.registry import Reader

# (size, sha256 hex or '' when not hashed, head (at most HEAD_BYTES), the reader that claims it)
Hashed = tuple[int, str, bytes, Reader | None]

MIN_FILES = 128  # below this a fork costs more than it saves (and small trees stay in-process)
HEAD_BYTES = 64
MAX_BATCHES = 1024  # 4 KiB of batch numbers: what any pipe holds (one page)
_BATCH = 16  # files per batch at most, unless that makes more than MAX_BATCHES
_TOKEN = struct.Struct("<I")
# status, has sha256, head length, reader number (0: none), size, digest, head
_SLOT = struct.Struct(f"<BBBxHxxQ32s{HEAD_BYTES}s")
_DONE = 1
_FAILED = 2


def run(paths: Sequence[str], one: Callable[[str], Hashed]) -> list[Hashed | OSError] | None:
    """``one(path)`` for every path (an OSError it raises is the item), in two processes;
    None when no child can be forked (see the module's docstring)."""
    n = len(paths)
    if n < MIN_FILES or not procpool.available() or threading.active_count() != 1:
        return None
    step = max(_BATCH, -(-n // MAX_BATCHES))
    batches = -(-n // step)
    readers = registry.readers()
    number = {id(r): k for k, r in enumerate(readers, 1)}
    r, w = os.pipe()
    try:
        os.set_blocking(w, False)
        tokens = b"".join(_TOKEN.pack(b) for b in range(batches))
        if os.write(w, tokens) != len(tokens):
            raise BlockingIOError
        slots = mmap.mmap(-1, n * _SLOT.size)
    except OSError:  # a full pipe (BlockingIOError), no memory
        os.close(r)
        os.close(w)
        return None
    parent = os.getpid()
    # no collection in this process writes to the pages the child shares (each write would
    # copy a page); not when a caller froze objects already (its unfreeze is its own)
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        pid = os.fork()
    except OSError:
        pid = -1
    if pid == 0:  # the child: take batches until none is left, then exit (never returns)
        code = 1
        try:
            gc.disable()  # a short life, nothing cyclic made: no page touched for a collection
            os.close(w)
            procpool.child_init(parent)
            _child(r, paths, step, one, slots, number)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    if pid > 0:
        lifecycle.track_process(pid)
    out: list[Hashed | OSError | None] = [None] * n
    try:
        while (b := _take(r)) is not None:
            for i in range(b * step, min(n, (b + 1) * step)):
                out[i] = _call(one, paths[i])
    except BaseException:
        if pid > 0:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(r)
        if pid > 0:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            lifecycle.untrack_process(pid)
        if freeze:
            gc.unfreeze()
    try:
        return [
            v if v is not None else _read_slot(slots, i, readers) or _call(one, paths[i])
            for i, v in enumerate(out)
        ]
    finally:
        slots.close()


def _take(fd: int) -> int | None:
    """The next batch number from the pipe, or None when it is empty."""
    data = os.read(fd, _TOKEN.size)
    if len(data) < _TOKEN.size:
        return None
    b: int = _TOKEN.unpack(data)[0]
    return b


def _call(one: Callable[[str], Hashed], path: str) -> Hashed | OSError:
    try:
        return one(path)
    except OSError as e:
        return e


def _child(
    fd: int,
    paths: Sequence[str],
    step: int,
    one: Callable[[str], Hashed],
    slots: mmap.mmap,
    number: dict[int, int],
) -> None:
    n = len(paths)
    size = _SLOT.size
    while (b := _take(fd)) is not None:
        for i in range(b * step, min(n, (b + 1) * step)):
            at = i * size
            try:
                length, sha, head, reader = one(paths[i])
                if len(head) > HEAD_BYTES:  # not what a slot holds: the parent does it
                    raise ValueError(len(head))
                slot = _SLOT.pack(
                    _DONE,
                    1 if sha else 0,
                    len(head),
                    number[id(reader)] if reader is not None else 0,
                    length,
                    bytes.fromhex(sha) if sha else b"",
                    head,
                )
            except Exception:  # redone by the parent, which raises what it raises
                slots[at] = _FAILED
                continue
            slots[at + 1 : at + size] = slot[1:]
            slots[at] = _DONE  # last: a slot marked done is whole, even if the child is killed


def _read_slot(slots: mmap.mmap, i: int, readers: list[Reader]) -> Hashed | None:
    """File ``i``'s result from the child's slot, or None if it has none (not reached, or
    failed: the caller hashes that file itself)."""
    status, has_sha, head_len, reader, length, digest, head = _SLOT.unpack_from(
        slots, i * _SLOT.size
    )
    if status != _DONE or head_len > HEAD_BYTES or reader > len(readers):
        return None
    return (
        length,
        digest.hex() if has_sha else "",
        head[:head_len],
        readers[reader - 1] if reader else None,
    )
