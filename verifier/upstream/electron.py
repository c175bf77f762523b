"""Electron releases: detect version/platform/arch, build download URLs, two-source proof.

URLs follow @electron/get (``artifact-utils``)::

    {mirror}{customDir}/{file}
    mirror    = --mirror | $ELECTRON_MIRROR (and the npm_config_electron_mirror spellings)
                | https://github.com/electron/electron/releases/download/
    customDir = $ELECTRON_CUSTOM_DIR | v{version}; "{{ version }}" becomes the version without "v"

The zip's sha256 must match both ``SHASUMS256.txt`` of the release (from the same host as the
zip) and ``checksums.json`` inside the ``electron`` npm package of the same version (from the
npm registry, the tarball checked against ``dist.integrity``). Independent hosts must agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import plistlib
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from verifier.errors import ReferenceMismatchError, ReferenceUnavailableError, UsageError
from verifier.model import FileEntry, FileFormat, Inventory
from verifier.record import record
from verifier.upstream import npm
from verifier.upstream.cache import is_sha256
from verifier.upstream.http import HttpClient
from verifier.upstream.options import DEFAULT_ELECTRON_BASE, FetchOptions
from verifier.upstream.target import choose

NIGHTLY_BASE = "https://github.com/electron/nightlies/releases/download/"
VERSION_RE = re.compile(r"^v?(\d{1,4}\.\d{1,4}\.\d{1,4}(?:-[0-9A-Za-z.]{1,64})?)$")
_MARKER_RE = re.compile(r"(?:Electron/)?v?(\d{1,4}\.\d{1,4}\.\d{1,4}(?:-[0-9A-Za-z.]{1,64})?)")

_PLATFORM = {FileFormat.PE: "win32", FileFormat.MACHO: "darwin", FileFormat.ELF: "linux"}
_MAIN_NAMES = ("electron.exe", "Electron Framework", "electron")


def normalize_version(text: str) -> str:
    m = VERSION_RE.match(text.strip())
    if not m:
        raise UsageError(f"not an Electron version: {text!r} (expected X.Y.Z)")
    return m.group(1)


# --- detection ----------------------------------------------------------------------------


def detect_version(shipped: Inventory) -> str | None:
    """Electron version from markers, the framework's Info.plist, or a ``version`` file."""
    found: Counter[str] = Counter()
    for e in shipped.entries:
        raw = e.facts.markers.get("electron_version")
        if raw:
            m = _MARKER_RE.search(raw)
            if m:
                found[m.group(1)] += 1
    if found:
        return found.most_common(1)[0][0]
    for e in shipped.entries:
        if e.path.endswith("Info.plist") and "Electron Framework.framework" in e.path:
            v = _plist_version(e)
            if v:
                return v
    for e in shipped.entries:
        if e.path == "version" or e.path.endswith("/version"):
            v = _small_text(e, 64)
            if v:
                m = VERSION_RE.match(v.strip())
                if m:
                    return m.group(1)
    return None


def _small_text(e: FileEntry, cap: int) -> str | None:
    if e.blob is None or e.size > cap:
        return None
    try:
        return e.blob.read().decode("utf-8", "replace")
    except OSError:
        return None


def _plist_version(e: FileEntry) -> str | None:
    if e.blob is None or e.size > 1 << 20:
        return None
    try:
        d = plistlib.loads(e.blob.read())
    except (OSError, ValueError, plistlib.InvalidFileException, TypeError, KeyError):
        return None
    if not isinstance(d, dict):
        return None
    for k in ("CFBundleVersion", "CFBundleShortVersionString"):
        v = d.get(k)
        if isinstance(v, str):
            m = VERSION_RE.match(v.strip())
            if m:
                return m.group(1)
    return None


def detect_targets(shipped: Inventory) -> list[tuple[str, str]]:
    """(platform, arch) pairs; a universal macOS app gives darwin-x64 and darwin-arm64.

    The choice is ``upstream.target.choose``'s (main executable, then majority of code
    bytes); where candidates remain, all of them.
    """
    return sorted({t for option in choose(shipped).options for t in option})


# --- URLs ---------------------------------------------------------------------------------


