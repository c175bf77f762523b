"""``make bench``: biv's throughput against sha256sum and openssl over the same bytes.

(a) Tree: 10,000 files / ~1 GiB (``BIV_BENCH_SCALE`` scales both; default 1.0), mostly data
    files of varied size plus PE files from the demo's PE writer (some osslsigncode-signed).
    Times ``biv verify TREE --against path:TREE`` (a child process: wall time and peak RSS),
    the inventory pass alone (one read of the tree: the per-byte cost of verification), and
    ``sha256sum`` / ``openssl dgst -sha256`` over the same files with the same parallelism as
    biv's analysis pool (``xargs -P``).
(b) One signed PE of >= 50 MiB (PE writer, big ``.data``, osslsigncode-signed): Authenticode
    verification with ``biv inspect`` vs ``sha256sum`` and ``openssl dgst -sha256``.

Every timing is the best of ``BIV_BENCH_REPEAT`` runs (default 2) with a warm page cache
(a warm-up read precedes them), so the ratios compare CPU work, not the disk. Prints a table
and writes JSON to ``benchmarks/results/``. ``BIV_BENCH_DIR=DIR`` keeps (and reuses) the
generated data there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GIB = 1 << 30
MIB = 1 << 20
FULL_FILES = 10_000
FULL_BYTES = 1 * GIB
BIG_PE_BYTES = 56 * MIB
XARGS_BATCH = 64


# --- environment ---------------------------------------------------------------------------


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def workers() -> int:
    """The parallelism of biv's analysis pool (what the baselines get too)."""
    try:
        from verifier.inventory import _workers

        return int(_workers())
    except Exception:
        return max(2, min(8, os.cpu_count() or 2))


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
    }


# --- running and timing --------------------------------------------------------------------


@dataclass
class Timing:
    name: str
    seconds: float | None
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


def run_child(argv: Sequence[str], *, shell: bool = False) -> tuple[float, int | None, int, str]:
    """(wall seconds, peak RSS KiB of the command, return code, stderr tail)."""
    cmd = ["/bin/sh", "-c", argv[0]] if shell else list(argv)
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
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


def best_of(
    name: str, nbytes: int, repeat: int, fn: Callable[[], tuple[float, int | None, int, str]]
) -> Timing:
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
    return Timing(name, min(runs) if ok else None, nbytes, rss, rc, note, runs)


def shell_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def hash_tree_cmd(tool: str, tree: str, parallel: int) -> str:
    cmd = "sha256sum" if tool == "sha256sum" else "openssl dgst -sha256"
    return (
        f"find {shell_quote(tree)} -type f -print0 | "
        f"xargs -0 -P {parallel} -n {XARGS_BATCH} {cmd} > /dev/null"
    )


def biv_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "verifier", *args]


# --- data ----------------------------------------------------------------------------------


