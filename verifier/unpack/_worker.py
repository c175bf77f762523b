"""Sandbox child: limit itself, run a batch of extractors, answer in JSON lines (sandbox.py)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import signal
import sys
import threading
import time
from typing import Any

from verifier.errors import MalformedInputError
from verifier.unpack import registry
from verifier.unpack.limits import Limits
from verifier.unpack.result import Extraction

_MAX_REQUEST = 16 << 20


def _limit_self(limits: Limits, jobs: int) -> None:
    caps = [
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_CPU, max(1, int(limits.worker_cpu_s) * max(1, jobs))),
        (resource.RLIMIT_FSIZE, limits.max_member_bytes + 1),
        (resource.RLIMIT_AS, limits.worker_memory_bytes),
    ]
    for which, value in caps:
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value if which == resource.RLIMIT_CPU else hard))
    # over-size writes fail with EFBIG (a problem) instead of killing the process
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _written(dest: str) -> tuple[int, int]:
    """(files, bytes) under ``dest``, not following symlinks."""
    files = size = 0
    for dirpath, _dirs, names in os.walk(dest):
        for n in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, n))
                files += 1
                size += st.st_size
    return files, size


def run_job(job: dict[str, Any], limits: Limits) -> dict[str, Any]:
    module = str(job["module"])
    if not module.startswith("verifier."):
        return {"problems": [], "aborted": f"reader module {module!r} is not part of biv"}
    importlib.import_module(module)
    reader = registry.get(str(job["reader"]))
    try:
        if job.get("kind") == "entries" and isinstance(reader, registry.InPlaceReader):
            entries, problems, links = reader.entries(str(job["src"]), limits)
            return {
                "problems": [[p.member, p.message] for p in problems],
                "entries": [[e.path, e.offset, e.size] for e in entries],
                "links": [[k.member, k.target, k.from_root, k.hard] for k in links],
            }
        if not isinstance(reader, registry.Extractor):
            return {"problems": [], "aborted": f"no reader named {job['reader']!r}"}
        out = reader.extract(str(job["src"]), str(job["dest"]), limits)
    except MalformedInputError as e:
        return {"problems": [], "fatal": e.message}
    except MemoryError:
        return {"problems": [], "aborted": "extraction ran out of memory (cap reached)"}
    except RecursionError:
        return {"problems": [], "aborted": "extraction recursed too deeply"}
    problems, links = (out.problems, out.links) if isinstance(out, Extraction) else (out, [])
    answer: dict[str, Any] = {
        "problems": [[p.member, p.message] for p in problems],
        "links": [[k.member, k.target, k.from_root, k.hard] for k in links],
    }
    if isinstance(out, Extraction) and out.notes:
        answer["notes"] = [[n.member, n.message] for n in out.notes]
    if isinstance(out, Extraction) and out.files >= 0:
        answer["written"] = [out.files, out.size]  # no need to walk what was written
    if isinstance(out, Extraction) and out.packs:
        answer["packs"] = [[names, sizes] for names, sizes in out.packs]
    return answer


def _watch_parent(parent: int) -> None:
    """If biv dies (even by SIGKILL), take this worker's whole group (its external tools
    included) down with it. The group is the worker's own session: never biv's caller."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)


def main() -> int:
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    req = json.loads(sys.stdin.read(_MAX_REQUEST))
    limits = Limits.from_dict(req["limits"])
    jobs = list(req["jobs"])
    _limit_self(limits, len(jobs))
    # the parent's readers, so that what an extractor packs no reader would have claimed
    for module in req.get("readers", []):
        if str(module).startswith("verifier."):
            importlib.import_module(str(module))
    for i, job in enumerate(jobs):
        try:
            answer = run_job(job, limits)
        except Exception as e:  # one line, never a traceback; the parent makes it a problem
            answer = {"problems": [], "aborted": f"extractor failed: {type(e).__name__}: {e}"}
        answer["index"] = i
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if job.get("kind") == "entries":
            files, size = len(answer.get("entries", [])), 0
        elif "written" in answer:
            files, size = answer.pop("written")
        else:
            files, size = _written(str(job["dest"]))
        limits = limits.with_budget(
            bytes_left=limits.max_total_bytes - size, members_left=limits.max_members - files
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
