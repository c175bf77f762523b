"""``biv.report/v1`` JSON: deterministic (sorted keys, sorted files and findings).

Written one top-level key per line and one list item (file, finding, component) per line:
valid JSON that diffs and greps well, and fast (the C encoder handles each item; ``indent``
would force the pure-Python encoder, which costs seconds on a 10,000-file report).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from verifier.model import Finding, Report
from verifier.report.escape import has_raw_bytes, json_safe

_PIECE = 1 << 20  # characters of a report written at a time
# what ``json.dumps(v, sort_keys=True, ensure_ascii=False)`` does, without a new encoder per item
_ENCODE = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


def _item(value: Any) -> str:
    """One value as JSON; valid UTF-8 whatever bytes a name held (``escape.json_safe``)."""
    text = _ENCODE(value)
    if has_raw_bytes(text):
        text = _ENCODE(json_safe(value))
    return text


class _Lazy(Sequence[Any]):
    """A list whose items are made one at a time while they are written (a 200,000-file
    report never holds every file's dict at once)."""

    def __init__(self, items: Sequence[Any], make: Callable[[Any], Any]) -> None:
        self.items = items
        self.make = make

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        return self.make(self.items[i])

    def __iter__(self) -> Iterator[Any]:
        return (self.make(x) for x in self.items)


def dumps_report(doc: Mapping[str, Any]) -> str:
    return "".join(iter_report(doc))


def iter_report(doc: Mapping[str, Any]) -> Iterator[str]:
    """``dumps_report(doc)`` line by line (each with its newline), so that a large report
    can be written while it is made: never the whole text (nor every file's dict) at once."""
    yield "{\n"
    keys = sorted(doc)
    for i, key in enumerate(keys):
        value = doc[key]
        comma = "," if i < len(keys) - 1 else ""
        if isinstance(value, list | _Lazy) and value:
            yield f"  {_item(key)}: [\n"
            last = len(value) - 1
            for j, v in enumerate(value):
                yield f"    {_item(v)}{',' if j < last else ''}\n"
            yield f"  ]{comma}\n"
        else:
            value = list(value) if isinstance(value, _Lazy) else value
            yield f"  {_item(key)}: {_item(value)}{comma}\n"
    yield "}\n"


def render_json(report: Report) -> str:
    return "".join(iter_json(report))


def iter_json(report: Report) -> Iterator[str]:
    """``render_json(report)`` in pieces of about ``_PIECE`` characters."""
    doc = dataclasses.replace(report, files=(), findings=()).to_dict()
    doc["files"] = _Lazy(sorted(report.files, key=lambda f: f.path), lambda f: f.to_dict())
    doc["findings"] = _Lazy(sorted(report.findings, key=Finding.sort_key), lambda f: f.to_dict())
    piece: list[str] = []
    size = 0
    for line in iter_report(doc):
        piece.append(line)
        size += len(line)
        if size >= _PIECE:
            yield "".join(piece)
            piece, size = [], 0
    if piece:
        yield "".join(piece)
