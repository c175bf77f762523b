"""A bounded DER/BER reader: the one ASN.1 parser of the signing layer.

Signatures are read as *slices of the bytes they came in*: nothing is ever re-encoded to
recover bytes the file already holds (re-serialising parsed structures is what made a 590 KB
DLL take minutes). ``parse(data)`` validates one whole element iteratively (no recursion),
checking every length against its parent and capping nesting depth and element count, and
returns a ``Doc`` to walk: ``doc.children(tlv)``, ``doc.raw(tlv)``, ``doc.value(tlv)``.
With ``ber=True`` indefinite lengths are accepted (Apple's CMS blobs use them); their ends
are found during validation, so walking stays linear.

Value decoders (``oid``, ``integer``, ``time``, ``bit_string``, ``octets``) and
``splice_out`` (remove one element from deep inside a DER tree, re-encoding the lengths of its
ancestors) complete it. Every error is a ``MalformedInputError`` (or ``LimitExceededError``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import field
from typing import NamedTuple

from verifier.errors import LimitExceededError, MalformedInputError
from verifier.record import record

MAX_DEPTH = 48
MAX_ELEMENTS = 200_000

# universal tags (first identifier octet)
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31


class Tlv(NamedTuple):
    """One element: ``data[start:end]``; contents ``data[content:content_end]``."""

    start: int
    content: int
    end: int
    tag: int  # the first identifier octet (class, constructed bit, low tag number)
    tag_len: int
    indefinite: bool = False  # BER indefinite length: contents end with 00 00

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    @property
    def content_end(self) -> int:
        return self.end - 2 if self.indefinite else self.end

    @property
    def length(self) -> int:
        return self.end - self.start


def _header(data: bytes | memoryview, pos: int, end_limit: int) -> tuple[int, int, int, int | None]:
    """(tag, tag_len, content offset, definite length or None) of the element at ``pos``."""
    if pos + 2 > end_limit:
        raise MalformedInputError("DER truncated: no room for a header")
    tag = data[pos]
    i = pos + 1
    if tag & 0x1F == 0x1F:  # high tag number form
        while True:
            if i >= end_limit or i - pos > 5:
                raise MalformedInputError("DER: bad high tag number")
            b = data[i]
            i += 1
            if not b & 0x80:
                break
    tag_len = i - pos
    if i >= end_limit:
        raise MalformedInputError("DER truncated in length")
    first = data[i]
    i += 1
    if first == 0x80:
        return tag, tag_len, i, None
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n > 4 or i + n > end_limit:
            raise MalformedInputError("DER length field too long or truncated")
        length = int.from_bytes(bytes(data[i : i + n]), "big")
        i += n
    if i + length > end_limit:
        raise MalformedInputError(
            f"DER length {length} at offset {pos} runs past its container ({end_limit - i} left)"
        )
    return tag, tag_len, i, length


def read_tlv(data: bytes | memoryview, pos: int, limit: int | None = None) -> Tlv:
    """Read the DER header at ``pos``; the element must end by ``limit`` (default: len(data))."""
    end_limit = len(data) if limit is None else limit
    tag, tag_len, content, length = _header(data, pos, end_limit)
    if length is None:
        raise MalformedInputError("indefinite length: not DER")
    return Tlv(pos, content, content + length, tag, tag_len)


def children(data: bytes | memoryview, parent: Tlv) -> list[Tlv]:
    """The DER children of ``parent`` (a definite-length element)."""
    out = []
    pos = parent.content
    while pos < parent.end:
        t = read_tlv(data, pos, parent.end)
        out.append(t)
        pos = t.end
    return out


@record
class Doc:
    """A validated element and the ends of its indefinite-length parts (BER)."""

    data: bytes
    top: Tlv
    ends: Mapping[int, int] = field(default_factory=dict)  # start -> end (indefinite only)

    def tlv(self, pos: int, limit: int | None = None) -> Tlv:
        end_limit = len(self.data) if limit is None else limit
        tag, tag_len, content, length = _header(self.data, pos, end_limit)
        if length is None:
            end = self.ends.get(pos)
            if end is None or end > end_limit:
                raise MalformedInputError("indefinite length outside a validated element")
            return Tlv(pos, content, end, tag, tag_len, True)
        return Tlv(pos, content, content + length, tag, tag_len)

    def children(self, parent: Tlv) -> list[Tlv]:
        out = []
        pos = parent.content
        stop = parent.content_end
        while pos < stop:
            t = self.tlv(pos, stop)
            out.append(t)
            pos = t.end
        return out

    def child(self, parent: Tlv, index: int, tag: int | None = None) -> Tlv:
        """``parent``'s child ``index`` (with ``tag`` when given), else MalformedInputError."""
        kids = self.children(parent)
        if index >= len(kids):
            raise MalformedInputError(f"ASN.1: element {index} missing")
        t = kids[index]
        if tag is not None and t.tag != tag:
            raise MalformedInputError(f"ASN.1: tag {t.tag:#04x} where {tag:#04x} was expected")
        return t

    def raw(self, t: Tlv) -> bytes:
        """The element's bytes as they are in the input (header included)."""
        return self.data[t.start : t.end]

    def value(self, t: Tlv) -> bytes:
        """The contents octets of a primitive element (or of a constructed one, raw)."""
        return self.data[t.content : t.content_end]

    def octets(self, t: Tlv) -> bytes:
        """An OCTET STRING's value, also in BER's constructed form (bounded by the input)."""
        if not t.constructed:
            return self.value(t)
        return b"".join(self.octets(c) for c in self.children(t))


