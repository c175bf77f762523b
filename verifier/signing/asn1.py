"""A bounded DER reader, and the Authenticode ASN.1 types asn1crypto does not define.

``check_der`` walks a whole DER encoding iteratively (no recursion), checking every length
against its parent and capping nesting depth and element count, before asn1crypto (which
recurses and parses lazily) sees it. ``splice_out`` removes one element from deep inside a
DER tree and re-encodes the lengths of its ancestors (used to set a nested signature aside).
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import algos, core

from verifier.errors import LimitExceededError, MalformedInputError

MAX_DEPTH = 48
MAX_ELEMENTS = 200_000


@dataclass(frozen=True)
class Tlv:
    """One DER element: ``data[start:end]``; contents ``data[content:end]``."""

    start: int
    content: int
    end: int
    tag: int  # the first identifier octet (class, constructed bit, low tag number)
    tag_len: int

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)


def read_tlv(data: bytes | memoryview, pos: int, limit: int | None = None) -> Tlv:
    """Read the header at ``pos``; the element must end by ``limit`` (default: len(data))."""
    end_limit = len(data) if limit is None else limit
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
    tag_end = i
    if i >= end_limit:
        raise MalformedInputError("DER truncated in length")
    first = data[i]
    i += 1
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise MalformedInputError("indefinite length: not DER")
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
    return Tlv(pos, i, i + length, tag, tag_end - pos)


def children(data: bytes | memoryview, parent: Tlv) -> list[Tlv]:
    out = []
    pos = parent.content
    while pos < parent.end:
        t = read_tlv(data, pos, parent.end)
        out.append(t)
        pos = t.end
    return out


def check_der(data: bytes | memoryview, *, max_depth: int = MAX_DEPTH) -> Tlv:
    """Validate the structure of one DER element filling ``data``; return its header.

    Raises ``MalformedInputError`` (bad lengths, trailing bytes) or ``LimitExceededError``
    (too deep, too many elements). Iterative: deeply nested input cannot blow the stack.
    """
    top = read_tlv(data, 0)
    if top.end != len(data):
        raise MalformedInputError("bytes after the DER element")
    count = 0
    stack: list[tuple[int, int]] = []  # (next position, end) of open constructed elements
    if top.constructed:
        stack.append((top.content, top.end))
    while stack:
        pos, end = stack[-1]
        if pos >= end:
            stack.pop()
            continue
        t = read_tlv(data, pos, end)
        count += 1
        if count > MAX_ELEMENTS:
            raise LimitExceededError(f"more than {MAX_ELEMENTS} DER elements")
        stack[-1] = (t.end, end)
        if t.constructed and t.end > t.content:
            if len(stack) >= max_depth:
                raise LimitExceededError(f"DER nested deeper than {max_depth}")
            stack.append((t.content, t.end))
    return top


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


# --- Authenticode types ------------------------------------------------------------------------


class SpcAttributeTypeAndOptionalValue(core.Sequence):  # type: ignore[misc]
    _fields = [("type", core.ObjectIdentifier), ("value", core.Any, {"optional": True})]  # noqa: RUF012


class DigestInfo(core.Sequence):  # type: ignore[misc]
    _fields = [("digest_algorithm", algos.DigestAlgorithm), ("digest", core.OctetString)]  # noqa: RUF012


class SpcIndirectDataContent(core.Sequence):  # type: ignore[misc]
    _fields = [("data", SpcAttributeTypeAndOptionalValue), ("message_digest", DigestInfo)]  # noqa: RUF012


def unwrap_explicit(raw: bytes) -> bytes:
    """Strip a context-specific constructed wrapper ([0] EXPLICIT) if ``raw`` has one."""
    if raw[:1] and raw[0] & 0xE0 == 0xA0:
        t = read_tlv(raw, 0)
        return raw[t.content : t.end]
    return raw
