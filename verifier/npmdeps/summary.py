"""What a report says about the app's npm dependencies, for people (text and HTML reports).

A dependency "has findings" when an unsuppressed finding above ``info`` names its component
(``evidence.component``); "verified" ones were proven and compared and have none;
"unverifiable" ones no registry knows (``unverifiable-dependency``, info).
"""

from __future__ import annotations

from collections import defaultdict

from verifier.model import Component, Finding, Report, Severity
from verifier.record import record


@record
class DepLine:
    component: Component
    state: str  # failing | unverifiable | unavailable | skipped | verified
    rules: tuple[str, ...]  # rules of its findings (failing ones)
    files: tuple[str, ...]  # files named by those findings (up to a few)

    @property
    def label(self) -> str:
        c = self.component
        return c.name[len("npm:") :] if c.name.startswith("npm:") else c.name

    @property
    def paths(self) -> tuple[str, ...]:
        npm = self.component.npm or {}
        p = npm.get("paths", [])
        return tuple(str(x) for x in p) if isinstance(p, list) else ()


@record
class NpmSummary:
    lines: tuple[DepLine, ...]  # failing first, then unverifiable, unavailable, skipped, ok

    def count(self, state: str) -> int:
        return sum(1 for d in self.lines if d.state == state)

    def headline(self) -> str:
        text = (
            f"{self.count('verified')} dependencies verified, {self.count('unverifiable')} "
            f"unverifiable, {self.count('failing')} with findings"
        )
        if self.count("unavailable"):
            text += f", {self.count('unavailable')} not obtained"
        if self.count("skipped"):
            text += f", {self.count('skipped')} skipped by policy"
        return text


_ORDER = {"failing": 0, "unverifiable": 1, "unavailable": 2, "skipped": 3, "verified": 4}


def summarise(report: Report) -> NpmSummary | None:
    deps = [c for c in report.components if c.npm is not None]
    if not deps:
        return None
    by_comp: dict[str, list[Finding]] = defaultdict(list)
    for f in report.findings:
        if f.suppressed or f.severity == Severity.INFO:
            continue
        comp = f.evidence.get("component")
        if isinstance(comp, str):
            by_comp[comp].append(f)
    lines = []
    for c in deps:
        status = str((c.npm or {}).get("status", ""))
        hits = by_comp.get(c.name, [])
        if hits or status in ("mismatch", "unknown-version"):
            state = "failing"
        elif status in ("unverifiable", "unavailable", "skipped"):
            state = status
        else:
            state = "verified"
        rules = tuple(sorted({f.rule for f in hits}))
        files = tuple(sorted({str(f.evidence.get("file") or f.path) for f in hits}))[:5]
        lines.append(DepLine(c, state, rules, files))
    lines.sort(key=lambda d: (_ORDER[d.state], d.label))
    return NpmSummary(tuple(lines))
