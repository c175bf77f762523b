"""Text view of ``biv inspect``: what the file is, who signed it, what the signature misses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from verifier.report import escape

# Authenticode and Mach-O details worth a line each, in this order
_DETAIL_KEYS = (
    "digest_algorithm",
    "identifier",
    "team_id",
    "cdhash",
    "flags",
    "hash_types",
    "page_size",
    "code_limit",
    "pages_checked",
    "special_slots",
    "requirements",
    "entitlements",
    "trusted",
    "trust_reason",
)


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sig_lines(sig: Mapping[str, Any], indent: str) -> list[str]:
    out = []
    state = {True: "valid", False: "INVALID", None: "not verified"}[sig.get("valid")]
    if not sig.get("signed"):
        kind = sig.get("kind", "none")
        flags = (sig.get("details") or {}).get("flags")
        label = "unsigned" if kind == "none" else f"{kind}, no CMS signer"
        out.append(f"{indent}signature: {label}{f' ({flags})' if flags else ''}")
    else:
        out.append(f"{indent}signature: {sig.get('kind')} ({state})")
    for s in sig.get("signers", []):
        team = f"  team {s['team_id']}" if s.get("team_id") else ""
        out.append(f"{indent}  signer  {s.get('subject')}{team}")
        out.append(f"{indent}          issued by {s.get('issuer')}")
        out.append(f"{indent}          sha256 {s.get('sha256')}")
    for s in sig.get("nested_signers", []):
        out.append(f"{indent}  nested  {s.get('subject')}")
    details = sig.get("details") or {}
    for key in _DETAIL_KEYS:
        if key in details and details[key] not in (None, "", [], {}):
            out.append(f"{indent}  {key.replace('_', ' ')}: {_short(details[key])}")
    for ts in details.get("timestamps", []) or []:
        out.append(f"{indent}  timestamp {ts.get('kind')} {ts.get('time')} valid={ts.get('valid')}")
    for c in details.get("chain", []) or []:
        out.append(f"{indent}  chain   {c.get('subject')}")
    return out


def render_inspect(info: Mapping[str, Any]) -> str:
    out = [
        f"{info['path']}",
        f"  format    {info.get('format')}  {' '.join(info.get('archs', []))}",
        f"  size      {info.get('size')}",
        f"  sha256    {info.get('sha256')}",
    ]
    if info.get("normalized_sha256"):
        out.append(f"  normalised sha256 {info['normalized_sha256']}")
    if info.get("fuses"):
        out.append(f"  fuses     {info['fuses'].get('values')} (v{info['fuses'].get('version')})")
    for k, v in sorted((info.get("markers") or {}).items()):
        out.append(f"  {k}: {v}")
    out.extend(_sig_lines(info.get("signature", {}), "  "))
    for sl in info.get("slices", []):
        out.append(f"  slice {sl.get('arch')}: sha256 {sl.get('sha256')}")
        out.extend(_sig_lines(sl.get("signature", {}), "    "))
    anomalies = info.get("anomalies", [])
    out.append(f"  anomalies ({len(anomalies)})")
    for a in anomalies:
        arch = f" [{a['arch']}]" if a.get("arch") else ""
        out.append(f"    {a['rule']}{arch}: {a['message']}")
        for r in a.get("evidence", {}).get("ranges", []) or []:
            out.append(f"      bytes {r.get('offset')}..+{r.get('length')}")
    # every line is data from the file (names, subjects, messages): escaped whole
    return "\n".join(escape.text(line) for line in out) + "\n"
