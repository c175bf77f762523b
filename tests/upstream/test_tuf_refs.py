"""Reference inventories over TUF, served over HTTP on 127.0.0.1, under attack."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.httpserver import LocalServer

from verifier.errors import ReferenceUnavailableError, UsageError
from verifier.model import (
    Anomaly,
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    Reference,
    SectionDigest,
    SignatureFacts,
    SignatureKind,
    Signer,
    SliceFacts,
)
from verifier.upstream.tuf_client import RefsVerificationError, load_refs
from verifier.upstream.tuf_publish import (
    THREECX_KNOWN_BAD,
    RevokedCert,
    RoleKeys,
    generate_key,
    publish,
)

H = "ab" * 32


def _ref(version: str = "28.1.0", tag: str = "") -> Reference:
    ms = Signer("CN=Microsoft Corporation", "CN=Microsoft Code Signing PCA", "01", "cd" * 32)
    d3d = FileEntry(
        "d3dcompiler_47.dll",
        "d3dcompiler_47.dll",
        (),
        4_000_000,
        "11" * 32,
        BinaryFacts(
            format=FileFormat.PE,
            archs=("x64",),
            normalized_sha256="22" * 32,
            sections=(SectionDigest(".text", 4096, "33" * 32, True),),
            signature=SignatureFacts(
                SignatureKind.AUTHENTICODE, True, True, (ms,), container_sha256="44" * 32
            ),
        ),
    )
    ff = FileEntry("ffmpeg.dll", "ffmpeg.dll", (), 2_000_000, "55" * 32 if not tag else "66" * 32)
    dylib = FileEntry(
        "libffmpeg.dylib",
        "libffmpeg.dylib",
        (),
        100,
        "77" * 32,
        BinaryFacts(
            format=FileFormat.MACHO,
            archs=("x86_64", "arm64"),
            slices=(
                SliceFacts("x86_64", 0, 50, "88" * 32, "99" * 32),
                SliceFacts("arm64", 50, 50, "aa" * 32, "bb" * 32),
            ),
        ),
    )
    comp = Component(
        "electron",
        version,
        f"electron:{version}",
        "win32",
        "x64",
        {f"electron-v{version}-win32-x64.zip": H},
        ("sha256 listed in SHASUMS256.txt", "same sha256 in npm checksums.json"),
    )
    return Reference(comp, (d3d, ff, dylib))


@pytest.fixture
def keys(tmp_path: Path) -> RoleKeys:
    paths = {
        r: str(tmp_path / "keys" / f"{r}.pem") for r in ("root", "targets", "snapshot", "timestamp")
    }
    for p in paths.values():
        generate_key(p)
    return RoleKeys(**paths)


REVOKED = RevokedCert(
    "ee" * 32, "2023-03-01T00:00:00Z", "CN=3CX Ltd", "stolen signing key (example)"
)


def _publish(repo: Path, keys: RoleKeys, refs: list[Reference] | None = None, **kw: object) -> str:
    """Publish; returns the client's copy of the trusted root (distributed out of band)."""
    res = publish(repo, keys, refs if refs is not None else [_ref()], revoked=[REVOKED], **kw)  # type: ignore[arg-type]
    trusted = repo.parent / f"trusted-{repo.name}-root.json"
    if not trusted.exists():
        shutil.copyfile(res.root_path, trusted)
    return str(trusted)


def test_publish_and_load_roundtrip(tmp_path: Path, keys: RoleKeys) -> None:
    repo = tmp_path / "repo"
    root = _publish(repo, keys)
    with LocalServer(root=repo) as srv:
        bundle = load_refs(srv.url, root, str(tmp_path / "cache"))
    (ref,) = bundle.references
    assert ref.to_dict() == _ref().to_dict()  # normalised, per-section and per-slice digests kept
    assert (
        set(bundle.known_bad) == {b.sha256 for b in THREECX_KNOWN_BAD}
        and len(bundle.known_bad) == 9
    )
    assert bundle.is_known_bad("7986BBAEE8940DA11CE089383521AB420C443AB7B15ED42AED91FD31CE833896")
    assert bundle.revocation("ee" * 32, datetime(2023, 3, 20, tzinfo=UTC)) == REVOKED
    assert bundle.revocation("ee" * 32, datetime(2022, 1, 1, tzinfo=UTC)) is None
    assert bundle.revocation("ee" * 32, None) == REVOKED


