"""Reference inventories over TUF through biv's own command line: build, publish, verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import biv
from support.httpserver import LocalServer

from verifier._scenarios.scenario import Scenario
from verifier.distrust import BUILTIN_KNOWN_BAD, known_bad_anomalies
from verifier.model import BinaryFacts, FileEntry, FileResult, Status


@pytest.fixture(scope="module")
def repo(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("refs")
    r = biv("refs", "build", f"path:{scenario.upstream}", "-o", str(work / "refs"))
    assert r.returncode == 0, r.stderr
    (doc_path,) = (work / "refs").glob("*.json")
    doc = json.loads(doc_path.read_text())
    assert doc["schema"] == "biv.refs/v1"
    assert doc["component"]["version"] == scenario.electron_version.lstrip("v")
    assert (doc["component"]["platform"], doc["component"]["arch"]) == ("win32", "x64")
    compromised_ffmpeg = Path(scenario.compromised, "ffmpeg.dll").read_bytes()
    import hashlib

    bad = [
        {
            "sha256": hashlib.sha256(compromised_ffmpeg).hexdigest(),
            "name": "ffmpeg.dll",
            "reason": "demo indicator",
        }
    ]
    (work / "bad.json").write_text(json.dumps(bad))
    assert biv("refs", "keygen", str(work / "key.pem")).returncode == 0
    r = biv(
        "refs",
        "publish",
        "--repo",
        str(work / "repo"),
        "--key",
        str(work / "key.pem"),
        "--ref",
        str(doc_path),
        "--known-bad",
        str(work / "bad.json"),
    )
    assert r.returncode == 0, r.stderr
    assert (work / "repo/metadata/root.json").is_file()
    return work / "repo"


def test_tuf_references_replace_the_download_and_flag_known_bad(
    scenario: Scenario, repo: Path, tmp_path: Path
) -> None:
    with LocalServer(repo) as srv:
        args = [
            "--refs",
            srv.url,
            "--refs-root",
            str(repo / "metadata/root.json"),
            "--trust-store",
            scenario.trust_store,
            "--cache-dir",
            str(tmp_path / "c"),
            "--format",
            "json",
        ]
        bad = biv("verify", scenario.compromised, *args)
        good = biv("verify", scenario.clean, *args)
    assert bad.returncode == 1, bad.stderr
    d = json.loads(bad.stdout)
    rules = {(f["rule"], f["path"]) for f in d["findings"]}
    assert ("known-malicious", "ffmpeg.dll") in rules
    assert ("signed-divergent-content", "ffmpeg.dll") in rules
    assert ("signature-padding", "d3dcompiler_47.dll") in rules
    assert d["components"] and d["components"][0]["platform"] == "win32"
    assert good.returncode == 0, good.stdout + good.stderr
    assert json.loads(good.stdout)["verdict"] == "pass"


def test_tampered_target_in_reference_repository_is_a_finding(
    scenario: Scenario, repo: Path, tmp_path: Path
) -> None:
    import shutil

    evil = tmp_path / "evil"
    shutil.copytree(repo, evil)
    # the attacker edits every copy of the reference inventory (one added space)
    targets = [p for p in (evil / "targets" / "refs").rglob("*.json")]
    assert targets
    for t in targets:
        t.write_bytes(t.read_bytes().replace(b'"sha256"', b'"sha256" ', 1))
    with LocalServer(evil) as srv:
        r = biv(
            "verify",
            scenario.clean,
            "--refs",
            srv.url,
            "--refs-root",
            str(repo / "metadata/root.json"),
            "--against",
            f"path:{scenario.upstream}",
            "--trust-store",
            scenario.trust_store,
            "--cache-dir",
            str(tmp_path / "c"),
            "--format",
            "json",
        )
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout)
    assert any(f["rule"] == "reference-mismatch" for f in d["findings"])


def test_builtin_3cx_indicators_are_always_checked() -> None:
    sha = "7986bbaee8940da11ce089383521ab420c443ab7b15ed42aed91fd31ce833896"
    assert sha in BUILTIN_KNOWN_BAD
    e = FileEntry("ffmpeg.dll", "ffmpeg.dll", (), 1, sha, BinaryFacts())
    other = FileEntry("x.dll", "x.dll", (), 1, "0" * 64, BinaryFacts())
    res = [
        FileResult("ffmpeg.dll", Status.DIVERGENT, e, None),
        FileResult("x.dll", Status.UNEXPECTED, other, None),
    ]
    hits = known_bad_anomalies(res, BUILTIN_KNOWN_BAD)
    assert [(a.rule, a.evidence["path"]) for a in hits] == [("known-malicious", "ffmpeg.dll")]


def test_reference_inventory_file_gives_the_same_verdict_as_the_release(
    scenario: Scenario, tmp_path: Path
) -> None:
    r = biv("refs", "build", f"path:{scenario.upstream}", "-o", str(tmp_path / "refs"))
    assert r.returncode == 0, r.stderr
    (doc,) = (tmp_path / "refs").glob("*.json")
    common = ["--trust-store", scenario.trust_store, "--format", "json"]
    for build in (scenario.clean, scenario.compromised):
        a = biv("verify", build, "--against", f"path:{scenario.upstream}", *common)
        b = biv("verify", build, "--against", f"path:{doc}", *common)
        assert a.returncode == b.returncode
        da, db = json.loads(a.stdout), json.loads(b.stdout)
        assert {f["path"]: f["status"] for f in da["files"]} == {
            f["path"]: f["status"] for f in db["files"]
        }
        assert {(f["rule"], f["path"]) for f in da["findings"]} == {
            (f["rule"], f["path"]) for f in db["findings"]
        }
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "biv.refs/v1", "files": 3}')
    r = biv("verify", scenario.clean, "--against", f"path:{bad}")
    assert r.returncode == 2
    assert r.stderr.startswith("biv: error: ") and "Traceback" not in r.stderr
