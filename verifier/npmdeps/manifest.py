"""``package.json``: read defensively, and compared with the published one as parsed JSON.

What may differ between an installed package's ``package.json`` and the published one
(docs/contract.md "npm dependencies"), and why:

- keys packagers remove may be missing (electron-builder strips ``scripts``,
  ``devDependencies``, ``keywords``, ``_``-keys and more, and re-serialises the file), except
  the keys Node reads to load the package (``RUNTIME_KEYS``): without ``main`` Node loads
  ``index.js``, without ``exports`` every file becomes reachable;
- keys beginning with ``_`` and ``gypfile`` may be added or changed (npm writes them);
- descriptive metadata that npm 5/6 rewrote on install and Node never reads
  (``NORMALISED_METADATA``: ``repository``, ``bugs``, ``homepage``, ``author``...) may be added
  or changed; npm 5/6 also added ``scripts.install = "node-gyp rebuild"`` to packages with a
  ``binding.gyp`` and no install script, dropped ``node_modules/.bin/`` from script commands,
  and turned a string ``bin`` into an object;
- any other added or changed key (``main``, ``exports``, ``bin``, ``scripts``, ...) is a
  divergence.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from verifier.errors import MalformedInputError
from verifier.record import record
from verifier.upstream import npm

MAX_MANIFEST_BYTES = 4 << 20  # the largest package.json on the registry is well below this

#: keys Node (and node-pre-gyp) read to load a package: they may not go missing
RUNTIME_KEYS = frozenset({"name", "version", "main", "exports", "imports", "type", "bin", "binary"})

#: metadata npm <= 6 normalised when it rewrote package.json on install; Node never reads it
NORMALISED_METADATA = frozenset(
    {
        "author",
        "bugs",
        "bundleDependencies",
        "bundledDependencies",
        "contributors",
        "deprecated",
        "description",
        "homepage",
        "license",
        "licenses",
        "maintainers",
        "readme",
        "readmeFilename",
        "repository",
    }
)

_NODE_GYP_INSTALL = "node-gyp rebuild"


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A package.json's object; ``MalformedInputError`` when it is not one Node could read."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise MalformedInputError(
            f"package.json larger than {MAX_MANIFEST_BYTES} bytes", where=where
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # Node strips a UTF-8 byte order mark too
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedInputError(
            f"package.json is not UTF-8 ({e.reason} at byte {e.start})", where=where
        ) from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise MalformedInputError("package.json nested too deeply", where=where) from None
    except ValueError as e:
        raise MalformedInputError(f"package.json is not valid JSON: {e}", where=where) from None
    if not isinstance(doc, dict):
        raise MalformedInputError("package.json is not a JSON object", where=where)
    return doc


def identity(doc: Mapping[str, Any]) -> tuple[str, str] | str:
    """(name, version) of a manifest, or why it has none an npm registry could answer for."""
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        return "package.json has no string 'name' and 'version'"
    if not npm.valid_name(name):
        return f"{_short(name)!r} is not a valid npm package name"
    if not npm.valid_version(version):
        return f"{_short(version)!r} is not a valid npm version"
    return name, version


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


@record
class ManifestDiff:
    """Keys that make the installed package.json differ from the published one."""

    removed: tuple[str, ...] = ()  # runtime keys missing from the installed file
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    tolerated: tuple[str, ...] = ()  # differences allowed (see the module docstring)

    @property
    def divergent(self) -> bool:
        return bool(self.removed or self.added or self.changed)

    def describe(self) -> str:
        parts = []
        for what, keys in (("changed", self.changed), ("added", self.added)):
            if keys:
                parts.append(f"{what} {', '.join(keys)}")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        return "; ".join(parts)


def _same(a: Any, b: Any) -> bool:
    """JSON equality that tells ``true`` from ``1`` and ``1`` from ``1.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _bin_map(v: Any, name: str) -> Any:
    """npm <= 6 turned ``"bin": "cli.js"`` into ``{"<name>": "cli.js"}``; ``./`` is dropped."""
    if isinstance(v, str):
        v = {name.rsplit("/", 1)[-1]: v}
    if isinstance(v, dict):
        return {
            str(k): posixpath.normpath(x) if isinstance(x, str) and x else x for k, x in v.items()
        }
    return v


def compare_manifests(
    shipped: Mapping[str, Any], published: Mapping[str, Any], *, has_binding_gyp: bool
) -> ManifestDiff:
    removed: list[str] = []
    added: list[str] = []
    changed: list[str] = []
    tolerated: list[str] = []
    name = str(published.get("name", ""))
    for key in sorted(set(shipped) | set(published)):
        in_s, in_p = key in shipped, key in published
        if in_p and not in_s:
            (removed if key in RUNTIME_KEYS else tolerated).append(key)
            continue
        s_val = shipped[key]
        if key.startswith("_") or key == "gypfile" or key in NORMALISED_METADATA:
            if not in_p or not _same(s_val, published[key]):
                tolerated.append(key)
            continue
        if not in_p:
            added.append(key)
            continue
        p_val = published[key]
        if key == "bin":
            s_val, p_val = _bin_map(s_val, name), _bin_map(p_val, name)
        elif key == "scripts":
            s_val, p_val = _scripts(s_val), _scripts(p_val)
            if has_binding_gyp:
                s_val = _without_default_gyp_install(s_val, p_val)
        if not _same(s_val, p_val):
            changed.append(key)
        elif not _same(shipped[key], published[key]):
            tolerated.append(key)
    return ManifestDiff(tuple(removed), tuple(added), tuple(changed), tuple(tolerated))


_BIN_PREFIX = re.compile(r"^(\./)?node_modules[/\\]\.bin[/\\]")


def _scripts(v: Any) -> Any:
    """npm <= 6 dropped a leading ``node_modules/.bin/`` from script commands."""
    if not isinstance(v, dict):
        return v
    return {k: _BIN_PREFIX.sub("", x) if isinstance(x, str) else x for k, x in v.items()}


def _without_default_gyp_install(shipped: Any, published: Any) -> Any:
    """npm <= 6 added ``install: node-gyp rebuild`` when a package had none of its own."""
    if not isinstance(shipped, dict) or not isinstance(published, dict):
        return shipped
    if "install" in published or "preinstall" in published:
        return shipped
    if shipped.get("install") != _NODE_GYP_INSTALL:
        return shipped
    return {k: v for k, v in shipped.items() if k != "install"}