def _mirror_var(env: Mapping[str, str], name: str) -> str | None:
    for k in (
        f"NPM_CONFIG_ELECTRON_{name.upper()}",
        f"npm_config_electron_{name}",
        f"npm_package_config_electron_{name}",
        f"ELECTRON_{name.upper()}",
    ):
        v = env.get(k)
        if v:
            return v
    return None


def release_base(opts: FetchOptions, version: str) -> str:
    """The directory URL (ending in '/') holding the release's zips and SHASUMS256.txt."""
    env: Mapping[str, str] = opts.env if opts.env is not None else os.environ
    if "nightly" in version:
        base = opts.mirror or _mirror_var(env, "nightly_mirror") or NIGHTLY_BASE
    else:
        base = opts.mirror or _mirror_var(env, "mirror") or DEFAULT_ELECTRON_BASE
    custom = opts.electron_custom_dir or _mirror_var(env, "custom_dir") or f"v{version}"
    custom = custom.replace("{{ version }}", version)
    if not base.endswith("/"):
        base += "/"
    return f"{base}{custom.strip('/')}/"


def zip_name(artifact: str, version: str, platform: str, arch: str) -> str:
    return f"{artifact}-v{version}-{platform}-{arch}.zip"


# --- checksum documents -------------------------------------------------------------------


def parse_shasums(text: str, where: str) -> dict[str, str]:
    """``SHASUMS256.txt``: lines of ``<hex> *<name>`` (or two spaces); bad lines are refused."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not is_sha256(parts[0].lower()):
            raise ReferenceMismatchError(f"SHASUMS256.txt line {n} is malformed", where=where)
        name = parts[1].strip().lstrip("*")
        if name in out and out[name] != parts[0].lower():
            raise ReferenceMismatchError(f"SHASUMS256.txt lists {name} twice", where=where)
        out[name] = parts[0].lower()
    if not out:
        raise ReferenceMismatchError("SHASUMS256.txt is empty", where=where)
    return out


def parse_checksums_json(data: bytes, where: str) -> dict[str, str]:
    """``checksums.json`` of the electron npm package: {file name: sha256 hex}."""
    try:
        d = json.loads(data)
    except ValueError as exc:
        raise ReferenceMismatchError("checksums.json is not JSON", where=where) from exc
    if not isinstance(d, dict) or not d:
        raise ReferenceMismatchError("checksums.json is not a non-empty object", where=where)
    out: dict[str, str] = {}
    for k, v in d.items():
        if not isinstance(v, str) or not is_sha256(v.lower()):
            raise ReferenceMismatchError(f"checksums.json entry {k!r} is malformed", where=where)
        out[str(k)] = v.lower()
    return out


@record
class ReleaseChecksums:
    """Both independent checksum sources of one Electron release."""

    shasums_url: str
    shasums: Mapping[str, str]
    npm_url: str  # the tarball, proven by the registry's dist.integrity
    npm: Mapping[str, str]


def fetch_checksums(
    http: HttpClient, opts: FetchOptions, version: str, tmp_dir: str
) -> ReleaseChecksums:
    base = release_base(opts, version)
    shasums_url = base + "SHASUMS256.txt"
    text = http.get_bytes(shasums_url, what="SHASUMS256.txt").decode("utf-8", "replace")
    shasums = parse_shasums(text, shasums_url)

    doc_url = npm.version_doc_url(opts.npm_registry, "electron", version)
    doc = npm.version_doc(http, opts.npm_registry, "electron", version)
    tarball, sha512 = npm.dist_of(doc, doc_url)
    got = http.download(tarball, tmp_dir, label=f"electron-{version}.tgz")
    try:
        if got.sha512 != sha512:
            raise ReferenceMismatchError(
                "electron npm tarball does not match the registry's dist.integrity "
                f"(sha512 {got.sha512[:16]}..., expected {sha512[:16]}...)",
                where=tarball,
            )
        data = npm.read_tar_member(got.path, "package/checksums.json")
    finally:
        with contextlib.suppress(OSError):
            Path(got.path).unlink()
    if data is None:
        raise ReferenceUnavailableError(
            f"electron@{version} on npm has no checksums.json: cannot prove the release "
            "with two independent sources",
            where=tarball,
        )
    return ReleaseChecksums(shasums_url, shasums, tarball, parse_checksums_json(data, tarball))
