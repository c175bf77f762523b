"""``biv refs publish``: a TUF repository of reference inventories and distrust lists.

Built with python-tuf's Metadata API (root, targets, snapshot, timestamp; one key per role,
threshold 1, Ed25519 PEM private keys read from files). Consistent snapshots: the directory
can be served by any static HTTP server and read with ``tuf_client.load_refs``::

    <repo>/metadata/1.root.json, root.json, timestamp.json, N.snapshot.json, N.targets.json
    <repo>/targets/index.json                       (and <sha256>.index.json)
    <repo>/targets/refs/<component>-<version>-<platform>-<arch>.json   (biv.refs/v1)
    <repo>/targets/known-bad.json                   (biv.known-bad/v1, seeded with 3CX)
    <repo>/targets/revoked-certificates.json        (biv.revoked-certs/v1)

Publishing again into the same directory bumps targets, snapshot and timestamp versions
(root stays), so clients see the update and refuse to roll back.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier.errors import SchemaError, UsageError
from verifier.model import Reference
from verifier.record import record
from verifier.upstream.cache import is_sha256
from verifier.upstream.distrust_lists import THREECX_KNOWN_BAD as THREECX_KNOWN_BAD
from verifier.upstream.distrust_lists import KnownBad as KnownBad
from verifier.upstream.distrust_lists import RevokedCert as RevokedCert
from verifier.upstream.distrust_lists import parse_time as parse_time

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]
    from tuf.api.metadata import (  # type: ignore[attr-defined]
        Metadata,
        Root,
        Snapshot,
        TargetFile,
        Targets,
        Timestamp,
    )

# python-tuf and securesystemslib are loaded where they are used (publishing, key files):
# importing this module for its layout names costs nothing

ROLES = ("root", "targets", "snapshot", "timestamp")
INDEX = "index.json"
KNOWN_BAD = "known-bad.json"
REVOKED = "revoked-certificates.json"
DEFAULT_EXPIRY = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
}


# --- keys ---------------------------------------------------------------------------------


def generate_key(path: str | Path) -> str:
    """Write a new Ed25519 private key (PKCS#8 PEM, unencrypted, mode 0600); returns its keyid."""
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.touch(mode=0o600, exist_ok=True)
    p.write_bytes(pem)
    return str(CryptoSigner(key).public_key.keyid)


def load_signer(path: str | Path, password: bytes | None = None) -> CryptoSigner:
    """A signer from a PEM private key file (Ed25519 recommended; RSA/ECDSA also work)."""
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read key file: {exc.strerror}", where=str(path)) from exc
    try:
        key = serialization.load_pem_private_key(data, password=password)
        return CryptoSigner(key)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"not a usable PEM private key: {exc}", where=str(path)) from exc


@record
class RoleKeys:
    """PEM private key files per role (the same file may serve several roles)."""

    root: str
    targets: str
    snapshot: str
    timestamp: str

    @classmethod
    def single(cls, path: str) -> RoleKeys:
        return cls(path, path, path, path)

    def of(self, role: str) -> str:
        return str(getattr(self, role))


# --- publishing ---------------------------------------------------------------------------


@record
class PublishResult:
    repo_dir: str
    root_path: str  # give this file to clients (``--refs-root``)
    versions: Mapping[str, int]
    targets: tuple[str, ...]


_NAME_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def ref_target_name(ref: Reference) -> str:
    c = ref.component
    parts = [c.name, c.version or "any", c.platform or "any", c.arch or "any"]
    return "refs/" + "-".join(_NAME_SAFE.sub("_", p) for p in parts) + ".json"


def _json_bytes(d: Any) -> bytes:
    return json.dumps(d, sort_keys=True, indent=1).encode("utf-8")


