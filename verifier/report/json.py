"""``biv.report/v1`` JSON: deterministic (sorted keys, sorted files and findings)."""

from __future__ import annotations

import json

from verifier.model import Report


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
