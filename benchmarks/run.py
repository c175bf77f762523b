"""``make bench``: biv against ``openssl dgst -sha256`` and ``sha256sum`` over the same bytes.

``BENCH`` selects what runs (comma-separated; default ``all``):

* ``realtree``: real public packages (PyPI, npm), pinned by sha256: cold and warm ``biv
  verify`` against hashing both trees, peak RSS, the worst file (``bench_realtree.py``).
* ``startup``: ``biv --version``, ``--help`` and the library import.
* ``scale``: a synthetic tree of 100,000 files / 1 GB (peak RSS) and a zip of 200,000 tiny
  members against ``unzip -p | openssl dgst -sha256`` (``bench_scale.py``).
* ``synthetic``: (a) a generated tree of 10,000 files / ~1 GiB (``BIV_BENCH_SCALE`` scales
  it) with PE files from the demo's PE writer, (b) one signed PE of >= 50 MiB: ``biv inspect``
  against ``osslsigncode verify``.

Every figure is the median of ``BIV_BENCH_REPEAT`` runs (default 3) with a warm page cache;
every ratio is against a baseline measured in the same run. The machine (CPU, cores, load
average) and the input sizes are printed with the tables; JSON goes to
``benchmarks/results/``. ``BIV_BENCH_DIR=DIR`` keeps (and reuses) the data there;
``BIV_BENCH_PYTHON=PY`` measures the biv installed for another interpreter (before/after).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
for _p in (ROOT, HERE):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from bench_common import (  # noqa: E402
    MIB,
    Run,
    Timing,
    best_of,
    biv_cmd,
    biv_env,
    biv_python,
    create_cost,
    env_float,
    fmt,
    hash_tree_cmd,
    installation,
    load_average,
    machine,
    ratio,
    repeat_count,
    run_child,
    shell_quote,
    warm,
    workers,
)

__all__ = ["best_of", "hash_tree_cmd", "make_tree", "run_child", "shell_quote"]

GIB = 1 << 30
FULL_FILES = 10_000
FULL_BYTES = 1 * GIB
BIG_PE_BYTES = 56 * MIB
MODES = ("startup", "realtree", "scale", "synthetic")


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


# --- in-process fallbacks ------------------------------------------------------------------


def inventory_pass(tree: str) -> Run:
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
    return run_child([biv_python(), "-c", code, tree], env=biv_env())


def inspect_library(path: str, trust: str) -> Run:
    """``verifier.api.inspect`` (Authenticode verification) timed inside a child interpreter."""
    code = (
        "import sys,time\n"
        "from verifier.api import inspect\n"
        "t=time.perf_counter()\n"
        "d=inspect(sys.argv[1], (sys.argv[2],))\n"
        "print('@@T', time.perf_counter()-t, d['signature']['valid'], file=sys.stderr)\n"
    )
    return run_child([biv_python(), "-c", code, path, trust], env=biv_env())


def hashing_pass(tree: str, parallel: int) -> Run:
    """Fallback while the pipeline is incomplete: verifier.hashing over every file."""
    code = (
        "import os,sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from verifier.hashing import sha256_file\n"
        "fs=[os.path.join(d,n) for d,_,ns in os.walk(sys.argv[1]) for n in ns]\n"
        "with ThreadPoolExecutor(int(sys.argv[2])) as p: list(p.map(sha256_file, fs))\n"
    )
    return run_child([biv_python(), "-c", code, tree, str(parallel)], env=biv_env())


# --- report --------------------------------------------------------------------------------


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


def synthetic(base_dir: Path, repeat: int, par: int) -> tuple[list[str], dict[str, Any]]:
    """(a) the generated tree and (b) the big signed PE."""
    scale = env_float("BIV_BENCH_SCALE", 1.0)
    lines: list[str] = []
    result: dict[str, Any] = {"scale": scale}
    env = biv_env()
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
        lambda: run_child(
            biv_cmd("verify", t, "--against", f"path:{t}", "--format", "json"), env=env
        ),
    )
    refs_dir = base_dir / "refs"
    subprocess.run(
        biv_cmd("refs", "build", f"path:{t}", "-o", str(refs_dir)),
        check=True,
        capture_output=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    (refs_doc,) = sorted(refs_dir.glob("*.json"))[:1]
    ver1 = best_of(
        "biv verify TREE --against path:refs.json (reads 1x)",
        nbytes,
        repeat,
        lambda: run_child(
            biv_cmd("verify", t, "--against", f"path:{refs_doc}", "--format", "json"), env=env
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
        "ratios": {r.name: {"sha256sum": ratio(r, sha), "openssl": ratio(r, ossl)} for r in rows},
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
            lambda: run_child(biv_cmd("inspect", b, "--format", "json", "--trust-store", trust)),
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
    return lines, result


def main() -> int:
    modes = [m.strip() for m in os.environ.get("BENCH", "all").split(",") if m.strip()]
    if "all" in modes:
        modes = list(MODES)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        print(f"unknown BENCH mode(s) {', '.join(unknown)}: choose from all, {', '.join(MODES)}")
        return 2
    repeat = repeat_count()
    par = workers()
    mach = machine()
    keep = os.environ.get("BIV_BENCH_DIR")
    base_dir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="biv-bench-"))
    base_dir.mkdir(parents=True, exist_ok=True)
    creating = create_cost(base_dir)
    mach["create_cost_in_bench_dir"] = {"dir": str(base_dir), **creating}
    header = [
        f"machine: {mach['cpu']}, nproc {mach['nproc']}, sha_ni {mach['sha_ni']}, "
        f"python {mach['python']}, {mach['tools'].get('openssl')}; load average at start "
        f"{mach['load_average_at_start']}",
        f"median of {repeat} run(s), warm page cache; baselines use xargs -P {par} "
        "(biv's analysis thread pool size)",
        f"biv: {installation()}",
        f"bench directory {base_dir}: creating a file costs {creating['wall_us']:.0f} us "
        f"({creating['system_us']:.0f} us of system CPU); a cold run creates one cache entry "
        "per code file",
        "",
    ]
    print("\n".join(header), flush=True)
    lines: list[str] = []
    result: dict[str, Any] = {
        "schema": "biv.bench/v2",
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": mach,
        "parallelism": par,
        "repeat": repeat,
        "modes": modes,
        "biv_python": os.environ.get("BIV_BENCH_PYTHON"),
        "installation": installation(),
    }
    try:
        for mode in modes:
            if mode == "startup" and "realtree" in modes:
                continue  # the real-tree run measures start-up itself
            if mode == "startup":
                import bench_realtree

                st = bench_realtree.startup(repeat)
                lines.append(
                    "start-up (median): "
                    + ", ".join(f"{t.name} {fmt(t.seconds, '.3f')} s" for t in st.values())
                )
                result["startup"] = {k: t.__dict__ for k, t in st.items()}
            elif mode == "realtree":
                import bench_realtree

                ls, r = bench_realtree.run(base_dir / "realtree", repeat, par)
                lines += ["== real trees ==", *ls]
                result["realtree"] = r
            elif mode == "scale":
                import bench_scale

                ls, r = bench_scale.run(base_dir / "scale", repeat, par)
                lines += ["== scale ==", *ls, ""]
                result["scale"] = r
            elif mode == "synthetic":
                ls, r = synthetic(base_dir / "synthetic", repeat, par)
                lines += ["== synthetic ==", *ls, ""]
                result["synthetic"] = r
    finally:
        if not keep:
            shutil.rmtree(base_dir, ignore_errors=True)
    footer = [f"load average at the end {load_average()}"]
    print("\n".join(["", *header, *lines, *footer]))
    result["load_average_at_end"] = load_average()
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
