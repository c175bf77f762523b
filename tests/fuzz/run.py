"""Run one fuzz target under atheris (coverage-guided, libFuzzer's engine).

    python tests/fuzz/run.py TARGET [--seconds N] [--workdir DIR]

The corpus grows in ``DIR/corpus/TARGET`` (seeded from ``tests/fuzz/seeds/TARGET``);
crashes, hangs (``-timeout``) and memory blow-ups land in ``DIR/crashes/TARGET/``. A crash
input goes to ``tests/fuzz/regressions/TARGET/`` once fixed, so that ``make test`` replays
it. The last line printed is a JSON summary: target, seconds, executions, crashes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _child(target: str, args: list[str]) -> None:
    """Inside the fuzzing process: instrument biv, then hand over to libFuzzer."""
    import atheris

    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    with atheris.instrument_imports(include=["verifier"]):
        import verifier.analysis
        import verifier.binary.elf
        import verifier.binary.macho
        import verifier.binary.pe
        import verifier.policy.load
        import verifier.signing.asn1
        import verifier.signing.authenticode
        import verifier.signing.codesign
        import verifier.signing.codesign_cms
        import verifier.unpack.asar
        import verifier.unpack.tarreader
        import verifier.unpack.zipreader
        import verifier.upstream.path
        import verifier.upstream.refs_document

        with contextlib.suppress(ImportError):
            import verifier.unpack.zipcheck  # noqa: F401
    from fuzz.targets import run_one

    def one(data: bytes) -> None:
        run_one(target, data)

    atheris.Setup([sys.argv[0], *args], one)
    atheris.Fuzz()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    p.add_argument("--workdir", default=str(ROOT / ".fuzz"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ns, rest = p.parse_known_args()
    if ns.child:
        _child(ns.target, rest)
        return 0
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from fuzz.targets import TARGETS

    if ns.target not in TARGETS:
        p.error(f"unknown target {ns.target!r}; one of {', '.join(TARGETS)}")
    work = Path(ns.workdir)
    corpus = work / "corpus" / ns.target
    crashes = work / "crashes" / ns.target
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    seeds = HERE / "seeds" / ns.target
    regressions = HERE / "regressions" / ns.target
    dirs = [str(corpus), str(seeds)] + ([str(regressions)] if regressions.is_dir() else [])
    cmd = [
        sys.executable,
        __file__,
        ns.target,
        "--child",
        f"-max_total_time={ns.seconds}",
        "-timeout=20",
        "-rss_limit_mb=3072",
        "-max_len=262144",
        f"-artifact_prefix={crashes}/",
        "-print_final_stats=1",
        *dirs,
    ]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.monotonic() - start
    log = work / f"{ns.target}.log"
    log.write_text(proc.stderr)
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    done = re.findall(r"Done (\d+) runs", proc.stderr)
    execs = int(runs[-1]) if runs else int(done[-1]) if done else None
    found = sorted(p.name for p in crashes.iterdir())
    print(
        json.dumps(
            {
                "target": ns.target,
                "seconds": round(elapsed),
                "executions": execs,
                "crashes": found,
                "exit": proc.returncode,
                "log": str(log),
            }
        )
    )
    return 0 if proc.returncode == 0 and not found else 1


if __name__ == "__main__":
    sys.exit(main())
