"""HTML of a divergence explanation: a picture of each divergent file and its disassembly.

Per divergent file (each divergent slice of a Mach-O): an inline SVG bar of the file's regions
(sections, segments, headers) drawn to scale, with the changed ranges marked under it (each at
least one pixel wide so a 5-byte patch stays visible), then the structural changes and the
upstream and shipped instructions side by side. No script and nothing fetched: the SVG is
inline markup, which the report's Content-Security-Policy allows. Every string from the
artifact goes through the report's ``esc``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from verifier.report.explain_text import function_label

CSS = """
.divergent{background:#fff;border:1px solid #e5e7eb;border-left:6px solid var(--crit);
border-radius:6px;padding:12px 16px;margin:12px 0}
.fileviz{display:block;width:100%;max-width:1100px;height:auto;margin:6px 0 2px}
.legend{font-size:12px;color:#4b5563;margin:0 0 8px}
.legend i{display:inline-block;width:12px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
table.dis{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px;width:auto}
table.dis td{padding:1px 10px;border:0;white-space:pre}
table.dis th{border:0;border-bottom:1px solid #e5e7eb}
table.dis tr.changed td.up{background:#fee2e2}table.dis tr.changed td.sh{background:#fef3c7}
table.dis tr.changed td.mk{color:var(--crit);font-weight:700}
table.dis tr.gap td{color:#9ca3af;font-style:italic}
table.dis td.ad{color:#6b7280}
ul.facts{margin:4px 0 8px;padding-left:20px}
"""

_W = 1000  # SVG user units
_COLORS = {"same": "#d1d5db", "changed": "#fca5a5", "added": "#fb923c"}
_EXEC_STROKE = "#1d4ed8"


def _slices(ev: Mapping[str, Any]) -> list[tuple[str | None, Mapping[str, Any]]]:
    sl = [s for s in ev.get("slices") or [] if isinstance(s, Mapping) and "explanation" in s]
    if sl:
        return [(str(s.get("arch")), s) for s in sl]
    return [(None, ev)] if "explanation" in ev else []


def file_picture(e: Mapping[str, Any], esc: Callable[[object], str]) -> str:
    """The regions of the file (or slice) as a bar, changed ranges marked below, to scale."""
    layout = [r for r in (e.get("explanation") or {}).get("layout") or [] if isinstance(r, Mapping)]
    if not layout:
        return ""
    lo = min(int(r["offset"]) for r in layout)
    hi = max(int(r["offset"]) + int(r["size"]) for r in layout)
    total = max(hi - lo, 1)

    def x(off: int) -> float:
        return (off - lo) / total * _W

    parts = [
        f'<svg class="fileviz" viewBox="0 0 {_W} 78" '
        'role="img" aria-label="regions of the file with the changed ranges">'
    ]
    for r in layout:
        off, size = int(r["offset"]), int(r["size"])
        w = max(size / total * _W, 1.0)
        color = _COLORS.get(str(r.get("status")), "#d1d5db")
        stroke = f' stroke="{_EXEC_STROKE}" stroke-width="2"' if r.get("executable") else ""
        parts.append(
            f'<rect x="{x(off):.2f}" y="4" width="{w:.2f}" height="30" fill="{color}"{stroke}>'
            f"<title>{esc(r.get('name'))}: {size:,} bytes at {off:#x} ({esc(r.get('status'))})"
            "</title></rect>"
        )
        if w > 7 * max(len(str(r.get("name"))), 3):
            parts.append(
                f'<text x="{x(off) + w / 2:.2f}" y="24" font-size="12" text-anchor="middle" '
                f'font-family="sans-serif" fill="#111827">{esc(r.get("name"))}</text>'
            )
    for r in layout:
        for sub in r.get("sections") or []:
            if not isinstance(sub, Mapping) or not isinstance(sub.get("offset"), int):
                continue
            w = max(int(sub.get("size") or 0) / total * _W, 1.0)
            parts.append(
                f'<rect x="{x(sub["offset"]):.2f}" y="8" width="{w:.2f}" height="22" fill="none" '
                f'stroke="#374151" stroke-dasharray="3 2"><title>{esc(sub.get("name"))}: '
                f"{int(sub.get('size') or 0):,} bytes</title></rect>"
            )
    parts.append(f'<rect x="0" y="42" width="{_W}" height="14" fill="#f3f4f6"/>')
    for c in e.get("changes") or []:
        off = c.get("offset")
        if not isinstance(off, int):
            continue
        w = max(int(c.get("length") or 0) / total * _W, 1.5)
        parts.append(
            f'<rect x="{x(off):.2f}" y="42" width="{w:.2f}" height="14" fill="#b91c1c">'
            f"<title>{esc(c.get('region'))}: {int(c.get('length') or 0):,} bytes at {off:#x}"
            "</title></rect>"
        )
    parts.append(
        f'<text x="0" y="72" font-size="11" font-family="sans-serif" fill="#6b7280">{lo:#x}</text>'
        f'<text x="{_W}" y="72" font-size="11" text-anchor="end" font-family="sans-serif" '
        f'fill="#6b7280">{hi:#x} ({total:,} bytes)</text></svg>'
    )
    legend = (
        '<p class="legend">to scale:<i style="background:#d1d5db"></i>unchanged'
        '<i style="background:#fca5a5"></i>changed region<i style="background:#fb923c"></i>'
        'added region<i style="background:#fff;border:2px solid #1d4ed8"></i>code'
        '<i style="background:#b91c1c"></i>changed bytes</p>'
    )
    return "".join(parts) + legend


def _facts(e: Mapping[str, Any], esc: Callable[[object], str]) -> str:
    items: list[str] = []
    fns: list[str] = []
    for c in e.get("changes") or []:
        for f in c.get("functions") or []:
            label = function_label(f, c.get("address"))
            if label not in fns:
                fns.append(label)
    if fns:
        items.append("functions touched: " + ", ".join(f"<code>{esc(f)}</code>" for f in fns[:12]))
    for key in (
        "imports_added",
        "imports_removed",
        "exports_added",
        "exports_removed",
        "sections_added",
        "sections_removed",
    ):
        vals = e.get(key) or []
        if vals:
            shown = ", ".join(f"<code>{esc(v)}</code>" for v in vals[:16])
            more = f" (+{len(vals) - 16} more)" if len(vals) > 16 else ""
            items.append(f"{esc(key.replace('_', ' '))}: {shown}{more}")
    for s in (e.get("strings_added") or [])[:12]:
        items.append(f"string added ({esc(s.get('kind'))}): <code>{esc(s.get('value'))}</code>")
    ents = [c for c in e.get("changes") or [] if isinstance(c.get("entropy"), float)]
    for c in sorted(ents, key=lambda c: -float(c["entropy"]))[:1]:
        if c["entropy"] >= 7.2:
            items.append(
                f"highest entropy: {c['entropy']:.2f} bits/byte over {int(c.get('length') or 0):,}"
                f" bytes in <code>{esc(c.get('region'))}</code> (looks encrypted or compressed)"
            )
    ex = e.get("explanation") or {}
    for t in ex.get("truncated") or []:
        items.append(f"<span class='muted'>cap: {esc(t)}</span>")
    return f"<ul class='facts'>{''.join(f'<li>{i}</li>' for i in items)}</ul>" if items else ""


def _insn_cells(i: Mapping[str, Any] | None, esc: Callable[[object], str]) -> tuple[str, str]:
    if not i:
        return "", ""
    a = i.get("address")
    return (f"{a:#x}" if isinstance(a, int) else ""), esc(i.get("text", ""))


def disassembly(e: Mapping[str, Any], esc: Callable[[object], str]) -> str:
    out: list[str] = []
    for w in e.get("disassembly") or []:
        fn = w.get("function")
        head = f"<code>{esc(w.get('region'))}</code> at {esc(w.get('address_kind'))} "
        head += f"<code>{int(w.get('address') or 0):#x}</code>"
        if fn:
            head += f", function <code>{esc(function_label(fn))}</code>"
        if not w.get("upstream_present", True):
            head += " <span class='muted'>(no upstream counterpart)</span>"
        rows = [
            "<tr><th></th><th>address</th><th>upstream</th><th>address</th><th>shipped</th></tr>"
        ]
        for r in w.get("rows") or []:
            if r.get("kind") == "gap":
                rows.append(
                    f"<tr class='gap'><td></td><td colspan=4>… {int(r.get('skipped') or 0)} "
                    "unchanged instruction(s)</td></tr>"
                )
                continue
            ua, ut = _insn_cells(r.get("upstream"), esc)
            sa, st = _insn_cells(r.get("shipped"), esc)
            changed = r.get("kind") == "changed"
            rows.append(
                f"<tr class='{'changed' if changed else 'same'}'><td class='mk'>"
                f"{'≠' if changed else ''}</td><td class='ad'>{ua}</td><td class='up'>{ut}</td>"
                f"<td class='ad'>{sa}</td><td class='sh'>{st}</td></tr>"
            )
        if w.get("truncated"):
            rows.append("<tr class='gap'><td></td><td colspan=4>… cut at the cap</td></tr>")
        out.append(f"<h4>{head}</h4><table class='dis'>{''.join(rows)}</table>")
    return "".join(out)


def divergent_file(
    path: str, ev: Mapping[str, Any], esc: Callable[[object], str], anchor: str = ""
) -> str:
    """One divergent file: per explained slice, the picture, the facts and the disassembly."""
    body: list[str] = []
    for arch, e in _slices(ev):
        ex = e.get("explanation") or {}
        title = f"<h4>{esc(arch)} slice</h4>" if arch else ""
        if ex.get("status") != "explained":
            body.append(
                f"{title}<p class='muted'>Explanation unavailable: {esc(ex.get('reason'))}</p>"
            )
            continue
        summary = (
            f"<p>{int(ex.get('changes_total') or 0):,} changed range(s), "
            f"{int(ex.get('changed_bytes') or 0):,} bytes differ ({esc(ex.get('arch'))}).</p>"
        )
        body.append(title + summary + file_picture(e, esc) + _facts(e, esc) + disassembly(e, esc))
    if not body:
        return ""
    ident = f' id="{esc(anchor)}"' if anchor else ""
    head = f"<h3><code>{esc(path)}</code></h3>"
    return f'<section class="divergent"{ident}>{head}{"".join(body)}</section>'


def divergent_files(
    items: Sequence[tuple[str, Mapping[str, Any]]], esc: Callable[[object], str]
) -> str:
    return "".join(divergent_file(p, ev, esc, f"changed-{i}") for i, (p, ev) in enumerate(items, 1))
