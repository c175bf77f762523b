"""Analysis in forked worker processes: the same facts as threads, nothing left behind.

The pool runs real forked processes here: a worker killed mid-run (its jobs are redone in
the parent), biv stopped by a signal while workers are busy (they die with it, its work
directory is removed), biv killed outright (the workers notice and exit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from support.fetch import msvc_wheel

from verifier import inventory, procpool
from verifier.analysis import AnalysisContext
from verifier.analysis_cache import AnalysisCache
from verifier.api import make_context
from verifier.unpack import unpack


@pytest.fixture(scope="module")
def dll_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("dlls")
    with zipfile.ZipFile(msvc_wheel()) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".dll"):
                (dest / Path(info.filename).name).write_bytes(zf.read(info))
    assert len(list(dest.iterdir())) >= procpool_min()
    return dest


def procpool_min() -> int:
    return inventory.PROCESS_MIN_JOBS


def _analyse(tree: Path, work: Path, ctx: AnalysisContext) -> list[Any]:
    u = unpack(str(tree), str(work))
    entries, _problems = inventory.analyze_members(u.members, ctx)
    return [(e.path, e.sha256, e.facts) for e in entries]


def test_processes_give_the_facts_threads_give(
    dll_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every DLL of msvc-runtime, in forked workers and in threads: equal facts; the
    cache entries the workers wrote count in the parent, which keeps their facts too."""
    runs: list[int] = []
    real_run = procpool.run

    def counting_run(*a: Any, **k: Any) -> Any:
        runs.append(1)
        return real_run(*a, **k)

    monkeypatch.setattr(procpool, "run", counting_run)
    ctx = make_context((), None, cache_dir=str(tmp_path / "c1"), analysis_cache=True)
    forked = _analyse(dll_tree, tmp_path / "w1", ctx)
    assert runs == [1]
    assert isinstance(ctx.cache, AnalysisCache)
    assert ctx.cache.stats.written == len(forked)
    assert len(ctx.cache.partial()) == 0  # full level: the parent knows every one's facts
    assert all(ctx.cache.get(sha, p.rsplit("/", 1)[-1], ctx) is not None for p, sha, _ in forked)

    monkeypatch.setenv("BIV_ANALYSIS_PROCESSES", "0")
    runs.clear()
    threads = _analyse(dll_tree, tmp_path / "w2", make_context((), None))
    assert runs == []
    assert forked == threads


def test_a_worker_killed_mid_run_has_its_jobs_redone(dll_tree: Path, tmp_path: Path) -> None:
    """A worker dies (SIGKILL, as the kernel's OOM killer would): the jobs that did not
    come back are analysed in the parent, and every result is there once."""
    parent = os.getpid()
    calls: list[int] = []

    def job(j: int) -> tuple[int, int]:
        if os.getpid() != parent and j == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append(j)
        return j, j * j

    ctx = make_context((), None)
    got = dict(inventory._parallel(8, job, ctx))
    assert got == {j: (j, j * j) for j in range(8)}
    assert 2 in calls  # redone in the parent (the workers' calls are not seen here)


_STOPPABLE = textwrap.dedent(
    """
    import os, sys, time
    from verifier import lifecycle, procpool

    lifecycle.install_signal_handlers()
    work = lifecycle.make_workdir()
    print(work, flush=True)

    def job(j):
        with open(os.path.join(sys.argv[1], f"{os.getpid()}"), "w"):
            pass
        time.sleep(120)
        return j

    for _ in procpool.run(job, 4, 2):
        pass
    """
)


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, list[int]]:
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _STOPPABLE, str(pids)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    workdir = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
    end = time.monotonic() + 30
    while len(list(pids.iterdir())) < 2 and time.monotonic() < end:
        time.sleep(0.05)
    workers = [int(p.name) for p in pids.iterdir()]
    assert len(workers) == 2, "the two workers never started"
    return proc, workdir, workers


def _gone(pids: list[int], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_workers_and_cleans_up(tmp_path: Path, sig: signal.Signals) -> None:
    proc, workdir, workers = _start(tmp_path)
    try:
        assert workdir.is_dir()
        proc.send_signal(sig)
        rc = proc.wait(timeout=15)
    finally:
        proc.kill()
    assert rc == 128 + sig
    assert _gone(workers, 5), "a worker outlived biv"
    assert not workdir.exists()


def test_workers_exit_when_biv_is_killed(tmp_path: Path) -> None:
    proc, workdir, workers = _start(tmp_path)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=15)
    finally:
        proc.kill()
    # SIGKILL leaves biv no time to clean up: the kernel kills the workers, mid-job
    # (the sweep of the next run removes the work directory)
    assert _gone(workers, 5), "a worker outlived biv"
    assert workdir.is_dir()


def test_meanwhile_runs_once_while_the_workers_exist(tmp_path: Path) -> None:
    """The caller's own work (a reference's unpacking) runs in the parent after the fork,
    while the workers analyse, and before the last result comes back."""
    seen: list[int] = []
    gate = tmp_path / "go"

    def job(j: int) -> int:
        deadline = time.monotonic() + 30
        while not gate.exists():  # the workers wait for the parent's meanwhile work
            if time.monotonic() > deadline:
                return -1  # (fails below rather than hanging)
            time.sleep(0.01)
        return j

    def meanwhile() -> None:
        seen.append(len(_children_of(os.getpid())))
        gate.write_text("go")

    got = dict(procpool.run(job, 6, 2, meanwhile))
    assert got == {j: j for j in range(6)}
    assert seen == [2]  # run once, while the two forked workers were alive


def _children_of(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] != "Z":
                out.append(int(p.name))
    return out


def test_a_reference_unpacked_while_workers_analyse_gives_the_same_report(
    dll_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``verify`` unpacks a ``path:`` reference while the workers analyse the artifact
    (msvc-runtime's DLLs, one of them altered): the report is the one a run with threads,
    which unpacks the reference afterwards, gives."""
    from verifier import api
    from verifier.report.json import render_json
    from verifier.upstream.ahead import UnpackAhead

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for f in dll_tree.iterdir():
        (shipped / f.name).write_bytes(f.read_bytes())
    victim = sorted(shipped.iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    taken: list[bool] = []
    real_take = UnpackAhead.take

    def take(self: UnpackAhead, source: str, location: str) -> Any:
        got = real_take(self, source, location)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(UnpackAhead, "take", take)

    def report(cache: str) -> dict[str, Any]:
        req = api.VerifyRequest(
            str(shipped), against=(f"path:{dll_tree}",), cache_dir=str(tmp_path / cache)
        )
        doc: dict[str, Any] = json.loads(render_json(api.verify(req)))
        doc.pop("generated_at")
        return doc

    forked = report("c1")
    assert taken == [True]  # unpacked ahead, while the workers ran
    monkeypatch.setenv("BIV_ANALYSIS_PROCESSES", "0")
    taken.clear()
    threads = report("c2")
    assert taken == [False]  # no workers: unpacked when it was resolved
    assert forked == threads
    assert forked["verdict"] == "fail"
    assert [f["path"] for f in forked["files"] if f["status"] != "identical"] == [victim.name]