def parse(data: bytes, *, ber: bool = False, max_depth: int = MAX_DEPTH) -> Doc:
    """Validate one element filling ``data`` and return a ``Doc`` over it.

    Raises ``MalformedInputError`` (bad lengths, trailing bytes, indefinite lengths unless
    ``ber``) or ``LimitExceededError`` (too deep, too many elements). Iterative: deeply nested
    input cannot blow the stack.
    """
    data = bytes(data)
    n = len(data)
    tag, tag_len, content, length = _header(data, 0, n)
    if length is None and (not ber or not tag & 0x20):
        raise MalformedInputError(
            "indefinite length: not DER" if not ber else "indefinite length on a primitive element"
        )
    ends: dict[int, int] = {}
    count = 0
    # stack entries: [next position, end limit, start of an indefinite element or -1]
    stack: list[list[int]] = []
    if tag & 0x20:
        if length is None:
            stack.append([content, n, 0])
        elif length:
            stack.append([content, content + length, -1])
    elif length is not None and content + length != n:
        raise MalformedInputError("bytes after the DER element")
    while stack:
        top = stack[-1]
        pos, limit, indef_start = top
        if indef_start < 0:
            if pos >= limit:
                stack.pop()
                continue
        elif pos + 2 <= limit and data[pos] == 0 and data[pos + 1] == 0:
            ends[indef_start] = pos + 2
            stack.pop()
            if stack:
                stack[-1][0] = pos + 2
            continue
        elif pos >= limit:
            raise MalformedInputError("BER: end-of-contents missing")
        t_tag = data[pos]
        first = data[pos + 1] if pos + 1 < limit else 0x80
        if t_tag & 0x1F != 0x1F and first < 0x80 and pos + 2 + first <= limit:
            # the common case, decoded inline (low tag number, short length)
            t_content: int = pos + 2
            t_length: int | None = first
        elif t_tag & 0x1F != 0x1F and first == 0x82 and pos + 4 <= limit:
            t_content, t_length = pos + 4, (data[pos + 2] << 8) | data[pos + 3]
            if t_content + t_length > limit:
                t_tag, _t_len, t_content, t_length = _header(data, pos, limit)
        else:
            t_tag, _t_len, t_content, t_length = _header(data, pos, limit)
        count += 1
        if count > MAX_ELEMENTS:
            raise LimitExceededError(f"more than {MAX_ELEMENTS} DER elements")
        if t_length is None:
            if not ber:
                raise MalformedInputError("indefinite length: not DER")
            if not t_tag & 0x20:
                raise MalformedInputError("indefinite length on a primitive element")
            if len(stack) >= max_depth:
                raise LimitExceededError(f"DER nested deeper than {max_depth}")
            stack.append([t_content, limit, pos])  # the parent resumes at its end
            continue
        t_end = t_content + t_length
        top[0] = t_end
        if t_tag & 0x20 and t_length:
            if len(stack) >= max_depth:
                raise LimitExceededError(f"DER nested deeper than {max_depth}")
            stack.append([t_content, t_end, -1])
    return Doc(data, _top(n, tag, tag_len, content, length, ends), ends)


