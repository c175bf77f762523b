"""HTML renderer (``--format html``): one self-contained page an auditor can read.

No scripts, no network assets (a Content-Security-Policy forbids both), inline CSS only. Every
string that comes from the artifact (file names, signer names, messages, evidence) is escaped,
and invisible or direction-changing characters in it are shown as ``\\u....`` so a hostile file
name cannot disguise itself.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from verifier.baseline import BaselineAnnotations, file_sha256s, finding_key
from verifier.model import FileResult, Finding, Report, Severity, Signer, Status
from verifier.npmdeps.summary import summarise
from verifier.report import explain_html
from verifier.report.escape import json_safe, utf8
from verifier.report.explain_text import EXPLAIN_KEYS
from verifier.rules import rule

_SEVERITIES = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO)

# control characters, bidi overrides/isolates, zero-width characters, BOM
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)

_CSS = (
    """
:root{--crit:#9b1c1c;--high:#c2410c;--med:#a16207;--low:#1d4ed8;--info:#4b5563;--ok:#166534}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;padding:24px 32px;color:#111827;background:#f9fafb}
h1{font-size:20px;margin:0 0 12px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #e5e7eb;padding-bottom:4px}
h3{font-size:16px;margin:0 0 6px}
code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:13px;
overflow-wrap:anywhere}
.verdict{border-radius:10px;padding:18px 24px;color:#fff;margin-bottom:16px}
.verdict .word{font-size:44px;font-weight:800;letter-spacing:.06em}
.verdict.fail{background:var(--crit)}.verdict.pass{background:var(--ok)}
.verdict.inconclusive{background:#92400e}
.counts{display:flex;gap:10px;flex-wrap:wrap;margin-top:8px}
.count{background:rgba(255,255,255,.18);border-radius:6px;padding:4px 10px;font-weight:600}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0}
th,td{border:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600}
.kv th{width:210px}
.badge{display:inline-block;border-radius:4px;padding:1px 7px;font-size:12px;font-weight:700;
color:#fff;white-space:nowrap}
.sev-critical{background:var(--crit)}.sev-high{background:var(--high)}
.sev-medium{background:var(--med)}.sev-low{background:var(--low)}.sev-info{background:var(--info)}
.st-identical,.st-own{background:var(--ok)}.st-identical-except-signature{background:#0f766e}
.st-resources-only{background:var(--med)}.st-divergent{background:var(--crit)}
.st-missing{background:var(--info)}.st-unexpected{background:var(--high)}
.new{background:#7c3aed}.sup{background:#6b7280}
.finding{background:#fff;border:1px solid #e5e7eb;border-left:6px solid var(--info);
border-radius:6px;padding:12px 16px;margin:12px 0}
.finding.critical{border-left-color:var(--crit)}.finding.high{border-left-color:var(--high)}
.finding.medium{border-left-color:var(--med)}.finding.low{border-left-color:var(--low)}
.finding.suppressed{opacity:.7}
.cmp td.diff{background:#fee2e2}.cmp td.same{background:#dcfce7}
.bar{display:inline-block;height:10px;background:#e5e7eb;width:160px;vertical-align:middle;
border-radius:3px;overflow:hidden}.bar span{display:block;height:10px;background:var(--crit)}
.hex{background:#111827;color:#fde68a;padding:6px 10px;border-radius:4px;display:block;
white-space:pre-wrap}
.muted{color:#6b7280}
ul.summary{background:#fff;border:1px solid #e5e7eb;padding:8px 8px 8px 28px;margin:0 0 8px}
ul.summary li{margin:2px 0}
footer{margin-top:32px;color:#6b7280;font-size:12px}
details.identical summary{cursor:pointer;color:#374151;margin:6px 0}
"""
    + explain_html.CSS
)


def _visible(s: str) -> str:
    return utf8(_INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", s))


def esc(value: object) -> str:
    """Escape anything for HTML text or attribute context (quotes included)."""
    return html.escape(_visible(str(value)), quote=True)


def _cls(value: str) -> str:
    """A CSS class token from a known enum value (anything else becomes 'x')."""
    return value if re.fullmatch(r"[a-z][a-z0-9-]{0,40}", value) else "x"


def _badge(text: str, cls: str) -> str:
    return f'<span class="badge {_cls(cls)}">{esc(text)}</span>'


def _sev_badge(sev: Severity) -> str:
    return _badge(sev.value.upper(), f"sev-{sev.value}")


def _size(n: object) -> str:
    if not isinstance(n, int):
        return esc(n)
    return f"{n:,} bytes"


def _signer_text(signers: Sequence[Signer]) -> str:
    if not signers:
        return '<span class="muted">unsigned</span>'
    return "<br>".join(esc(_cn(s.subject)) for s in signers)


def _cn(subject: str) -> str:
    m = re.search(r"CN=([^,]+)", subject)
    return m.group(1).strip() if m else subject


def _hex_preview(value: object, limit: int = 64) -> str:
    """``first_bytes`` evidence (hex string or bytes) as spaced hex, 16 bytes a line."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    else:
        text = re.sub(r"[\s:]", "", str(value))
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return f"<code>{esc(value)}</code>"
    shown = raw[:limit]
    lines = [
        " ".join(f"{b:02x}" for b in shown[i : i + 16])
        + "   "
        + "".join(chr(b) if 32 <= b < 127 else "." for b in shown[i : i + 16])
        for i in range(0, len(shown), 16)
    ]
    more = f"\n… {len(raw) - limit} more bytes" if len(raw) > limit else ""
    return f'<code class="hex">{esc(chr(10).join(lines) + more)}</code>'


def _entropy(value: object) -> str:
    try:
        e = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return esc(value)
    pct = max(0.0, min(100.0, e / 8.0 * 100.0))
    note = " (looks encrypted or compressed)" if e >= 7.2 else ""
    return (
        f'<span class="bar"><span style="width:{pct:.0f}%"></span></span> '
        f"{e:.2f} bits/byte{esc(note)}"
    )


def _compare_row(label: str, expected: object, actual: object, mono: bool) -> str:
    same = expected == actual
    cls = "same" if same else "diff"
    wrap = ("<code>", "</code>") if mono else ("", "")

    def cell(v: object) -> str:
        return (
            '<span class="muted">none</span>' if v in (None, "") else f"{wrap[0]}{esc(v)}{wrap[1]}"
        )

    return (
        f"<tr><th>{esc(label)}</th><td class='{cls}'>{cell(expected)}</td>"
        f"<td class='{cls}'>{cell(actual)}</td></tr>"
    )


_LABELS = {
    "sha256": "sha256",
    "normalized_sha256": "sha256 without signature",
    "container_sha256": "certificate table sha256",
    "primary_container_sha256": "primary signature sha256",
}
_CHANGED_SUFFIX = "_changed"


def _pairs(ev: Mapping[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(label, expected key, actual key, monospace) for every expected/actual pair present."""
    out: list[tuple[str, str, str, bool]] = []
    if "signer_expected" in ev or "signer_actual" in ev:
        out.append(("signer", "signer_expected", "signer_actual", False))
    names = []
    for k in ev:
        if isinstance(k, str) and k.startswith(("expected_", "actual_")):
            name = k.split("_", 1)[1]
            if name not in names:
                names.append(name)
    names.sort(key=lambda n: (n != "sha256", n))
    for n in names:
        out.append((_LABELS.get(n, n.replace("_", " ")), f"expected_{n}", f"actual_{n}", True))
    return out


def _payload_rows(ev: Mapping[str, Any]) -> list[str]:
    rows = []
    if isinstance(ev.get("offset"), int) and isinstance(ev.get("length"), int):
        off = int(ev["offset"])
        rows.append(
            f"<tr><th>at</th><td><code>0x{off:x}</code> ({off:,}), {_size(ev['length'])}</td></tr>"
        )
    if "entropy" in ev:
        rows.append(f"<tr><th>entropy</th><td>{_entropy(ev['entropy'])}</td></tr>")
    if "first_bytes" in ev:
        rows.append(f"<tr><th>first bytes</th><td>{_hex_preview(ev['first_bytes'])}</td></tr>")
    return rows


def _evidence(ev: Mapping[str, Any]) -> str:
    """A finding's evidence: the known kinds as tables, the rest as key/value rows."""
    parts: list[str] = []
    handled: set[str] = set()
    for part in (_ev_pairs, _ev_flags, _ev_sections, _ev_ranges, _ev_hidden, _ev_explained):
        html, keys = part(ev)
        if html:
            parts.append(html)
        handled |= keys
    rest = {k: v for k, v in ev.items() if k not in handled and v is not None}
    if rest:
        rows = [
            f"<tr><th>{esc(k)}</th><td><code>{esc(_plain(v))}</code></td></tr>"
            for k, v in sorted(rest.items(), key=lambda kv: str(kv[0]))
        ]
        parts.append(f'<table class="kv">{"".join(rows)}</table>')
    return "".join(parts)


_Part = tuple[str, set[str]]  # (HTML, the evidence keys it shows)


def _ev_pairs(ev: Mapping[str, Any]) -> _Part:
    pairs = _pairs(ev)
    if not pairs:
        return "", set()
    rows = ["<tr><th></th><th>expected (upstream)</th><th>actual (shipped)</th></tr>"]
    handled: set[str] = set()
    for label, ek, ak, mono in pairs:
        rows.append(_compare_row(label, ev.get(ek), ev.get(ak), mono))
        handled |= {ek, ak}
    return f'<table class="cmp">{"".join(rows)}</table>', handled


def _ev_flags(ev: Mapping[str, Any]) -> _Part:
    changed = [
        (k[: -len(_CHANGED_SUFFIX)].replace("_", " "), v)
        for k, v in ev.items()
        if isinstance(k, str) and k.endswith(_CHANGED_SUFFIX) and isinstance(v, bool)
    ]
    if not changed:
        return "", set()
    flags = " ".join(
        _badge(f"{name}: {'changed' if v else 'same'}", "sev-high" if v else "st-own")
        for name, v in changed
    )
    return f"<p>{flags}</p>", {k for k in ev if isinstance(k, str) and k.endswith(_CHANGED_SUFFIX)}


def _ev_sections(ev: Mapping[str, Any]) -> _Part:
    sections = ev.get("sections")
    if not isinstance(sections, list | tuple) or not sections:
        return "", set()
    rows = ["<tr><th>section</th><th>differing bytes</th></tr>"]
    for s in sections:
        if isinstance(s, Mapping):
            rows.append(
                f"<tr><td><code>{esc(s.get('name', '?'))}</code></td>"
                f"<td>{_size(s.get('differing_bytes'))}</td></tr>"
            )
        else:
            rows.append(f"<tr><td colspan=2><code>{esc(s)}</code></td></tr>")
    return f"<h4>Differing sections</h4><table>{''.join(rows)}</table>", {"sections"}


def _ev_ranges(ev: Mapping[str, Any]) -> _Part:
    ranges = ev.get("ranges")
    if not isinstance(ranges, list | tuple) or not ranges:
        return "", set()
    rows = ["<tr><th>offset</th><th>length</th></tr>"]
    for r in ranges:
        if isinstance(r, Mapping) and isinstance(r.get("offset"), int):
            off = int(r["offset"])
            rows.append(
                f"<tr><td><code>0x{off:x}</code> ({off:,})</td>"
                f"<td>{_size(r.get('length'))}</td></tr>"
            )
        else:
            rows.append(f"<tr><td colspan=2><code>{esc(r)}</code></td></tr>")
    return f"<h4>Byte ranges</h4><table>{''.join(rows)}</table>", {"ranges"}


def _ev_hidden(ev: Mapping[str, Any]) -> _Part:
    top = {k: ev[k] for k in ("entropy", "first_bytes") if k in ev}
    rows = _payload_rows(top)
    handled: set[str] = set()
    payload = ev.get("payload")
    if isinstance(payload, Mapping):
        rows += _payload_rows(payload)
        extra = {
            k: v
            for k, v in payload.items()
            if k not in {"offset", "length", "entropy", "first_bytes"}
        }
        rows += [
            f"<tr><th>{esc(k)}</th><td><code>{esc(_plain(v))}</code></td></tr>"
            for k, v in sorted(extra.items(), key=lambda kv: str(kv[0]))
        ]
        handled.add("payload")
    if not rows:
        return "", handled
    return f'<h4>Hidden data</h4><table class="kv">{"".join(rows)}</table>', handled | set(top)


def _ev_explained(ev: Mapping[str, Any]) -> _Part:
    if not any(k in ev for k in EXPLAIN_KEYS):
        return "", set()
    html = (
        "<p class='muted'>What changed, with the disassembly: see <a href='#changed'>"
        "Divergent files</a>.</p>"
    )
    return html, set(EXPLAIN_KEYS) | ({"slices"} if _explained_slices(ev) else set())


def _explained_slices(ev: Mapping[str, Any]) -> bool:
    sl = ev.get("slices")
    return isinstance(sl, list | tuple) and any(
        isinstance(s, Mapping) and "explanation" in s for s in sl
    )


def _plain(v: object) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex()
    try:
        return json.dumps(json_safe(v), sort_keys=True, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(v)


def _counts(findings: Iterable[Finding]) -> dict[Severity, int]:
    counts = dict.fromkeys(_SEVERITIES, 0)
    for f in findings:
        if not f.suppressed:
            counts[f.severity] += 1
    return counts


def _verdict(report: Report, baseline: BaselineAnnotations | None) -> str:
    counts = _counts(report.findings)
    suppressed = sum(1 for f in report.findings if f.suppressed)
    chips = "".join(f'<span class="count">{counts[s]} {esc(s.value)}</span>' for s in _SEVERITIES)
    if suppressed:
        chips += f'<span class="count">{suppressed} suppressed</span>'
    v = report.verdict.value
    reasons = "".join(f"<div>{esc(r)}</div>" for r in report.inconclusive_reasons)
    art = report.artifact
    rows = [
        ("artifact", f"<code>{esc(art.get('path', ''))}</code>"),
        ("sha256", f"<code>{esc(art.get('sha256', ''))}</code>"),
        ("size", _size(art.get("size"))),
        ("fails on", f"{esc(report.fail_on.value)} and above"),
    ]
    if report.policy:
        pol = report.policy
        rows.append(
            ("policy", f"{esc(pol.get('name', ''))} <code>{esc(pol.get('path') or '')}</code>")
        )
    if report.app_root:
        rows.append(("application root", f"<code>{esc(report.app_root)}</code>"))
    if baseline is not None:
        rows.append(
            (
                "baseline",
                f"{esc(baseline.baseline_artifact.get('path', baseline.baseline_path or ''))}: "
                f"{len(baseline.new_files)} new files, {len(baseline.new_signers)} files with new "
                f"signers, {len(baseline.newly_divergent)} newly divergent, "
                f"{len(baseline.new_findings)} new findings",
            )
        )
    for n in report.notes:
        rows.append(("note", f"{esc(n.kind)}: <code>{esc(n.location)}</code>: {esc(n.message)}"))
    kv = "".join(f"<tr><th>{esc(k)}</th><td>{val}</td></tr>" for k, val in rows)
    return (
        f'<div class="verdict {_cls(v)}" id="verdict"><div class="word">{esc(v.upper())}</div>'
        f'<div class="counts">{chips}</div>{reasons}</div>'
        f'<table class="kv">{kv}</table>'
    )


def _components(report: Report) -> str:
    upstream = [c for c in report.components if c.npm is None]
    npm = _npm_dependencies(report)
    if not upstream:
        return npm or "<p class='muted'>No upstream components were identified.</p>"
    rows = [
        "<tr><th>component</th><th>version</th><th>platform</th><th>source</th>"
        "<th>how it was proven</th><th>reference digests</th></tr>"
    ]
    for c in upstream:
        plat = "-".join(x for x in (c.platform, c.arch) if x)
        proof = "<br>".join(esc(p) for p in c.proof) or "<span class='muted'>not proven</span>"
        digests = "<br>".join(
            f"{esc(k)}: <code>{esc(v)}</code>" for k, v in sorted(c.digests.items())
        )
        rows.append(
            f"<tr><td>{esc(c.name)}</td><td>{esc(c.version or '')}</td><td>{esc(plat)}</td>"
            f"<td><code>{esc(c.source)}</code></td><td>{proof}</td><td>{digests}</td></tr>"
        )
    return f"<table>{''.join(rows)}</table>{npm}"


_NPM_STATE = {
    "failing": ("sev-high", "findings"),
    "unverifiable": ("sev-info", "unverifiable"),
    "unavailable": ("sev-medium", "not obtained"),
    "skipped": ("sev-info", "skipped"),
    "verified": ("st-identical", "verified"),
}


def _npm_dependencies(report: Report) -> str:
    """The app's npm dependencies (deps:npm): failing first, each with how it was proven."""
    summary = summarise(report)
    if summary is None:
        return ""
    rows = [
        "<tr><th>state</th><th>package</th><th>installed at</th><th>integrity</th>"
        "<th>how it was proven</th><th>findings</th></tr>"
    ]
    for d in summary.lines:
        cls, word = _NPM_STATE[d.state]
        npm = d.component.npm or {}
        proof = "<br>".join(esc(p) for p in d.component.proof) or "<span class='muted'>-</span>"
        found = esc(", ".join(d.rules))
        if d.files:
            found += "<br><code>" + esc(", ".join(d.files)) + "</code>"
        rows.append(
            f"<tr><td><span class='badge {cls}'>{esc(word)}</span></td>"
            f"<td><code>{esc(d.label)}</code></td>"
            f"<td><code>{'<br>'.join(esc(p) for p in d.paths)}</code></td>"
            f"<td><code>{esc(str(npm.get('integrity', '')))}</code></td>"
            f"<td>{proof}</td><td>{found}</td></tr>"
        )
    return f"<h3>npm dependencies: {esc(summary.headline())}</h3><table>{''.join(rows)}</table>"


_HEAD = "<tr><th>path</th><th>status</th><th>component</th><th>signer</th><th>sha256</th></tr>"


def _files(report: Report, baseline: BaselineAnnotations | None) -> str:
    """Files that are not identical first (divergent ones at the top); identical files folded
    away behind their count."""
    order = {Status.DIVERGENT: 0}
    files = sorted(report.files, key=lambda r: (order.get(r.status, 1), r.path))
    shown = [r for r in files if r.status != Status.IDENTICAL]
    same = [r for r in files if r.status == Status.IDENTICAL]
    out = f'<table id="files">{_HEAD}{"".join(_file_row(r, baseline) for r in shown)}</table>'
    if same:
        out += (
            f'<details class="identical"><summary>{len(same)} identical file'
            f"{'s' if len(same) != 1 else ''} (click to show)</summary>"
            f"<table>{_HEAD}{''.join(_file_row(r, baseline) for r in same)}</table></details>"
        )
    return out


def _divergent(report: Report) -> str:
    """Each divergent file with an explanation: the picture of the file and its disassembly."""
    items = [
        (r.path, r.evidence)
        for r in sorted(report.files, key=lambda r: r.path)
        if r.status == Status.DIVERGENT
        and ("explanation" in r.evidence or _explained_slices(r.evidence))
    ]
    if not items:
        return ""
    return f'<h2 id="changed">Divergent files ({len(items)})</h2>' + explain_html.divergent_files(
        items, esc
    )


def _file_row(r: FileResult, baseline: BaselineAnnotations | None) -> str:
    e = r.shipped or r.reference
    sha = e.sha256 if e else ""
    sig = r.shipped.facts.signature if r.shipped else None
    if sig is None:
        signer = '<span class="muted">—</span>'
    else:
        signer = _signer_text(sig.signers)
        if sig.signed and sig.valid is False:
            signer += " " + _badge("INVALID", "sev-high")
        for a in sorted(set(sig.anomalies)):
            signer += " " + _badge(a, "sev-high")
    new = ""
    if baseline is not None and baseline.is_new_file(r.path):
        new = " " + _badge("NEW", "new")
    loc = ""
    if e is not None and e.location and e.location != r.path:
        loc = f"<div class='muted'><code>{esc(e.location)}</code></div>"
    slices = "".join(
        f"<div><code>{esc(sl.arch)}</code> {_badge(sl.status.value, 'st-' + sl.status.value)}</div>"
        for sl in r.slices
    )
    return (
        f"<tr><td><code>{esc(r.path)}</code>{new}{loc}</td>"
        f"<td>{_badge(r.status.value, 'st-' + r.status.value)}{slices}</td>"
        f"<td>{esc(r.component or '')}</td><td>{signer}</td>"
        f"<td><code>{esc(sha)}</code></td></tr>"
    )


def _finding(f: Finding, n: int, is_new: bool) -> str:
    meta = rule(f.rule)
    badges = _sev_badge(f.severity)
    if is_new:
        badges += " " + _badge("NEW SINCE BASELINE", "new")
    waiver = ""
    if f.suppressed:
        badges += " " + _badge("SUPPRESSED", "sup")
        if f.waiver is not None:
            waiver = (
                f"<p class='muted'>Waived: {esc(f.waiver.reason)} (expires "
                f"{esc(f.waiver.expires)}, for sha256 <code>{esc(f.waiver.sha256)}</code>)</p>"
            )
    cls = f"finding {_cls(f.severity.value)}" + (" suppressed" if f.suppressed else "")
    return (
        f'<section class="{cls}" id="finding-{n}">'
        f"<h3>{badges} <code>{esc(f.rule)}</code> — <code>{esc(f.path)}</code></h3>"
        f"<p>{esc(f.message)}</p>"
        f"<p class='muted'>location <code>{esc(f.location)}</code> · {esc(meta.short)}</p>"
        f"{waiver}{_evidence(f.evidence)}</section>"
    )


def _summary(findings: Sequence[Finding]) -> str:
    """One line per finding under the verdict, linking to its evidence below."""
    if not findings:
        return ""
    items = "".join(
        f'<li>{_sev_badge(f.severity)} <a href="#finding-{i}"><code>{esc(f.rule)}</code></a> '
        f"<code>{esc(f.path)}</code>{' (suppressed)' if f.suppressed else ''}</li>"
        for i, f in enumerate(findings, 1)
    )
    return f'<ul class="summary" id="summary">{items}</ul>'


def render_html(report: Report, *, baseline: BaselineAnnotations | None = None) -> str:
    """The report as one self-contained HTML page."""
    findings = sorted(report.findings, key=Finding.sort_key)
    shas = file_sha256s(report)
    body_findings = (
        "".join(
            _finding(
                f,
                i,
                baseline is not None and finding_key(f, shas.get(f.path)) in baseline.new_findings,
            )
            for i, f in enumerate(findings, 1)
        )
        or "<p>No findings.</p>"
    )
    title = f"biv: {report.verdict.value.upper()} — {report.artifact.get('path', '')}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        "<h1>biv build-integrity report</h1>"
        f"{_verdict(report, baseline)}"
        f"{_summary(findings)}"
        f"{_divergent(report)}"
        f"<h2>Components</h2>{_components(report)}"
        f"<h2>Files ({len(report.files)})</h2>{_files(report, baseline)}"
        f"<h2>Findings ({len(findings)})</h2>{body_findings}"
        f"<footer>biv {esc(report.tool_version)} · generated {esc(report.generated_at)} · "
        "schema biv.report/v1</footer>"
        "</body></html>\n"
    )