def test_update_is_seen_and_cached_targets_reverified(tmp_path: Path, keys: RoleKeys) -> None:
    repo, cache = tmp_path / "repo", str(tmp_path / "cache")
    root = _publish(repo, keys)
    with LocalServer(root=repo) as srv:
        load_refs(srv.url, root, cache)
        _publish(repo, keys, [_ref(), _ref("29.0.0")])
        bundle = load_refs(srv.url, root, cache)
        assert sorted(r.component.version or "" for r in bundle.references) == ["28.1.0", "29.0.0"]
        # a cached target swapped on disk is re-checked against the signed hash and re-fetched
        cached = [
            p
            for p in (Path(cache) / "tuf").rglob("*.json")
            if "refs" in p.name or "28.1.0" in p.name
        ]
        assert cached
        for p in cached:
            p.write_text(p.read_text().replace("55" * 32, "00" * 32))
        srv.reset_count()
        again = load_refs(srv.url, root, cache)
        assert any(p.startswith("targets/refs/") for p in srv.paths)  # fetched again
    ff = next(
        f
        for r in again.references
        if r.component.version == "28.1.0"
        for f in r.files
        if f.path == "ffmpeg.dll"
    )
    assert ff.sha256 == "55" * 32


def test_rollback_attack_rejected(tmp_path: Path, keys: RoleKeys) -> None:
    repo, cache = tmp_path / "repo", str(tmp_path / "cache")
    root = _publish(repo, keys)
    old_timestamp = (repo / "metadata" / "timestamp.json").read_bytes()
    _publish(repo, keys, [_ref("29.0.0")])
    with LocalServer(root=repo) as srv:
        assert load_refs(srv.url, root, cache).references[0].component.version == "29.0.0"
        # the attacker serves the older (validly signed) timestamp to hide the update
        (repo / "metadata" / "timestamp.json").write_bytes(old_timestamp)
        with pytest.raises(RefsVerificationError, match="BadVersionNumber") as ei:
            load_refs(srv.url, root, cache)
    assert ei.value.exit_code == 3


def test_freeze_attack_rejected(tmp_path: Path, keys: RoleKeys) -> None:
    """An attacker replays a repository state whose timestamp has expired."""
    repo = tmp_path / "repo"
    root = _publish(repo, keys, now=datetime.now(UTC) - timedelta(days=3))
    with LocalServer(root=repo) as srv, pytest.raises(RefsVerificationError, match="Expired"):
        load_refs(srv.url, root, str(tmp_path / "cache"))


def test_tampered_target_attack_rejected(tmp_path: Path, keys: RoleKeys) -> None:
    repo = tmp_path / "repo"
    root = _publish(repo, keys)
    # make the trojaned ffmpeg.dll "identical": rewrite the reference digest, same length
    for p in (repo / "targets" / "refs").glob("*.json"):
        p.write_text(
            p.read_text().replace(
                "55" * 32, "7986bbaee8940da11ce089383521ab420c443ab7b15ed42aed91fd31ce833896"
            )
        )
    with (
        LocalServer(root=repo) as srv,
        pytest.raises(RefsVerificationError, match="LengthOrHashMismatch"),
    ):
        load_refs(srv.url, root, str(tmp_path / "cache"))


def test_tampered_known_bad_list_attack_rejected(tmp_path: Path, keys: RoleKeys) -> None:
    repo = tmp_path / "repo"
    root = _publish(repo, keys)
    for p in (repo / "targets").glob("*known-bad.json"):
        d = json.loads(p.read_text())
        d["digests"] = d["digests"][1:]  # drop an indicator (shorter file)
        p.write_text(json.dumps(d))
    with LocalServer(root=repo) as srv, pytest.raises(RefsVerificationError):
        load_refs(srv.url, root, str(tmp_path / "cache"))


def test_wrong_key_attack_rejected(tmp_path: Path, keys: RoleKeys) -> None:
    """A repository re-signed with the attacker's own keys is refused by the trusted root."""
    repo = tmp_path / "repo"
    root = _publish(repo, keys)
    evil_key = str(tmp_path / "evil.pem")
    generate_key(evil_key)
    evil_repo = tmp_path / "evil"
    publish(evil_repo, RoleKeys.single(evil_key), [_ref("28.1.0", tag="trojan")])
    shutil.rmtree(repo / "metadata")
    shutil.copytree(evil_repo / "metadata", repo / "metadata")
    shutil.rmtree(repo / "targets")
    shutil.copytree(evil_repo / "targets", repo / "targets")
    with LocalServer(root=repo) as srv, pytest.raises(RefsVerificationError, match="Unsigned"):
        load_refs(srv.url, root, str(tmp_path / "cache"))


def test_timestamp_signed_by_wrong_role_key_rejected(tmp_path: Path, keys: RoleKeys) -> None:
    repo = tmp_path / "repo"
    root = _publish(repo, keys)
    from tuf.api.metadata import Metadata

    from verifier.upstream.tuf_publish import load_signer

    ts = Metadata.from_bytes((repo / "metadata" / "timestamp.json").read_bytes())
    ts.signed.version += 1
    ts.sign(load_signer(keys.targets))  # a real repository key, but not the timestamp key
    (repo / "metadata" / "timestamp.json").write_bytes(ts.to_bytes())
    with LocalServer(root=repo) as srv, pytest.raises(RefsVerificationError, match="Unsigned"):
        load_refs(srv.url, root, str(tmp_path / "cache"))


