"""--baseline PREVIOUS.json: what is new since the previous release's report."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from support.demo_report import HOSTILE_NAME, VENDOR, demo_report
from support.fixtures import fixture

from verifier.baseline import annotate_json, apply_baseline, load_baseline
from verifier.errors import UsageError
from verifier.model import Report, Status, Verdict
from verifier.report.sarif import render_sarif


def previous_release() -> Report:
    """Release N: same app, ffmpeg tampered differently, no unexpected binary yet."""
    return demo_report(ffmpeg="ffmpeg-tampered-old", extra_unexpected=False)


def test_identical_report_has_nothing_new() -> None:
    ann = apply_baseline(demo_report(), demo_report().to_dict())
    assert not ann.new_files and not ann.new_signers and not ann.newly_divergent
    assert not ann.new_findings and not ann.resolved_findings


def test_new_files_findings_and_changed_bytes() -> None:
    ann = apply_baseline(demo_report(), previous_release().to_dict())
    assert ann.new_files == {HOSTILE_NAME}
    rules = sorted(k[0] for k in ann.new_findings)
    # ffmpeg's finding is new because its actual sha256 changed (rule+path alone are old)
    assert rules == ["signed-divergent-content", "unexpected-binary"]
    assert len(ann.resolved_findings) == 1  # the old ffmpeg tamper
    assert not ann.newly_divergent  # ffmpeg was already divergent
    assert ann.baseline_version == "0.1.0"


def test_new_signer_and_newly_divergent() -> None:
    prev = previous_release().to_dict()
    for f in prev["files"]:
        if f["path"] == "ffmpeg.dll":
            f["status"] = Status.IDENTICAL.value
            f["signature"]["signers"] = []
    ann = apply_baseline(demo_report(), prev)
    assert "ffmpeg.dll" in ann.newly_divergent
    assert ann.new_signers["ffmpeg.dll"] == (VENDOR.sha256,)
    assert ann.is_new_file("ffmpeg.dll")


def test_annotate_json_marks_entries() -> None:
    cur = demo_report()
    ann = apply_baseline(cur, previous_release().to_dict())
    doc = annotate_json(cur.to_dict(), ann)
    flags = {f["path"]: f["new_since_baseline"] for f in doc["files"]}
    assert flags[HOSTILE_NAME] is True and flags["d3dcompiler_47.dll"] is False
    new = sorted(f["rule"] for f in doc["findings"] if f["new_since_baseline"])
    assert new == ["signed-divergent-content", "unexpected-binary"]
    assert doc["baseline"]["new_files"] == [HOSTILE_NAME]
    assert "new_since_baseline" not in cur.to_dict()["files"][0]  # input untouched


def test_sarif_carries_marker_and_stays_valid() -> None:
    cur = demo_report()
    ann = apply_baseline(cur, previous_release().to_dict())
    doc = json.loads(render_sarif(cur, None, baseline=ann))
    marks = {r["ruleId"]: r["properties"]["new_since_baseline"] for r in doc["runs"][0]["results"]}
    assert marks["unexpected-binary"] is True and marks["signature-padding"] is False
    schema = json.loads(fixture("sarif", "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(doc)


def test_load_baseline_errors(tmp_path: Path) -> None:
    good = tmp_path / "prev.json"
    good.write_text(json.dumps(previous_release().to_dict()))
    prev = load_baseline(str(good))
    ann = apply_baseline(demo_report().to_dict(), prev)
    assert ann.baseline_path == str(good)
    for name, text in [("bad.json", "{not json"), ("other.json", '{"schema": "x"}')]:
        p = tmp_path / name
        p.write_text(text)
        with pytest.raises(UsageError):
            load_baseline(str(p))
    with pytest.raises(UsageError):
        load_baseline(str(tmp_path / "missing.json"))
    with pytest.raises(UsageError):
        apply_baseline(demo_report(), {"schema": "biv.refs/v1"})


def test_pass_report_against_failing_baseline() -> None:
    clean = Report(**{**demo_report().__dict__, "findings": (), "verdict": Verdict.PASS})
    ann = apply_baseline(clean, demo_report().to_dict())
    assert not ann.new_findings and len(ann.resolved_findings) == 5
