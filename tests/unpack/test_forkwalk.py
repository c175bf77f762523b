"""Hashing a walk's files in this process and a forked child (``unpack/forkwalk.py``).

Real forks throughout: the results must be the thread path's, item for item, whatever the
child does (fails on a file, is killed mid-run, returns what a slot cannot hold), and nothing
may be left behind (no child process, no frozen collector state). Each test runs in a fork of
the test process (``_in_a_fork``), where no other thread runs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import hashlib
import io
import os
import signal
import tarfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from verifier import lifecycle
from verifier.unpack import Limits, forkwalk, registry
from verifier.unpack.limits import Budget
from verifier.unpack.result import LinkRecord, Problem
from verifier.unpack.walk import WalkedFile, walk


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIV_ANALYSIS_PROCESSES", raising=False)


def _in_a_fork(body: Callable[[], None]) -> None:
    """Run ``body`` in a forked copy of this test process, where this thread is the only
    one: forkwalk forks only from such a process, and earlier tests leave biv's idle digest
    pools behind here. A failure in it fails the test, with its traceback. ``body`` must
    leave nothing behind: no child process, no tracked pid, the collector as it was."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
            frozen = gc.get_freeze_count()
            body()
            assert gc.get_freeze_count() == frozen
            assert not lifecycle._pids  # every child untracked
            try:
                os.waitpid(-1, os.WNOHANG)
                raise AssertionError("a child process was left behind")
            except ChildProcessError:
                pass  # and reaped
        except BaseException:
            code = 1
            with contextlib.suppress(OSError):
                os.write(w, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        err = fh.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        pytest.fail(err or f"the test's process died (wait status {status})", pytrace=False)


def forked(test: Callable[..., None]) -> Callable[..., None]:
    """The test runs in ``_in_a_fork`` (its fixtures are set up here, before the fork)."""

    @functools.wraps(test)
    def run_forked(*a: Any, **k: Any) -> None:
        _in_a_fork(lambda: test(*a, **k))

    return run_forked


def _tree(root: Path, n: int) -> Path:
    """``n`` files of varied sizes (empty, one read, several 1 MiB reads), archives among
    them, in nested folders, plus links and an unreadable entry."""
    sizes = [0, 1, 100, (64 << 10) - 1, 64 << 10, (64 << 10) + 1, 200_000]
    for i in range(n):
        p = root / f"d{i % 7}" / f"sub{i % 3}" / f"f{i:04d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        size = sizes[i % len(sizes)] if i % 21 != 6 else (1 << 20) + 7 + (i % 50 == 6) * (2 << 20)
        p.write_bytes(hashlib.sha256(str(i).encode()).digest() * (size // 32) + b"x" * (size % 32))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("inner.txt", b"zip member")
    (root / "d0" / "a.zip").write_bytes(buf.getvalue())
    with tarfile.open(root / "d1" / "b.tar", "w") as tf:
        info = tarfile.TarInfo("m.txt")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"tar"))
    (root / "d2" / "inside").symlink_to("sub0")
    (root / "d2" / "outside").symlink_to("../../../etc/passwd")
    os.mkfifo(root / "d3" / "fifo")
    return root


def _walk(
    root: Path, *, processes: bool, monkeypatch: pytest.MonkeyPatch, **kw: Any
) -> tuple[list[WalkedFile], list[Problem]]:
    if processes:
        monkeypatch.delenv("BIV_ANALYSIS_PROCESSES", raising=False)
    else:
        monkeypatch.setenv("BIV_ANALYSIS_PROCESSES", "0")
    limits = kw.pop("limits", Limits())
    return walk(str(root), limits, Budget(limits), **kw)


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    registry.load_builtin()
    return _tree(tmp_path_factory.mktemp("walk"), 3 * forkwalk.MIN_FILES)


@pytest.mark.parametrize(
    "kw",
    [
        {"sniff": True},
        {"sniff": False},
        {"hash_files": False, "sniff": True},
        {"links": []},
        {"limits": Limits(max_total_bytes=12 << 20)},  # the size cap reached part-way
    ],
    ids=["sniff", "no-sniff", "heads-only", "links-kept", "size-cap"],
)
@forked
def test_forked_walk_equals_the_threaded_walk(
    big_tree: Path, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[bool] = []
    real = forkwalk.run

    def spy(*a: Any, **k: Any) -> Any:
        got = real(*a, **k)
        used.append(got is not None)
        return got

    monkeypatch.setattr(forkwalk, "run", spy)
    links_f: list[LinkRecord] = []
    links_t: list[LinkRecord] = []
    kf = {**kw, "links": links_f} if "links" in kw else kw
    kt = {**kw, "links": links_t} if "links" in kw else kw
    forked = _walk(big_tree, processes=True, monkeypatch=monkeypatch, **kf)
    threaded = _walk(big_tree, processes=False, monkeypatch=monkeypatch, **kt)
    assert used == [True, False]  # the first walk forked, the second did not
    assert forked == threaded
    assert links_f == links_t
    files, problems = forked
    assert len(files) == 3 * forkwalk.MIN_FILES + 2 or "limits" in kw
    assert any("special file" in p.message for p in problems)
    if "limits" in kw:
        assert any("size cap" in p.message for p in problems)
    if kw.get("sniff"):
        readers = {f.rel: f.reader.name for f in files if f.reader is not None}
        assert readers.get("d0/a.zip") == "zip" and readers.get("d1/b.tar") == "tar"
    if kw.get("hash_files") is False:
        assert {f.sha256 for f in files} == {""}
    else:
        for f in files[:20]:
            assert f.sha256 == hashlib.sha256(Path(f.abspath).read_bytes()).hexdigest()


def _job(path: str) -> forkwalk.Hashed:
    """A stand-in for hashing: a result that depends on the path only (and which process
    computed it, in the head's last bytes, stripped before comparing)."""
    i = int(path)
    readers = registry.readers()
    reader = readers[i % len(readers)] if i % 3 == 0 else None
    sha = hashlib.sha256(path.encode()).hexdigest() if i % 5 else ""
    time.sleep(0.0002)  # long enough that both processes take batches
    return i * 7, sha, path.encode() * (i % 4) + b"@" + str(os.getpid()).encode(), reader


def _strip(items: list[forkwalk.Hashed | OSError]) -> tuple[list[object], set[bytes]]:
    out: list[object] = []
    pids: set[bytes] = set()
    for it in items:
        if isinstance(it, OSError):
            out.append((type(it), it.errno, it.strerror))
        else:
            size, sha, head, reader = it
            body, _, pid = head.rpartition(b"@")
            pids.add(pid)
            out.append((size, sha, body, reader))
    return out, pids


@forked
def test_both_processes_work_and_results_keep_their_order() -> None:
    registry.load_builtin()
    paths = [str(i) for i in range(600)]
    got = forkwalk.run(paths, _job)
    assert got is not None
    items, pids = _strip(got)
    want, _ = _strip([_job(p) for p in paths])
    assert items == want
    assert len(pids) == 2 and str(os.getpid()).encode() in pids


@forked
def test_a_file_the_child_cannot_read_is_read_again_here() -> None:
    """An OSError in the child is not carried over: this process reads the file itself and
    gets its own error (as on the thread path), and its own result if it can read it."""
    parent = os.getpid()

    def job(path: str) -> forkwalk.Hashed:
        i = int(path)
        if i % 10 == 0:
            raise OSError(errno.EACCES, "Permission denied")
        if i % 10 == 5 and os.getpid() != parent:
            raise OSError(errno.EIO, "the child's own trouble")
        return i, "", b"", None

    got = forkwalk.run([str(i) for i in range(300)], job)
    assert got is not None
    for i, it in enumerate(got):
        if i % 10 == 0:
            assert isinstance(it, OSError) and it.errno == errno.EACCES
        else:
            assert it == (i, "", b"", None)


@forked
def test_an_unexpected_error_is_raised_here_and_the_child_reaped() -> None:
    def job(path: str) -> forkwalk.Hashed:
        if path == "250":
            raise ValueError("a bug in a sniffer")
        return 0, "", b"", None

    with pytest.raises(ValueError, match="a bug in a sniffer"):
        forkwalk.run([str(i) for i in range(400)], job)
    # (``_in_a_fork`` checks that no child is left and the collector is unfrozen)


@forked
def test_a_child_killed_mid_run_has_its_files_done_here() -> None:
    parent = os.getpid()
    calls_here: list[str] = []

    def job(path: str) -> forkwalk.Hashed:
        if os.getpid() != parent:
            if path.endswith("7"):  # the child's first file ending in 7: killed outright
                os.kill(os.getpid(), signal.SIGKILL)
        else:
            calls_here.append(path)
        time.sleep(0.0002)
        return int(path), hashlib.sha256(path.encode()).hexdigest(), b"h", None

    paths = [str(i) for i in range(500)]
    got = forkwalk.run(paths, job)
    assert got == [(int(p), hashlib.sha256(p.encode()).hexdigest(), b"h", None) for p in paths]
    assert len(calls_here) == len(paths) - len(set(paths) - set(calls_here))
    assert any(p.endswith("7") for p in calls_here)  # the killing file was redone here


@forked
def test_a_head_longer_than_a_slot_is_computed_here() -> None:
    def job(path: str) -> forkwalk.Hashed:
        return 1, "", b"z" * (forkwalk.HEAD_BYTES + int(path) % 2), None

    paths = [str(i) for i in range(200)]
    assert forkwalk.run(paths, job) == [job(p) for p in paths]


@forked
def test_no_fork_for_few_files_or_when_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    def job(path: str) -> forkwalk.Hashed:
        return 0, "", b"", None

    assert forkwalk.run([str(i) for i in range(forkwalk.MIN_FILES - 1)], job) is None
    monkeypatch.setenv("BIV_ANALYSIS_PROCESSES", "0")
    assert forkwalk.run([str(i) for i in range(forkwalk.MIN_FILES)], job) is None


@forked
def test_no_fork_while_another_thread_runs() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        got = forkwalk.run([str(i) for i in range(500)], lambda p: (0, "", b"", None))
    finally:
        stop.set()
        t.join()
    assert got is None


@forked
def test_a_callers_frozen_objects_stay_frozen() -> None:
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        got = forkwalk.run([str(i) for i in range(300)], lambda p: (0, "", b"", None))
        assert got is not None
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()
