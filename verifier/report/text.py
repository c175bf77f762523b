"""The text report: a person sees at once which files diverge and why."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from verifier.model import Finding, Report, Severity, Status, Verdict
from verifier.npmdeps.summary import NpmSummary, summarise
from verifier.report.escape import text as e
from verifier.report.explain_text import EXPLAIN_KEYS, summary_lines

if TYPE_CHECKING:
    from verifier.baseline import BaselineAnnotations

_COLORS = {
    Verdict.PASS: "32",
    Verdict.FAIL: "31",
    Verdict.INCONCLUSIVE: "33",
    Severity.CRITICAL: "1;31",
    Severity.HIGH: "31",
    Severity.MEDIUM: "33",
    Severity.LOW: "36",
    Severity.INFO: "2",
}


def _paint(text: str, key: Verdict | Severity, color: bool) -> str:
    return f"\x1b[{_COLORS[key]}m{text}\x1b[0m" if color else text


def color_wanted(stream: Any) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def render_text(
    report: Report,
    color: bool = False,
    verbose: bool = False,
    baseline: BaselineAnnotations | None = None,
) -> str:
    out: list[str] = []
    art = report.artifact
    out.append(f"biv {report.tool_version}: {e(art.get('path'))}")
    out.append(f"  artifact  sha256 {e(art.get('sha256'))}  ({e(art.get('size'))} bytes)")
    for c in report.components:
        if c.npm is not None:
            continue  # summarised below (there may be hundreds)
        ver = f" {e(c.version)}" if c.version else ""
        plat = f" {e(c.platform)}-{e(c.arch)}" if c.platform else ""
        out.append(f"  upstream  {e(c.name)}{ver}{plat}  from {e(c.source)}")
        for step in c.proof:
            out.append(f"            proven: {e(step)}")
    npm = summarise(report)
    if npm is not None:
        out.append(f"  npm deps  {e(npm.headline())}  (deps:npm)")
    out.append(f"  app root  {e(report.app_root or '.')}")
    if report.policy:
        out.append(f"  policy    {e(report.policy.get('name'))}")
    active = [f for f in report.findings if not f.suppressed]
    counts = Counter(f.severity for f in active)
    summary = ", ".join(f"{counts[s]} {s.value}" for s in Severity if counts[s])
    verdict = _paint(f"VERDICT: {report.verdict.value.upper()}", report.verdict, color)
    out.append("")
    out.append(f"{verdict}  ({summary or 'no findings'}; fail-on {report.fail_on.value})")
    for reason in report.inconclusive_reasons:
        out.append(f"  inconclusive: {e(reason)}")
    if report.notes:
        out.append("")
        out.append("Notes (what the unpacked tree cannot show; they do not change the verdict)")
        for n in report.notes:
            out.append(f"  {e(n.kind)}  {e(n.location)}: {e(n.message)}")
    if baseline is not None:
        out.append("")
        out.append(
            f"Since {e(baseline.baseline_path)} (biv {e(baseline.baseline_version)}): "
            f"{len(baseline.new_files)} new files, {len(baseline.newly_divergent)} newly "
            f"divergent, {len(baseline.new_signers)} with new signers, "
            f"{len(baseline.new_findings)} new findings, "
            f"{len(baseline.resolved_findings)} resolved"
        )

    if report.findings:
        out.append("")
        out.append("Findings")
        for f in sorted(report.findings, key=Finding.sort_key):
            new = baseline is not None and baseline.is_new_finding(f, _sha_of(report, f.path))
            out.extend(_finding_lines(f, color, verbose, new))

    if npm is not None:
        out.append("")
        out.extend(_npm_lines(npm, verbose))

    changed = [r for r in report.files if r.status != Status.IDENTICAL]
    out.append("")
    out.append(f"Files ({len(report.files)} compared, {len(changed)} not identical)")
    if changed:
        width = max(len(r.status.value) for r in changed)
        for r in sorted(changed, key=lambda r: r.path):
            sig = r.shipped.facts.signature if r.shipped else None
            signer = e(sig.signers[0].subject) if sig and sig.signers else "unsigned"
            extra = ""
            if r.slices:
                arches = ", ".join(f"{e(s.arch)}={s.status.value}" for s in r.slices)
                extra = f"  [slices: {arches}]"
            is_new = baseline is not None and baseline.is_new_file(r.path)
            new_mark = " [new]" if is_new else ""
            out.append(f"  {r.status.value:<{width}}  {e(r.path)}  ({signer}){extra}{new_mark}")
    if verbose:
        for r in sorted(report.files, key=lambda r: r.path):
            if r.status == Status.IDENTICAL:
                out.append(f"  identical  {e(r.path)}")
    return "\n".join(out) + "\n"


_NPM_MARK = {
    "failing": "FAIL",
    "unverifiable": "????",
    "unavailable": "n/a ",
    "skipped": "skip",
    "verified": "ok  ",
}


def _npm_lines(npm: NpmSummary, verbose: bool) -> list[str]:
    """The dependencies, failing ones first; verified ones only with -v."""
    out = [f"npm dependencies: {npm.headline()}"]
    shown = [d for d in npm.lines if verbose or d.state != "verified"]
    for d in shown:
        where = ", ".join(d.paths[:3]) + (" ..." if len(d.paths) > 3 else "")
        line = f"  {_NPM_MARK[d.state]}  {d.label}  {where}"
        if d.rules:
            line += f"  [{', '.join(d.rules)}]"
        out.append(line)
        if d.files:
            out.append(f"          files: {', '.join(d.files)}")
        status = (d.component.npm or {}).get("status")
        if d.state != "verified" and status != "verified" and d.component.proof:
            out.append(f"          {d.component.proof[0]}")
        elif verbose:
            for step in d.component.proof:
                out.append(f"          proven: {step}")
    hidden = len(npm.lines) - len(shown)
    if hidden:
        out.append(f"  ({hidden} verified dependencies not listed; -v lists them)")
    return [e(line) for line in out]  # package names and paths come from the artifact


_EVIDENCE_ORDER = (
    "arch",
    "renamed_from",
    "matched_reference",
    "signer_expected",
    "signer_actual",
    "expected_sha256",
    "actual_sha256",
)


def _sha_of(report: Report, path: str) -> str | None:
    for r in report.files:
        if r.path == path and r.shipped is not None:
            return r.shipped.sha256
    return None


def _finding_lines(f: Finding, color: bool, verbose: bool, new: bool = False) -> list[str]:
    sev = _paint(f"{f.severity.value.upper():<8}", f.severity, color)
    tag = (
        "  (suppressed: " + (e(f.waiver.reason) if f.waiver else "waived") + ")"
        if f.suppressed
        else ""
    )
    mark = " [new]" if new else ""
    lines = [f"  {sev} {e(f.rule):<30} {e(f.location)}{tag}{mark}", f"           {e(f.message)}"]
    ev: Mapping[str, Any] = f.evidence
    sections = ev.get("sections")
    if sections:
        parts = []
        for s in sections:
            n = s.get("differing_bytes")
            name = e(s.get("name"))
            parts.append(f"{name} ({e(n)} bytes differ)" if n is not None else name)
        lines.append(f"           sections: {', '.join(parts)}")
    for key in (
        "entry_point_changed",
        "imports_changed",
        "exports_changed",
        "tls_callbacks_changed",
    ):
        if ev.get(key):
            lines.append(f"           {key.replace('_', ' ')}")
    if ev.get("executable_sections_changed"):
        changed = e(ev["executable_sections_changed"])
        lines.append(f"           executable sections changed: {changed}")
    for r in ev.get("ranges", []) or []:
        lines.append(f"           bytes {e(r.get('offset'))}..+{e(r.get('length'))}")
    for key in ("entropy", "first_bytes", "windows_default", "padding_check"):
        if key in ev:
            lines.append(f"           {key}: {e(ev[key])}")
    for key in _EVIDENCE_ORDER:
        if ev.get(key) is not None:
            lines.append(f"           {key}: {e(ev[key])}")
    lines += [f"           {e(x)}" for x in summary_lines(ev)]
    if verbose:
        shown = {"sections", "ranges", "entropy", "first_bytes", *_EVIDENCE_ORDER, *EXPLAIN_KEYS}
        for key, val in sorted(ev.items()):
            if key not in shown:
                lines.append(f"           {e(key)}: {e(val)}")
    return lines
