"""``--refs URL --refs-root root.json``: reference inventories over TUF (``tuf.ngclient``).

The repository at URL (``URL/metadata/``, ``URL/targets/``, as ``tuf_publish`` lays it out)
is read with python-tuf's Updater, which rejects rollback, freeze (expired metadata),
tampered targets and metadata signed by keys the trusted root does not name. The trusted
state and the downloaded targets live in ``<cache_dir>/tuf/<url digest>/``; cached targets are
re-checked against the signed hashes before use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from verifier import __version__
from verifier.errors import MalformedInputError, ReferenceUnavailableError, UsageError
from verifier.model import Reference
from verifier.record import record
from verifier.upstream.cache import Cache, is_sha256
from verifier.upstream.distrust_lists import KnownBad, RevokedCert, parse_time
from verifier.upstream.options import default_cache_dir
from verifier.upstream.tuf_publish import INDEX

if TYPE_CHECKING:
    from tuf.ngclient import Updater  # type: ignore[attr-defined]

# python-tuf is loaded where it is used (only with --refs): ``biv verify`` without it never
# pays for the import


class RefsVerificationError(ReferenceUnavailableError):
    """The TUF repository failed verification (rollback, freeze, tampering, wrong key).

    Exit 3 like any unobtainable reference; its own type so callers can tell an attack from an
    outage.
    """


@record
class RefsBundle:
    references: tuple[Reference, ...]
    known_bad: Mapping[str, KnownBad] = field(default_factory=dict)  # sha256 -> entry
    revoked: tuple[RevokedCert, ...] = ()
    url: str = ""
    versions: Mapping[str, int] = field(default_factory=dict)

    def is_known_bad(self, sha256: str) -> KnownBad | None:
        return self.known_bad.get(sha256.lower())

    def revocation(self, thumbprint: str, signed_at: datetime | None) -> RevokedCert | None:
        """The revocation that distrusts a signature by this certificate made at ``signed_at``.

        Without a proven signing time the signature is distrusted whatever its date.
        """
        for r in self.revoked:
            if r.sha256 == thumbprint.lower() and (
                signed_at is None or signed_at >= r.distrust_datetime
            ):
                return r
        return None


def metadata_dir(url: str, cache_dir: str | None = None) -> Path:
    """Where the verified TUF metadata of the repository at ``url`` is kept."""
    base = url if url.endswith("/") else url + "/"
    return _dir_for(cache_dir or default_cache_dir(), base) / "metadata"


def _dir_for(cache_dir: str, url: str) -> Path:
    return Path(cache_dir) / "tuf" / hashlib.sha256(url.encode()).hexdigest()[:24]


def load_refs(
    url: str,
    root_path: str,
    cache_dir: str | None = None,
    *,
    timeout: float = 30.0,
    offline: bool = False,
) -> RefsBundle:
    """Refresh the TUF repository at ``url`` and return its references and distrust lists.

    ``offline`` uses only the metadata and targets cached by an earlier run, verified again
    (signatures, expiry, hashes); nothing cached gives ``ReferenceUnavailableError``.
    """
    base = url if url.endswith("/") else url + "/"
    if not base.startswith(("https://", "http://")):
        raise UsageError("--refs needs an http(s) URL", where=url)
    try:
        root_bytes = Path(root_path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the trusted root: {exc.strerror}", where=root_path) from exc
    work = _dir_for(cache_dir or default_cache_dir(), base)
    meta_dir, tgt_dir = work / "metadata", work / "targets"
    meta_dir.mkdir(parents=True, exist_ok=True)
    tgt_dir.mkdir(parents=True, exist_ok=True)
    have_state = (meta_dir / "root.json").exists()
    with Cache(cache_dir or default_cache_dir()).lock(f"tuf:{base}"):
        if offline:
            return _load_offline(base, meta_dir, tgt_dir, have_state)
        return _load_online(base, meta_dir, tgt_dir, have_state, root_bytes, timeout)


def _load_online(
    base: str, meta_dir: Path, tgt_dir: Path, have_state: bool, root_bytes: bytes, timeout: float
) -> RefsBundle:
    from tuf.api import exceptions as tuf_exc
    from tuf.ngclient import Updater  # type: ignore[attr-defined]
    from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

    try:
        updater = Updater(
            metadata_dir=str(meta_dir),
            metadata_base_url=base + "metadata/",
            target_dir=str(tgt_dir),
            target_base_url=base + "targets/",
            fetcher=Urllib3Fetcher(
                socket_timeout=max(1, int(timeout)), app_user_agent=f"biv/{__version__}"
            ),
            # the trusted root given by the user starts the chain; later runs continue from the
            # root they already trust (so a rotated root is not rolled back)
            bootstrap=None if have_state else root_bytes,
        )
        updater.refresh()
        return _bundle(base, lambda name: _target(updater, name))
    except (tuf_exc.RepositoryError, tuf_exc.DownloadLengthMismatchError) as exc:
        raise RefsVerificationError(
            f"TUF verification failed: {type(exc).__name__}: {exc}", where=base
        ) from exc
    except tuf_exc.DownloadError as exc:
        raise ReferenceUnavailableError(
            f"cannot download TUF metadata or targets: {type(exc).__name__}: {exc}", where=base
        ) from exc
    except (MalformedInputError, ValueError, KeyError, TypeError) as exc:
        raise RefsVerificationError(f"signed target is not valid: {exc}", where=base) from exc
    except OSError as exc:
        raise ReferenceUnavailableError(f"TUF cache error: {exc}", where=str(meta_dir)) from exc


def _bundle(base: str, get: Callable[[str], bytes]) -> RefsBundle:
    index = _json(get(INDEX))
    names = index.get("references", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise MalformedInputError("index.json: 'references' is not a list of names")
    refs = tuple(Reference.from_dict(_json(get(n))) for n in names)
    known_bad = _known_bad(_json(get(str(index.get("known_bad")))))
    revoked = _revoked(_json(get(str(index.get("revoked")))))
    return RefsBundle(refs, known_bad, revoked, base)


def _load_offline(base: str, meta_dir: Path, tgt_dir: Path, have_state: bool) -> RefsBundle:
    """Verify the cached trusted state again, without any network access."""
    from tuf.api import exceptions as tuf_exc
    from tuf.api.metadata import Targets  # type: ignore[attr-defined]
    from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
    from tuf.ngclient.config import EnvelopeType

    if not have_state:
        raise ReferenceUnavailableError(
            "offline mode and no cached TUF state for this repository", where=base
        )
    try:
        tset = TrustedMetadataSet((meta_dir / "root.json").read_bytes(), EnvelopeType.METADATA)
        tset.update_timestamp((meta_dir / "timestamp.json").read_bytes())
        tset.update_snapshot((meta_dir / "snapshot.json").read_bytes())
        tset.update_targets((meta_dir / "targets.json").read_bytes())
        targets: Targets = tset.targets

        def get(name: str) -> bytes:
            info = targets.targets.get(name)
            if info is None:
                raise tuf_exc.RepositoryError(f"target {name!r} is not in the signed targets")
            data = (tgt_dir / quote(name, "")).read_bytes()
            info.verify_length_and_hashes(data)
            return data

        return _bundle(base, get)
    except tuf_exc.RepositoryError as exc:
        raise RefsVerificationError(
            f"cached TUF state failed verification: {type(exc).__name__}: {exc}", where=base
        ) from exc
    except OSError as exc:
        raise ReferenceUnavailableError(
            f"offline mode and the TUF cache is incomplete: {exc.strerror}", where=base
        ) from exc
    except (MalformedInputError, ValueError, KeyError, TypeError) as exc:
        raise RefsVerificationError(f"signed target is not valid: {exc}", where=base) from exc


def _target(updater: Updater, name: str) -> bytes:
    from tuf.api import exceptions as tuf_exc

    info = updater.get_targetinfo(name)
    if info is None:
        raise tuf_exc.RepositoryError(f"target {name!r} is not in the signed targets")
    path = updater.find_cached_target(info)  # re-verified against the signed hashes
    if path is None:
        path = updater.download_target(info)
    return Path(path).read_bytes()


def _json(data: bytes) -> dict[str, Any]:
    d = json.loads(data)
    if not isinstance(d, dict):
        raise MalformedInputError("target is not a JSON object")
    return d


def _known_bad(d: Mapping[str, Any]) -> dict[str, KnownBad]:
    if d.get("schema") != "biv.known-bad/v1":
        raise MalformedInputError("known-bad list has the wrong schema")
    out: dict[str, KnownBad] = {}
    for e in d.get("digests", []):
        sha = str(e["sha256"]).lower()
        if not is_sha256(sha):
            raise MalformedInputError(f"known-bad digest {sha!r} is not a sha256")
        out[sha] = KnownBad(sha, str(e.get("name", "")), str(e.get("reason", "")))
    return out


def _revoked(d: Mapping[str, Any]) -> tuple[RevokedCert, ...]:
    if d.get("schema") != "biv.revoked-certs/v1":
        raise MalformedInputError("revoked-certificates list has the wrong schema")
    out = []
    for e in d.get("certificates", []):
        sha = str(e["sha256"]).lower()
        if not is_sha256(sha):
            raise MalformedInputError(f"revoked thumbprint {sha!r} is not a sha256")
        r = RevokedCert(
            sha, str(e["distrust_after"]), str(e.get("subject", "")), str(e.get("reason", ""))
        )
        parse_time(r.distrust_after)
        out.append(r)
    return tuple(out)
