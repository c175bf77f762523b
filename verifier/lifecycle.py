"""Clean cancellation: what biv started and what it was writing, so that nothing outlives it.

* Work directories (``make_workdir``) carry an owner file with biv's pid and the process's
  start time. On SIGINT/SIGTERM/SIGHUP (``install_signal_handlers``, CLI only) biv kills the
  process groups of its workers (each runs in a session of its own, so this never touches
  biv's caller), removes its work directories, partial downloads and half-written reports,
  and exits (128 + signal). A biv killed with SIGKILL cannot do that: the next biv sweeps
  work directories whose owner is dead (``sweep``), and the workers notice their parent is
  gone and kill their own group (``verifier.unpack._worker``).
* Library callers (``api.verify``) get the same bookkeeping; only the CLI installs handlers.

The registries are plain sets touched from the main thread and worker threads; the signal
handler runs in the main thread and copies them before use, taking no lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

WORKDIR_PREFIX = "biv-"
OWNER_FILE = ".biv-owner"

_dirs: set[str] = set()
_files: set[str] = set()
_groups: set[int] = set()
_pids: set[int] = set()  # forked analysis workers (``procpool``): in biv's own group


def _snapshot(s: set[str] | set[int]) -> list[str] | list[int]:
    for _ in range(5):
        with contextlib.suppress(RuntimeError):  # changed size during iteration
            return list(s)  # type: ignore[return-value]
    return []


# --- bookkeeping -----------------------------------------------------------------------------


def track_group(pgid: int) -> None:
    """A worker started with ``start_new_session=True`` (its pid is its group id)."""
    if pgid > 0 and pgid != os.getpgrp():
        _groups.add(pgid)


def untrack_group(pgid: int) -> None:
    _groups.discard(pgid)


def track_process(pid: int) -> None:
    """A forked worker in biv's own process group (killed by pid, never by group)."""
    if pid > 0 and pid != os.getpid():
        _pids.add(pid)


def untrack_process(pid: int) -> None:
    _pids.discard(pid)


def forget_inherited() -> None:
    """In a forked child: the parent's work directories, files and workers are not its own
    (a child stopped early must not remove what the parent is still using)."""
    _dirs.clear()
    _files.clear()
    _groups.clear()
    _pids.clear()


# a forked child (``procpool``) owns none of it, even before its initializer runs
os.register_at_fork(after_in_child=forget_inherited)


def track_file(path: str) -> None:
    """A partial file (download, report) to remove if biv is stopped."""
    _files.add(os.path.abspath(path))


def untrack_file(path: str) -> None:
    _files.discard(os.path.abspath(path))


@contextlib.contextmanager
def partial_file(path: str) -> Iterator[str]:
    """Track ``path`` while it is being written; remove it if writing fails."""
    track_file(path)
    ok = False
    try:
        yield path
        ok = True
    finally:
        untrack_file(path)
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def make_workdir(parent: str | None = None) -> str:
    """A fresh work directory owned by this process (removed by ``remove_workdir``)."""
    d = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=parent)
    _dirs.add(d)
    owner = {"pid": os.getpid(), "start": _start_time(os.getpid())}
    with contextlib.suppress(OSError):
        Path(d, OWNER_FILE).write_text(json.dumps(owner))
    return d


def remove_workdir(d: str) -> None:
    shutil.rmtree(d, ignore_errors=True)
    _dirs.discard(d)


# --- cancellation ----------------------------------------------------------------------------


def kill_workers() -> None:
    """SIGKILL every tracked worker group (never biv's own group) and forked worker."""
    own = os.getpgrp()
    for pgid in _snapshot(_groups):
        if isinstance(pgid, int) and pgid != own:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
    for pid in _snapshot(_pids):
        if isinstance(pid, int) and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def cleanup() -> None:
    """Stop workers, then remove work directories and partial files."""
    kill_workers()
    for f in _snapshot(_files):
        with contextlib.suppress(OSError):
            os.unlink(str(f))
    for d in _snapshot(_dirs):
        shutil.rmtree(str(d), ignore_errors=True)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    cleanup()
    with contextlib.suppress(Exception):
        name = signal.Signals(signum).name
        sys.stderr.write(f"biv: interrupted ({name}); workers stopped, work files removed\n")
        sys.stderr.flush()
    os._exit(128 + signum)  # worker threads may be mid-read: do not wait for them


def install_signal_handlers() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(sig, _on_signal)


# --- start-up sweep --------------------------------------------------------------------------


def _alive(owner: dict[str, object]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = owner.get("start")
    return start is None or _start_time(pid) in (None, start)


def sweep(parent: str | None = None) -> list[str]:
    """Remove work directories (under ``parent``, default the temp dir) left by biv
    processes that died without cleaning up; return them. Directories without biv's owner
    file, or owned by another user, or by a live process, are left alone."""
    root = parent or tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    uid = os.getuid()
    for e in entries:
        if not e.name.startswith(WORKDIR_PREFIX):
            continue
        try:
            if not e.is_dir(follow_symlinks=False) or e.stat(follow_symlinks=False).st_uid != uid:
                continue
            owner = json.loads(Path(e.path, OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(owner, dict) and not _alive(owner) and e.path not in _dirs:
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(e.path)
    return removed
