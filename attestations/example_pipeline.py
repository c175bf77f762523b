#!/usr/bin/env python3
"""Run a small Electron release pipeline under ``in-toto-run`` (the example for biv's layout).

    python attestations/example_pipeline.py WORKDIR --key functionary.pem [--tamper build]

Steps (each recorded as ``STEP.KEYID.link`` in WORKDIR/links):
  fetch-electron  copy the Electron release into electron/ (here: a tiny synthetic release
                  written to .release/, standing in for the download)
  build           copy it to dist/, rename electron.exe to the app's name, add resources/app.asar
  sign            "sign" dist/*.exe (append a signature blob)
  package         copy dist/ to package/

``--tamper build`` makes the build step also patch dist/ffmpeg.dll (as in 3CX);
``--tamper after-sign`` changes dist/ffmpeg.dll after the sign step recorded its products.
Then ``in_toto_verify`` (biv verify --layout ...) fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

UPSTREAM = {
    "electron.exe": b"MZ electron main executable " * 64,
    "ffmpeg.dll": b"MZ ffmpeg " * 128,
    "d3dcompiler_47.dll": b"MZ d3dcompiler (Microsoft signed) " * 64,
    "resources/default_app.asar": b"default app " * 16,
    "LICENSE": b"MIT License (Electron)\n",
}
APP_EXE = "MyApp.exe"


def in_toto_run() -> str:
    here = Path(sys.executable).parent / "in-toto-run"
    return str(here) if here.exists() else (shutil.which("in-toto-run") or "in-toto-run")


def _shell_steps(tamper: str | None) -> list[tuple[str, list[str], list[str], str]]:
    """(step, materials, products, shell command) for the four steps."""
    build = (
        "cp -R electron dist && mv dist/electron.exe dist/"
        + APP_EXE
        + " && cp src/main.js dist/resources/app.asar"
    )
    if tamper == "build":
        build += " && printf '\\376\\355\\372\\316 loader' >> dist/ffmpeg.dll"
    return [
        ("fetch-electron", [], ["electron"], "cp -R .release electron"),
        ("build", ["electron", "src"], ["dist"], build),
        ("sign", ["dist"], ["dist"], f"printf 'SIGNATURE by MyApp Ltd' >> dist/{APP_EXE}"),
        ("package", ["dist"], ["package"], "cp -R dist package"),
    ]


def prepare(work: Path) -> Path:
    """Sources and the (synthetic) upstream release; returns the links directory."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "src").mkdir(exist_ok=True)
    (work / "src" / "main.js").write_text("console.log('my app')\n")
    for rel, data in UPSTREAM.items():  # stands in for the download of the release
        p = work / ".release" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    links = work / "links"
    links.mkdir(exist_ok=True)
    return links


def run_step(work: Path, key: str, name: str, tamper: str | None = None) -> None:
    """Run one step under in-toto-run in ``work``; its link goes to ``work/links``."""
    for step, materials, products, shell in _shell_steps(tamper):
        if step != name:
            continue
        cmd = [
            in_toto_run(),
            "-n",
            name,
            "--signing-key",
            str(Path(key).resolve()),
            "-d",
            str(work / "links"),
        ]
        if materials:
            cmd += ["-m", *materials]
        cmd += ["-p", *products, "--", "sh", "-c", shell]
        subprocess.run(cmd, cwd=work, check=True, capture_output=True, timeout=120)
        return
    raise ValueError(f"unknown step {name!r}")


def run_pipeline(work: Path, key: str, tamper: str | None = None) -> Path:
    """Run the four steps under in-toto-run in ``work``; returns the links directory."""
    links = prepare(work)
    for name, _, _, _ in _shell_steps(tamper):
        run_step(work, key, name, tamper)
        if tamper == "after-sign" and name == "sign":
            with (work / "dist" / "ffmpeg.dll").open("ab") as fh:
                fh.write(b"\xfe\xed\xfa\xce")
    return links


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run the example pipeline under in-toto-run")
    ap.add_argument("workdir", nargs="?")
    ap.add_argument("--key", help="functionary private PEM key")
    ap.add_argument("--tamper", choices=["build", "after-sign"])
    a = ap.parse_args(argv)
    if not a.workdir or not a.key:
        ap.error("WORKDIR and --key are required")
    links = run_pipeline(Path(a.workdir), a.key, a.tamper)
    print(f"links in {links}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