def make_tree(root: Path, n_files: int, total: int, *, signed_pes: int = 10) -> tuple[int, int]:
    """Generate the tree; returns (files, bytes). Deterministic sizes, random content."""
    marker = root / ".biv-bench"
    want = f"{n_files}:{total}:{signed_pes}"
    if marker.is_file() and marker.read_text() == want:
        return _tree_size(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(20230329)  # the day 3CX was reported
    pes = _pe_files(root, max(5, n_files // 200), signed_pes)
    n_data = max(0, n_files - len(pes))
    pe_bytes = sum(len(b) for b in pes)
    raw = [rng.lognormvariate(9.5, 1.6) for _ in range(n_data)]
    scale = max(0, total - pe_bytes) / max(1.0, sum(raw))
    sizes = [max(1, int(r * scale)) for r in raw]
    pool = os.urandom(max(MIB, min(64 * MIB, total)))
    for i, size in enumerate(sizes):
        d = root / f"d{i // 100:03d}"
        d.mkdir(exist_ok=True)
        with open(d / f"f{i:05d}.bin", "wb") as fh:
            left = size
            while left > 0:
                n = min(left, len(pool) // 2)
                off = rng.randrange(0, len(pool) - n + 1)
                fh.write(pool[off : off + n])
                left -= n
    marker.write_text(want)
    return _tree_size(root)


def _pe_files(root: Path, count: int, signed: int) -> list[bytes]:
    from verifier._scenarios import pewriter

    specs = [
        pewriter.electron_exe(),
        pewriter.ffmpeg_dll(),
        pewriter.libegl_dll(),
        pewriter.d3dcompiler_dll(),
        pewriter.trojaned_ffmpeg_dll(),
    ]
    out: list[bytes] = []
    pe_dir = root / "bin"
    pe_dir.mkdir()
    to_sign: list[Path] = []
    for i in range(count):
        spec = specs[i % len(specs)]
        data = pewriter.build_pe(spec)
        ext = ".exe" if not spec.dll else ".dll"
        p = pe_dir / f"pe{i:04d}{ext}"
        p.write_bytes(data)
        out.append(data)
        if len(to_sign) < signed:
            to_sign.append(p)
    if to_sign and shutil.which("osslsigncode"):
        from verifier._scenarios import osslsign, pki

        paths = pki.vendor_pki().write(root.parent / f"{root.name}-pki")
        for p in to_sign:
            tmp = p.with_suffix(".signing")
            osslsign.sign(p, tmp, paths.signer_chain, paths.signer_key)
            tmp.replace(p)
    return out


def _tree_size(root: Path) -> tuple[int, int]:
    files = 0
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            if n == ".biv-bench":
                continue
            files += 1
            total += os.path.getsize(os.path.join(dirpath, n))
    return files, total


def make_big_pe(path: Path, size: int) -> tuple[Path, str]:
    """A >= ``size`` PE (big ``.data``), osslsigncode-signed; returns (path, trust PEM)."""
    from dataclasses import replace

    from verifier._scenarios import osslsign, pewriter, pki

    paths = pki.vendor_pki().write(path.parent / "big-pki")
    if path.is_file() and path.stat().st_size >= size:
        return path, paths.root_cert
    spec = replace(pewriter.ffmpeg_dll(), name="big.dll", data_size=size)
    raw = path.with_suffix(".unsigned")
    raw.write_bytes(pewriter.build_pe(spec))
    osslsign.sign(raw, path, paths.signer_chain, paths.signer_key)
    raw.unlink()
    return path, paths.root_cert


def warm(paths: Sequence[str]) -> None:
    for p in paths:
        subprocess.run(
            f"find {shell_quote(p)} -type f -print0 | xargs -0 cat > /dev/null",
            shell=True,
            check=False,
        )


# --- in-process fallbacks ------------------------------------------------------------------


def inventory_pass(tree: str) -> tuple[float, int | None, int, str]:
    """One read of the tree through biv's analysis (inventory), in a child interpreter,
    timed inside the child (imports and interpreter start-up excluded)."""
    code = (
        "import sys,tempfile,time\n"
        "from verifier.api import make_context, inventory_of\n"
        "t=time.perf_counter()\n"
        "with tempfile.TemporaryDirectory() as w:\n"
        "    inv=inventory_of(sys.argv[1], make_context((), None), w)\n"
        "print('@@T', time.perf_counter()-t, len(inv.entries), file=sys.stderr)\n"
    )
    return run_child([sys.executable, "-c", code, tree])


def inspect_library(path: str, trust: str) -> tuple[float, int | None, int, str]:
    """``verifier.api.inspect`` (Authenticode verification) timed inside a child interpreter."""
    code = (
        "import sys,time\n"
        "from verifier.api import inspect\n"
        "t=time.perf_counter()\n"
        "d=inspect(sys.argv[1], (sys.argv[2],))\n"
        "print('@@T', time.perf_counter()-t, d['signature']['valid'], file=sys.stderr)\n"
    )
    return run_child([sys.executable, "-c", code, path, trust])


def hashing_pass(tree: str, parallel: int) -> tuple[float, int | None, int, str]:
    """Fallback while the pipeline is incomplete: verifier.hashing over every file."""
    code = (
        "import os,sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from verifier.hashing import sha256_file\n"
        "fs=[os.path.join(d,n) for d,_,ns in os.walk(sys.argv[1]) for n in ns]\n"
        "with ThreadPoolExecutor(int(sys.argv[2])) as p: list(p.map(sha256_file, fs))\n"
    )
    return run_child([sys.executable, "-c", code, tree, str(parallel)])


# --- report --------------------------------------------------------------------------------


def ratio(a: Timing, b: Timing) -> float | None:
    if a.seconds is None or b.seconds is None or b.seconds == 0:
        return None
    return a.seconds / b.seconds


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def table(title: str, rows: list[Timing], base: Timing, floor: Timing) -> list[str]:
    out = [
        title,
        f"  {'measure':<46} {'seconds':>8} {'MiB/s':>8} {'x sha256sum':>11} "
        f"{'x openssl':>9} {'peak RSS':>9}",
    ]
    for t in rows:
        rss = f"{t.peak_rss_kib / 1024:.0f} MiB" if t.peak_rss_kib else "-"
        out.append(
            f"  {t.name:<46} {fmt(t.seconds, '.3f'):>8} {fmt(t.mib_s, '.0f'):>8} "
            f"{fmt(ratio(t, base)):>11} {fmt(ratio(t, floor)):>9} {rss:>9}"
        )
        if t.note:
            out.append(f"    ! {t.note}")
    return out


def main() -> int:
    scale = _env_float("BIV_BENCH_SCALE", 1.0)
    repeat = max(1, int(_env_float("BIV_BENCH_REPEAT", 2)))
    par = workers()
    mach = machine()
    keep = os.environ.get("BIV_BENCH_DIR")
    base_dir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="biv-bench-"))
    base_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    result: dict[str, Any] = {
        "schema": "biv.bench/v1",
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": mach,
        "parallelism": par,
        "repeat": repeat,
        "scale": scale,
    }
    try:
        # ---- (a) the tree
        n_files = max(20, int(FULL_FILES * scale))
        t0 = time.perf_counter()
        tree = base_dir / "tree"
        files, nbytes = make_tree(tree, n_files, int(FULL_BYTES * scale))
        gen = time.perf_counter() - t0
        print(f"generated {files} files, {nbytes / MIB:.0f} MiB in {gen:.1f}s under {tree}")
        warm([str(tree)])
        t = str(tree)
        sha = best_of(
            f"sha256sum (xargs -P {par})",
            nbytes,
            repeat,
            lambda: run_child([hash_tree_cmd("sha256sum", t, par)], shell=True),
        )
        sha1 = best_of(
            "sha256sum (xargs -P 1)",
            nbytes,
            repeat,
            lambda: run_child([hash_tree_cmd("sha256sum", t, 1)], shell=True),
        )
        ossl = best_of(
            f"openssl dgst -sha256 (xargs -P {par})",
            nbytes,
            repeat,
            lambda: run_child([hash_tree_cmd("openssl", t, par)], shell=True),
        )
        inv = best_of(
            "biv inventory pass (read once, no start-up)", nbytes, repeat, lambda: inventory_pass(t)
        )
        ver = best_of(
            "biv verify TREE --against path:TREE (reads 2x)",
            nbytes,
            repeat,
            lambda: run_child(biv_cmd("verify", t, "--against", f"path:{t}", "--format", "json")),
        )
        refs_dir = base_dir / "refs"
        subprocess.run(
            biv_cmd("refs", "build", f"path:{t}", "-o", str(refs_dir)),
            check=True,
            capture_output=True,
        )
        (refs_doc,) = sorted(refs_dir.glob("*.json"))[:1]
        ver1 = best_of(
            "biv verify TREE --against path:refs.json (reads 1x)",
            nbytes,
            repeat,
            lambda: run_child(
                biv_cmd("verify", t, "--against", f"path:{refs_doc}", "--format", "json")
            ),
        )
        rows = [sha, sha1, ossl, inv, ver1, ver]
        if inv.seconds is None and ver.seconds is None:
            rows.append(
                best_of(
                    "verifier.hashing sha256 only (fallback)",
                    nbytes,
                    repeat,
                    lambda: hashing_pass(t, par),
                )
            )
        lines += table(
            f"(a) tree: {files} files, {nbytes / MIB:.0f} MiB, parallelism {par}",
            rows,
            sha,
            ossl,
        )
        if ver1.seconds is not None and sha.seconds:
            r = ver1.seconds / sha.seconds
            lines.append(
                f"  biv verify against a reference inventory = {r:.2f}x sha256sum over the "
                f"same bytes (target <= 1.5x: {'met' if r <= 1.5 else 'NOT met'})"
            )
        if ver.seconds is not None and sha.seconds:
            r = ver.seconds / (2 * sha.seconds)
            lines.append(
                f"  biv verify against path:TREE reads artifact + reference (2 x tree): "
                f"{r:.2f}x sha256sum over those same bytes"
            )
        result["tree"] = {
            "files": files,
            "bytes": nbytes,
            "generate_seconds": gen,
            "timings": [t_.__dict__ for t_ in rows],
            "ratios": {
                r.name: {"sha256sum": ratio(r, sha), "openssl": ratio(r, ossl)} for r in rows
            },
        }

        # ---- (b) one big signed PE
        big_size = max(int(BIG_PE_BYTES * min(1.0, max(scale, 0.05))), 2 * MIB)
        if scale >= 1.0:
            big_size = BIG_PE_BYTES
        if shutil.which("osslsigncode"):
            big, trust = make_big_pe(base_dir / "big-signed.dll", big_size)
            bsize = big.stat().st_size
            warm([str(big)])
            b = str(big)
            bsha = best_of("sha256sum", bsize, repeat, lambda: run_child(["sha256sum", b]))
            bossl = best_of(
                "openssl dgst -sha256",
                bsize,
                repeat,
                lambda: run_child(["openssl", "dgst", "-sha256", b]),
            )
            bins = best_of(
                "biv inspect (Authenticode verify, CLI)",
                bsize,
                repeat,
                lambda: run_child(
                    biv_cmd("inspect", b, "--format", "json", "--trust-store", trust)
                ),
            )
            blib = best_of(
                "biv inspect (library call, no start-up)",
                bsize,
                repeat,
                lambda: inspect_library(b, trust),
            )
            boss = best_of(
                "osslsigncode verify",
                bsize,
                repeat,
                lambda: run_child(
                    [
                        "osslsigncode",
                        "verify",
                        "-CAfile",
                        trust,
                        "-ignore-cdp",
                        "-ignore-crl",
                        "-in",
                        b,
                    ]
                ),
            )
            brows = [bsha, bossl, bins, blib, boss]
            lines.append("")
            lines += table(
                f"(b) signed PE: {bsize / MIB:.0f} MiB (biv CLI includes interpreter start-up)",
                brows,
                bsha,
                bossl,
            )
            result["signed_pe"] = {
                "bytes": bsize,
                "timings": [t_.__dict__ for t_ in brows],
                "ratios": {
                    r.name: {"sha256sum": ratio(r, bsha), "openssl": ratio(r, bossl)} for r in brows
                },
            }
        else:
            lines.append("(b) skipped: osslsigncode is not installed")
    finally:
        if not keep:
            shutil.rmtree(base_dir, ignore_errors=True)

    header = [
        "",
        f"machine: {mach['cpu']}, nproc {mach['nproc']}, sha_ni {mach['sha_ni']}, "
        f"python {mach['python']}",
        f"best of {repeat} run(s), warm page cache; baselines use xargs -P {par} "
        "(biv's analysis thread pool size)",
        "",
    ]
    print("\n".join(header + lines))
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"bench-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out_dir / "latest.json").write_text(out.read_text())
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
