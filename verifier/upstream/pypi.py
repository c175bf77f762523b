"""PyPI: the JSON API of one release, and the wheel that fits the shipped artifact."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urljoin

from verifier.errors import ReferenceUnavailableError
from verifier.model import FileEntry
from verifier.record import record
from verifier.upstream.cache import is_sha256
from verifier.upstream.http import HttpClient

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,200}[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,127}$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]{0,254}$")


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def valid_version(version: str) -> bool:
    return bool(_VERSION.match(version))


def valid_filename(name: str) -> bool:
    return bool(_FILENAME.match(name))


@record
class PyPIFile:
    filename: str
    url: str
    sha256: str
    packagetype: str


def release_url(base: str, name: str, version: str) -> str:
    b = base if base.endswith("/") else base + "/"
    return f"{b}pypi/{quote(name, safe='')}/{quote(version, safe='')}/json"


def project_url(base: str, name: str) -> str:
    b = base if base.endswith("/") else base + "/"
    return f"{b}pypi/{quote(name, safe='')}/json"


def release_files(http: HttpClient, base: str, name: str, version: str) -> list[PyPIFile]:
    """The files of one release: ``/pypi/NAME/VERSION/json``, else ``releases`` of the project."""
    url = release_url(base, name, version)
    raw = http.get_bytes_or_none(url, what="PyPI release document")
    files: Any = None
    try:
        if raw is not None:
            doc: Any = json.loads(raw)
            files = doc.get("urls") if isinstance(doc, dict) else None
        else:
            url = project_url(base, name)
            doc = json.loads(http.get_bytes(url, what="PyPI project document"))
            rel = doc.get("releases") if isinstance(doc, dict) else None
            if not isinstance(rel, dict) or version not in rel:
                raise ReferenceUnavailableError(f"PyPI has no release {version}", where=url)
            files = rel[version]
    except ValueError as exc:
        raise ReferenceUnavailableError("PyPI answered with invalid JSON", where=url) from exc
    if not isinstance(files, list):
        raise ReferenceUnavailableError("PyPI release document has no 'urls'", where=url)
    out: list[PyPIFile] = []
    for f in files:
        if not isinstance(f, dict):
            continue
        digests = f.get("digests")
        sha = digests.get("sha256") if isinstance(digests, dict) else None
        fn, furl = f.get("filename"), f.get("url")
        if not (isinstance(fn, str) and isinstance(furl, str) and isinstance(sha, str)):
            continue
        if not is_sha256(sha.lower()) or not valid_filename(fn):
            continue
        # some indexes (mirrors) give file URLs relative to the project document
        furl = urljoin(project_url(base, name), furl)
        out.append(PyPIFile(fn, furl, sha.lower(), str(f.get("packagetype", ""))))
    return out


_PLATFORM_TAGS = {
    ("win32", "x64"): ("win_amd64",),
    ("win32", "ia32"): ("win32",),
    ("win32", "arm64"): ("win_arm64",),
    ("darwin", "x64"): ("x86_64", "universal2", "intel"),
    ("darwin", "arm64"): ("arm64", "universal2"),
    ("linux", "x64"): ("x86_64",),
    ("linux", "ia32"): ("i686",),
    ("linux", "arm64"): ("aarch64",),
    ("linux", "armv7l"): ("armv7l",),
}


def wheel_platform_tag(filename: str) -> str | None:
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    return parts[-1] if len(parts) >= 5 else None


def wheel_tags(filename: str) -> set[str]:
    """The expanded ``python-abi-platform`` tags of a wheel file name (``py2.py3-none-any``
    gives two)."""
    if not filename.endswith(".whl"):
        return set()
    parts = filename[:-4].split("-")
    if len(parts) < 5:
        return set()
    py, abi, plat = parts[-3:]
    return {f"{a}-{b}-{c}" for a in py.split(".") for b in abi.split(".") for c in plat.split(".")}


MAX_WHEEL_FILE = 64 << 10


def shipped_wheel_tags(entries: Iterable[FileEntry]) -> set[str]:
    """``Tag:`` lines of the ``*.dist-info/WHEEL`` files the artifact ships: they name the
    very wheel it was installed from (python, ABI and platform)."""
    out: set[str] = set()
    for e in entries:
        if not e.path.endswith(".dist-info/WHEEL") or e.blob is None or e.size > MAX_WHEEL_FILE:
            continue
        try:
            text = e.blob.read().decode("utf-8", "replace")
        except OSError:
            continue
        for line in text.splitlines()[:200]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "tag" and value.strip():
                out.add(value.strip().lower())
    return out


def choose_file(
    files: list[PyPIFile],
    platform: str | None,
    arch: str | None,
    where: str,
    shipped_tags: set[str] | None = None,
) -> PyPIFile:
    """The wheel the artifact's ``WHEEL`` tags name, else the wheel for (platform, arch), else
    a pure wheel; refuses to guess between others."""
    wheels = [f for f in files if f.filename.endswith(".whl")]
    if shipped_tags:
        named = [f for f in wheels if wheel_tags(f.filename.lower()) & shipped_tags]
        if named:
            return named[0]
    if platform and arch:
        wants = _PLATFORM_TAGS.get((platform, arch), ())
        prefix: dict[str, tuple[str, ...]] = {
            "win32": ("win",),
            "darwin": ("macosx",),
            "linux": ("manylinux", "musllinux", "linux"),
        }
        pre = prefix.get(platform, ())
        for f in wheels:
            tag = wheel_platform_tag(f.filename) or ""
            for t in tag.split("."):
                if pre and t.startswith(pre) and any(t.endswith(w) for w in wants):
                    return f
    pure = [f for f in wheels if (wheel_platform_tag(f.filename) or "") == "any"]
    if pure:
        return pure[0]
    if len(wheels) == 1:
        return wheels[0]
    raise ReferenceUnavailableError(
        f"no wheel for {platform or '?'}-{arch or '?'} among {len(files)} file(s); "
        "name one with pypi:NAME==VERSION:FILENAME",
        where=where,
    )
