"""Run extractors in a child process with resource limits and a wall-clock timeout.

The child (``python -m verifier.unpack._worker``) gets its request as JSON on stdin: the
limits and a batch of jobs (reader, source archive, destination directory). It sets
RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE and RLIMIT_CORE on itself before touching any input,
runs the jobs one after the other (narrowing the byte and member caps by what earlier jobs
wrote) and answers one JSON line per finished job. It runs in its own session, so on timeout
the whole process group (external tools included) is killed; jobs without an answer are
reported as aborted. The parent re-validates whatever was written (``walk.py``).

Batching matters: one child per archive costs a Python start-up (~0.1-0.3 s), so all the
archives found in one layer are extracted by one child.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path

from verifier import lifecycle
from verifier.record import record
from verifier.unpack import registry
from verifier.unpack.limits import Limits
from verifier.unpack.registry import Entry, Extractor, Reader
from verifier.unpack.result import LinkRecord, Problem

_PKG_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_SIGNALS = {
    signal.SIGXCPU: "CPU time cap reached",
    signal.SIGKILL: "killed (memory or time cap)",
    signal.SIGSEGV: "crashed (segmentation fault)",
}


@record
class Job:
    """Extract ``src`` into ``dest`` (an Extractor), or list its entries (an InPlaceReader)."""

    reader: Reader
    src: str
    dest: str  # an empty directory for an Extractor; ignored otherwise


@record
class Outcome:
    problems: list[Problem] = field(default_factory=list)
    fatal: str | None = None  # the archive as a whole is unreadable (reader said so)
    aborted: str | None = None  # the sandbox stopped the reader (timeout, cap, crash)
    entries: list[Entry] = field(default_factory=list)  # InPlaceReader jobs only
    links: list[LinkRecord] = field(default_factory=list)  # recorded, never created
    notes: list[Problem] = field(default_factory=list)  # what the extractor cannot represent
    # members in pack files beside ``dest`` (``pack.py``): per pack, names and sizes
    packs: list[tuple[list[str], list[int]]] = field(default_factory=list)


def run(reader: Extractor, src: str, dest: str, limits: Limits) -> Outcome:
    """One archive: see :func:`run_batch`."""
    return run_batch([Job(reader, src, dest)], limits, limits.worker_timeout_s)[0]


def run_batch(
    jobs: Sequence[Job], limits: Limits, timeout_s: float, cwd: str | None = None
) -> list[Outcome]:
    """Run ``jobs`` in one sandboxed child (working directory ``cwd``, default the first
    job's ``dest``); one Outcome per job, in order."""
    if not jobs:
        return []
    request = {
        "limits": limits.to_dict(),
        "readers": registry.modules(),
        "jobs": [
            {
                "module": type(j.reader).__module__,
                "reader": j.reader.name,
                "src": str(Path(j.src).absolute()),
                "dest": str(Path(j.dest).absolute()),
                "kind": "extract" if isinstance(j.reader, Extractor) else "entries",
            }
            for j in jobs
        ],
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_ROOT, env.get("PYTHONPATH")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "verifier.unpack._worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd or jobs[0].dest,
        env=env,
        start_new_session=True,
    )
    lifecycle.track_group(proc.pid)  # killed with its tools if biv is interrupted
    missing: str | None = None
    try:
        out, err = proc.communicate(json.dumps(request).encode(), timeout=max(0.0, timeout_s))
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        missing = f"extraction timed out after {timeout_s:g} s"
    finally:
        _kill_group(proc.pid)
        lifecycle.untrack_group(proc.pid)
    answers = _answers(out)
    if missing is None:
        missing = _why_missing(proc.returncode, err)
    return [answers.get(i, Outcome(aborted=missing)) for i in range(len(jobs))]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _answers(out: bytes) -> dict[int, Outcome]:
    answers: dict[int, Outcome] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            doc = json.loads(line)
            i = int(doc["index"])
            problems = [Problem(str(m), str(msg)) for m, msg in doc["problems"]]
            entries = [Entry(str(p), int(o), int(n)) for p, o, n in doc.get("entries", [])]
            links = [
                LinkRecord(str(m), str(t), bool(r), bool(h)) for m, t, r, h in doc.get("links", [])
            ]
            notes = [Problem(str(m), str(msg)) for m, msg in doc.get("notes", [])]
            packs = [_pack_index(p) for p in doc.get("packs", [])]
        except (ValueError, KeyError, TypeError):
            continue
        fatal, aborted = doc.get("fatal"), doc.get("aborted")
        answers[i] = Outcome(
            problems,
            str(fatal) if fatal is not None else None,
            str(aborted) if aborted is not None else None,
            entries,
            links,
            notes,
            packs,
        )
    return answers


def _pack_index(item: object) -> tuple[list[str], list[int]]:
    """One pack's (names, sizes) from the answer; ValueError unless exactly that shape."""
    if not isinstance(item, list) or len(item) != 2:
        raise ValueError("pack index: not a [names, sizes] pair")
    names, sizes = item
    if not isinstance(names, list) or not isinstance(sizes, list) or len(names) != len(sizes):
        raise ValueError("pack index: names and sizes differ")
    if not all(type(n) is str for n in names) or not all(type(n) is int for n in sizes):
        raise ValueError("pack index: bad types")
    return names, sizes


def _why_missing(rc: int | None, err: bytes) -> str:
    if rc is not None and rc < 0:
        try:
            why = _SIGNALS.get(signal.Signals(-rc), f"killed by signal {-rc}")
        except ValueError:
            why = f"killed by signal {-rc}"
        return f"extraction {why}"
    last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {rc}"]
    return f"extraction failed: {last[0][:300]}"