def publish(
    repo_dir: str | Path,
    keys: RoleKeys,
    references: Sequence[Reference],
    *,
    known_bad: Sequence[KnownBad] = THREECX_KNOWN_BAD,
    revoked: Sequence[RevokedCert] = (),
    expires: Mapping[str, timedelta] | None = None,
    now: datetime | None = None,
) -> PublishResult:
    """Create or update the TUF repository in ``repo_dir``."""
    from tuf.api.metadata import MetaFile, Snapshot, Targets, Timestamp  # type: ignore[attr-defined]

    _check_inputs(references, known_bad, revoked)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    exp = {**DEFAULT_EXPIRY, **(expires or {})}
    signers = {role: load_signer(keys.of(role)) for role in ROLES}

    repo = Path(repo_dir)
    meta_dir = repo / "metadata"
    tgt_dir = repo / "targets"
    meta_dir.mkdir(parents=True, exist_ok=True)
    tgt_dir.mkdir(parents=True, exist_ok=True)

    payload = _payload(references, known_bad, revoked)
    root_path = meta_dir / "root.json"
    root_md, old = _root(root_path, signers, now + exp["root"])

    targets = Targets(version=old["targets"] + 1, expires=now + exp["targets"])
    for name, data in payload.items():
        targets.targets[name] = _write_target(tgt_dir, name, data)
    targets_md = _signed(targets, signers["targets"])
    _write(meta_dir / f"{targets.version}.targets.json", targets_md)

    snapshot = Snapshot(version=old["snapshot"] + 1, expires=now + exp["snapshot"])
    snapshot.meta["targets.json"] = MetaFile(version=targets.version)
    snapshot_md = _signed(snapshot, signers["snapshot"])
    _write(meta_dir / f"{snapshot.version}.snapshot.json", snapshot_md)

    timestamp = Timestamp(
        version=old["timestamp"] + 1,
        expires=now + exp["timestamp"],
        snapshot_meta=MetaFile(version=snapshot.version),
    )
    _write(meta_dir / "timestamp.json", _signed(timestamp, signers["timestamp"]))
    # plain names too, for people reading the repository by hand
    _write(meta_dir / "snapshot.json", snapshot_md)
    _write(meta_dir / "targets.json", targets_md)

    return PublishResult(
        str(repo),
        str(root_path),
        {
            "root": root_md.signed.version,
            "targets": targets.version,
            "snapshot": snapshot.version,
            "timestamp": timestamp.version,
        },
        tuple(sorted(payload)),
    )


def _check_inputs(
    references: Sequence[Reference], known_bad: Sequence[KnownBad], revoked: Sequence[RevokedCert]
) -> None:
    """Digests that are sha256, dates that parse, and only proven references."""
    for b in known_bad:
        if not is_sha256(b.sha256):
            raise UsageError(f"known-bad digest is not a sha256: {b.sha256!r}")
    for r in revoked:
        if not is_sha256(r.sha256):
            raise UsageError(f"revoked certificate thumbprint is not a sha256: {r.sha256!r}")
        try:
            parse_time(r.distrust_after)
        except ValueError as exc:
            raise UsageError(f"bad distrust date {r.distrust_after!r}") from exc
    for ref in references:
        if ref.problems:
            raise UsageError(
                f"refusing to publish an unproven reference: {ref.component.name} "
                f"{ref.component.version} ({ref.problems[0].message})"
            )


def _payload(
    references: Sequence[Reference], known_bad: Sequence[KnownBad], revoked: Sequence[RevokedCert]
) -> dict[str, bytes]:
    """Target name -> bytes: one ``biv.refs/v1`` per reference, the lists, the index."""
    payload: dict[str, bytes] = {}
    names: list[str] = []
    for ref in sorted(references, key=ref_target_name):
        name = ref_target_name(ref)
        if name in payload:
            raise UsageError(f"two references publish to the same target {name}")
        payload[name] = _json_bytes(ref.to_dict())
        names.append(name)
    payload[KNOWN_BAD] = _json_bytes(
        {
            "schema": "biv.known-bad/v1",
            "digests": [b.to_dict() for b in sorted(known_bad, key=lambda b: b.sha256)],
        }
    )
    payload[REVOKED] = _json_bytes(
        {
            "schema": "biv.revoked-certs/v1",
            "certificates": [r.to_dict() for r in sorted(revoked, key=lambda r: r.sha256)],
        }
    )
    payload[INDEX] = _json_bytes(
        {
            "schema": "biv.refs-index/v1",
            "references": names,
            "known_bad": KNOWN_BAD,
            "revoked": REVOKED,
        }
    )
    return payload


def _root(
    root_path: Path, signers: Mapping[str, CryptoSigner], expires: datetime
) -> tuple[Metadata[Root], dict[str, int]]:
    """The root metadata (created once, kept while the keys match) and the current versions
    of the other roles (0 in a new repository)."""
    from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]

    meta_dir = root_path.parent
    if root_path.exists():
        root_md = Metadata[Root].from_bytes(root_path.read_bytes())
        for role in ROLES:
            keyids = root_md.signed.roles[role].keyids
            if signers[role].public_key.keyid not in keyids:
                raise UsageError(
                    f"the {role} key does not match the repository's root.json "
                    "(key rotation is not supported by biv refs publish)",
                    where=str(root_path),
                )
        old = {
            role: _current_version(meta_dir, role) for role in ("targets", "snapshot", "timestamp")
        }
        return root_md, old
    root_md = Metadata(Root(expires=expires, consistent_snapshot=True))
    for role in ROLES:
        root_md.signed.add_key(signers[role].public_key, role)
    root_md.sign(signers["root"])
    _write(meta_dir / f"{root_md.signed.version}.root.json", root_md)
    _write(root_path, root_md)
    return root_md, {"targets": 0, "snapshot": 0, "timestamp": 0}