def test_unreachable_repository_is_unavailable_not_attack(tmp_path: Path, keys: RoleKeys) -> None:
    repo = tmp_path / "repo"
    root = _publish(repo, keys)
    with LocalServer(root=repo) as srv:
        srv.fault_all("500")
        with pytest.raises(ReferenceUnavailableError) as ei:
            load_refs(srv.url, root, str(tmp_path / "cache"), timeout=2)
    assert not isinstance(ei.value, RefsVerificationError)
    assert ei.value.exit_code == 3


def test_publish_refuses_unproven_reference_and_foreign_keys(
    tmp_path: Path, keys: RoleKeys
) -> None:
    bad = Reference(_ref().component, (), (Anomaly("reference-mismatch", "disagree"),))
    with pytest.raises(UsageError, match="unproven"):
        publish(tmp_path / "r", keys, [bad])
    _publish(tmp_path / "r2", keys)
    other = str(tmp_path / "other.pem")
    generate_key(other)
    with pytest.raises(UsageError, match="key does not match"):
        publish(
            tmp_path / "r2", RoleKeys(keys.root, other, keys.snapshot, keys.timestamp), [_ref()]
        )
    with pytest.raises(UsageError, match="PEM"):
        Path(tmp_path / "junk.pem").write_text("junk")
        publish(tmp_path / "r3", RoleKeys.single(str(tmp_path / "junk.pem")), [_ref()])


def test_offline_uses_verified_cached_state(tmp_path: Path, keys: RoleKeys) -> None:
    repo, cache = tmp_path / "repo", str(tmp_path / "cache")
    root = _publish(repo, keys)
    with pytest.raises(ReferenceUnavailableError, match="offline"):
        load_refs("http://127.0.0.1:9/", root, cache, offline=True)
    with LocalServer(root=repo) as srv:
        url = srv.url
        online = load_refs(url, root, cache)
    offline = load_refs(url, root, cache, offline=True)  # the server is gone
    assert [r.to_dict() for r in offline.references] == [r.to_dict() for r in online.references]
    assert offline.known_bad == online.known_bad
    # a cached target tampered on disk is refused offline (no network to repair it)
    for p in (Path(cache) / "tuf").rglob("refs%2F*.json"):
        p.write_text(p.read_text().replace("55" * 32, "00" * 32))
    with pytest.raises(RefsVerificationError, match="LengthOrHashMismatch"):
        load_refs(url, root, cache, offline=True)


def test_freeze_attack_rejected_offline(tmp_path: Path, keys: RoleKeys) -> None:
    """Cached metadata that has expired since is not used offline either.

    No clock race: the cache is filled from a valid repository, then its timestamp (and what
    it lists) is replaced by metadata the same keys signed three days ago, which has expired.
    """
    from verifier.upstream.tuf_client import metadata_dir

    repo, cache = tmp_path / "repo", str(tmp_path / "cache")
    root = _publish(repo, keys)
    with LocalServer(root=repo) as srv:
        url = srv.url
        load_refs(url, root, cache)
    old = tmp_path / "old"
    _publish(old, keys, now=datetime.now(UTC) - timedelta(days=3))
    meta = metadata_dir(url if url.endswith("/") else url + "/", cache)
    for role in ("timestamp", "snapshot", "targets"):
        shutil.copyfile(old / "metadata" / f"{role}.json", meta / f"{role}.json")
    with pytest.raises(RefsVerificationError, match="Expired"):
        load_refs(url, root, cache, offline=True)


def test_publish_inputs_from_files(tmp_path: Path) -> None:
    from verifier.upstream.tuf_publish import (
        load_known_bad_file,
        load_reference_file,
        load_revoked_file,
    )

    (tmp_path / "ref.json").write_text(json.dumps(_ref().to_dict()))
    assert load_reference_file(tmp_path / "ref.json").to_dict() == _ref().to_dict()
    (tmp_path / "bad.json").write_text(json.dumps([{"sha256": "AB" * 32, "name": "x.dll"}]))
    assert load_known_bad_file(tmp_path / "bad.json")[0].sha256 == "ab" * 32
    (tmp_path / "rev.json").write_text(json.dumps({"certificates": [REVOKED.to_dict()]}))
    assert load_revoked_file(tmp_path / "rev.json") == [REVOKED]
    (tmp_path / "rev2.json").write_text(
        json.dumps([{"sha256": "ab" * 32, "distrust_after": "soon"}])
    )
    with pytest.raises(UsageError, match="distrust_after"):
        load_revoked_file(tmp_path / "rev2.json")
    (tmp_path / "notref.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(UsageError, match=r"biv\.refs/v1"):
        load_reference_file(tmp_path / "notref.json")
