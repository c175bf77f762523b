"""Content-addressed cache of upstream archives, proofs and reference inventories.

Layout under the cache root (``platformdirs.user_cache_dir("biv")`` or ``--cache-dir``)::

    blobs/sha256/ab/abcdef...        archives and documents, named by their sha256
    proofs/<sha256 of key>.json      what was proven for a source: component + archive sha256
    refs/<archive sha256>-<analysis version>.json   Reference.to_dict() of that archive
    locks/<name>.lock                fcntl locks so concurrent runs do not fetch twice
    tmp/                             partial downloads (same filesystem, for os.replace)

Nothing read from the cache is trusted: blobs are re-hashed on read, and a reference
inventory is checked against the sha256 its proof record holds. A bad entry is deleted
and treated as a miss, so it is fetched again. Every write is tempfile + ``os.replace``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from verifier import hashing

_HEX = frozenset("0123456789abcdef")


def is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def sha256_file(path: str | Path) -> str:
    return hashing.sha256_file(str(path))


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Cache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    # --- blobs ------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / "blobs" / "sha256" / sha256[:2] / sha256

    def get_blob(self, sha256: str) -> str | None:
        """The path of a cached blob after re-hashing it; None (and the entry removed) if bad."""
        p = self.blob_path(sha256)
        if not p.is_file():
            return None
        if sha256_file(p) != sha256:
            with contextlib.suppress(OSError):
                p.unlink()
            return None
        return str(p)

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def put_blob_file(self, tmp_path: str, sha256: str) -> str:
        """Move a file already hashed to ``sha256`` into place (tmp_path must be in ``tmp``)."""
        dest = self.blob_path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        Path(tmp_path).replace(dest)
        return str(dest)

    def put_blob_bytes(self, data: bytes) -> tuple[str, str]:
        sha = hashlib.sha256(data).hexdigest()
        dest = self.blob_path(sha)
        if not (dest.is_file() and dest.stat().st_size == len(data)):
            _atomic_write(dest, data)
        return sha, str(dest)

    def get_blob_bytes(self, sha256: str) -> bytes | None:
        p = self.blob_path(sha256)
        try:
            data = p.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            with contextlib.suppress(OSError):
                p.unlink()
            return None
        return data

    def tmp_dir(self) -> str:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return str(self.tmp)

    # --- JSON records -----------------------------------------------------------------

    def _record_path(self, kind: str, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad record name {name!r}")
        return self.root / kind / f"{name}.json"

    def get_proof(self, key: str) -> dict[str, Any] | None:
        d = _read_json(self._record_path("proofs", key_digest(key)))
        if d is None or d.get("key") != key:
            return None
        return d

    def put_proof(self, key: str, record: Mapping[str, Any]) -> None:
        d = dict(record)
        d["key"] = key
        _atomic_write(self._record_path("proofs", key_digest(key)), _dumps(d))

    def drop_proof(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._record_path("proofs", key_digest(key)).unlink()

    def get_ref(self, archive_sha256: str, version: str, expect_sha256: str | None) -> object:
        """The cached reference inventory, only if its bytes hash to ``expect_sha256``."""
        p = self._record_path("refs", f"{archive_sha256}-{_safe(version)}")
        try:
            data = p.read_bytes()
        except OSError:
            return None
        if expect_sha256 is None or hashlib.sha256(data).hexdigest() != expect_sha256:
            with contextlib.suppress(OSError):
                p.unlink()
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def put_ref(self, archive_sha256: str, version: str, doc: Mapping[str, Any]) -> str:
        """Store a reference inventory; returns the sha256 of the stored bytes."""
        data = _dumps(doc)
        _atomic_write(self._record_path("refs", f"{archive_sha256}-{_safe(version)}"), data)
        return hashlib.sha256(data).hexdigest()

    # --- locking ----------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An exclusive lock between processes (and threads) sharing this cache."""
        d = self.root / "locks"
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / f"{key_digest(key)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_+" else "_" for c in text)


def _dumps(d: Any) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _read_json(p: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(p.read_bytes())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _atomic_write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(dest)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
