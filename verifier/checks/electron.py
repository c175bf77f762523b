"""Electron checks that belong with the reference: fuses and ASAR integrity.

- ``insecure-fuse``: an Electron fuse in an insecure state (RunAsNode,
  EnableNodeOptionsEnvironmentVariable or EnableNodeCliInspectArguments on;
  EnableEmbeddedAsarIntegrityValidation or OnlyLoadAppFromAsar off). Electron ships several of
  these insecure by default, so the rule's default severity is low.
- ``asar-integrity-mismatch``: the app declares the sha256 of its ASAR header (macOS
  ``Info.plist`` ``ElectronAsarIntegrity``; Windows resource ``INTEGRITY``/``ELECTRONASAR``)
  and the shipped archive does not match it.
"""

from __future__ import annotations

import hashlib
import json
import plistlib
import posixpath
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from verifier.binary import pe
from verifier.binary.pe_resources import find_resource
from verifier.errors import MalformedInputError
from verifier.model import Anomaly, FileEntry, FileFormat, FileResult, FuseWire

# Electron's FuseV1Options, in wire order
FUSE_NAMES = (
    "RunAsNode",
    "EnableCookieEncryption",
    "EnableNodeOptionsEnvironmentVariable",
    "EnableNodeCliInspectArguments",
    "EnableEmbeddedAsarIntegrityValidation",
    "OnlyLoadAppFromAsar",
    "LoadBrowserProcessSpecificV8Snapshot",
    "GrantFileProtocolExtraPrivileges",
)
INSECURE_WHEN_ON = (
    "RunAsNode",
    "EnableNodeOptionsEnvironmentVariable",
    "EnableNodeCliInspectArguments",
)
INSECURE_WHEN_OFF = ("EnableEmbeddedAsarIntegrityValidation", "OnlyLoadAppFromAsar")
_STATE = {"0": "off", "1": "on", "r": "removed"}

MAX_PLIST = 4 << 20
MAX_ASAR_HEADER = 64 << 20


def fuse_states(wire: FuseWire) -> dict[str, str]:
    """Fuse name -> on/off/removed/unknown (v1 wires; unknown positions get their index)."""
    out: dict[str, str] = {}
    for i, ch in enumerate(wire.values):
        name = FUSE_NAMES[i] if wire.version == 1 and i < len(FUSE_NAMES) else f"fuse{i}"
        out[name] = _STATE.get(ch, "unknown")
    return out


def insecure_fuses(wire: FuseWire) -> list[str]:
    states = fuse_states(wire)
    bad = [n for n in INSECURE_WHEN_ON if states.get(n) == "on"]
    bad += [n for n in INSECURE_WHEN_OFF if states.get(n) == "off"]
    return bad


def _shipped(results: Iterable[FileResult]) -> Iterable[tuple[str, FileEntry]]:
    for r in results:
        if r.shipped is not None:
            yield r.path, r.shipped


def fuse_anomalies(results: Sequence[FileResult]) -> list[Anomaly]:
    """One ``insecure-fuse`` anomaly per binary (or Mach-O slice) with insecure fuses."""
    out: list[Anomaly] = []
    for path, e in _shipped(results):
        # per slice for Mach-O (the file-level wire repeats one slice's), else the file's
        wires: list[tuple[str | None, FuseWire]] = [
            (s.arch, s.fuses) for s in e.facts.slices if s.fuses is not None
        ]
        if not wires and e.facts.fuses is not None:
            wires.append((None, e.facts.fuses))
        for arch, wire in wires:
            bad = insecure_fuses(wire)
            if not bad:
                continue
            where = f" ({arch} slice)" if arch else ""
            out.append(
                Anomaly(
                    "insecure-fuse",
                    f"{path}{where}: Electron fuses in an insecure state: {', '.join(bad)}",
                    {
                        "path": path,
                        "location": e.location,
                        "actual_sha256": e.sha256,
                        "fuses": fuse_states(wire),
                        "insecure": bad,
                        "fuse_offset": wire.offset,
                        **({"arch": arch} if arch else {}),
                    },
                    arch,
                )
            )
    return out


# --- ASAR integrity ------------------------------------------------------------------------


def asar_header_sha256(entry: FileEntry) -> str:
    """sha256 of an ASAR archive's JSON header string (what Electron's integrity covers)."""
    if entry.blob is None:
        raise MalformedInputError("archive bytes are not available")
    head = entry.blob.read(0, 16)
    if len(head) < 16:
        raise MalformedInputError("ASAR header truncated")
    _four, _pickle, _payload, strlen = struct.unpack("<IIIi", head)
    if strlen < 0 or strlen > MAX_ASAR_HEADER or 16 + strlen > entry.size:
        raise MalformedInputError(f"ASAR header length {strlen} out of range")
    return hashlib.sha256(entry.blob.read(16, strlen)).hexdigest()


