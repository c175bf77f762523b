"""SARIF 2.1.0 renderer (``--format sarif``) for GitHub code scanning and other SARIF viewers.

Binaries are not in the repository, so every result is anchored to a repository file (the
policy or manifest, ``anchor``) at line 1; the artifact member, its digests and the evidence are
carried in ``logicalLocations`` and ``properties``. ``partialFingerprints`` are stable across
runs: rule + path + actual sha256.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from typing import Any

from verifier.baseline import BaselineAnnotations, file_sha256s, finding_key, fingerprint
from verifier.model import JSON, Finding, Report
from verifier.record import record
from verifier.report.escape import json_safe
from verifier.report.explain_text import short_summary, summary_lines
from verifier.rules import RULES, SARIF_LEVEL, Rule, rule

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://github.com/biv-project/biv"
DEFAULT_ANCHOR = "biv.json"
FINGERPRINT_KEY = "bivFinding/v1"


def default_anchor(report: Report) -> str:
    """The policy file when it is a repo-relative path, else ``biv.json``."""
    p = report.policy.get("path") if report.policy else None
    if isinstance(p, str) and p:
        rel = _repo_relative(p)
        if rel:
            return rel
    return DEFAULT_ANCHOR


def _repo_relative(path: str) -> str | None:
    """``path`` relative to the repository ($GITHUB_WORKSPACE, else the current directory),
    or None when it lies outside it."""
    p = path.replace("\\", "/")
    if os.path.isabs(path):
        base = os.environ.get("GITHUB_WORKSPACE") or os.getcwd()
        try:
            p = os.path.relpath(path, base).replace("\\", "/")
        except ValueError:  # another drive (Windows)
            return None
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        return None
    norm = posixpath.normpath(p)
    if norm == ".." or norm.startswith("../") or norm == ".":
        return None
    return norm


def _rule_descriptor(r: Rule) -> JSON:
    return {
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.short},
        "fullDescription": {"text": r.help},
        "help": {
            "text": r.help,
            "markdown": f"**{r.id}** ({r.severity.value}): {r.help}",
        },
        "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
        "properties": {
            "security-severity": r.security_severity,
            "tags": ["security", *r.tags],
            "precision": "very-high",
            "problem.severity": "error" if SARIF_LEVEL[r.severity] == "error" else "warning",
        },
    }


def _jsonable(value: Any) -> Any:
    """Evidence as plain JSON (bytes as hex, tuples as lists, unknown objects as str)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _message(f: Finding) -> str:
    text = f.message.strip() or f.rule
    short = short_summary(f.evidence)
    return f"{text} ({f.location or f.path})" + (f". What changed: {short}" if short else "")


def render_sarif(
    report: Report,
    anchor: str | None = None,
    *,
    baseline: BaselineAnnotations | None = None,
) -> str:
    """The report as a SARIF 2.1.0 log with one run (deterministic, sorted keys)."""
    uri = _repo_relative(anchor) if anchor else None
    uri = uri or default_anchor(report)
    findings = sorted(report.findings, key=Finding.sort_key)
    shas = file_sha256s(report)
    art_path = str(report.artifact.get("path", "")).replace("\\", "/").rstrip("/")
    artifact_name = posixpath.basename(art_path) or "artifact"

    rule_ids = list(RULES)
    for f in findings:
        if f.rule not in RULES and f.rule not in rule_ids:
            rule_ids.append(f.rule)
    index = {rid: i for i, rid in enumerate(rule_ids)}
    where = _Where(uri, artifact_name, index)
    results = [_result(f, finding_key(f, shas.get(f.path)), where, baseline) for f in findings]
    log: JSON = {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [_run(report, rule_ids, artifact_name, results, baseline)],
    }
    return json.dumps(json_safe(log), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@record(slots=True)
class _Where:
    """What every result of one run shares: the anchor URI, the artifact's name, rule indexes."""

    uri: str
    artifact_name: str
    index: Mapping[str, int]


def _result(
    f: Finding,
    key: tuple[str, str, str],
    where: _Where,
    baseline: BaselineAnnotations | None,
) -> JSON:
    """One finding as a SARIF result."""
    props: JSON = {
        "biv-severity": f.severity.value,
        "path": f.path,
        "location": f.location,
        "sha256": key[2] or None,
        "evidence": _jsonable(f.evidence),
    }
    if f.evidence.get("expected_sha256"):
        props["expected_sha256"] = f.evidence.get("expected_sha256")
    explained = summary_lines(f.evidence)
    if explained:
        props["explanation_summary"] = explained
    if baseline is not None:
        props["new_since_baseline"] = key in baseline.new_findings
    name = where.artifact_name
    res: JSON = {
        "ruleId": f.rule,
        "ruleIndex": where.index[f.rule],
        "level": SARIF_LEVEL[f.severity],
        "message": {"text": _message(f)},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": where.uri, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": 1},
                },
                "logicalLocations": [
                    {
                        "name": posixpath.basename(f.path) or f.path or name,
                        "fullyQualifiedName": f.location or f.path or name,
                        "kind": "resource",
                    }
                ],
            }
        ],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(key)},
        "properties": props,
    }
    if f.suppressed:
        sup: JSON = {"kind": "external", "status": "accepted"}
        if f.waiver is not None:
            sup["justification"] = (
                f"{f.waiver.reason} (waiver expires {f.waiver.expires}, sha256 {f.waiver.sha256})"
            )
        res["suppressions"] = [sup]
    return res


def _run(
    report: Report,
    rule_ids: list[str],
    artifact_name: str,
    results: list[JSON],
    baseline: BaselineAnnotations | None,
) -> JSON:
    """The one SARIF run: the tool and its rules, the invocation and its notes, the results."""
    run_props: JSON = {
        "verdict": report.verdict.value,
        "fail_on": report.fail_on.value,
        "artifact": _jsonable(report.artifact),
        "components": [_jsonable(c.to_dict()) for c in report.components],
        "inconclusive": list(report.inconclusive_reasons),
        "notes": [n.to_dict() for n in report.notes],
    }
    if baseline is not None:
        run_props["baseline"] = _jsonable(baseline.summary())
    return {
        "tool": {
            "driver": {
                "name": "biv",
                "fullName": "biv build-integrity verifier",
                "version": report.tool_version,
                "semanticVersion": report.tool_version,
                "informationUri": INFORMATION_URI,
                "rules": [_rule_descriptor(rule(rid)) for rid in rule_ids],
            }
        },
        "automationDetails": {"id": f"biv/{artifact_name}/"},
        "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "The repository root."}}},
        "invocations": [
            {
                "executionSuccessful": True,
                "properties": {"generated_at": report.generated_at},
                "toolExecutionNotifications": [
                    {
                        "level": "note",
                        "message": {"text": f"{n.location}: {n.message}"},
                        "descriptor": {"id": n.kind},
                    }
                    for n in report.notes
                ],
            }
        ],
        "results": results,
        "properties": run_props,
    }