def _top(
    n: int, tag: int, tag_len: int, content: int, length: int | None, ends: dict[int, int]
) -> Tlv:
    """The element filling all ``n`` bytes (its end found by the walk when indefinite)."""
    if length is None:
        end = ends.get(0)
        if end is None:
            raise MalformedInputError("BER: end-of-contents missing")
        if end != n:
            raise MalformedInputError("bytes after the BER element")
        return Tlv(0, content, end, tag, tag_len, True)
    if content + length != n:
        raise MalformedInputError("bytes after the DER element")
    return Tlv(0, content, content + length, tag, tag_len)


def check_der(data: bytes | memoryview, *, max_depth: int = MAX_DEPTH) -> Tlv:
    """Validate the structure of one DER element filling ``data``; return its header."""
    return parse(bytes(data), max_depth=max_depth).top


# --- values --------------------------------------------------------------------------------


def oid(raw: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's contents."""
    if not raw or raw[-1] & 0x80 or len(raw) > 64:
        raise MalformedInputError("bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    v = 0
    for b in raw:
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(v)
            v = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in (*head, *arcs[1:]))


def encode_oid(dotted: str) -> bytes:
    """DER contents of an OBJECT IDENTIFIER (the inverse of ``oid``)."""
    arcs = [int(x) for x in dotted.split(".")]
    out = bytearray()
    for a in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [a & 0x7F]
        a >>= 7
        while a:
            chunk.append(0x80 | (a & 0x7F))
            a >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def integer(raw: bytes) -> int:
    if not raw or len(raw) > 64:
        raise MalformedInputError("bad INTEGER")
    return int.from_bytes(raw, "big", signed=True)


def bit_string(raw: bytes) -> bytes:
    """A BIT STRING's bytes (the unused-bits octet dropped)."""
    if not raw or raw[0] > 7:
        raise MalformedInputError("bad BIT STRING")
    return raw[1:]


def time(tag: int, raw: bytes) -> dt.datetime:
    """UTCTime or GeneralizedTime (Z, optional fractional seconds), as an aware UTC datetime."""
    try:
        s = raw.decode("ascii")
        if not s.endswith("Z"):
            raise ValueError("no Z")
        s = s[:-1]
        if tag == UTC_TIME:
            year = int(s[:2])
            year += 1900 if year >= 50 else 2000
            rest = s[2:]
        elif tag == GENERALIZED_TIME:
            year = int(s[:4])
            rest = s[4:]
        else:
            raise ValueError("not a time")
        frac = ""
        if "." in rest:
            rest, frac = rest.split(".", 1)
        if len(rest) not in (8, 10) or not rest.isdigit() or (frac and not frac.isdigit()):
            raise ValueError("bad digits")
        sec = int(rest[8:10]) if len(rest) == 10 else 0
        micro = int((frac + "000000")[:6]) if frac else 0
        return dt.datetime(
            year,
            int(rest[0:2]),
            int(rest[2:4]),
            int(rest[4:6]),
            int(rest[6:8]),
            min(sec, 59),
            micro,
            tzinfo=dt.UTC,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedInputError(f"bad time value: {exc}") from exc


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def splice_out(data: bytes, ancestors: list[Tlv], cut: Tlv) -> bytes:
    """Re-encode ``ancestors[0]`` with ``cut`` removed; ``ancestors`` is the path to it."""

    def build(i: int) -> bytes:
        el = ancestors[i]
        if i == len(ancestors) - 1:
            inner = data[el.content : cut.start] + data[cut.end : el.end]
        else:
            ch = ancestors[i + 1]
            inner = data[el.content : ch.start] + build(i + 1) + data[ch.end : el.end]
        return data[el.start : el.start + el.tag_len] + encode_length(len(inner)) + inner

    return build(0)


def unwrap_explicit(raw: bytes) -> bytes:
    """Strip a context-specific constructed wrapper ([0] EXPLICIT) if ``raw`` has one."""
    if raw[:1] and raw[0] & 0xE0 == 0xA0:
        t = read_tlv(raw, 0)
        return raw[t.content : t.end]
    return raw
