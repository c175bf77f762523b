"""Release to release: what is new since the previous release's biv JSON report.

``--baseline PREVIOUS.json`` (an earlier ``biv.report/v1`` document) marks new files, new
signers, newly divergent files and new findings, so an auditor reviewing release N+1 reads only
what changed. Findings are matched by (rule, path, actual sha256): a finding on a file whose
bytes changed is new even when the rule and path are the same.

The CLI wiring (lead)::

    previous = baseline.load_baseline(path)          # raises UsageError on a bad file
    ann = baseline.apply_baseline(report, previous)
    json: baseline.annotate_json(report.to_dict(), ann)
    sarif: render_sarif(report, anchor, baseline=ann)
    html:  render_html(report, baseline=ann)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any

from verifier.errors import UsageError
from verifier.model import JSON, REPORT_SCHEMA, Finding, Report
from verifier.record import record

#: Statuses that mean "this file does not match upstream's content".
DIVERGENT_STATUSES = frozenset({"divergent", "resources-only"})

FindingKey = tuple[str, str, str]


@record
class BaselineAnnotations:
    """What is new in the current report compared with the baseline."""

    baseline_path: str | None
    baseline_version: str | None  # the previous report's tool.version
    baseline_artifact: Mapping[str, Any]
    new_files: frozenset[str] = frozenset()  # paths not in the previous report
    new_signers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # path -> sha256s
    newly_divergent: frozenset[str] = frozenset()  # divergent now, not before
    new_findings: frozenset[FindingKey] = frozenset()
    removed_files: frozenset[str] = frozenset()
    resolved_findings: frozenset[FindingKey] = frozenset()

    def is_new_finding(self, finding: Finding | Mapping[str, Any], sha256: str | None) -> bool:
        return finding_key(finding, sha256) in self.new_findings

    def is_new_file(self, path: str) -> bool:
        return path in self.new_files or path in self.newly_divergent or path in self.new_signers

    def summary(self) -> JSON:
        return {
            "path": self.baseline_path,
            "version": self.baseline_version,
            "artifact": dict(self.baseline_artifact),
            "new_files": sorted(self.new_files),
            "removed_files": sorted(self.removed_files),
            "new_signers": {k: list(v) for k, v in sorted(self.new_signers.items())},
            "newly_divergent": sorted(self.newly_divergent),
            "new_findings": len(self.new_findings),
            "resolved_findings": len(self.resolved_findings),
        }


def finding_key(finding: Finding | Mapping[str, Any], sha256: str | None = None) -> FindingKey:
    """(rule, path, actual sha256): evidence.actual_sha256, else the file's sha256, else ''."""
    if isinstance(finding, Finding):
        rule, path, evidence = finding.rule, finding.path, finding.evidence
    else:
        rule = str(finding.get("rule", ""))
        path = str(finding.get("path", ""))
        evidence = finding.get("evidence") or {}
    actual = evidence.get("actual_sha256") if isinstance(evidence, Mapping) else None
    return (rule, path, str(actual or sha256 or ""))


def fingerprint(key: FindingKey) -> str:
    """A stable hex fingerprint of a finding key (SARIF partialFingerprints)."""
    return hashlib.sha256("\0".join(key).encode("utf-8", "surrogateescape")).hexdigest()


