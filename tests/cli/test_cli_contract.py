"""The CLI contract (docs/contract.md): exit codes, one-line errors, deterministic JSON."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

import jsonschema
import pytest
from support.cli import biv
from support.paths import REPO

ROOT = REPO
SCHEMA = json.loads((ROOT / "verifier/schemas/biv.report.v1.json").read_text())


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


FILES = {"LICENSE": b"MIT\n", "locales/en-US.pak": b"pak" * 100, "snapshot_blob.bin": b"\0" * 64}


def assert_one_line_error(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("biv: error: ")


def test_version() -> None:
    r = biv("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("biv ")


def test_missing_artifact_is_exit_2_with_one_line(tmp_path: Path) -> None:
    r = biv("verify", str(tmp_path / "nope"), "--against", f"path:{tmp_path}")
    assert r.returncode == 2
    assert_one_line_error(r)
    assert "nope" in r.stderr


def test_missing_path_source_is_exit_2(tmp_path: Path) -> None:
    art = tree(tmp_path / "a", FILES)
    r = biv("verify", str(art), "--against", f"path:{tmp_path / 'missing'}")
    assert r.returncode == 2
    assert_one_line_error(r)


def test_bad_severity_and_unknown_flag_are_usage_errors(tmp_path: Path) -> None:
    art = tree(tmp_path / "a", FILES)
    r = biv("verify", str(art), "--fail-on", "catastrophic")
    assert r.returncode == 2
    assert_one_line_error(r)
    r = biv("verify", str(art), "--no-such-flag")
    assert r.returncode == 2
    assert_one_line_error(r)


def test_unknown_source_scheme_is_usage_error(tmp_path: Path) -> None:
    art = tree(tmp_path / "a", FILES)
    r = biv("verify", str(art), "--against", "ftp:thing")
    assert r.returncode == 2
    assert_one_line_error(r)


def test_identical_tree_passes_with_schema_valid_deterministic_json(tmp_path: Path) -> None:
    up = tree(tmp_path / "up", FILES)
    art = tree(tmp_path / "art", FILES)
    r1 = biv("verify", str(art), "--against", f"path:{up}", "--format", "json")
    r2 = biv("verify", str(art), "--against", f"path:{up}", "--format", "json")
    assert r1.returncode == 0, r1.stderr
    d1, d2 = json.loads(r1.stdout), json.loads(r2.stdout)
    jsonschema.validate(d1, SCHEMA)
    assert d1["verdict"] == "pass"
    assert {f["path"] for f in d1["files"]} == set(FILES)
    assert all(f["status"] == "identical" for f in d1["files"])
    d1.pop("generated_at"), d2.pop("generated_at")
    assert d1 == d2
    assert [f["path"] for f in d1["files"]] == sorted(FILES)


def test_divergent_data_file_fails_with_exit_1(tmp_path: Path) -> None:
    up = tree(tmp_path / "up", FILES)
    art = tree(tmp_path / "art", {**FILES, "snapshot_blob.bin": b"\1" * 64})
    r = biv("verify", str(art), "--against", f"path:{up}", "--format", "json")
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout)
    jsonschema.validate(d, SCHEMA)
    assert d["verdict"] == "fail"
    rules = {(f["rule"], f["path"]) for f in d["findings"]}
    assert ("divergent-content", "snapshot_blob.bin") in rules
    # --fail-on critical lets a high finding through
    r = biv("verify", str(art), "--against", f"path:{up}", "--fail-on", "critical")
    assert r.returncode == 0, r.stdout + r.stderr


def test_text_report_names_the_divergent_file_and_why(tmp_path: Path) -> None:
    up = tree(tmp_path / "up", FILES)
    art = tree(tmp_path / "art", {**FILES, "snapshot_blob.bin": b"\1" * 64})
    r = biv("verify", str(art), "--against", f"path:{up}")
    assert r.returncode == 1
    assert "VERDICT: FAIL" in r.stdout
    assert "divergent-content" in r.stdout
    assert "snapshot_blob.bin" in r.stdout


def test_hostile_member_fails_whatever_the_threshold(tmp_path: Path) -> None:
    up = tree(tmp_path / "up", FILES)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../escape.txt", b"owned")
    art = tree(tmp_path / "art", {**FILES, "payload.zip": buf.getvalue()})
    r = biv(
        "verify", str(art), "--against", f"path:{up}", "--fail-on", "critical", "--format", "json"
    )
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout)
    assert any(f["rule"] == "malformed-input" for f in d["findings"])
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path.parent / "escape.txt").exists()


def test_unobtainable_remote_reference_is_exit_3(tmp_path: Path) -> None:
    art = tree(tmp_path / "art", FILES)
    r = biv(
        "verify",
        str(art),
        "--against",
        "electron:99.0.0,platform=win32,arch=x64",
        "--offline",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert r.returncode == 3, r.stdout + r.stderr
    assert "inconclusive" in r.stdout.lower()


def test_write_report_to_file(tmp_path: Path) -> None:
    up = tree(tmp_path / "up", FILES)
    art = tree(tmp_path / "art", FILES)
    out = tmp_path / "report.json"
    r = biv("verify", str(art), "--against", f"path:{up}", "--format", "json", "-o", str(out))
    assert r.returncode == 0
    assert json.loads(out.read_text())["verdict"] == "pass"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_inspect_of_a_data_file(tmp_path: Path, fmt: str) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"hello")
    r = biv("inspect", str(f), "--format", fmt)
    assert r.returncode == 0, r.stderr
    if fmt == "json":
        d = json.loads(r.stdout)
        assert d["format"] == "data"
        assert d["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_a_single_binary_is_an_artifact_of_one_file(tmp_path: Path) -> None:
    from verifier._scenarios.pewriter import build_pe, ffmpeg_dll, trojaned_ffmpeg_dll

    up = tmp_path / "up"
    up.mkdir()
    (up / "ffmpeg.dll").write_bytes(build_pe(ffmpeg_dll()))
    (up / "LICENSE").write_bytes(b"MIT\n")
    good = tmp_path / "good" / "ffmpeg.dll"
    good.parent.mkdir()
    good.write_bytes(build_pe(ffmpeg_dll()))
    bad = tmp_path / "bad" / "ffmpeg.dll"
    bad.parent.mkdir()
    bad.write_bytes(build_pe(trojaned_ffmpeg_dll()))

    r = biv("verify", str(good), "--against", f"path:{up}", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert {f["path"]: f["status"] for f in d["files"]} == {
        "ffmpeg.dll": "identical",
        "LICENSE": "missing",
    }
    (me,) = [f for f in d["files"] if f["path"] == "ffmpeg.dll"]
    assert d["artifact"]["sha256"] == me["sha256"]

    r = biv("verify", str(bad), "--against", f"path:{up}", "--format", "json")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert ("divergent-content", "ffmpeg.dll") in {(f["rule"], f["path"]) for f in d["findings"]}

    # a file that is neither an archive nor a binary is still not an artifact
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    r = biv("verify", str(txt), "--against", f"path:{up}")
    assert r.returncode == 2
    assert_one_line_error(r)


def test_no_source_and_no_electron_says_to_name_the_upstream(tmp_path: Path) -> None:
    art = tree(tmp_path / "a", FILES)
    r = biv("verify", str(art))
    assert r.returncode == 2
    assert_one_line_error(r)
    assert "--against" in r.stderr