def _write_target(tgt_dir: Path, name: str, data: bytes) -> TargetFile:
    """Write one target under its plain and its consistent-snapshot (digest-prefixed) name."""
    from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

    tf = TargetFile.from_data(name, data, ["sha256"])
    sub, _, base = name.rpartition("/")
    d = tgt_dir / sub if sub else tgt_dir
    d.mkdir(parents=True, exist_ok=True)
    digest = tf.hashes["sha256"]
    _atomic(d / f"{digest}.{base}", data)
    _atomic(d / base, data)
    return tf


def _signed(role: Targets | Snapshot | Timestamp, signer: CryptoSigner) -> Metadata[Any]:
    from tuf.api.metadata import Metadata

    md: Metadata[Any] = Metadata(role)
    md.sign(signer)
    return md


def _current_version(meta_dir: Path, role: str) -> int:
    best = 0
    for p in meta_dir.glob(f"*.{role}.json"):
        head = p.name.split(".", 1)[0]
        if head.isdigit():
            best = max(best, int(head))
    plain = meta_dir / f"{role}.json"
    if plain.exists():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            best = max(best, int(json.loads(plain.read_bytes())["signed"]["version"]))
    return best


def _write(path: Path, md: Metadata[Any]) -> None:
    from tuf.api.serialization.json import JSONSerializer

    _atomic(path, md.to_bytes(JSONSerializer(compact=False)))


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as fh:
        fh.write(data)
        tmp = Path(fh.name)
    tmp.replace(path)


# --- inputs for ``biv refs publish`` ------------------------------------------------------


def _load_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read: {exc.strerror}", where=str(path)) from exc
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"not JSON: {exc}", where=str(path)) from exc


def load_reference_file(path: str | Path) -> Reference:
    """A ``biv.refs/v1`` document (``Reference.to_dict()``) from a file."""
    d = _load_json(path)
    if not isinstance(d, dict):
        raise UsageError("not a biv.refs/v1 object", where=str(path))
    try:
        return Reference.from_dict(d)
    except SchemaError as exc:
        raise UsageError(
            f"not a valid biv.refs/v1 document: {exc.diagnostics()}", where=str(path)
        ) from exc


def load_known_bad_file(path: str | Path) -> list[KnownBad]:
    """``[{"sha256", "name", "reason"}]`` or ``{"digests": [...]}`` (biv.known-bad/v1)."""
    d = _load_json(path)
    items = d.get("digests") if isinstance(d, dict) else d
    if not isinstance(items, list):
        raise UsageError("expected a list of {sha256, name, reason}", where=str(path))
    out = []
    for i, e in enumerate(items):
        if not isinstance(e, dict) or not is_sha256(str(e.get("sha256", "")).lower()):
            raise UsageError(f"entry {i}: needs a sha256", where=str(path))
        out.append(
            KnownBad(str(e["sha256"]).lower(), str(e.get("name", "")), str(e.get("reason", "")))
        )
    return out


def load_revoked_file(path: str | Path) -> list[RevokedCert]:
    """``[{"sha256", "distrust_after", "subject", "reason"}]`` or ``{"certificates": [...]}``."""
    d = _load_json(path)
    items = d.get("certificates") if isinstance(d, dict) else d
    if not isinstance(items, list):
        raise UsageError("expected a list of {sha256, distrust_after}", where=str(path))
    out = []
    for i, e in enumerate(items):
        if not isinstance(e, dict) or not is_sha256(str(e.get("sha256", "")).lower()):
            raise UsageError(f"entry {i}: needs a sha256 thumbprint", where=str(path))
        when = str(e.get("distrust_after", ""))
        try:
            parse_time(when)
        except ValueError as exc:
            raise UsageError(f"entry {i}: bad distrust_after {when!r}", where=str(path)) from exc
        out.append(
            RevokedCert(
                str(e["sha256"]).lower(), when, str(e.get("subject", "")), str(e.get("reason", ""))
            )
        )
    return out