def _signer_digests(file_entry: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    sig = file_entry.get("signature")
    if isinstance(sig, Mapping):
        for s in sig.get("signers") or ():
            if isinstance(s, Mapping) and s.get("sha256"):
                out.add(str(s["sha256"]))
    for sl in file_entry.get("slices") or ():
        if isinstance(sl, Mapping):
            out |= _signer_digests(sl)
    return out


def _files(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for f in doc.get("files") or ():
        if isinstance(f, Mapping) and isinstance(f.get("path"), str):
            out[f["path"]] = f
    return out


def _finding_keys(
    doc: Mapping[str, Any], files: Mapping[str, Mapping[str, Any]]
) -> set[FindingKey]:
    keys: set[FindingKey] = set()
    for f in doc.get("findings") or ():
        if isinstance(f, Mapping):
            entry = files.get(str(f.get("path", "")))
            sha = str(entry.get("sha256") or "") if entry else None
            keys.add(finding_key(f, sha))
    return keys


def _check_doc(doc: object, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping) or doc.get("schema") != REPORT_SCHEMA:
        schema = doc.get("schema") if isinstance(doc, Mapping) else type(doc).__name__
        raise UsageError(f"not a {REPORT_SCHEMA} report (schema={schema!r})", where=what)
    return doc


def load_baseline(path: str) -> Mapping[str, Any]:
    """Read a previous biv JSON report; ``UsageError`` (exit 2) when it is not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as e:
        raise UsageError(f"cannot read baseline: {e.strerror or e}", where=path) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"baseline is not JSON: {e}", where=path) from None
    checked = _check_doc(doc, path)
    return {**checked, "__baseline_path__": path}


def apply_baseline(
    current: Report | Mapping[str, Any], previous: Mapping[str, Any]
) -> BaselineAnnotations:
    """Compare the current report (a ``Report`` or its JSON) with the previous JSON report."""
    cur = current.to_dict() if isinstance(current, Report) else current
    _check_doc(cur, "current report")
    prev = _check_doc(previous, str(previous.get("__baseline_path__", "baseline")))
    cur_files, prev_files = _files(cur), _files(prev)

    new_files = frozenset(
        p for p, f in cur_files.items() if p not in prev_files and f.get("status") != "missing"
    )
    removed = frozenset(
        p
        for p in prev_files
        if (p not in cur_files or cur_files[p].get("status") == "missing")
        and prev_files[p].get("status") != "missing"
    )
    new_signers: dict[str, tuple[str, ...]] = {}
    newly_divergent: set[str] = set()
    for p, f in cur_files.items():
        before = prev_files.get(p)
        prev_signers = _signer_digests(before) if before else set()
        added = _signer_digests(f) - prev_signers
        if added:
            new_signers[p] = tuple(sorted(added))
        if f.get("status") in DIVERGENT_STATUSES and (
            before is None or before.get("status") not in DIVERGENT_STATUSES
        ):
            newly_divergent.add(p)
    cur_keys = _finding_keys(cur, cur_files)
    prev_keys = _finding_keys(prev, prev_files)
    tool = prev.get("tool")
    return BaselineAnnotations(
        baseline_path=prev.get("__baseline_path__"),
        baseline_version=str(tool.get("version")) if isinstance(tool, Mapping) else None,
        baseline_artifact=dict(prev.get("artifact") or {}),
        new_files=new_files,
        new_signers=new_signers,
        newly_divergent=frozenset(newly_divergent),
        new_findings=frozenset(cur_keys - prev_keys),
        removed_files=removed,
        resolved_findings=frozenset(prev_keys - cur_keys),
    )


def annotate_json(doc: JSON, ann: BaselineAnnotations) -> JSON:
    """Add ``new_since_baseline`` markers (files, findings) and a ``baseline`` summary.

    Returns a new document; the input is not modified.
    """
    out: JSON = dict(doc)
    files = _files(doc)
    new_files: list[Any] = []
    for f in doc.get("files") or ():
        g = dict(f)
        p = str(g.get("path", ""))
        g["new_since_baseline"] = ann.is_new_file(p)
        if p in ann.new_signers:
            g["new_signers"] = list(ann.new_signers[p])
        new_files.append(g)
    new_findings: list[Any] = []
    for f in doc.get("findings") or ():
        g = dict(f)
        entry = files.get(str(g.get("path", "")))
        sha = str(entry.get("sha256") or "") if entry else None
        g["new_since_baseline"] = ann.is_new_finding(g, sha)
        new_findings.append(g)
    out["files"] = new_files
    out["findings"] = new_findings
    out["baseline"] = ann.summary()
    return out


def file_sha256s(report: Report) -> dict[str, str]:
    """path -> shipped sha256 for the files of a report (helper for renderers)."""
    out: dict[str, str] = {}
    for r in report.files:
        e = r.shipped or r.reference
        if e is not None:
            out[r.path] = e.sha256
    return out


def new_finding_flags(
    report: Report, ann: BaselineAnnotations | None, findings: Iterable[Finding]
) -> list[bool]:
    """For each finding: is it new since the baseline (False for all without a baseline)."""
    shas = file_sha256s(report)
    return [bool(ann and ann.is_new_finding(f, shas.get(f.path))) for f in findings]