def _declared_mac(e: FileEntry) -> list[tuple[str, str, str]]:
    """(asar path relative to Contents/, algorithm, hash) from an Info.plist."""
    if e.blob is None or e.size > MAX_PLIST:
        return []
    try:
        plist = plistlib.loads(e.blob.read())
    except Exception as exc:  # plistlib raises many types on hostile input
        raise MalformedInputError(f"Info.plist cannot be parsed: {type(exc).__name__}") from exc
    decl = plist.get("ElectronAsarIntegrity") if isinstance(plist, dict) else None
    if not isinstance(decl, dict):
        return []
    out = []
    for rel, spec in decl.items():
        if isinstance(spec, dict):
            out.append((str(rel), str(spec.get("algorithm", "")), str(spec.get("hash", ""))))
    return out


def _declared_windows(e: FileEntry) -> list[tuple[str, str, str]]:
    """(asar path relative to the exe's folder, alg, value) from INTEGRITY/ELECTRONASAR."""
    if e.blob is None:
        return []
    info = pe.read_pe_info(e.blob)
    data = find_resource(e.blob, info, "INTEGRITY", "ELECTRONASAR")
    if data is None:
        return []
    try:
        decl = json.loads(data.decode("utf-8", errors="strict").strip().rstrip("\0"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedInputError("ELECTRONASAR resource is not JSON") from exc
    if not isinstance(decl, list):
        raise MalformedInputError("ELECTRONASAR resource is not a JSON list")
    out = []
    for d in decl:
        if isinstance(d, dict):
            rel = str(d.get("file", "")).replace("\\", "/")
            out.append((rel, str(d.get("alg", "")), str(d.get("value", ""))))
    return out


def asar_integrity_anomalies(results: Sequence[FileResult]) -> list[Anomaly]:
    """``asar-integrity-mismatch`` where a declared ASAR header hash does not match."""
    by_path = {p: e for p, e in _shipped(results)}
    out: list[Anomaly] = []
    for path, e in by_path.items():
        base = ""
        declared: list[tuple[str, str, str]] = []
        try:
            if path.endswith(".app/Contents/Info.plist") or path == "Contents/Info.plist":
                base = posixpath.dirname(path)
                declared = _declared_mac(e)
            elif e.format == FileFormat.PE and path.lower().endswith(".exe"):
                base = posixpath.dirname(path)
                declared = _declared_windows(e)
        except MalformedInputError as exc:
            out.append(_mismatch(path, e, f"cannot read the declared ASAR integrity: {exc}", {}))
            continue
        for rel, alg, value in declared:
            target = posixpath.normpath(posixpath.join(base, rel)) if base else rel
            out.extend(_check_one(path, e, target, alg, value, by_path))
    return out


def _check_one(
    decl_path: str,
    decl: FileEntry,
    target: str,
    alg: str,
    value: str,
    by_path: Mapping[str, FileEntry],
) -> list[Anomaly]:
    ev: dict[str, Any] = {"declared_in": decl_path, "asar": target, "algorithm": alg}
    ev["expected_sha256"] = value.lower()
    if alg.upper() != "SHA256":
        return [_mismatch(decl_path, decl, f"unsupported ASAR integrity algorithm {alg!r}", ev)]
    asar = by_path.get(target)
    if asar is None:
        return [_mismatch(decl_path, decl, f"declares integrity for {target}, which is absent", ev)]
    try:
        actual = asar_header_sha256(asar)
    except MalformedInputError as exc:
        return [_mismatch(decl_path, decl, f"{target}: {exc}", ev)]
    ev["actual_sha256"] = actual
    if actual == value.lower():
        return []
    return [
        _mismatch(
            decl_path,
            decl,
            f"{target}: its header hash {actual} differs from the {value.lower()} declared in "
            f"{decl_path}; Electron with EnableEmbeddedAsarIntegrityValidation refuses to start",
            ev,
            target,
        )
    ]


def _mismatch(
    path: str, e: FileEntry, msg: str, ev: dict[str, Any], at: str | None = None
) -> Anomaly:
    ev = dict(ev)
    ev.setdefault("path", at or path)
    ev.setdefault("location", e.location if at is None else at)
    return Anomaly("asar-integrity-mismatch", msg, ev)
