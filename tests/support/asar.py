"""A tiny Electron asar writer for tests (and hand-made hostile headers)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def pickle_header(header_json: bytes) -> bytes:
    """The two Chromium pickles in front of the data: size pickle, then the JSON string."""
    pad = (-len(header_json)) % 4
    payload = struct.pack("<i", len(header_json)) + header_json + b"\x00" * pad
    header_pickle = struct.pack("<I", len(payload)) + payload
    return struct.pack("<II", 4, len(header_pickle)) + header_pickle


def build(
    files: Mapping[str, bytes],
    *,
    unpacked: Iterable[str] = (),
    links: Mapping[str, str] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """(asar bytes, header) for ``files`` ('/'-separated names); ``unpacked`` names are
    listed with ``"unpacked": true`` and not stored in the archive."""
    skip = set(unpacked)
    root: dict[str, Any] = {"files": {}}
    data = bytearray()

    def node_for(path: str) -> dict[str, Any]:
        node = root
        for part in path.split("/")[:-1]:
            node = node["files"].setdefault(part, {"files": {}})
        return node

    for name, content in files.items():
        leaf = name.split("/")[-1]
        entry: dict[str, Any] = {"size": len(content)}
        if name in skip:
            entry["unpacked"] = True
        else:
            entry["offset"] = str(len(data))
            data += content
        node_for(name)["files"][leaf] = entry
    for name, target in (links or {}).items():
        node_for(name)["files"][name.split("/")[-1]] = {"link": target}
    header = json.dumps(root, separators=(",", ":")).encode()
    return pickle_header(header) + bytes(data), root


def write(
    path: Path,
    files: Mapping[str, bytes],
    *,
    unpacked: Iterable[str] = (),
    links: Mapping[str, str] | None = None,
) -> Path:
    """Write ``path`` (an .asar) and its ``.unpacked`` directory for the unpacked names."""
    unpacked = list(unpacked)
    blob, _ = build(files, unpacked=unpacked, links=links)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    for name in unpacked:
        out = path.with_name(path.name + ".unpacked").joinpath(*name.split("/"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(files[name])
    return path
