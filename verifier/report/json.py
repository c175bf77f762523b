"""``biv.report/v1`` JSON: deterministic (sorted keys, sorted files and findings).

Written one top-level key per line and one list item (file, finding, component) per line:
valid JSON that diffs and greps well, and fast (the C encoder handles each item; ``indent``
would force the pure-Python encoder, which costs seconds on a 10,000-file report).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from verifier.model import Report
from verifier.report.escape import has_raw_bytes, json_safe


def _item(value: Any) -> str:
    """One value as JSON; valid UTF-8 whatever bytes a name held (``escape.json_safe``)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if has_raw_bytes(text):
        text = json.dumps(json_safe(value), sort_keys=True, ensure_ascii=False)
    return text


def dumps_report(doc: Mapping[str, Any]) -> str:
    lines = ["{"]
    keys = sorted(doc)
    for i, key in enumerate(keys):
        value = doc[key]
        comma = "," if i < len(keys) - 1 else ""
        if isinstance(value, list) and value:
            lines.append(f"  {_item(key)}: [")
            lines.extend(
                f"    {_item(v)}{',' if j < len(value) - 1 else ''}" for j, v in enumerate(value)
            )
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {_item(key)}: {_item(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    return dumps_report(report.to_dict())
