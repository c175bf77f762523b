"""``make bench`` (part 2): the cost of explaining a divergent file (docs/contract.md "Explaining a
divergence").

(a) A real DLL: ``vcomp140.dll`` from the msvc-runtime wheel on PyPI (pinned by sha256, the
    tests' cache) with a ``call`` and a ``lea`` written into one function: the typical case.
(b) The demo's trojanised ``ffmpeg.dll`` against upstream's (an added code section).
(c) The worst case: a 100 MiB ``.text`` whose every byte differs (caps hold; one read).

Each timing is the library call ``explain.explain_blobs`` (no interpreter start-up), best of
``BIV_BENCH_REPEAT`` runs (default 3) with a warm page cache, next to reading both files and
comparing them chunk by chunk (the floor for "read both and find where they differ"). Results go to
``benchmarks/results/explain-*.json``. ``BIV_BENCH_EXPLAIN_MIB`` sets the worst case's size.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from verifier.binary import explain, pe  # noqa: E402
from verifier.model import Blob, FileFormat  # noqa: E402

MIB = 1 << 20


def best(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def _read_both(a: Path, b: Path) -> int:
    """The floor: read both files and compare them chunk by chunk (memcmp), nothing else."""
    differing = 0
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(MIB), fb.read(MIB)
            if not x and not y:
                return differing
            differing += x != y


def real_dll(work: Path) -> tuple[Path, Path] | None:
    try:
        from support.fetch import msvc_wheel

        wheel = msvc_wheel()
    except BaseException as exc:  # pytest.skip outside pytest: no network, no cache
        print(f"(a) skipped: msvc-runtime wheel unavailable ({type(exc).__name__})")
        return None
    with zipfile.ZipFile(wheel) as z:
        data = bytearray(z.read("msvc_runtime-14.51.36231.data/data/Scripts/vcomp140.dll"))
    up = work / "vcomp140.up.dll"
    up.write_bytes(bytes(data))
    info = pe.read_pe_info(Blob.of_file(up))
    exports = pe.read_shape(Blob.of_file(up), info).exports
    rva = next(r for _o, n, r in exports if n == "C2VectParallel")
    off = info.rva_to_offset(rva + 0x43)
    data[off : off + 12] = b"\xe8" + struct.pack("<i", 0x7000) + b"\x48\x8d\x0d\x34\x12\x00\x00"
    sh = work / "vcomp140.patched.dll"
    sh.write_bytes(bytes(data))
    return sh, up


def demo_ffmpeg(work: Path) -> tuple[Path, Path]:
    from verifier._scenarios.scenario import build_scenario

    sc = build_scenario(work / "demo")
    return Path(sc.compromised) / "ffmpeg.dll", Path(sc.upstream) / "ffmpeg.dll"


def worst_case(work: Path, mib: int) -> tuple[Path, Path]:
    from support.minipe import CODE, write_pe

    n = mib * MIB
    a = random.Random(11).randbytes(n)
    write_pe(work / "big.up.dll", [(".text", 0x1000, a, CODE)])
    write_pe(
        work / "big.shipped.dll",
        [(".text", 0x1000, a.translate(bytes(i ^ 0x5A for i in range(256))), CODE)],
    )
    return work / "big.shipped.dll", work / "big.up.dll"


def run_case(name: str, pair: tuple[Path, Path], repeat: int) -> dict[str, Any]:
    sh, up = pair
    for p in pair:  # warm the page cache
        with p.open("rb") as fh:
            while fh.read(8 * MIB):
                pass
    t, u = best(
        repeat, lambda: explain.explain_blobs(Blob.of_file(sh), Blob.of_file(up), FileFormat.PE)
    )
    tc, _ = best(repeat, lambda: _read_both(sh, up))
    ev = u.evidence
    ex = ev["explanation"]
    rows = sum(len(w["rows"]) for w in ev["disassembly"])
    size = sh.stat().st_size
    return {
        "case": name,
        "bytes": size,
        "seconds": round(t, 4),
        "read_both_seconds": round(tc, 4),
        "mib_per_s": round(size / MIB / t, 1) if t else None,
        "changes": len(ev["changes"]),
        "changed_bytes": ex["changed_bytes"],
        "disassembly_rows": rows,
        "truncated": ex["truncated"],
    }


def main() -> int:
    repeat = int(os.environ.get("BIV_BENCH_REPEAT", "3") or 3)
    mib = int(os.environ.get("BIV_BENCH_EXPLAIN_MIB", "100") or 100)
    work = Path(tempfile.mkdtemp(prefix="biv-bench-explain-"))
    results = []
    try:
        pair = real_dll(work)
        if pair is not None:
            results.append(run_case("real DLL (vcomp140.dll), call+lea patch", pair, repeat))
        results.append(run_case("demo ffmpeg.dll, added loader section", demo_ffmpeg(work), repeat))
        results.append(
            run_case(
                f"worst case: {mib} MiB .text, every byte differs", worst_case(work, mib), repeat
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nexplanation of a divergent file (library call, best of {repeat}, warm cache)")
    print(f"{'case':<52} {'size':>10} {'explain':>10} {'read both':>10} {'changes':>8} {'rows':>5}")
    for r in results:
        print(
            f"{r['case']:<52} {r['bytes'] / MIB:>8.1f}Mi {r['seconds'] * 1000:>8.1f}ms "
            f"{r['read_both_seconds'] * 1000:>8.1f}ms {r['changes']:>8} {r['disassembly_rows']:>5}"
        )
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    doc = {"benchmark": "explain", "repeat": repeat, "results": results}
    (out_dir / f"explain-{stamp}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "explain-latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {out_dir / f'explain-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
