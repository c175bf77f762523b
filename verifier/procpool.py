"""Forked worker processes for the Python-heavy part of analysing files.

Why: hashing releases the GIL, but parsing headers, import tables and signatures does not,
so two analysis threads run one at a time (measured: a tree of 160 signed DLLs is analysed no
faster by two threads than by one). Forked processes run that Python on every core.

``run(fn, n, workers)`` calls ``fn(i)`` for ``i`` in ``range(n)`` in forked children and
yields ``(i, result)`` as results arrive. ``fn`` and everything it reads (the members, the
analysis context, the trust roots parsed before the fork) are inherited by the fork: only
indices go to the children and only results come back, pickled. The children:

* reset SIGINT/SIGTERM/SIGHUP to their defaults (the parent's handler cleans up; a child must
  never remove the parent's work directory) and are tracked by ``lifecycle``, which kills
  them when biv is stopped;
* are killed by the kernel when the parent dies (``PR_SET_PDEATHSIG``), even mid-job.

``available()`` is False where fork is not the safe default (non-Linux) or when
``BIV_ANALYSIS_PROCESSES=0``; callers then use threads. A pool that breaks (a child killed)
raises ``PoolBroken``; the caller redoes the missing items in-process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from verifier import lifecycle

_FN: Callable[[int], Any] | None = None  # the job of the pool being forked


class PoolBroken(Exception):
    """A worker process died; ``done`` holds the indices whose results were yielded."""

    def __init__(self, done: set[int]) -> None:
        super().__init__("an analysis worker process died")
        self.done = done


def available() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("BIV_ANALYSIS_PROCESSES") != "0"


_PR_SET_PDEATHSIG = 1


def child_init(parent: int) -> None:
    # (``lifecycle`` forgot the parent's work directories at the fork already)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    # killed by the kernel when biv dies, even mid-job (SIGKILL leaves biv no time to)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # biv died before that took effect
        os._exit(1)


def _child_call(i: int) -> Any:
    assert _FN is not None
    return _FN(i)


def run(
    fn: Callable[[int], Any],
    n: int,
    workers: int,
    meanwhile: Callable[[], None] | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(i, fn(i))`` for every ``i < n``, computed in ``workers`` forked processes, in the
    order they finish. Submitted in index order (give the largest jobs the lowest indices).
    ``meanwhile`` runs in this process once the workers exist (it may start threads: no
    fork follows), while they work."""
    # (multiprocessing is imported here: start-up, 10 ms that most runs do not need)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    global _FN
    _FN = fn
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=child_init,
        initargs=(os.getpid(),),
    )
    done: set[int] = set()
    pids: list[int] = []
    try:
        futures: dict[Future[Any], int] = {pool.submit(_child_call, i): i for i in range(n)}
        # the children exist now (a fork pool starts them all on the first submit)
        pids = list(getattr(pool, "_processes", None) or {})
        for pid in pids:
            lifecycle.track_process(pid)
        if meanwhile is not None:
            meanwhile()
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                try:
                    result = f.result()
                except BrokenProcessPool:
                    raise PoolBroken(done) from None
                done.add(futures[f])
                yield futures[f], result
    finally:
        _FN = None
        pool.shutdown(wait=True, cancel_futures=True)
        for pid in pids:
            lifecycle.untrack_process(pid)
