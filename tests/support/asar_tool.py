"""The real ``@electron/asar`` packer from npm, installed at test time into the test cache.

``asar_pack(src, dest, unpack="*.node")`` packs a folder the way Electron apps are packed
(electron-builder and Electron Forge use this module). Version 3.4.1 is the last one that
runs on Node 20 (4.x needs Node 22). npm checks the registry's integrity for every package
it installs. Without node/npm, or when npm cannot reach the registry on the first run, the
test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fetch import CACHE

ASAR_VERSION = "3.4.1"
_DIR = CACHE / "npm-tools" / f"electron-asar-{ASAR_VERSION}"
_PKG = _DIR / "node_modules" / "@electron" / "asar"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    _DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(_DIR.parent / ".asar-install.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _installed() -> bool:
    try:
        doc = json.loads((_PKG / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return doc.get("version") == ASAR_VERSION and (_PKG / "bin" / "asar.js").is_file()


def asar_cli() -> Path:
    """The ``asar.js`` command of @electron/asar, installing it on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the real @electron/asar packer")
    with _locked():
        if not _installed():
            shutil.rmtree(_DIR, ignore_errors=True)
            _DIR.mkdir(parents=True)
            cmd = [
                npm, "install", "--prefix", str(_DIR), "--no-audit", "--no-fund",
                "--ignore-scripts", "--no-save", "--loglevel=error",
                f"@electron/asar@{ASAR_VERSION}",
            ]  # fmt: skip
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if r.returncode != 0 or not _installed():
                shutil.rmtree(_DIR, ignore_errors=True)
                pytest.skip(
                    f"cannot install @electron/asar@{ASAR_VERSION} with npm (registry "
                    f"unreachable?): {(r.stderr or r.stdout).strip()[-300:]}"
                )
    return _PKG / "bin" / "asar.js"


def asar_pack(src: Path, dest: Path, *, unpack: str | None = None) -> None:
    """``asar pack SRC DEST [--unpack GLOB]``: files matching GLOB go to DEST.unpacked/."""
    cmd = ["node", str(asar_cli()), "pack", str(src), str(dest)]
    if unpack:
        cmd += ["--unpack", unpack]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)


def asar_list(archive: Path) -> list[str]:
    """``asar list``: the archive's paths as the real tool sees them."""
    cmd = ["node", str(asar_cli()), "list", str(archive)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    return [line.lstrip("/\\") for line in out.stdout.splitlines() if line.strip()]
