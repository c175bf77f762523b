"""Untrusted strings in output (docs/contract.md "Untrusted strings in output"): file names,
certificate subjects, policy reasons, messages all come from the artifact or the network.

* ``text``: for a terminal or a log. C0 and C1 control characters, DEL, bidirectional
  overrides and isolates, line/paragraph separators and zero-width characters are shown as
  ``\\x1b``, ``\\u202e``...; a byte that was not UTF-8 (kept by Python as a lone surrogate,
  ``surrogateescape``) is shown as ``\\xff``. No escape sequence reaches the terminal and no
  name can start a line of its own.
* ``json_safe``: for JSON and SARIF, which must be valid UTF-8 whatever the input. Only lone
  surrogates break that: each becomes the four characters ``\\xff``, and beside every
  ``path`` (``location``) that held one, ``path_bytes_b64`` (``location_bytes_b64``) keeps the
  original bytes.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Mapping
from typing import Any

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _show(m: re.Match[str]) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def text(value: object) -> str:
    """``value`` as one safe line of text."""
    s = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_show, s)


def has_raw_bytes(s: str) -> bool:
    return not s.isascii() and _SURROGATE.search(s) is not None  # isascii: C speed


def utf8(s: str) -> str:
    """``s`` with every lone surrogate written as ``\\xNN`` (valid UTF-8 from here on)."""
    return _SURROGATE.sub(_show, s) if has_raw_bytes(s) else s


def raw_bytes(s: str) -> bytes:
    """The bytes a name had on disk or in the archive (surrogateescape undone)."""
    return s.encode("utf-8", "surrogateescape")


_BESIDE = ("path", "location")


def json_safe(value: Any) -> Any:
    """A copy of a JSON-able document in which every string is valid UTF-8 (see above)."""
    if isinstance(value, str):
        return utf8(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = utf8(str(k))
            if key in _BESIDE and isinstance(v, str) and has_raw_bytes(v):
                with contextlib.suppress(UnicodeEncodeError):  # a surrogate never a byte
                    out[f"{key}_bytes_b64"] = base64.b64encode(raw_bytes(v)).decode("ascii")
            out[key] = json_safe(v)
        return out
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
