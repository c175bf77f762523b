"""``BENCH=scale make bench``: memory and time at scale.

* A synthetic tree of 100,000 files / 1 GB (``BIV_BENCH_SCALE`` scales it): ``biv verify``
  against the tree's reference inventory, and against the tree itself (both in memory): wall
  time and peak RSS (goal: <= 200 MB), against ``openssl dgst -sha256`` over the same files.
* A zip of 200,000 tiny members: ``biv verify Z.zip`` (against a one-file reference inventory,
  so the cost is unpacking and hashing the members) against ``unzip -p Z.zip | openssl dgst
  -sha256`` (inflating, then hashing): goals <= 20 s and <= 300 MB.
"""

from __future__ import annotations

import hashlib
import json
import random
import zipfile
from pathlib import Path
from typing import Any

from bench_common import (
    MIB,
    Timing,
    biv_cmd,
    biv_env,
    env_float,
    fmt,
    hash_list_cmd,
    median_of,
    ratio,
    rss_text,
    run_child,
    shell_quote,
    warm,
    write_file_list,
)

TREE_FILES = 100_000
TREE_BYTES = 1_000_000_000
ZIP_MEMBERS = 200_000


def make_small_tree(root: Path, n_files: int, total: int) -> tuple[int, int]:
    """``n_files`` data files of ``total`` bytes in 1,000 folders (reused when complete)."""
    marker = root.parent / f".{root.name}.built"
    want = f"{n_files}:{total}"
    if marker.is_file() and marker.read_text() == want:
        return n_files, total
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(20230329)
    raw = [rng.lognormvariate(8.5, 1.2) for _ in range(n_files)]
    k = total / sum(raw)
    sizes = [max(1, int(r * k)) for r in raw]
    pool = rng.randbytes(16 * MIB)
    written = 0
    for i, size in enumerate(sizes):
        d = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        off = rng.randrange(0, len(pool) - min(size, len(pool) // 2))
        with open(d / f"f{i:06d}.dat", "wb") as fh:
            left = size
            while left > 0:
                n = min(left, len(pool) - off)
                fh.write(pool[off : off + n])
                left -= n
                off = 0
        written += size
    marker.write_text(want)
    return n_files, written


def _refs_doc(path: Path, files: list[tuple[str, int, str]]) -> None:
    doc = {
        "schema": "biv.refs/v1",
        "component": {"name": "bench", "version": None, "source": "bench"},
        "files": [
            {"path": p, "size": n, "sha256": sha, "format": "data", "normalized_sha256": sha}
            for p, n, sha in files
        ],
    }
    path.write_text(json.dumps(doc))


def tree_refs(root: Path, out: Path) -> None:
    """The tree's reference inventory (every file: data, so digests are all it needs)."""
    files = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            files.append(
                (p.relative_to(root).as_posix(), len(data), hashlib.sha256(data).hexdigest())
            )
    _refs_doc(out, files)


def make_zip(path: Path, members: int) -> None:
    marker = path.parent / f".{path.name}.built"
    if marker.is_file() and marker.read_text() == str(members) and path.is_file():
        return
    rng = random.Random(3)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for i in range(members):
            z.writestr(f"d{i // 1000:03d}/m{i:06d}.txt", f"member {i} {rng.random()}\n" * 2)
    marker.write_text(str(members))


def run(base: Path, repeat: int, par: int) -> tuple[list[str], dict[str, Any]]:
    scale = env_float("BIV_BENCH_SCALE", 1.0)
    env = biv_env()
    env["XDG_CONFIG_HOME"] = str(base / "config")
    cache = str(base / "cache")
    lines: list[str] = []
    result: dict[str, Any] = {}
    base.mkdir(parents=True, exist_ok=True)

    # --- 100,000 files
    n = max(100, int(TREE_FILES * scale))
    tree = base / "tree100k"
    files, nbytes = make_small_tree(tree, n, int(TREE_BYTES * scale))
    refs = base / "tree100k-refs.json"
    if not refs.is_file():
        tree_refs(tree, refs)
    lst = base / "tree100k.list"
    files, nbytes = write_file_list([tree], lst)
    warm([str(tree)])
    t = str(tree)
    ossl = median_of(
        f"openssl dgst -sha256 (xargs -P {par})",
        nbytes,
        repeat,
        lambda: run_child([hash_list_cmd("openssl", str(lst), par)], shell=True),
    )
    argv = biv_cmd("verify", t, "--against", f"path:{refs}", "--format", "json", "-q")
    v1 = median_of(
        "biv verify TREE --against path:REFS.json",
        nbytes,
        repeat,
        lambda: run_child([*argv, "-o", str(base / "v1.json"), "--cache-dir", cache], env=env),
    )
    argv2 = biv_cmd("verify", t, "--against", f"path:{t}", "--format", "json", "-q")
    v2 = median_of(
        "biv verify TREE --against path:TREE (1 run)",
        2 * nbytes,
        1,
        lambda: run_child([*argv2, "-o", str(base / "v2.json"), "--cache-dir", cache], env=env),
    )
    lines.append(f"tree: {files} files, {nbytes / MIB:.0f} MiB (synthetic data files)")
    lines += _rows([ossl, v1, v2], ossl)
    rss = v1.peak_rss_kib or 0
    lines.append(
        f"  peak RSS against the inventory {rss_text(v1.peak_rss_kib)} (goal <= 200 MB: "
        f"{'met' if rss and rss * 1024 <= 200e6 else 'NOT met'}); against the tree itself "
        f"{rss_text(v2.peak_rss_kib)}"
    )
    result["tree"] = {
        "files": files,
        "bytes": nbytes,
        "timings": [x.__dict__ for x in (ossl, v1, v2)],
    }

    # --- 200,000 tiny members
    m = max(100, int(ZIP_MEMBERS * scale))
    z = base / f"tiny-{m}.zip"
    make_zip(z, m)
    zrefs = base / "zip-refs.json"
    with zipfile.ZipFile(z) as zf:
        first = zf.infolist()[0]
        data = zf.read(first)
    _refs_doc(zrefs, [(first.filename, len(data), hashlib.sha256(data).hexdigest())])
    warm([str(z)])
    zsize = z.stat().st_size
    base_cmd = f"unzip -p {shell_quote(str(z))} | openssl dgst -sha256 > /dev/null"
    unz = median_of(
        "unzip -p Z.zip | openssl dgst -sha256",
        zsize,
        repeat,
        lambda: run_child([base_cmd], shell=True),
    )
    zargv = biv_cmd("verify", str(z), "--against", f"path:{zrefs}", "--format", "json", "-q")
    zv = median_of(
        "biv verify Z.zip --against path:REFS.json",
        zsize,
        min(repeat, 2),
        lambda: run_child([*zargv, "-o", str(base / "z.json"), "--cache-dir", cache], env=env),
    )
    lines.append(f"zip: {m} members, {zsize / MIB:.1f} MiB")
    lines += _rows([unz, zv], unz)
    ok = zv.seconds is not None and zv.seconds <= 20 and (zv.peak_rss_kib or 0) * 1024 <= 300e6
    lines.append(f"  goals <= 20 s and <= 300 MB: {'met' if ok else 'NOT met'}")
    result["zip"] = {"members": m, "bytes": zsize, "timings": [x.__dict__ for x in (unz, zv)]}
    return lines, result


def _rows(rows: list[Timing], base: Timing) -> list[str]:
    out = [f"  {'measure':<48} {'median s':>9} {'x baseline':>10} {'peak RSS':>9}"]
    for t in rows:
        out.append(
            f"  {t.name:<48} {fmt(t.seconds, '.3f'):>9} {fmt(ratio(t, base)):>10} "
            f"{rss_text(t.peak_rss_kib):>9}"
        )
        if t.note:
            out.append(f"    ! {t.note}")
    return out
