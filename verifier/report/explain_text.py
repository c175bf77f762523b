"""Text of a divergence explanation: a short summary (``biv verify``) and the full
side-by-side view (``biv inspect FILE --against UPSTREAM_FILE``).

Input is the evidence dict that ``verifier.binary.explain`` produced (``changes``,
``disassembly``, ``imports_added``...). Names and strings come from the artifact: control,
DEL, C1 and bidirectional-override characters are escaped (``\\x1b``, ``\\u202e``) so nothing
reaches the terminal as an escape sequence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# evidence keys the explanation adds (docs/contract.md "Explaining a divergence")
EXPLAIN_KEYS = (
    "explanation",
    "changes",
    "disassembly",
    "imports_added",
    "imports_removed",
    "exports_added",
    "exports_removed",
    "sections_added",
    "sections_removed",
    "strings_added",
)
SUMMARY_ROWS = 6  # changed instruction rows in the verify summary
SUMMARY_FUNCTIONS = 6


def safe(value: object) -> str:
    def esc(m: re.Match[str]) -> str:
        c = ord(m.group())
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _UNSAFE.sub(esc, str(value))


def _addr(v: object) -> str:
    return f"{v:#x}" if isinstance(v, int) else "-"


def function_label(fn: Mapping[str, Any], addr: int | None = None) -> str:
    """``name+0x10`` (or ``sub_1a2b0``) with where the binary says it."""
    start = fn.get("start")
    name = fn.get("name") or (f"sub_{start:x}" if isinstance(start, int) else "?")
    off = ""
    if isinstance(addr, int) and isinstance(start, int) and addr > start:
        off = f"+{addr - start:#x}"
    return f"{safe(name)}{off}"


def _functions(ev: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for ch in ev.get("changes") or []:
        for fn in ch.get("functions") or []:
            label = function_label(fn, ch.get("address"))
            if label not in out:
                out.append(label)
    return out


def _insn(i: Mapping[str, Any] | None) -> str:
    if not i:
        return ""
    return f"{_addr(i.get('address'))}  {safe(i.get('text', ''))}"


def _slices(ev: Mapping[str, Any]) -> list[tuple[str | None, Mapping[str, Any]]]:
    """(arch, evidence) per explained unit: the divergent slices of a Mach-O, else the file."""
    sl = [s for s in ev.get("slices") or [] if isinstance(s, Mapping) and "explanation" in s]
    if sl:
        return [(str(s.get("arch")), s) for s in sl]
    return [(None, ev)] if "explanation" in ev else []


def _list(label: str, names: Sequence[Any], cap: int = 8) -> list[str]:
    if not names:
        return []
    shown = ", ".join(safe(n) for n in names[:cap])
    more = f" (+{len(names) - cap} more)" if len(names) > cap else ""
    return [f"{label}: {shown}{more}"]


def summary_lines(ev: Mapping[str, Any]) -> list[str]:
    """A few lines per divergent file: functions touched, structural changes, first changed
    instructions (no file bytes)."""
    out: list[str] = []
    for arch, e in _slices(ev):
        pre = f"[{arch}] " if arch else ""
        ex = e.get("explanation") or {}
        if ex.get("status") != "explained":
            out.append(f"{pre}explanation unavailable: {safe(ex.get('reason'))}")
            continue
        changes = e.get("changes") or []
        regions: list[str] = []
        for c in changes:
            if c.get("region") not in regions:
                regions.append(str(c.get("region")))
        out.append(
            f"{pre}changed: {ex.get('changes_total', len(changes))} range(s), "
            f"{ex.get('changed_bytes', 0):,} bytes in {', '.join(safe(r) for r in regions[:8])}"
        )
        fns = _functions(e)
        out += _list(f"{pre}functions touched", fns, SUMMARY_FUNCTIONS)
        out += _list(f"{pre}imports added", e.get("imports_added") or [])
        out += _list(f"{pre}imports removed", e.get("imports_removed") or [])
        out += _list(f"{pre}exports added", e.get("exports_added") or [])
        out += _list(f"{pre}sections added", e.get("sections_added") or [])
        strs = [f"{s.get('kind')} {safe(s.get('value'))!r}" for s in e.get("strings_added") or []]
        out += _list(f"{pre}strings added", strs, 4)
        high = [c for c in changes if isinstance(c.get("entropy"), float) and c["entropy"] >= 7.2]
        for c in high[:2]:
            out.append(
                f"{pre}high entropy: {c['entropy']:.2f} bits/byte over {c.get('length'):,} bytes "
                f"at {_addr(c.get('offset'))} ({safe(c.get('region'))}): "
                "looks encrypted or compressed"
            )
        for w in (e.get("disassembly") or [])[:1]:
            fn = w.get("function")
            at = (w.get("change") or {}).get("address")
            where = f"{safe(w.get('region'))} at {w.get('address_kind')} {_addr(at)}"
            if fn:
                where += f", in {function_label(fn, at)}"
            out.append(f"{pre}first changed instructions ({where}):")
            rows = [r for r in w.get("rows") or [] if r.get("kind") == "changed"][:SUMMARY_ROWS]
            width = max([len(_insn(r.get("upstream"))) for r in rows] + [20])
            out.append(f"    {'upstream':<{width}} | shipped")
            for r in rows:
                u, sh = _insn(r.get("upstream")) or "-", _insn(r.get("shipped")) or "-"
                out.append(f"    {u:<{width}} | {sh}")
    return out


def short_summary(ev: Mapping[str, Any]) -> str:
    """One sentence for a SARIF message: functions touched, imports and sections added."""
    bits: list[str] = []
    for arch, e in _slices(ev):
        ex = e.get("explanation") or {}
        if ex.get("status") != "explained":
            continue
        pre = f"{arch}: " if arch else ""
        fns = _functions(e)
        regions: list[str] = []
        for c in e.get("changes") or []:
            if c.get("region") not in regions:
                regions.append(str(c.get("region")))
        part = f"{pre}{ex.get('changed_bytes', 0)} bytes in " + ", ".join(
            safe(r) for r in regions[:4]
        )
        if fns:
            part += "; functions " + ", ".join(fns[:3])
        if e.get("imports_added"):
            part += "; imports added " + ", ".join(safe(x) for x in e["imports_added"][:3])
        if e.get("sections_added"):
            part += "; sections added " + ", ".join(safe(x) for x in e["sections_added"][:3])
        bits.append(part)
    return " | ".join(bits)


def full_lines(ev: Mapping[str, Any]) -> list[str]:
    """Every change and every disassembly window side by side (``inspect --against``)."""
    out: list[str] = []
    for arch, e in _slices(ev):
        if arch:
            out.append(f"slice {arch}")
        ex = e.get("explanation") or {}
        if ex.get("status") != "explained":
            out.append(f"  explanation unavailable: {safe(ex.get('reason'))}")
            continue
        kind = ex.get("address_kind", "address")
        out.append(
            f"  {ex.get('changes_total', 0)} changed range(s), "
            f"{ex.get('changed_bytes', 0):,} bytes differ ({ex.get('arch')})"
        )
        for key in (
            "imports_added",
            "imports_removed",
            "exports_added",
            "exports_removed",
            "sections_added",
            "sections_removed",
        ):
            out += ["  " + x for x in _list(key.replace("_", " "), e.get(key) or [], 64)]
        for s in e.get("strings_added") or []:
            at = _addr(s.get("offset"))
            out.append(f"  string added at {at}: {s.get('kind')} {safe(s.get('value'))!r}")
        out.append("  changes:")
        for c in e.get("changes") or []:
            fns = ", ".join(function_label(f, c.get("address")) for f in c.get("functions") or [])
            fields = ", ".join(safe(f) for f in c.get("fields") or [])
            ent = c.get("entropy")
            out.append(
                f"    {safe(c.get('region')):<16} {c.get('kind'):<8} file {_addr(c.get('offset'))}"
                f" (upstream {_addr(c.get('upstream_offset'))}) {kind} {_addr(c.get('address'))}"
                f" +{c.get('length'):,}"
                + (f"  entropy {ent:.2f}" if isinstance(ent, float) else "")
                + (f"  in {fns}" if fns else "")
                + (f"  [{fields}]" if fields else "")
                + ("" if c.get("exact", True) else "  (coarse: cap reached)")
            )
        for w in e.get("disassembly") or []:
            fn = w.get("function")
            out.append("")
            out.append(
                f"  {safe(w.get('region'))} at {kind} {_addr(w.get('address'))}"
                + (f", function {function_label(fn)}" if fn else "")
                + ("" if w.get("upstream_present", True) else " (no upstream counterpart)")
            )
            rows = w.get("rows") or []
            width = max([len(_insn(r.get("upstream"))) for r in rows] + [24])
            out.append(f"      {'upstream':<{width}}   shipped")
            for r in rows:
                if r.get("kind") == "gap":
                    out.append(f"      ... {r.get('skipped')} unchanged instruction(s)")
                    continue
                mark = "!" if r.get("kind") == "changed" else " "
                u, sh = _insn(r.get("upstream")) or "-", _insn(r.get("shipped")) or "-"
                out.append(f"    {mark} {u:<{width}} | {sh}")
            if w.get("truncated"):
                out.append("      ... (cut: instruction cap reached)")
        for t in ex.get("truncated") or []:
            out.append(f"  cap: {safe(t)}")
        for n in ex.get("notes") or []:
            out.append(f"  note: {safe(n)}")
    return out


def render_against(pair: Mapping[str, Any]) -> str:
    """``biv inspect FILE --against UPSTREAM_FILE`` as text."""
    up = pair.get("against") or {}
    ev = pair.get("evidence") or {}
    out = [
        f"{safe(pair.get('path'))}",
        f"  against   {safe(up.get('path'))}",
        f"  format    {pair.get('format')} (upstream {up.get('format')})",
        f"  sha256    {pair.get('sha256')}",
        f"  upstream  {up.get('sha256')}",
        f"  status    {pair.get('status')}",
    ]
    for s in ev.get("sections") or []:
        n = s.get("differing_bytes")
        out.append(
            f"  section   {safe(s.get('name'))}"
            + (f" ({n:,} bytes differ)" if n is not None else "")
        )
    lines = full_lines(ev)
    if not lines and pair.get("status") != "identical":
        lines = ["  no explanation for this pair of formats"]
    return "\n".join(out + lines) + "\n"
