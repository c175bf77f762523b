"""What changed bytes hold: entropy, and new strings an analyst looks for first.

Why: an encrypted payload reads as ~8 bits/byte (the 3CX ``d3dcompiler_47.dll`` payload was
RC4-encrypted), code as ~5-6.5, text and tables lower. And a loader's strings give it away:
the URLs it fetches, IP addresses, file paths, registry keys (the 3CX loader fetched icon files
from GitHub and decrypted its C2 URLs from their tails).

Strings are printable ASCII or UTF-16LE runs of ``MIN_LEN`` or more characters in the shipped
bytes of a changed range, kept when they do not occur in upstream's bytes at the same place;
they are classified (url, ip, path, registry, text), interesting kinds first, and capped.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from typing import Any

from verifier.record import record

MIN_LEN = 6
MIN_TEXT_LEN = 12  # unclassified strings shorter than this are left out (noise in code)
MAX_VALUE = 200  # characters of one string kept

_ASCII = re.compile(rb"[\x20-\x7e]{%d,}" % MIN_LEN)
_UTF16 = re.compile(rb"(?:[\x20-\x7e]\x00){%d,}" % MIN_LEN)

_URL = re.compile(r"(?i)\b(?:https?|ftps?|wss?|file)://[^\s\"'<>]{2,}")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\d.])")
_REG = re.compile(
    r"(?i)\b(?:HKEY_(?:LOCAL_MACHINE|CURRENT_USER|CLASSES_ROOT|USERS|CURRENT_CONFIG)|HKLM|HKCU|HKCR)"
    r"\\|\b(?:SOFTWARE|SYSTEM)\\(?:Microsoft|CurrentControlSet|Classes|Wow6432Node)\\"
)
_PATH = re.compile(
    r"(?i)(?:\b[a-z]:\\|\\\\[\w.$-]+\\|%[a-z_]+%\\|(?:^|[\s\"'=])(?:~|/(?:usr|etc|tmp|var|bin|sbin"
    r"|opt|home|root|dev|proc|Library|Users|System|Applications|private|Volumes))/)"
)
_KIND_ORDER = {"url": 0, "ip": 1, "registry": 2, "path": 3, "text": 4}


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte (0.0 for no data)."""
    n = len(data)
    if not n:
        return 0.0
    h = 0.0
    for i in range(256):
        c = data.count(i.to_bytes(1, "little"))
        if c:
            p = c / n
            h -= p * math.log2(p)
    return round(h, 3)


def classify(s: str) -> str:
    if _URL.search(s):
        return "url"
    for m in _IPV4.finditer(s):
        try:
            ipaddress.IPv4Address(m.group().split(":")[0])
        except ValueError:
            continue
        return "ip"
    if _REG.search(s):
        return "registry"
    if _PATH.search(s):
        return "path"
    return "text"


@record
class FoundString:
    value: str
    kind: str
    offset: int  # file offset of the first byte
    encoding: str  # ascii, utf-16le

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "kind": self.kind,
            "offset": self.offset,
            "encoding": self.encoding,
        }


def find_strings(data: bytes, base: int) -> Iterable[tuple[FoundString, bytes]]:
    """Printable strings in ``data`` (at file offset ``base``), classified, values cut; with
    the raw bytes of each (its first ``MAX_VALUE`` characters)."""
    for rx, enc in ((_ASCII, "ascii"), (_UTF16, "utf-16le")):
        for m in rx.finditer(data):
            raw = m.group()
            text = raw.decode("ascii") if enc == "ascii" else raw[::2].decode("ascii")
            kind = classify(text)
            if kind == "text" and len(text) < MIN_TEXT_LEN:
                continue
            value = text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
            width = 1 if enc == "ascii" else 2
            yield FoundString(value, kind, base + m.start(), enc), raw[: MAX_VALUE * width]


def new_strings(
    shipped: bytes, upstream: bytes, base: int, cap: int
) -> tuple[list[FoundString], int]:
    """Strings of ``shipped`` that ``upstream`` (the same place in the upstream file) lacks:
    at most ``cap``, interesting kinds first; also returns how many more there were."""
    found = []
    for f, raw in find_strings(shipped, base):
        if raw in upstream:
            continue
        found.append(f)
    found.sort(key=lambda f: (_KIND_ORDER[f.kind], f.offset))
    return found[:cap], max(0, len(found) - cap)
