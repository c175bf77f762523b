"""Lockfiles an app ships: ``package-lock.json`` v1-v3, ``npm-shrinkwrap.json``, npm's hidden
``node_modules/.package-lock.json``, and yarn v1 ``yarn.lock``. Each gives, per installed
dependency, the integrity hashes its tarball must have (a second, independent proof).

npm v2/v3 lockfiles key entries by install path relative to the lockfile's folder
(``node_modules/a/node_modules/b``, ``packages/w/node_modules/c`` in workspaces); v1 nests
``dependencies`` (the install path follows from the nesting); yarn v1 knows names and
versions only. Bundled (``inBundle``/``bundled``), linked and non-registry entries carry no
tarball hash of their own and are skipped. yarn 2+ (Berry) lockfiles hash their own zip
archives, not npm tarballs: they are noted and not used.

Lockfiles are untrusted input: size, entry count and nesting are capped; a file that is not
what its name says is a ``malformed-input`` problem.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from verifier.errors import MalformedInputError
from verifier.record import record
from verifier.upstream import npm

MAX_LOCKFILE_BYTES = 64 << 20
MAX_ENTRIES = 200_000
MAX_NESTING = 64

NPM_LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json", "node_modules/.package-lock.json")
YARN_LOCKFILE = "yarn.lock"
LOCKFILE_NAMES = (*NPM_LOCKFILES, YARN_LOCKFILE)

#: SRI algorithms biv checks, strongest first; sha1 is checked but never enough alone
ALGORITHMS = ("sha512", "sha384", "sha256", "sha1")
_DIGEST_SIZE = {"sha512": 64, "sha384": 48, "sha256": 32, "sha1": 20}


@record
class LockEntry:
    lockfile: str  # shipped path of the lockfile
    key: str  # the entry's key: install path, or yarn selector
    name: str | None  # None: the folder name is the name (npm v2/v3)
    version: str
    hashes: tuple[tuple[str, str], ...]  # (algorithm, hex digest)

    def label(self) -> str:
        return f"{self.lockfile} ({self.key})"


@dataclass
class Lockfiles:
    by_path: dict[str, list[LockEntry]] = field(default_factory=dict)
    by_name_version: dict[tuple[str, str], list[LockEntry]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # lockfiles read
    notes: list[str] = field(default_factory=list)  # lockfiles not used, and why

    def lookup(self, install_path: str, name: str, version: str) -> list[LockEntry]:
        """Entries describing the dependency installed at ``install_path``."""
        out = [
            e
            for e in self.by_path.get(install_path, ())
            if e.version == version and (e.name is None or e.name == name)
        ]
        out.extend(self.by_name_version.get((name, version), ()))
        return out


def parse_sri(text: object) -> tuple[tuple[str, str], ...]:
    """(algorithm, hex) of every readable hash in a Subresource Integrity string."""
    if not isinstance(text, str) or len(text) > 4096:
        return ()
    out = []
    for token in text.split():
        alg, _, b64 = token.partition("-")
        if alg not in _DIGEST_SIZE:
            continue
        try:
            raw = base64.b64decode(b64.split("?", 1)[0], validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == _DIGEST_SIZE[alg]:
            out.append((alg, raw.hex()))
    return tuple(out)


def _decode(data: bytes, where: str) -> str:
    if len(data) > MAX_LOCKFILE_BYTES:
        raise MalformedInputError(f"lockfile larger than {MAX_LOCKFILE_BYTES} bytes", where=where)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MalformedInputError(
            f"lockfile is not UTF-8 ({e.reason} at byte {e.start})", where=where
        ) from None


def read_npm_lockfile(data: bytes, where: str, into: Lockfiles) -> None:
    """Add the entries of a package-lock.json / npm-shrinkwrap.json (v1, v2 or v3)."""
    text = _decode(data, where)
    try:
        doc = json.loads(text)
    except RecursionError:
        raise MalformedInputError("lockfile nested too deeply", where=where) from None
    except ValueError as e:
        raise MalformedInputError(f"lockfile is not valid JSON: {e}", where=where) from None
    if not isinstance(doc, dict):
        raise MalformedInputError("lockfile is not a JSON object", where=where)
    count = 0
    packages = doc.get("packages")
    if isinstance(packages, dict):
        for key, entry in packages.items():
            count += 1
            if count > MAX_ENTRIES:
                into.notes.append(f"{where}: more than {MAX_ENTRIES} entries; the rest ignored")
                break
            le = _npm_entry(where, str(key), entry, name=None)
            if le is not None and "node_modules/" in f"/{key}":
                into.by_path.setdefault(str(key), []).append(le)
    elif isinstance(doc.get("dependencies"), dict):
        for path, name, entry in _v1_walk(doc["dependencies"], where, into):
            le = _npm_entry(where, path, entry, name=name)
            if le is not None:
                into.by_path.setdefault(path, []).append(le)
    into.files.append(where)


def _npm_entry(where: str, key: str, entry: Any, name: str | None) -> LockEntry | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("inBundle") or entry.get("bundled") or entry.get("link"):
        return None
    version = entry.get("version")
    if not isinstance(version, str) or not npm.valid_version(version):
        return None  # file:, git and aliased (npm:) entries have no registry version
    alias = entry.get("name")
    if isinstance(alias, str) and npm.valid_name(alias):
        name = alias
    hashes = parse_sri(entry.get("integrity"))
    if not hashes:
        return None
    return LockEntry(where, key, name, version, hashes)


def _v1_walk(
    deps: Mapping[str, Any], where: str, into: Lockfiles
) -> Iterator[tuple[str, str, Any]]:
    """(install path, name, entry) of a v1 lockfile's nested ``dependencies``."""
    stack: list[tuple[str, Mapping[str, Any], int]] = [("", deps, 1)]
    count = 0
    while stack:
        prefix, level, depth = stack.pop()
        for name, entry in level.items():
            count += 1
            if count > MAX_ENTRIES:
                into.notes.append(f"{where}: more than {MAX_ENTRIES} entries; the rest ignored")
                return
            if not isinstance(name, str) or not npm.valid_name(name):
                continue
            path = f"{prefix}node_modules/{name}"
            yield path, name, entry
            sub = entry.get("dependencies") if isinstance(entry, dict) else None
            if isinstance(sub, dict) and sub:
                if depth >= MAX_NESTING:
                    into.notes.append(f"{where}: nested deeper than {MAX_NESTING}; rest ignored")
                    continue
                stack.append((path + "/", sub, depth + 1))


