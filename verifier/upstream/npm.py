"""npm registry: version documents, ``dist.integrity`` (SRI sha512), members of tarballs."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from verifier.errors import ReferenceMismatchError, ReferenceUnavailableError

if TYPE_CHECKING:  # policy loading validates npm names: keep this module light
    from verifier.upstream.http import HttpClient

_NAME = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$", re.IGNORECASE)
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name)) and len(name) <= 214


def valid_version(version: str) -> bool:
    return bool(_VERSION.match(version)) and len(version) <= 128


def version_doc_url(registry: str, name: str, version: str) -> str:
    base = registry if registry.endswith("/") else registry + "/"
    return f"{base}{quote(name, safe='@')}/{quote(version, safe='')}"


def version_doc(http: HttpClient, registry: str, name: str, version: str) -> dict[str, Any]:
    url = version_doc_url(registry, name, version)
    raw = http.get_bytes(url, what="npm version document")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ReferenceUnavailableError(
            "npm registry answered with invalid JSON", where=url
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("dist"), dict):
        raise ReferenceUnavailableError("npm version document has no 'dist'", where=url)
    if doc.get("version") not in (None, version):
        raise ReferenceMismatchError(
            f"npm registry returned version {doc.get('version')!r}, asked for {version!r}",
            where=url,
        )
    return doc


def dist_of(doc: dict[str, Any], where: str) -> tuple[str, str]:
    """(tarball URL, sha512 hex) from a version document's ``dist``."""
    dist = doc["dist"]
    tarball = dist.get("tarball")
    if not isinstance(tarball, str) or not tarball.startswith(("https://", "http://")):
        raise ReferenceUnavailableError("npm version document has no tarball URL", where=where)
    sha512 = sri_sha512(dist.get("integrity"))
    if sha512 is None:
        raise ReferenceMismatchError(
            "npm version document has no sha512 dist.integrity (sha1 shasum alone is not proof)",
            where=where,
        )
    return tarball, sha512


def sri_sha512(integrity: object) -> str | None:
    """The sha512 of a Subresource Integrity string (``sha512-BASE64``), as hex."""
    if not isinstance(integrity, str):
        return None
    for token in integrity.split():
        alg, _, b64 = token.partition("-")
        if alg != "sha512":
            continue
        b64 = b64.split("?", 1)[0]
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 64:
            return raw.hex()
    return None


def read_tar_member(path: str | Path, member: str, max_bytes: int = 16 << 20) -> bytes | None:
    """One regular file from a (gzipped) tarball, size-capped; None when absent."""
    try:
        with tarfile.open(path, "r:*") as tf:
            count = 0
            for info in tf:
                count += 1
                if count > 100_000:
                    raise ReferenceUnavailableError("tarball has too many members", where=str(path))
                if info.name.lstrip("./") != member or not info.isfile():
                    continue
                if info.size > max_bytes:
                    raise ReferenceUnavailableError(
                        f"{member} larger than {max_bytes} bytes", where=str(path)
                    )
                fh = tf.extractfile(info)
                if fh is None:
                    return None
                with contextlib.closing(fh):
                    return fh.read(max_bytes + 1)[:max_bytes]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ReferenceUnavailableError(f"cannot read tarball: {exc}", where=str(path)) from exc
    return None
