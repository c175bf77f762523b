"""Fetch public test data from PyPI or npm at test time, pinned by sha256 and cached.

Nothing third-party is committed: tests name the file and its sha256; the first run downloads
it into ``tests/.cache/`` (or ``$BIV_TEST_CACHE``), later runs reuse it after re-checking the
digest. A test that cannot get its data (no network) is skipped with the reason, never passed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

CACHE = Path(os.environ.get("BIV_TEST_CACHE", Path(__file__).resolve().parent.parent / ".cache"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_pinned(url: str, sha256: str, name: str | None = None) -> Path:
    """Return a local path to the bytes at ``url`` whose sha256 must be ``sha256``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    dest = CACHE / f"{sha256[:16]}-{name or url.rsplit('/', 1)[-1]}"
    if dest.exists() and _sha256(dest) == sha256:
        return dest
    try:
        with requests.get(url, stream=True, timeout=60) as r:
            r.raise_for_status()
            fd, tmp = tempfile.mkstemp(dir=CACHE, prefix=".part-")
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in r.iter_content(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
    except requests.RequestException as exc:
        pytest.skip(f"test data unavailable ({url}): {exc}")
    if h.hexdigest() != sha256:
        os.unlink(tmp)
        raise AssertionError(f"{url}: sha256 {h.hexdigest()} != pinned {sha256}")
    os.replace(tmp, dest)
    return dest


def pypi_file(project: str, version: str, filename: str, sha256: str) -> Path:
    """A file of a PyPI release, located through PyPI's JSON API and pinned by sha256.

    Uses the project document (``/pypi/NAME/json``, ``releases[VERSION]``): some PyPI
    front-ends answer 404 for the per-version document. Relative URLs are resolved against
    files.pythonhosted.org.
    """
    cached = CACHE / f"{sha256[:16]}-{filename}"
    if cached.exists() and _sha256(cached) == sha256:
        return cached
    try:
        meta = requests.get(f"https://pypi.org/pypi/{project}/json", timeout=60)
        meta.raise_for_status()
    except requests.RequestException as exc:
        pytest.skip(f"PyPI unavailable: {exc}")
    for f in meta.json().get("releases", {}).get(version, []):
        if f["filename"] == filename:
            url = urljoin("https://files.pythonhosted.org/", f["url"])
            return fetch_pinned(url, sha256, filename)
    raise AssertionError(f"{project}=={version} has no file {filename}")


def npm_tarball(package: str, version: str, sha256: str) -> Path:
    """The tarball of an npm package version, pinned by sha256."""
    base = package.rsplit("/", 1)[-1]
    url = f"https://registry.npmjs.org/{package}/-/{base}-{version}.tgz"
    return fetch_pinned(url, sha256, f"{base}-{version}.tgz")


# msvc-runtime 14.51.36231, cp312 win_amd64: Microsoft-signed DLLs with nested signatures and
# RFC 3161 timestamps (https://pypi.org/pypi/msvc-runtime/json)
MSVC_WHEEL_URL = (
    "https://files.pythonhosted.org/packages/98/33/"
    "be9ef68901200813fc174a06758b4ae48ca4eb58fa783280dd879d5fd048/"
    "msvc_runtime-14.51.36231-cp312-cp312-win_amd64.whl"
)
MSVC_WHEEL_SHA256 = "89f70d1a37bb64164cdb09d02dd82d6b1400e1310be2995b4ed5a9f23efe2222"


def msvc_wheel() -> Path:
    """The pinned msvc-runtime wheel (cached)."""
    return fetch_pinned(MSVC_WHEEL_URL, MSVC_WHEEL_SHA256)


# rfc8785 0.1.2, the wheel whose production Sigstore bundle is tests/fixtures/sigstore/
# rfc8785-0.1.2-py3-none-any.whl.sigstore (https://pypi.org/pypi/rfc8785/json)
RFC8785_WHEEL = "rfc8785-0.1.2-py3-none-any.whl"
RFC8785_WHEEL_SHA256 = "c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201"


def rfc8785_wheel() -> Path:
    """The pinned rfc8785 0.1.2 wheel from PyPI (cached)."""
    return pypi_file("rfc8785", "0.1.2", RFC8785_WHEEL, RFC8785_WHEEL_SHA256)


# MarkupSafe 3.0.2 universal2 wheel: arm64 slice linker-signed, x86_64 slice unsigned
MARKUPSAFE_URL = (
    "https://files.pythonhosted.org/packages/22/09/d1f21434c97fc42f09d290cbb6350d44eb12f09cc62c9"
    "476effdb33a18aa/MarkupSafe-3.0.2-cp312-cp312-macosx_10_13_universal2.whl"
)
MARKUPSAFE_SHA256 = "9778bd8ab0a994ebf6f84c2b949e65736d5575320a17ae8984a77fab08db94cf"
