"""SARIF 2.1.0 output: schema-valid (official OASIS schema, offline), GitHub-acceptable."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from support.demo_report import HOSTILE_NAME, demo_report
from support.fixtures import fixture
from support.paths import REPO

from verifier.model import Report, Verdict
from verifier.report.sarif import render_sarif
from verifier.rules import RULES

ROOT = REPO


def _schema() -> dict[str, Any]:
    """The official SARIF 2.1.0 schema, committed in tests/fixtures/sarif."""
    return json.loads(fixture("sarif", "sarif-schema-2.1.0.json").read_text())  # type: ignore[no-any-return]


def _validate(doc: dict[str, Any]) -> None:
    schema = _schema()
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft4Validator
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_sarif_validates_against_official_schema() -> None:
    doc = json.loads(render_sarif(demo_report(), None))
    _validate(doc)
    assert doc["version"] == "2.1.0"
    assert len(doc["runs"]) == 1


def test_schema_validation_can_fail() -> None:
    doc = json.loads(render_sarif(demo_report(), None))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    schema = _schema()
    assert list(jsonschema.Draft4Validator(schema).iter_errors(doc))


def test_driver_rules_have_help_and_security_severity() -> None:
    doc = json.loads(render_sarif(demo_report(), None))
    driver = doc["runs"][0]["tool"]["driver"]
    assert driver["name"] == "biv"
    assert driver["version"] == "0.1.0"
    assert driver["informationUri"].startswith("https://")
    ids = [r["id"] for r in driver["rules"]]
    assert ids[: len(RULES)] == list(RULES)
    for r in driver["rules"]:
        assert r["help"]["text"]
        assert r["shortDescription"]["text"]
        sev = float(r["properties"]["security-severity"])
        assert 0.0 < sev <= 10.0
        assert "security" in r["properties"]["tags"]
    by_id = {r["id"]: r for r in driver["rules"]}
    assert float(by_id["signature-padding"]["properties"]["security-severity"]) > 9.0
    assert float(by_id["missing-file"]["properties"]["security-severity"]) < 4.0


def test_every_result_has_location_fingerprint_and_evidence() -> None:
    report = demo_report()
    doc = json.loads(render_sarif(report, "policies/electron-app.yaml"))
    run = doc["runs"][0]
    results = run["results"]
    assert len(results) == len(report.findings)
    rules = run["tool"]["driver"]["rules"]
    for res in results:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        (loc,) = res["locations"]
        phys = loc["physicalLocation"]
        assert phys["artifactLocation"]["uri"] == "policies/electron-app.yaml"
        assert phys["region"]["startLine"] == 1
        assert loc["logicalLocations"][0]["fullyQualifiedName"]
        assert len(res["partialFingerprints"]["bivFinding/v1"]) == 64
        assert res["message"]["text"]
    pad = next(r for r in results if r["ruleId"] == "signature-padding")
    assert pad["level"] == "error"
    assert pad["properties"]["evidence"]["ranges"] == [{"offset": 4470784, "length": 2160}]
    assert pad["properties"]["sha256"] == pad["properties"]["evidence"]["actual_sha256"]
    evil = next(r for r in results if r["ruleId"] == "unexpected-binary")
    assert evil["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == HOSTILE_NAME


def test_suppressed_finding_has_suppression() -> None:
    doc = json.loads(render_sarif(demo_report(), None))
    results = doc["runs"][0]["results"]
    sup = [r for r in results if "suppressions" in r]
    assert [r["ruleId"] for r in sup] == ["resigned-upstream-file"]
    assert sup[0]["suppressions"][0]["status"] == "accepted"
    assert "vendor signs" in sup[0]["suppressions"][0]["justification"]


def test_fingerprints_stable_and_content_sensitive() -> None:
    a = json.loads(render_sarif(demo_report(), None))["runs"][0]["results"]
    b = json.loads(render_sarif(demo_report(), None))["runs"][0]["results"]
    c = json.loads(render_sarif(demo_report(ffmpeg="other-tamper"), None))["runs"][0]["results"]
    fa = {r["ruleId"]: r["partialFingerprints"] for r in a}
    fb = {r["ruleId"]: r["partialFingerprints"] for r in b}
    fc = {r["ruleId"]: r["partialFingerprints"] for r in c}
    assert fa == fb
    assert fa["signed-divergent-content"] != fc["signed-divergent-content"]
    assert fa["signature-padding"] == fc["signature-padding"]


def test_deterministic_output() -> None:
    assert render_sarif(demo_report(), None) == render_sarif(demo_report(), None)


def test_anchor_defaults_and_unsafe_anchor() -> None:
    report = demo_report()
    uri = json.loads(render_sarif(report, None))["runs"][0]["results"][0]["locations"][0]
    assert uri["physicalLocation"]["artifactLocation"]["uri"] == "policies/electron-app.yaml"
    no_policy = Report(**{**report.__dict__, "policy": {}})
    for anchor in (None, "/etc/passwd", "../outside.yaml"):
        doc = json.loads(render_sarif(no_policy, anchor))
        loc = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == "biv.json"
        _validate(doc)


def test_clean_report_is_valid_with_no_results() -> None:
    report = demo_report()
    clean = Report(**{**report.__dict__, "findings": (), "verdict": Verdict.PASS})
    doc = json.loads(render_sarif(clean, None))
    _validate(doc)
    assert doc["runs"][0]["results"] == []
    assert doc["runs"][0]["properties"]["verdict"] == "pass"


def test_unknown_rule_and_odd_evidence_still_valid() -> None:
    from verifier.model import Finding, Severity

    report = demo_report()
    odd = Finding(
        "some-future-check",
        Severity.HIGH,
        "x\u202e.dll",
        "a.zip!/x\u202e.dll",
        "",
        {"raw": b"\xfe\xed\xfa\xce", "set": {3, 1}, "obj": object()},
    )
    doc = json.loads(render_sarif(Report(**{**report.__dict__, "findings": (odd,)}), None))
    _validate(doc)
    res = doc["runs"][0]["results"][0]
    assert res["properties"]["evidence"]["raw"] == "feedface"
    assert doc["runs"][0]["tool"]["driver"]["rules"][res["ruleIndex"]]["id"] == "some-future-check"


def test_rule_table_matches_design() -> None:
    """Every rule id of the contract's table (docs/contract.md "Rule ids"), with its default
    severity, is in RULES, and every id in RULES is in the table."""
    import re

    from verifier.model import Severity
    from verifier.rules import default_severity

    text = (ROOT / "docs" / "contract.md").read_text()
    table = text[text.index("## Rule ids") : text.index("## Exit codes")]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| .* \| ([a-z]+)\b[^|]*\|$", table, re.M)
    assert len(rows) >= 29
    assert len({rid for rid, _ in rows}) == len(rows)
    for rid, sev in rows:
        assert rid in RULES, rid
        if rid != "weak-digest":  # "info on identical files, else medium"
            assert default_severity(rid) == Severity(sev), rid
    assert set(RULES) == {rid for rid, _ in rows}
    assert default_severity("some-new-check") == Severity.MEDIUM


def test_artifact_level_finding_gets_a_logical_location() -> None:
    from verifier.model import Finding, Severity

    report = demo_report()
    f = Finding("malformed-input", Severity.HIGH, "", "", "the archive is truncated")
    doc = json.loads(render_sarif(Report(**{**report.__dict__, "findings": (f,)}), None))
    _validate(doc)
    logical = doc["runs"][0]["results"][0]["locations"][0]["logicalLocations"][0]
    assert logical["fullyQualifiedName"] == "3CXDesktopApp-18.12.416"


def test_absolute_anchor_inside_the_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = "/home/runner/checkout/app"  # a runner's checkout
    monkeypatch.setenv("GITHUB_WORKSPACE", workspace)
    doc = json.loads(render_sarif(demo_report(), f"{workspace}/policies/p.yaml"))
    loc = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "policies/p.yaml"
