"""``biv.report/v1`` JSON: deterministic (sorted keys, sorted files and findings).

Written one top-level key per line and one list item (file, finding, component) per line:
valid JSON that diffs and greps well, and fast (the C encoder handles each item; ``indent``
would force the pure-Python encoder, which costs seconds on a 10,000-file report).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import attrgetter
from typing import Any

from verifier.model import UNSIGNED, FileFormat, FileResult, Finding, Report
from verifier.report.escape import has_raw_bytes, json_safe

_PIECE = 1 << 20  # characters of a report written at a time
# what ``json.dumps(v, sort_keys=True, ensure_ascii=False)`` does, without a new encoder per item
_ENCODE = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode
# what that encoder writes for one string (ensure_ascii=False)
_STR: Callable[[str], str] = json.encoder.encode_basestring
_UNSIGNED = _ENCODE(UNSIGNED.to_dict())


class _Text:
    """An item already written as JSON (``_file_json``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _file_json(r: FileResult) -> str | None:
    """``_item(r.to_dict())`` written directly for the common shape (a file with no
    signature, anomaly, slice or fuse: most files of a large artifact), else None.

    The same text, key for key (sorted), value for value; one format string instead of a
    dict of dicts and a sorting encoder per file."""
    e = r.shipped or r.reference
    if e is None or r.slices or e.facts.fuses is not None or e.format == FileFormat.MACHO:
        return None
    if r.shipped is not None and (r.shipped.facts.signature is not UNSIGNED or e.facts.anomalies):
        return None
    if type(e.size) is not int or not all(type(c) is str for c in e.container):
        return None
    up = ""
    if r.reference is not None and r.shipped is not None and r.reference.path != r.path:
        up = f', "upstream_path": {_STR(r.reference.path)}'
    text = (
        f'{{"component": {"null" if r.component is None else _STR(r.component)}, '
        f'"container": [{", ".join(map(_STR, e.container))}], '
        f'"format": {_STR(e.format.value)}, "location": {_STR(e.location)}, '
        f'"paired_by": {"null" if r.paired_by is None else _STR(r.paired_by)}, '
        f'"path": {_STR(r.path)}, "sha256": {_STR(e.sha256)}, "signature": {_UNSIGNED}, '
        f'"size": {e.size!r}, "status": {_STR(r.status.value)}{up}}}'
    )
    return None if has_raw_bytes(text) else text


def _file_item(r: FileResult) -> Any:
    text = _file_json(r)
    return r.to_dict() if text is None else _Text(text)


def _item(value: Any) -> str:
    """One value as JSON; valid UTF-8 whatever bytes a name held (``escape.json_safe``)."""
    if type(value) is _Text:
        return value.text
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
    doc["files"] = _Lazy(sorted(report.files, key=attrgetter("path")), _file_item)
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
