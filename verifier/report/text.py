"""The text report: a person sees at once which files diverge and why."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

from verifier.model import Finding, Report, Severity, Status, Verdict

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


def render_text(report: Report, color: bool = False, verbose: bool = False) -> str:
    out: list[str] = []
    art = report.artifact
    out.append(f"biv {report.tool_version}: {art.get('path')}")
    out.append(f"  artifact  sha256 {art.get('sha256')}  ({art.get('size')} bytes)")
    for c in report.components:
        ver = f" {c.version}" if c.version else ""
        plat = f" {c.platform}-{c.arch}" if c.platform else ""
        out.append(f"  upstream  {c.name}{ver}{plat}  from {c.source}")
        for step in c.proof:
            out.append(f"            proven: {step}")
    out.append(f"  app root  {report.app_root or '.'}")
    if report.policy:
        out.append(f"  policy    {report.policy.get('name')}")
    active = [f for f in report.findings if not f.suppressed]
    counts = Counter(f.severity for f in active)
    summary = ", ".join(f"{counts[s]} {s.value}" for s in Severity if counts[s])
    verdict = _paint(f"VERDICT: {report.verdict.value.upper()}", report.verdict, color)
    out.append("")
    out.append(f"{verdict}  ({summary or 'no findings'}; fail-on {report.fail_on.value})")
    for reason in report.inconclusive_reasons:
        out.append(f"  inconclusive: {reason}")

    if report.findings:
        out.append("")
        out.append("Findings")
        for f in sorted(report.findings, key=Finding.sort_key):
            out.extend(_finding_lines(f, color, verbose))

    changed = [r for r in report.files if r.status != Status.IDENTICAL]
    out.append("")
    out.append(f"Files ({len(report.files)} compared, {len(changed)} not identical)")
    if changed:
        width = max(len(r.status.value) for r in changed)
        for r in sorted(changed, key=lambda r: r.path):
            sig = r.shipped.facts.signature if r.shipped else None
            signer = sig.signers[0].subject if sig and sig.signers else "unsigned"
            extra = ""
            if r.slices:
                extra = f"  [slices: {', '.join(f'{s.arch}={s.status.value}' for s in r.slices)}]"
            out.append(f"  {r.status.value:<{width}}  {r.path}  ({signer}){extra}")
    if verbose:
        for r in sorted(report.files, key=lambda r: r.path):
            if r.status == Status.IDENTICAL:
                out.append(f"  identical  {r.path}")
    return "\n".join(out) + "\n"


_EVIDENCE_ORDER = (
    "arch",
    "renamed_from",
    "matched_reference",
    "signer_expected",
    "signer_actual",
    "expected_sha256",
    "actual_sha256",
)


def _finding_lines(f: Finding, color: bool, verbose: bool) -> list[str]:
    sev = _paint(f"{f.severity.value.upper():<8}", f.severity, color)
    tag = (
        "  (suppressed: " + (f.waiver.reason if f.waiver else "waived") + ")"
        if f.suppressed
        else ""
    )
    lines = [f"  {sev} {f.rule:<30} {f.location}{tag}", f"           {f.message}"]
    ev: Mapping[str, Any] = f.evidence
    sections = ev.get("sections")
    if sections:
        parts = []
        for s in sections:
            n = s.get("differing_bytes")
            parts.append(
                f"{s.get('name')} ({n} bytes differ)" if n is not None else str(s.get("name"))
            )
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
        lines.append(f"           executable sections changed: {ev['executable_sections_changed']}")
    for r in ev.get("ranges", []) or []:
        lines.append(f"           bytes {r.get('offset')}..+{r.get('length')}")
    for key in ("entropy", "first_bytes", "windows_default", "padding_check"):
        if key in ev:
            lines.append(f"           {key}: {ev[key]}")
    for key in _EVIDENCE_ORDER:
        if ev.get(key) is not None:
            lines.append(f"           {key}: {ev[key]}")
    if verbose:
        shown = {"sections", "ranges", "entropy", "first_bytes", *_EVIDENCE_ORDER}
        for key, val in sorted(ev.items()):
            if key not in shown:
                lines.append(f"           {key}: {val}")
    return lines
