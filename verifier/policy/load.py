"""Read and validate policy files (YAML, JSON Schema ``POLICY_SCHEMA``).

Every error is a ``PolicyError`` whose ``where`` is ``FILE:LINE: key.path`` (the line of the
offending key or value, from PyYAML's node marks), e.g.::

    policies/mine.yaml:7: waivers[0].expires: must be a date written YYYY-MM-DD, got 'soon'

YAML is parsed defensively: size cap, no anchors/aliases, no custom tags, no duplicate keys,
dates kept as strings (validated by the schema, then parsed).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from verifier.errors import PolicyError
from verifier.inputs import read_regular
from verifier.model import Severity, SigstoreIdentity
from verifier.npmdeps.lockfile import parse_sri
from verifier.policy.glob import GlobError, check_glob
from verifier.policy.model import (
    DEFAULT_POLICY_NAME,
    ComponentSpec,
    NpmPin,
    Policy,
    SignerMatcher,
    SignerRequirement,
    SignerRule,
    WaiverRule,
)
from verifier.policy.schema import POLICY_SCHEMA
from verifier.upstream import npm

MAX_POLICY_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_EXTENDS = 8

if TYPE_CHECKING:
    import jsonschema

JsonPath = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as strings (the schema validates them)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class _Doc:
    file: str
    data: Any
    lines: dict[JsonPath, int]  # value node line (1-based)
    key_lines: dict[JsonPath, int]  # key node line (1-based)

    def line(self, path: JsonPath, *, key: bool = False) -> int:
        p = path
        while True:
            if p in self.key_lines:  # the line of "key:" (a block value starts below it)
                return self.key_lines[p]
            if p in self.lines:
                return self.lines[p]
            if not p:
                return 1
            p = p[:-1]

    def where(self, path: JsonPath, *, key: bool = False) -> str:
        return f"{self.file}:{self.line(path, key=key)}: {dotted(path)}".rstrip(": ")

    def error(self, path: JsonPath, message: str, *, key: bool = False) -> PolicyError:
        return PolicyError(message, where=self.where(path, key=key))


def dotted(path: JsonPath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


_HEXLIKE = re.compile(r"^[0-9a-fA-F]{32,}$")
_COLLECTIONS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_SCALARS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


def _convert(node: yaml.Node, path: JsonPath, doc: _Doc, seen: set[int], depth: int) -> Any:
    if id(node) in seen:
        raise doc.error(path, "YAML anchors and aliases are not allowed in policies")
    seen.add(id(node))
    if depth > MAX_DEPTH:
        raise doc.error(path, f"nested deeper than {MAX_DEPTH} levels")
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _COLLECTIONS:
        raise doc.error(path, f"YAML tag {node.tag!r} is not allowed in policies")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or k.tag != "tag:yaml.org,2002:str":
                raise PolicyError(
                    "keys must be plain strings",
                    where=f"{doc.file}:{k.start_mark.line + 1}: {dotted(path)}".rstrip(": "),
                )
            key = str(k.value)
            if key in out:
                raise PolicyError(
                    f"duplicate key {key!r}",
                    where=f"{doc.file}:{k.start_mark.line + 1}: {dotted((*path, key))}",
                )
            doc.key_lines[(*path, key)] = k.start_mark.line + 1
            out[key] = _convert(v, (*path, key), doc, seen, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, (*path, i), doc, seen, depth + 1) for i, v in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    if node.tag not in _SCALARS:
        raise doc.error(path, f"YAML tag {node.tag!r} is not allowed in policies")
    value = str(node.value)
    if _HEXLIKE.match(value):
        return value  # a digest made only of decimal digits is still a digest, not a number
    if node.tag == "tag:yaml.org,2002:null":
        return None
    if node.tag == "tag:yaml.org,2002:bool":
        return value.lower() in ("yes", "true", "on", "y")
    if node.tag == "tag:yaml.org,2002:int":
        try:
            return int(value.replace("_", ""), 0)
        except ValueError:
            return value
    if node.tag == "tag:yaml.org,2002:float":
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value
    return value


def _check_events(text: str, path: str) -> None:
    """Reject deep nesting before composing (PyYAML's composer recurses per level)."""
    depth = 0
    for ev in yaml.parse(text, Loader=_Loader):
        if isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = ev.start_mark.line + 1 if ev.start_mark is not None else 1
                raise PolicyError(f"nested deeper than {MAX_DEPTH} levels", where=f"{path}:{line}")
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1


def _parse(path: str) -> tuple[_Doc, bytes]:
    raw = read_regular(path, MAX_POLICY_BYTES, what="policy file", error=PolicyError)
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy file larger than {MAX_POLICY_BYTES} bytes", where=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(f"not UTF-8 text ({e.reason} at byte {e.start})", where=path) from None
    doc = _Doc(path, None, {}, {})
    try:
        _check_events(text, path)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise PolicyError(
            f"not valid YAML: {e.problem or e.context or 'syntax error'}", where=f"{path}:{line}"
        ) from None
    except yaml.YAMLError as e:
        raise PolicyError(f"not valid YAML: {e}", where=path) from None
    if node is None:
        raise PolicyError("the policy file is empty", where=f"{path}:1")
    doc.data = _convert(node, (), doc, set(), 0)
    return doc, raw


# --- schema errors -> one clear line ---------------------------------------------------------

_TYPE_NAMES = {
    "object": "a mapping (key: value)",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "null": "nothing",
}


def _type_of(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return f"{str(v).lower()}"
    if v is None:
        return "nothing"
    if isinstance(v, int | float):
        return f"the number {v}"
    return f"the string {v!r}"


def _expected(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_NAMES.get(t, t) for t in names)


def _schema_error(doc: _Doc, err: jsonschema.ValidationError) -> PolicyError:
    path: JsonPath = tuple(err.absolute_path)
    v = err.validator
    inst = err.instance
    schema = err.schema if isinstance(err.schema, Mapping) else {}
    if v == "additionalProperties" and isinstance(inst, dict):
        known = sorted(schema.get("properties", {}))
        extra = sorted(k for k in inst if k not in known)
        key = extra[0] if extra else "?"
        hint = difflib.get_close_matches(key, known, n=1)
        msg = f"unknown key {key!r}"
        msg += f" (did you mean {hint[0]!r}?)" if hint else ""
        msg += f"; allowed keys: {', '.join(known)}" if known else ""
        return doc.error((*path, key), msg, key=True)
    if "propertyNames" in err.schema_path:
        key = str(inst)
        vv = err.validator_value
        allowed = [str(x) for x in vv] if isinstance(vv, list) else []
        hint = difflib.get_close_matches(key, allowed, n=1)
        msg = f"unknown rule id {key!r}"
        if key == "malformed-input":
            msg = "malformed-input cannot be re-rated or waived: it always fails the verdict"
        elif hint:
            msg += f" (did you mean {hint[0]!r}?)"
        return doc.error((*path, key), msg, key=True)
    if v == "type":
        return doc.error(path, f"expected {_expected(err.validator_value)}, got {_type_of(inst)}")
    if v == "enum":
        choices = ", ".join(str(c) for c in err.validator_value)
        if path and path[-1] == "rule" and inst == "malformed-input":
            return doc.error(path, "malformed-input cannot be waived: it always fails the verdict")
        return doc.error(path, f"must be one of: {choices}; got {_type_of(inst)}")
    if v == "required":
        missing = [r for r in err.validator_value if isinstance(inst, dict) and r not in inst]
        return doc.error(path, f"missing required key {missing[0] if missing else '?'!r}")
    if v == "pattern":
        msg = str(schema.get("x-message") or f"must match {err.validator_value}")
        return doc.error(path, f"{msg}, got {_type_of(inst)}")
    if v in ("minLength", "minItems", "minProperties"):
        return doc.error(path, "must not be empty")
    return doc.error(path, err.message)


@functools.cache
def _validator() -> Any:
    """The policy schema's validator; jsonschema is loaded only when a policy file is read."""
    import jsonschema

    return jsonschema.Draft202012Validator(POLICY_SCHEMA)


def _validate(doc: _Doc) -> None:
    if not isinstance(doc.data, dict):
        raise doc.error((), f"a policy must be a mapping of keys, got {_type_of(doc.data)}")
    errors = list(_validator().iter_errors(doc.data))
    if errors:
        first = min(errors, key=lambda e: (doc.line(tuple(e.absolute_path)), -len(e.path)))
        raise _schema_error(doc, first)


# --- data -> Policy ------------------------------------------------------------------------


def _as_list(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    return (str(v),) if isinstance(v, str) else tuple(str(x) for x in v)


def _regex(doc: _Doc, path: JsonPath, value: Any) -> str | None:
    if value is None:
        return None
    try:
        re.compile(str(value))
    except re.error as e:
        raise doc.error(path, f"invalid regular expression {value!r}: {e}") from None
    return str(value)


def _globs(doc: _Doc, path: JsonPath, values: Any) -> tuple[str, ...]:
    out = []
    for i, g in enumerate(values or ()):
        try:
            check_glob(g)
        except GlobError as e:
            raise doc.error((*path, i), f"bad glob: {e}") from None
        out.append(g)
    return tuple(out)


def _matcher(doc: _Doc, path: JsonPath, d: Mapping[str, Any]) -> SignerMatcher:
    return SignerMatcher(
        subject=_regex(doc, (*path, "subject"), d.get("subject")),
        issuer=_regex(doc, (*path, "issuer"), d.get("issuer")),
        thumbprints=tuple(t.lower() for t in _as_list(d.get("thumbprint"))),
        team_ids=_as_list(d.get("team_id")),
    )


def _relative_to(policy_file: str, path: str | None) -> str | None:
    """A bundle path relative to the policy file (URLs and absolute paths unchanged)."""
    if path is None or "://" in path or Path(path).is_absolute():
        return path
    return str(Path(policy_file).parent / path)


def _components(doc: _Doc, d: Mapping[str, Any]) -> list[ComponentSpec]:
    """``components``: sources, each with the Sigstore identity that must have signed it."""
    components = []
    for i, c in enumerate(d.get("components", [])):
        ss = c.get("sigstore")
        ident = None if ss is None else _sigstore(doc, ("components", i, "sigstore"), ss)
        components.append(ComponentSpec(c["name"], c["source"], ident))
    return components


def _sigstore(doc: _Doc, sp: JsonPath, ss: Mapping[str, Any]) -> SigstoreIdentity:
    if ("identity" in ss) == ("identity_regex" in ss):
        raise doc.error(sp, "give exactly one of 'identity' or 'identity_regex'")
    if ("issuer" in ss) == ("issuer_regex" in ss):
        raise doc.error(sp, "give exactly one of 'issuer' or 'issuer_regex'")
    return SigstoreIdentity(
        identity=ss.get("identity"),
        identity_regex=_regex(doc, (*sp, "identity_regex"), ss.get("identity_regex")),
        issuer=ss.get("issuer"),
        issuer_regex=_regex(doc, (*sp, "issuer_regex"), ss.get("issuer_regex")),
        bundle=_relative_to(doc.file, ss.get("bundle")),
        instance=ss.get("instance", "production"),
    )


def _signer_rules(doc: _Doc, d: Mapping[str, Any]) -> list[SignerRule]:
    rules = []
    for i, r in enumerate(d.get("signers", [])):
        rp: JsonPath = ("signers", i)
        try:
            check_glob(r["path"])
        except GlobError as e:
            raise doc.error((*rp, "path"), f"bad glob: {e}") from None
        rules.append(
            SignerRule(
                path=r["path"],
                require=SignerRequirement(r["require"]),
                signer=_matcher(doc, rp, r),
                reason=r.get("reason", ""),
            )
        )
    return rules


def _waivers(doc: _Doc, d: Mapping[str, Any], offset: int) -> list[WaiverRule]:
    """``waivers``, numbered after the ``offset`` waivers of the policy this one extends."""
    waivers = []
    for i, w in enumerate(d.get("waivers", [])):
        wp: JsonPath = ("waivers", i)
        try:
            expires = date.fromisoformat(w["expires"])
        except ValueError:
            raise doc.error(
                (*wp, "expires"), f"not a calendar date: {w['expires']!r} (YYYY-MM-DD)"
            ) from None
        if "path" in w:
            try:
                check_glob(w["path"])
            except GlobError as e:
                raise doc.error((*wp, "path"), f"bad glob: {e}") from None
        waivers.append(
            WaiverRule(
                sha256=w["sha256"].lower(),
                reason=w["reason"],
                expires=expires,
                rule=w.get("rule"),
                path=w.get("path"),
                index=offset + i,
                where=doc.where(wp),
            )
        )
    return waivers


def _npm_pins(doc: _Doc, npm_d: Mapping[str, Any]) -> list[NpmPin]:
    """``npm_dependencies.pin``: name, version and a strong integrity hash, each checked."""
    pins = []
    for i, pin in enumerate(npm_d.get("pin", ())):
        pp: JsonPath = ("npm_dependencies", "pin", i)
        if not npm.valid_name(pin["name"]):
            raise doc.error((*pp, "name"), f"not a valid npm package name: {pin['name']!r}")
        if not npm.valid_version(pin["version"]):
            raise doc.error((*pp, "version"), f"not a valid npm version: {pin['version']!r}")
        if not any(alg != "sha1" for alg, _ in parse_sri(pin["integrity"])):
            raise doc.error(
                (*pp, "integrity"),
                "needs a sha512, sha384 or sha256 hash (sha1 alone is not enough), "
                "base64 of the right length",
            )
        pins.append(NpmPin(pin["name"], pin["version"], pin["integrity"]))
    return pins


def _check_vendor_rules(doc: _Doc, d: Mapping[str, Any], pol: Policy) -> None:
    """``unsigned-or-vendor-signed`` needs a vendor identity, in the rule or the policy."""
    for i, r in enumerate(d.get("signers", [])):
        if (
            r["require"] == SignerRequirement.UNSIGNED_OR_VENDOR_SIGNED.value
            and pol.vendor is None
            and not any(k in r for k in ("subject", "issuer", "thumbprint", "team_id"))
        ):
            raise doc.error(
                ("signers", i, "require"),
                "unsigned-or-vendor-signed needs the vendor's identity: add subject/issuer/"
                "thumbprint/team_id to this rule or a top-level 'vendor'",
            )


def _build(doc: _Doc, base: Policy | None, sha256: str) -> Policy:
    """This document's settings added to (or replacing) those of the policy it extends."""
    d: dict[str, Any] = doc.data
    allow = d.get("allow", {})
    # checked in document order: the first fault found is the one reported
    resources_only = _globs(doc, ("allow", "resources_only"), allow.get("resources_only"))
    missing = _globs(doc, ("allow", "missing"), allow.get("missing"))
    changed = _globs(doc, ("allow", "changed"), allow.get("changed"))
    own = _globs(doc, ("own",), d.get("own"))
    vendor = _matcher(doc, ("vendor",), d["vendor"]) if "vendor" in d else None
    components = _components(doc, d)
    rules = _signer_rules(doc, d)
    waivers = _waivers(doc, d, len(base.waivers) if base else 0)
    npm_d = d.get("npm_dependencies", {})
    npm_skip = tuple(str(x) for x in npm_d.get("skip", ()))
    pins = _npm_pins(doc, npm_d)
    severity = {k: Severity(v) for k, v in d.get("severity", {}).items()}
    fail_on = Severity(d["fail_on"]) if "fail_on" in d else None
    name = d.get("name") or Path(doc.file).stem
    b = base or Policy(name=name, allow_renamed_main=False)
    pol = Policy(
        name=name,
        extends=d.get("extends"),
        description=d.get("description", b.description if base else ""),
        components=_merge_components(b.components, components),
        allow_renamed_main=bool(allow.get("renamed_main_executable", b.allow_renamed_main)),
        allow_resources_only=(*b.allow_resources_only, *resources_only),
        allow_missing=(*b.allow_missing, *missing),
        allow_changed=(*b.allow_changed, *changed),
        own=(*b.own, *own),
        vendor=vendor or b.vendor,
        signer_rules=(*b.signer_rules, *rules),
        severity={**b.severity, **severity},
        fail_on=fail_on or b.fail_on,
        waivers=(*b.waivers, *waivers),
        keep_inherited=(d["inherited"] == "keep") if "inherited" in d else b.keep_inherited,
        npm_skip=(*b.npm_skip, *npm_skip),
        npm_pins=(*b.npm_pins, *pins),
        source_path=doc.file,
        sha256=sha256,
    )
    _check_vendor_rules(doc, d, pol)
    return pol


def _merge_components(
    base: tuple[ComponentSpec, ...], own: list[ComponentSpec]
) -> tuple[ComponentSpec, ...]:
    """The base's components, then this policy's; a source named twice is kept once."""
    out: dict[str, ComponentSpec] = {}
    for c in (*base, *own):
        out[c.source] = c  # the derived policy's definition wins, in the base's place
    return tuple(out.values())


def _load(path: str, depth: int) -> Policy:
    doc, raw = _parse(path)
    _validate(doc)
    sha = hashlib.sha256(raw).hexdigest()
    base: Policy | None = None
    ext = doc.data.get("extends")
    if ext is not None:
        if ext == DEFAULT_POLICY_NAME:
            base = Policy.default()
        elif ext.endswith((".yaml", ".yml")):
            if depth >= MAX_EXTENDS:
                raise doc.error(("extends",), f"'extends' chain longer than {MAX_EXTENDS}")
            target = Path(path).parent / ext
            if not target.is_file():
                raise doc.error(("extends",), f"no such policy file: {target}")
            base = _load(str(target), depth + 1)
        else:
            raise doc.error(
                ("extends",),
                f"cannot extend {ext!r}: use {DEFAULT_POLICY_NAME!r} or a path to a .yaml file",
            )
    return _build(doc, base, sha)


def load_policy(path: str) -> Policy:
    """Read, validate and resolve (``extends``) the policy file at ``path``.

    Raises ``PolicyError`` (exit 2) whose ``where`` names file, line and key.
    """
    return _load(path, 0)


def load_policy_or_default(path: str | None) -> Policy:
    """``--policy FILE`` if given, else the packaged Electron default."""
    return Policy.default() if path is None else load_policy(path)


def expired_waivers(policy: Policy, today: date) -> Iterator[WaiverRule]:
    return (w for w in policy.waivers if w.expired(today))


def check_policy(path: str, today: date | None = None) -> str:
    """``biv policy check FILE``: validate and summarise; raises ``PolicyError`` when invalid.

    Expired waivers do not make a policy invalid (they stop applying and the report says so
    with ``waiver-expired``); they are listed as warnings.
    """
    pol = load_policy(path)
    today = today or date.today()
    lines = [
        f"{path}: OK: policy {pol.name!r}"
        + (f" (extends {pol.extends})" if pol.extends else "")
        + f"; {len(pol.own)} own-file globs, {len(pol.signer_rules)} signer rules, "
        f"{len(pol.severity)} severity overrides, {len(pol.waivers)} waivers, "
        f"fail_on {pol.fail_on.value if pol.fail_on else 'high (default)'}"
    ]
    for w in expired_waivers(pol, today):
        lines.append(
            f"{w.where or path}: warning: waiver expired on {w.expires.isoformat()} "
            f"({w.reason!r}); it no longer applies and reports will show waiver-expired"
        )
    return "\n".join(lines)


def with_source(policy: Policy, path: str | None, sha256: str | None) -> Policy:
    return replace(policy, source_path=path, sha256=sha256)