_YARN_FIELD = re.compile(r'^  (version|resolved|integrity) +"?([^"\s]*)"?\s*$')


def read_yarn_lockfile(data: bytes, where: str, into: Lockfiles) -> None:
    """Add the entries of a yarn v1 lockfile (name@version -> integrity, resolved#sha1)."""
    text = _decode(data, where)
    if "__metadata:" in text[:4096]:
        into.notes.append(
            f"{where}: a yarn 2+ (Berry) lockfile; its checksums hash yarn's own archives, "
            "not npm tarballs: not used"
        )
        return
    selectors: list[str] = []
    fields: dict[str, str] = {}
    count = 0

    def flush() -> None:
        nonlocal count
        if not selectors:
            return
        count += 1
        if count > MAX_ENTRIES:
            return
        _yarn_entry(where, selectors, fields, into)

    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            flush()
            selectors, fields = [], {}
            if not line.rstrip().endswith(":"):
                raise MalformedInputError(f"not a yarn v1 lockfile (line {lineno})", where=where)
            selectors = [s.strip().strip('"') for s in line.rstrip().rstrip(":").split(",")]
            continue
        m = _YARN_FIELD.match(line)
        if m is not None and selectors:
            fields[m.group(1)] = m.group(2)
    flush()
    if count > MAX_ENTRIES:
        into.notes.append(f"{where}: more than {MAX_ENTRIES} entries; the rest ignored")
    into.files.append(where)


def _yarn_entry(where: str, selectors: list[str], fields: dict[str, str], into: Lockfiles) -> None:
    version = fields.get("version", "")
    if not npm.valid_version(version):
        return
    hashes = list(parse_sri(fields.get("integrity")))
    resolved = fields.get("resolved", "")
    frag = resolved.rpartition("#")[2] if "#" in resolved else ""
    if re.fullmatch(r"[0-9a-f]{40}", frag) and ("sha1", frag) not in hashes:
        hashes.append(("sha1", frag))
    if not hashes:
        return
    names = set()
    for sel in selectors:
        at = sel.rfind("@")
        name = sel[:at] if at > 0 else sel
        if npm.valid_name(name):
            names.add(name)
    for name in sorted(names):
        e = LockEntry(where, ", ".join(selectors), name, version, tuple(hashes))
        into.by_name_version.setdefault((name, version), []).append(e)
