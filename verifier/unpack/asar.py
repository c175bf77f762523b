"""Electron ``.asar`` archives, read in place (nothing is extracted).

Layout: a Chromium pickle ``uint32 4, uint32 header_size``, then a pickle of
``header_size`` bytes: ``uint32 payload_size, int32 json_length, json bytes`` (padded to 4).
File data starts at ``8 + header_size``; a file entry's ``offset`` (a decimal string) is
relative to that. The JSON is ``{"files": {name: entry}}`` where an entry is a directory
(``files``), a link (``link``) or a file (``size``, ``offset``, optional ``unpacked``,
``executable``, ``integrity``). Files marked ``unpacked`` live in ``<name>.asar.unpacked/``
next to the archive and are ordinary files of the surrounding tree, so they are skipped here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from verifier.errors import MalformedInputError
from verifier.unpack import registry
from verifier.unpack.limits import Limits
from verifier.unpack.registry import Entry
from verifier.unpack.result import LinkRecord, Problem

_MAGIC = b"\x04\x00\x00\x00"
_MAX_OFFSET_DIGITS = 20


class _DuplicateKeys:
    def __init__(self) -> None:
        self.found: list[str] = []

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in pairs:
            if k in d:
                self.found.append(k)
            d[k] = v
        return d


def read_header(path: str, limits: Limits) -> tuple[int, dict[str, Any], list[str]]:
    """(data_start, header JSON, duplicate keys) of an asar file; raise if malformed."""
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            fixed = f.read(16)
            if len(fixed) < 16:
                raise MalformedInputError("asar header truncated")
            magic, header_size, payload, length = struct.unpack("<IIIi", fixed)
            if magic != 4:
                raise MalformedInputError("not an asar header")
            if header_size > limits.max_asar_header:
                raise MalformedInputError(
                    f"asar header size {header_size} above the cap {limits.max_asar_header}"
                )
            if 8 + header_size > size:
                raise MalformedInputError(f"asar header size {header_size} past end of file")
            if length < 0 or 4 + length > payload or 4 + payload > header_size:
                raise MalformedInputError("inconsistent asar header pickle sizes")
            text = f.read(length)
    except OSError as e:
        raise MalformedInputError(f"cannot read asar: {e.strerror or e}") from None
    if len(text) < length:
        raise MalformedInputError("asar header truncated")
    dups = _DuplicateKeys()
    try:
        root = json.loads(text.decode("utf-8"), object_pairs_hook=dups)
    except RecursionError:
        raise MalformedInputError("asar header JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedInputError(f"asar header is not valid JSON: {e}") from None
    if not isinstance(root, dict) or not isinstance(root.get("files"), dict):
        raise MalformedInputError("asar header has no 'files' object")
    return 8 + header_size, root, dups.found


def _offset(node: dict[str, Any]) -> int | None:
    off = node.get("offset")
    if isinstance(off, str) and off.isdigit() and len(off) <= _MAX_OFFSET_DIGITS:
        return int(off)
    if isinstance(off, int) and not isinstance(off, bool) and off >= 0:
        return off
    return None


def _bad_name(name: str) -> bool:
    return (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or any(ord(c) < 0x20 for c in name)
    )


def list_entries(path: str, limits: Limits) -> tuple[list[Entry], list[Problem], list[LinkRecord]]:
    """Every packed file of the asar at ``path``, bounds-checked against its size, and its
    links (targets relative to the archive root, as @electron/asar stores them)."""
    data_start, root, dups = read_header(path, limits)
    data_size = Path(path).stat().st_size - data_start
    entries: list[Entry] = []
    links: list[LinkRecord] = []
    problems = [Problem(k, f"duplicate key {k!r} in asar header") for k in dups]
    stack: list[tuple[str, dict[str, Any], int]] = [("", root["files"], 1)]
    while stack:
        prefix, files, depth = stack.pop()
        for name, node in files.items():
            member = f"{prefix}{name}"
            if _bad_name(name) or len(member.encode("utf-8", "replace")) > limits.max_name_len:
                problems.append(Problem(member, f"hostile asar entry name {name!r}"))
                continue
            if not isinstance(node, dict):
                problems.append(Problem(member, "asar entry is not an object"))
                continue
            if "files" in node:
                if not isinstance(node["files"], dict):
                    problems.append(Problem(member, "asar directory 'files' is not an object"))
                elif depth >= limits.max_asar_depth:
                    problems.append(Problem(member, "asar directories nested too deeply"))
                else:
                    stack.append((member + "/", node["files"], depth + 1))
                continue
            if "link" in node:
                link = node["link"]
                if not isinstance(link, str):
                    problems.append(Problem(member, f"asar link is not a string: {link!r}"))
                elif len(entries) + len(links) >= limits.max_members:
                    problems.append(Problem(member, f"more than {limits.max_members} asar members"))
                    return entries, problems, links
                else:
                    # @electron/asar stores path.relative()'s text: '\\'-separated on Windows
                    links.append(LinkRecord(member, link.replace("\\", "/"), from_root=True))
                continue
            if node.get("unpacked") is True:
                continue
            size, off = node.get("size"), _offset(node)
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or off is None:
                problems.append(Problem(member, "asar file entry without a valid size/offset"))
                continue
            if off + size > data_size:
                problems.append(Problem(member, f"asar entry data ({off}+{size}) past end of file"))
                continue
            if len(entries) + len(links) >= limits.max_members:
                problems.append(Problem(member, f"more than {limits.max_members} asar members"))
                return entries, problems, links
            entries.append(Entry(member, data_start + off, size))
    return entries, problems, links


class AsarReader:
    name = "asar"

    def sniff(self, head: bytes, filename: str) -> bool:
        if head[:4] != _MAGIC or len(head) < 16:
            return False
        return head[16:17] == b"{" or filename.endswith(".asar")

    def entries(
        self, src: str, limits: Limits
    ) -> tuple[list[Entry], list[Problem], list[LinkRecord]]:
        return list_entries(src, limits)


registry.register(AsarReader(), priority=30)
