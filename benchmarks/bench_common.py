"""Shared helpers of ``make bench``: running a command in a child, medians, the machine.

Every figure is the median of ``BIV_BENCH_REPEAT`` runs (default 3) with a warm page cache,
and every ratio is against a baseline measured in the same run, so a busy machine moves both
sides. The load average is printed with the results.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
XARGS_BATCH = 64

Run = tuple[float, int | None, int, str]  # (seconds, peak RSS KiB, return code, stderr tail)


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def repeat_count() -> int:
    return max(1, int(env_float("BIV_BENCH_REPEAT", 3)))


def workers() -> int:
    """The parallelism of biv's analysis pool (what the baselines get too)."""
    try:
        from verifier.inventory import _workers

        return int(_workers())
    except Exception:
        return max(2, min(8, os.cpu_count() or 2))


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def create_cost(directory: Path, n: int = 200) -> dict[str, float]:
    """Wall and system CPU per file created in ``directory`` (microseconds, median of 3).

    A cold run creates one analysis-cache entry per code file it analyses, and file creation
    is kernel work whose cost varies: on the development machine it went from 15 us to over
    1 ms per file within an hour, in /tmp and elsewhere on the same disk, and a cold run of
    the combined tree took 0.3-0.4 s longer at the slow end, with nothing changed in biv. The
    header shows it so that such a run can be told apart.
    """
    probe = Path(tempfile.mkdtemp(prefix="create-probe-", dir=directory))
    walls: list[float] = []
    syss: list[float] = []
    try:
        for k in range(3):
            s0 = os.times().system
            t = time.perf_counter()
            for i in range(n):
                os.close(os.open(probe / f"{k}-{i}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
            walls.append((time.perf_counter() - t) / n * 1e6)
            syss.append((os.times().system - s0) / n * 1e6)
            for i in range(n):
                os.unlink(probe / f"{k}-{i}")
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return {"wall_us": statistics.median(walls), "system_us": statistics.median(syss)}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    tools: dict[str, str | None] = {}
    for tool, args in (
        ("sha256sum", ["--version"]),
        ("openssl", ["version"]),
        ("osslsigncode", ["--version"]),
        ("unzip", ["-v"]),
    ):
        try:
            out = subprocess.run([tool, *args], capture_output=True, text=True, timeout=10)
            tools[tool] = (out.stdout or out.stderr).splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            tools[tool] = None
    return {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "cpu": cpu,
        "sha_ni": "sha_ni" in flags,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tools": tools,
        "load_average_at_start": load_average(),
    }


@dataclass
class Timing:
    name: str
    seconds: float | None  # the median of ``runs``
    bytes: int
    peak_rss_kib: int | None = None
    returncode: int | None = None
    note: str = ""
    runs: list[float] = field(default_factory=list)

    @property
    def mib_s(self) -> float | None:
        if not self.seconds:
            return None
        return self.bytes / MIB / self.seconds


# A fresh small interpreter forks and execs the measured command, then reports the peak
# RSS of that command alone. (Linux folds the pre-exec address space's high-water mark into
# the exec'd process's ru_maxrss, so measuring a direct child of this large process would
# report at least this process's own peak.)
_LAUNCHER = (
    "import os,sys,time\n"
    "t=time.perf_counter()\n"
    "pid=os.fork()\n"
    "if pid==0:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "_,st,ru=os.wait4(pid,0)\n"
    "sys.stderr.write('\\n@@RSS %d %.6f\\n' % (ru.ru_maxrss, time.perf_counter()-t))\n"
    "sys.exit(os.waitstatus_to_exitcode(st))\n"
)


def run_child(
    argv: Sequence[str], *, shell: bool = False, env: dict[str, str] | None = None
) -> Run:
    """(wall seconds, peak RSS KiB of the command, return code, stderr tail)."""
    cmd = ["/bin/sh", "-c", argv[0]] if shell else list(argv)
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        env=env,
        cwd=tempfile.gettempdir(),  # not a checkout: ``python -m`` puts the cwd on sys.path
    )
    elapsed = time.perf_counter() - t
    err = p.stderr.decode(errors="replace")
    rss: int | None = None
    lines = err.rstrip().splitlines()
    if lines and lines[-1].startswith("@@RSS "):
        _tag, kib, secs = lines[-1].split()
        rss, elapsed = int(kib), float(secs)  # the command alone, without the launcher
        err = "\n".join(lines[:-1])
    # a Python child may time its own work (excluding interpreter start-up and imports)
    for line in err.splitlines():
        if line.startswith("@@T "):
            elapsed = float(line.split()[1])
    return elapsed, rss, p.returncode, err[-400:]


def median_of(name: str, nbytes: int, repeat: int, fn: Callable[[], Run]) -> Timing:
    """The median of ``repeat`` runs (peak RSS: the largest seen); a failed run stops it."""
    runs: list[float] = []
    rss: int | None = None
    rc = 0
    note = ""
    for _ in range(repeat):
        sec, r, rc, err = fn()
        runs.append(sec)
        if r is not None:
            rss = max(rss or 0, r)
        if rc not in (0, 1):
            note = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
            break
    ok = rc in (0, 1)
    return Timing(name, statistics.median(runs) if ok else None, nbytes, rss, rc, note, runs)


# the old name: the synthetic benchmark and its tests use it
def best_of(name: str, nbytes: int, repeat: int, fn: Callable[[], Run]) -> Timing:
    return median_of(name, nbytes, repeat, fn)


def shell_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _tool(tool: str) -> str:
    return "sha256sum" if tool == "sha256sum" else "openssl dgst -sha256"


def hash_tree_cmd(tool: str, tree: str, parallel: int) -> str:
    return (
        f"find {shell_quote(tree)} -type f -print0 | "
        f"xargs -0 -P {parallel} -n {XARGS_BATCH} {_tool(tool)} > /dev/null"
    )


def hash_list_cmd(tool: str, listfile: str, parallel: int) -> str:
    """Hash the files named in ``listfile`` (NUL-separated) with ``parallel`` processes."""
    return (
        f"xargs -0 -P {parallel} -n {XARGS_BATCH} {_tool(tool)} "
        f"< {shell_quote(listfile)} > /dev/null"
    )


def write_file_list(trees: Sequence[Path], out: Path) -> tuple[int, int]:
    """NUL-separated list of every regular file under ``trees``; returns (files, bytes)."""
    files = 0
    total = 0
    with out.open("wb") as fh:
        for tree in trees:
            for dirpath, _dirs, names in os.walk(tree):
                for n in sorted(names):
                    p = os.path.join(dirpath, n)
                    if os.path.islink(p) or not os.path.isfile(p):
                        continue
                    fh.write(os.fsencode(p) + b"\0")
                    files += 1
                    total += os.path.getsize(p)
    return files, total


def biv_env() -> dict[str, str]:
    """The environment of biv children."""
    return dict(os.environ)


def biv_python() -> str:
    """The interpreter that runs biv: ``BIV_BENCH_PYTHON`` measures another installation of
    biv (e.g. a virtual environment holding an earlier commit, for a before/after table);
    else an installed copy of this working tree (``installed_python``), as a user's
    ``pip install`` has it, or with ``BIV_BENCH_INSTALL=editable`` the development venv."""
    chosen = os.environ.get("BIV_BENCH_PYTHON")
    if chosen:
        return chosen
    if os.environ.get("BIV_BENCH_INSTALL") == "editable":
        return sys.executable
    return installed_python()


def installation() -> str:
    """What ``biv_python`` runs, for the report header."""
    if os.environ.get("BIV_BENCH_PYTHON"):
        return f"BIV_BENCH_PYTHON={os.environ['BIV_BENCH_PYTHON']}"
    if os.environ.get("BIV_BENCH_INSTALL") == "editable":
        return "the development venv's editable install (BIV_BENCH_INSTALL=editable)"
    return "an installed copy of this tree (pip install, byte-compiled; benchmarks/results/)"


_INSTALLED: str | None = None


def installed_python() -> str:
    """A virtual environment holding this working tree installed the way users install it
    (``pip install``: a wheel's files, byte-compiled; no editable-install import hook, which
    costs every start some 40 ms), its dependencies those of the development venv. Rebuilt
    when biv's sources change."""
    global _INSTALLED
    if _INSTALLED is not None:
        return _INSTALLED
    import hashlib
    import sysconfig

    h = hashlib.sha256()
    for f in sorted([*ROOT.joinpath("verifier").rglob("*"), ROOT / "pyproject.toml"]):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    venv = ROOT / "benchmarks" / "results" / "biv-installed"
    stamp = venv / ".source-sha256"
    python = venv / "bin" / "python"
    if not (stamp.is_file() and stamp.read_text() == h.hexdigest() and python.exists()):
        import shutil

        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # the dependencies: the development venv's site-packages as a plain path entry (its
        # .pth files, the editable hook among them, are not run from there)
        Path(site, "_biv_bench_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        # a wheel built from the tree, unpacked and byte-compiled as pip installs it (pip
        # itself is not run against any environment: asked to install into a prefix, it
        # removes the development venv's editable install)
        work = tempfile.mkdtemp(prefix="biv-bench-build-")
        try:
            built = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work, str(ROOT)],
                check=False,
                cwd=work,
                capture_output=True,
                text=True,
            )
            wheels = sorted(Path(work).glob("biv-*.whl"))
            if built.returncode != 0 or len(wheels) != 1:
                raise SystemExit(f"building biv's wheel for the benchmark failed:\n{built.stderr}")
            import zipfile

            with zipfile.ZipFile(wheels[0]) as zf:
                zf.extractall(site)
            subprocess.run(
                [str(python), "-m", "compileall", "-q", str(Path(site, "verifier"))],
                check=True,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
                capture_output=True,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        where = subprocess.run(
            [str(python), "-c", "import verifier; print(verifier.__file__)"],
            check=True,
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
        ).stdout.strip()
        if not where.startswith(site):
            raise SystemExit(f"the installed copy imports biv from {where}, not from {site}")
        stamp.write_text(h.hexdigest())
    _INSTALLED = str(python)
    return _INSTALLED


def biv_cmd(*args: str) -> list[str]:
    return [biv_python(), "-m", "verifier", *args]


def warm(paths: Sequence[str]) -> None:
    for p in paths:
        subprocess.run(
            f"find {shell_quote(p)} -type f -print0 | xargs -0 cat > /dev/null",
            shell=True,
            check=False,
        )


def ratio(a: Timing | None, b: Timing | None) -> float | None:
    if a is None or b is None or a.seconds is None or b.seconds is None or b.seconds == 0:
        return None
    return a.seconds / b.seconds


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def rss_text(kib: int | None) -> str:
    return f"{kib / 1024:.0f} MiB" if kib else "-"
