"""``make bench`` (part 2): ``deps:npm`` on a typical Electron app's dependency tree.

The app: real registry packages, the dependency trees of a dozen popular top-level packages
pinned below (about 580 installed packages, 22,000 files, 166 MB), installed once by npm
(``--ignore-scripts``) and packed into ``resources/app.asar`` by the real @electron/asar.
The registry: the same packages' tarballs (from npm's own content-addressed cache, checked
against the lockfile's integrity), served on 127.0.0.1 by ``verifier._scenarios.npm_deps``.

Timed, each as a child process (wall time of the command alone, peak RSS):
- ``path`` baseline: ``biv verify APP --against path:APP`` (unpack, analyse, compare: what
  every verification of this app costs, dependencies or not);
- ``cold``: ``--against deps:npm`` with an empty cache (every tarball fetched concurrently
  from the local registry, proven, read, cached);
- ``warm``: the same, cache filled (best of ``BIV_BENCH_REPEAT``, default 2);
- ``warm --offline``.
Each run must pass (every dependency verified): the benchmark checks correctness too.

Data lives in ``BIV_BENCH_DIR`` (default: ``$BIV_TEST_CACHE/bench-npm-deps``, else
``tests/.cache/bench-npm-deps``) and is reused; the first run needs the npm registry.
Results go to ``benchmarks/results/npm_deps-*.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from run import biv_cmd, machine  # noqa: E402

# like run.py's launcher, but the child's CPU time too: on a shared machine wall time
# mostly measures the neighbours, CPU time measures biv
_LAUNCHER = (
    "import os,sys,time\n"
    "t=time.perf_counter()\n"
    "pid=os.fork()\n"
    "if pid==0:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "_,st,ru=os.wait4(pid,0)\n"
    "sys.stderr.write('\\n@@RUN %d %.6f %.6f\\n' % (ru.ru_maxrss, time.perf_counter()-t, "
    "ru.ru_utime+ru.ru_stime))\n"
    "sys.exit(os.waitstatus_to_exitcode(st))\n"
)


@dataclass
class Run:
    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_kib: int = 0
    returncode: int = 0
    note: str = ""

    def best(self) -> tuple[float, float]:
        i = min(range(len(self.wall)), key=lambda k: self.wall[k])
        return self.wall[i], self.cpu[i]


def timed(name: str, argv: list[str], repeat: int) -> Run:
    """Best of ``repeat`` runs of ``argv``: wall and CPU seconds, peak RSS, exit code."""
    run = Run(name)
    for _ in range(repeat):
        p = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, *argv],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
        )  # fmt: skip
        lines = p.stderr.decode(errors="replace").rstrip().splitlines()
        run.returncode = p.returncode
        if lines and lines[-1].startswith("@@RUN "):
            _tag, kib, wall, cpu = lines[-1].split()
            run.wall.append(float(wall))
            run.cpu.append(float(cpu))
            run.rss_kib = max(run.rss_kib, int(kib))
            lines = lines[:-1]
        if p.returncode != 0:
            run.note = lines[-1] if lines else f"exit {p.returncode}"
            break
    return run


# the top-level dependencies of the synthetic app (their trees make ~580 packages)
TOP_LEVEL = (
    "jest@29.7.0",
    "webpack@5.91.0",
    "eslint@8.57.0",
    "express@4.19.2",
    "axios@1.6.8",
    "lodash@4.17.21",
    "moment@2.30.1",
    "ws@8.17.0",
    "electron-updater@6.1.8",
    "react@18.3.1",
    "react-dom@18.3.1",
    "@babel/core@7.24.5",
    "@babel/preset-env@7.24.5",
    "rxjs@7.8.1",
    "date-fns@3.6.0",
    "core-js@3.37.1",
)
ASAR = "@electron/asar@3.4.1"


def data_dir() -> Path:
    if os.environ.get("BIV_BENCH_DIR"):
        return Path(os.environ["BIV_BENCH_DIR"]) / "npm-deps"
    cache = os.environ.get("BIV_TEST_CACHE") or str(ROOT / "tests" / ".cache")
    return Path(cache) / "bench-npm-deps"


def npm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["npm", *args, "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def install(src: Path) -> None:
    """The app's node_modules, installed by npm once (no install scripts run)."""
    if (src / "package-lock.json").is_file() and (src / "node_modules").is_dir():
        return
    src.mkdir(parents=True, exist_ok=True)
    (src / "package.json").write_text(
        json.dumps({"name": "bench-app", "version": "1.0.0", "main": "main.js"}, indent=2)
    )
    (src / "main.js").write_text("require('lodash');\n")
    r = npm("install", "--ignore-scripts", *TOP_LEVEL, cwd=src)
    if r.returncode != 0:
        shutil.rmtree(src / "node_modules", ignore_errors=True)
        raise SystemExit(f"npm install failed (registry unreachable?): {r.stderr[-400:]}")


def tarballs(src: Path) -> dict[tuple[str, str], bytes]:
    """Every installed package's registry tarball, from npm's cache (by integrity)."""
    import base64
    import hashlib

    cache = Path(npm("config", "get", "cache", cwd=src).stdout.strip() or "~/.npm").expanduser()
    lock = json.loads((src / "package-lock.json").read_text())
    out: dict[tuple[str, str], bytes] = {}
    for key, entry in lock["packages"].items():
        if not key or entry.get("link") or entry.get("inBundle") or "integrity" not in entry:
            continue
        name = entry.get("name") or key.rsplit("node_modules/", 1)[-1]
        version, integrity = entry["version"], entry["integrity"]
        if (name, version) in out:
            continue
        alg, _, b64 = integrity.split()[0].partition("-")
        hexd = base64.b64decode(b64).hex()
        blob = cache / "_cacache" / "content-v2" / alg / hexd[:2] / hexd[2:4] / hexd[4:]
        if not blob.is_file():
            r = npm("cache", "add", f"{name}@{version}", cwd=src)
            if r.returncode != 0 or not blob.is_file():
                raise SystemExit(f"cannot get the tarball of {name}@{version}")
        data = blob.read_bytes()
        if hashlib.new(alg, data).hexdigest() != hexd:
            raise SystemExit(f"{blob}: does not match {integrity}")
        out[(name, version)] = data
    return out


def pack(src: Path, app: Path) -> None:
    """``resources/app.asar`` (+ ``.unpacked`` for native modules) by @electron/asar."""
    asar = app / "resources" / "app.asar"
    if asar.is_file():
        return
    asar.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["npm", "exec", "--yes", f"--package={ASAR}", "--", "asar", "pack", str(src), str(asar),
         "--unpack", "*.node"],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"asar pack failed: {r.stderr[-400:]}")


def tree_stats(src: Path) -> tuple[int, int, int]:
    """(installed packages, files, bytes) of the app's node_modules."""
    pkgs = files = size = 0
    for dirpath, _dirs, names in os.walk(src / "node_modules"):
        for n in names:
            files += 1
            size += os.path.getsize(os.path.join(dirpath, n))
            parent = Path(dirpath).parent
            if n == "package.json" and (
                parent.name == "node_modules"
                or (parent.name.startswith("@") and parent.parent.name == "node_modules")
            ):
                pkgs += 1
    return pkgs, files, size


def main() -> int:
    from verifier._scenarios.npm_deps import DemoRegistry

    if shutil.which("npm") is None or shutil.which("node") is None:
        print("npm deps benchmark skipped: node and npm are needed")
        return 0
    base = data_dir()
    src, app = base / "app-src", base / "app"
    repeat = max(1, int(os.environ.get("BIV_BENCH_REPEAT", "2")))
    try:
        install(src)
        tars = tarballs(src)
        pack(src, app)
    except SystemExit as e:
        print(f"npm deps benchmark skipped: {e}")
        return 0
    pkgs, nfiles, nbytes = tree_stats(src)
    print(
        f"npm deps benchmark: {pkgs} installed packages ({len(tars)} distinct name@version), "
        f"{nfiles} files, {nbytes / (1 << 20):.0f} MiB, packed in {app}/resources/app.asar"
    )
    results: dict[str, Any] = {"packages": pkgs, "distinct": len(tars), "files": nfiles}
    results["bytes"] = nbytes
    cache = base / "biv-cache"
    with DemoRegistry(tarballs=tars) as reg:
        os.environ.update(reg.env())  # the children inherit the registry settings
        common = [*biv_cmd("verify", str(app)), "--format", "json", "-o", os.devnull, "-q"]
        deps = [*common, "--against", "deps:npm", "--cache-dir", str(cache)]
        rows = [timed("path baseline (unpack, analyse, compare)", [*common, "--against",
                      f"path:{app}"], repeat)]  # fmt: skip
        shutil.rmtree(cache, ignore_errors=True)
        before = reg.requests
        rows.append(timed("deps:npm cold (empty cache)", deps, 1))
        results["cold_requests"] = reg.requests - before
        before = reg.requests
        rows.append(timed("deps:npm warm", deps, repeat))
        rows.append(timed("deps:npm warm --offline", [*deps, "--offline"], repeat))
        results["warm_requests"] = reg.requests - before
    print(f"\n{'run':<44} {'wall s':>8} {'CPU s':>8} {'peak RSS':>10} {'exit':>5}")
    for r in rows:
        wall, cpu = r.best() if r.wall else (float("nan"), float("nan"))
        rss = f"{r.rss_kib / 1024:.0f} MiB"
        print(f"{r.name:<44} {wall:>8.2f} {cpu:>8.2f} {rss:>10} {r.returncode:>5}  {r.note}")
    print(f"registry requests: {results['cold_requests']} cold, {results['warm_requests']} warm")
    print(f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    bad = [r for r in rows if r.returncode != 0]
    results["runs"] = [
        {"name": r.name, "wall": r.wall, "cpu": r.cpu, "peak_rss_kib": r.rss_kib,
         "returncode": r.returncode, "note": r.note}
        for r in rows
    ]  # fmt: skip
    results["loadavg"] = os.getloadavg()
    results["machine"] = machine()
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"npm_deps-{stamp}.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results: {out}")
    if bad:
        print("FAILED: a run did not pass (every dependency should verify)")
        return 1
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print(f"({time.monotonic() - started:.0f} s)")
    sys.exit(rc)
