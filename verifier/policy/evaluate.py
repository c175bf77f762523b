"""Statuses + signature facts + policy -> findings (docs/contract.md "From status to findings").

``evaluate`` is the only place where severities are decided:

1. each ``FileResult`` status gives at most one finding (the contract's table);
2. every anomaly of a shipped file (signature checks, fuses, parsers), every malformed member
   of the artifact and every reference problem becomes a finding of its own rule;
3. signer rules of the policy add ``untrusted-signer`` findings;
4. severity overrides apply, then waivers (a waiver covers one rule/path glob and exactly the
   bytes with its sha256; an expired waiver no longer applies and adds ``waiver-expired``).

``malformed-input`` can be neither overridden nor waived: it always fails the verdict
(``finding_fails``), whatever ``--fail-on``, ``fail_on`` or overrides say. Policy files that
try are rejected by the loader.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from verifier.model import (
    Anomaly,
    FileEntry,
    FileResult,
    Finding,
    Inventory,
    Reference,
    Severity,
    SignatureFacts,
    Signer,
    Status,
    Verdict,
)
from verifier.policy.glob import covers, match_any
from verifier.policy.inherit import bundle_inherited_from, inherited_from
from verifier.policy.model import Policy, SignerMatcher, SignerRequirement, SignerRule
from verifier.rules import RULES

MALFORMED = "malformed-input"
#: rules that policies can neither override nor waive
UNWAIVABLE = frozenset({MALFORMED})
DEFAULT_FAIL_ON = Severity.HIGH

#: file suffixes that are executable code even when their format sniffs as data
CODE_SUFFIXES = (".node", ".dll", ".exe", ".dylib", ".so", ".sys", ".ocx", ".scr")


#: upstream names of Electron's main executable (Windows, Linux, macOS)
MAIN_EXECUTABLE_NAMES = frozenset({"electron.exe", "electron"})


def default_severity(rule: str) -> Severity:
    r = RULES.get(rule)
    return r.severity if r is not None else Severity.MEDIUM


# --- path classification (compare uses classify_own) --------------------------------------


def classify_own(path: str, policy: Policy) -> bool:
    """True when ``path`` is one of the application's own files (status ``own``)."""
    return covers(path, policy.own) is not None


def renamed_main_allowed(policy: Policy) -> bool:
    """True when the renamed Electron main executable may be ``resources-only``."""
    return policy.allow_renamed_main


def is_allowed_resources_only(
    path: str, policy: Policy, *, renamed_from: str | None = None, upstream_path: str | None = None
) -> bool:
    """May ``path`` differ from upstream in its resources/fuses only?"""
    if renamed_from and policy.allow_renamed_main and is_main_executable(renamed_from):
        return True
    return any(
        p and covers(p, policy.allow_resources_only) is not None
        for p in (path, renamed_from, upstream_path)
    )


def is_main_executable(upstream_path: str) -> bool:
    """Is ``upstream_path`` Electron's main executable (``electron.exe``, ``electron``,
    ``Electron.app/Contents/MacOS/Electron``)?"""
    return upstream_path.rsplit("/", 1)[-1].lower() in MAIN_EXECUTABLE_NAMES


def is_allowed_missing(path: str, policy: Policy) -> bool:
    return covers(path, policy.allow_missing) is not None


def is_allowed_changed(path: str, policy: Policy) -> bool:
    return covers(path, policy.allow_changed) is not None


def is_code(entry: FileEntry) -> bool:
    """Executable code: PE, Mach-O, ELF, or a native module/library by name."""
    return entry.format.is_code or entry.path.lower().endswith(CODE_SUFFIXES)


# --- verdict -------------------------------------------------------------------------------


def effective_fail_on(cli: Severity | None, policy: Policy) -> Severity:
    """``--fail-on`` beats the policy's ``fail_on``, which beats the default (high)."""
    return cli or policy.fail_on or DEFAULT_FAIL_ON


def finding_fails(finding: Finding, fail_on: Severity) -> bool:
    """A finding fails the verdict when it is not waived and at or above ``fail_on``.

    ``malformed-input`` always fails.
    """
    if finding.rule in UNWAIVABLE:
        return True
    return not finding.suppressed and finding.severity.at_least(fail_on)


def verdict(findings: Iterable[Finding], fail_on: Severity, inconclusive: bool) -> Verdict:
    """``fail`` if any finding fails, else ``inconclusive`` if a reference was missing."""
    if any(finding_fails(f, fail_on) for f in findings):
        return Verdict.FAIL
    return Verdict.INCONCLUSIVE if inconclusive else Verdict.PASS


def exit_code(v: Verdict, *, usage_error: bool = False) -> int:
    """Precedence (docs/contract.md "Exit codes"): 2 (usage) > 1 (fail) > 3 (inconclusive) > 0."""
    if usage_error:
        return 2
    return {Verdict.FAIL: 1, Verdict.INCONCLUSIVE: 3, Verdict.PASS: 0}[v]


# --- helpers -------------------------------------------------------------------------------


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, str | int | float | bool):
        return v
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        items = [_jsonable(x) for x in v]
        return sorted(items, key=str) if isinstance(v, set | frozenset) else items
    if isinstance(v, bytes):
        return v.hex()
    to_dict = getattr(v, "to_dict", None)
    if callable(to_dict):
        return _jsonable(to_dict())
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _jsonable(dataclasses.asdict(v))
    return str(v)


def _signer_name(s: Signer | None) -> str:
    if s is None:
        return "nobody (unsigned)"
    return s.subject or s.sha256[:16]


def _first_signer(sig: SignatureFacts) -> Signer | None:
    return sig.signers[0] if sig.signed and sig.signers else None


def _thumbs(signers: Iterable[Signer]) -> frozenset[str]:
    return frozenset(s.sha256.lower() for s in signers)


def _file_signed(e: FileEntry) -> bool:
    return e.facts.signature.signed or any(s.signature.signed for s in e.facts.slices)


def _sig_pairs(
    shipped: FileEntry, reference: FileEntry | None
) -> list[tuple[str | None, SignatureFacts, SignatureFacts | None]]:
    """(arch, shipped signature, upstream signature) per Mach-O slice, else per file."""
    s_slices = shipped.facts.slices
    r_slices = reference.facts.slices if reference is not None else ()
    if s_slices and any(x.signature.signed for x in (*s_slices, *r_slices)):
        by_arch = {x.arch: x.signature for x in r_slices}
        return [(x.arch, x.signature, by_arch.get(x.arch)) for x in s_slices]
    return [(None, shipped.facts.signature, reference.facts.signature if reference else None)]


class _Ctx:
    def __init__(self, refs: Sequence[Reference], policy: Policy) -> None:
        self.policy = policy
        self.versions: dict[str, str | None] = {}
        for r in refs:
            self.versions.setdefault(r.component.name, r.component.version)

    def upstream(self, r: FileResult) -> str:
        name = r.component or "upstream"
        v = self.versions.get(name) if r.component else None
        return f"{name} {v}" if v else name


def _base_evidence(r: FileResult) -> dict[str, Any]:
    ev: dict[str, Any] = {str(k): _jsonable(v) for k, v in r.evidence.items()}
    if r.reference is not None:
        ev.setdefault("expected_sha256", r.reference.sha256)
        if r.reference.path != r.path:
            ev.setdefault("upstream_path", r.reference.path)
    if r.shipped is not None:
        ev.setdefault("actual_sha256", r.shipped.sha256)
    if r.component:
        ev.setdefault("component", r.component)
    return ev


def _location(r: FileResult) -> str:
    e = r.shipped or r.reference
    return e.location if e is not None else r.path


def _finding(
    rule: str, r: FileResult, message: str, evidence: Mapping[str, Any], policy: Policy
) -> Finding:
    return Finding(
        rule=rule,
        severity=default_severity(rule),
        path=r.path,
        location=_location(r),
        message=message,
        evidence=dict(evidence),
    )


def _changed_what(r: FileResult) -> str:
    """A short human description of where a divergent file differs."""
    ev = r.evidence
    bits: list[str] = []
    archs = [s.arch for s in r.slices if s.status == Status.DIVERGENT]
    if archs:
        bits.append("in the " + ", ".join(archs) + " slice" + ("s" if len(archs) > 1 else ""))
    secs = ev.get("sections")
    if isinstance(secs, list | tuple) and secs:
        names = []
        for s in secs[:6]:
            names.append(str(s.get("name")) if isinstance(s, Mapping) else str(s))
        bits.append("sections " + ", ".join(names))
    ranges = ev.get("ranges")
    if isinstance(ranges, list | tuple) and ranges:
        first = ranges[0]
        if isinstance(first, Mapping) and "offset" in first:
            bits.append(f"{len(ranges)} byte range(s) from offset {int(first['offset']):#x}")
    return (" (" + "; ".join(bits) + ")") if bits else ""


# --- status -> finding ---------------------------------------------------------------------


def _status_findings(r: FileResult, ctx: _Ctx) -> list[Finding]:
    """The finding a file's status gives under the policy, if any (the contract's table)."""
    policy = ctx.policy
    st = r.status
    if st in (Status.IDENTICAL, Status.OWN):
        return []
    if st == Status.UNEXPECTED and r.shipped is not None and not _maybe_unexpected_code(r):
        return []  # data (most files of a large artifact): no evidence to gather
    ev = _base_evidence(r)
    up = ctx.upstream(r)
    if st == Status.IDENTICAL_EXCEPT_SIGNATURE and r.shipped is not None:
        out: list[Finding] = []
        for arch, s, u in _sig_pairs(r.shipped, r.reference):
            out.extend(_signature_change(r, arch, s, u, ev, up, policy))
        return out
    if st == Status.RESOURCES_ONLY:
        return _resources_only(r, ev, up, policy)
    if st == Status.DIVERGENT and r.shipped is not None:
        return _divergent(r, r.shipped, ev, up, policy)
    if st == Status.MISSING:
        if is_allowed_missing(r.path, policy):
            return []
        message = f"{r.path} from {up} is missing from the shipped artifact"
        return [_finding("missing-file", r, message, ev, policy)]
    if st == Status.UNEXPECTED and r.shipped is not None and "npm" in r.evidence:
        return [_unexpected_file(r, ev, policy)]
    if st == Status.UNEXPECTED and r.shipped is not None:
        return _unexpected_binary(r, r.shipped, ev, policy)
    return []


def _resources_only(r: FileResult, ev: dict[str, Any], up: str, policy: Policy) -> list[Finding]:
    renamed = r.evidence.get("renamed_from")
    if is_allowed_resources_only(
        r.path,
        policy,
        renamed_from=str(renamed) if renamed else None,
        upstream_path=r.reference.path if r.reference else None,
    ):
        return []
    message = (
        f"{r.path}: only resources or fuses differ from {up}'s "
        f"{r.reference.path if r.reference else r.path}, but the policy does not allow "
        "that for this file (code is unchanged)"
    )
    return [_finding("resources-modified", r, message, ev, policy)]


def _divergent(
    r: FileResult, shipped: FileEntry, ev: dict[str, Any], up: str, policy: Policy
) -> list[Finding]:
    """``signed-divergent-content`` for a signed file, else ``divergent-content``."""
    what = _changed_what(r)
    divergent_archs = [s.arch for s in r.slices if s.status == Status.DIVERGENT]
    if divergent_archs:
        ev.setdefault("arch", divergent_archs[0] if len(divergent_archs) == 1 else None)
        ev.setdefault("archs", divergent_archs)
        if ev.get("arch") is None:
            ev.pop("arch")
    upstream_name = r.reference.path if r.reference else r.path
    if _file_signed(shipped):
        return [_signed_divergent(r, shipped, ev, f"{up}'s {upstream_name}", what, policy)]
    if is_allowed_changed(r.path, policy):
        return []
    if "npm" in r.evidence:
        detail = r.evidence.get("detail")
        what = f": {detail}" if detail else what
        up = f"the published npm package {r.evidence['npm']}"
    message = f"{r.path} differs from {up}'s {upstream_name}{what}"
    return [_finding("divergent-content", r, message, ev, policy)]


def _signed_divergent(
    r: FileResult, shipped: FileEntry, ev: dict[str, Any], upstream: str, what: str, policy: Policy
) -> Finding:
    signer = _first_signer(shipped.facts.signature) or next(
        (_first_signer(s.signature) for s in shipped.facts.slices if _first_signer(s.signature)),
        None,
    )
    ev.setdefault("signer_actual", _signer_name(signer))
    if r.reference is not None:
        ev.setdefault("signer_expected", _signer_name(_first_signer(r.reference.facts.signature)))
    message = (
        f"{r.path} is not {upstream}: its content differs after "
        f"signatures are removed{what}, yet it is signed by {_signer_name(signer)}. "
        "A valid signature here does not mean the code is upstream's"
    )
    return _finding("signed-divergent-content", r, message, ev, policy)


def _maybe_unexpected_code(r: FileResult) -> bool:
    """Whether an unexpected file may give a finding: an npm one, or code (the cheap tests
    of ``_status_findings``'s last two branches, before any evidence is gathered)."""
    return "npm" in r.evidence or (r.shipped is not None and is_code(r.shipped))


def _unexpected_binary(
    r: FileResult, shipped: FileEntry, ev: dict[str, Any], policy: Policy
) -> list[Finding]:
    """Code that matches no upstream file and is not the app's own."""
    if not is_code(shipped) or classify_own(r.path, policy):
        return []
    ev.setdefault("format", shipped.format.value)
    signer = _first_signer(shipped.facts.signature)
    if signer is not None:
        ev.setdefault("signer_actual", _signer_name(signer))
    message = (
        f"{r.path} is executable code ({shipped.format.value}) that matches no "
        "upstream file and is not declared as the app's own"
    )
    return [_finding("unexpected-binary", r, message, ev, policy)]


#: file suffixes that make an unexpected file inside an npm package folder high
#: (docs/contract.md "npm dependencies")
NPM_CODE_SUFFIXES = (".js", ".cjs", ".mjs", ".node", ".dll", ".so", ".dylib", ".exe")


def _unexpected_file(r: FileResult, ev: dict[str, Any], policy: Policy) -> Finding:
    """A file inside an npm package folder that the package's published tarball lacks."""
    assert r.shipped is not None
    code = r.path.lower().endswith(NPM_CODE_SUFFIXES) or r.shipped.format.is_code
    ev.setdefault("format", r.shipped.format.value)
    what = "code " if code else ""
    f = _finding(
        "unexpected-file",
        r,
        f"{r.path}: the published npm package {r.evidence.get('npm')} has no {what}file "
        f"{r.evidence.get('file')!r}; Node loads whatever sits in the package folder",
        ev,
        policy,
    )
    return dataclasses.replace(f, severity=Severity.HIGH) if code else f


def _vendor_appended_nested(s: SignatureFacts, u: SignatureFacts) -> bool:
    """Upstream's signature intact, plus nested signature(s) the vendor appended.

    The primary signatures must be identical once every nested signature is set aside, and
    every nested signature upstream carried (real Microsoft DLLs carry one) must still be
    there byte for byte; the shipped file must carry more than upstream did.
    """
    if s.primary_container_sha256 is None or u.primary_container_sha256 is None:
        return False
    if s.primary_container_sha256 != u.primary_container_sha256:
        return False
    return set(u.nested_sha256) < set(s.nested_sha256) or (
        not u.nested_sha256 and bool(s.nested_signers)
    )


def _signature_change(
    r: FileResult,
    arch: str | None,
    s: SignatureFacts,
    u: SignatureFacts | None,
    base: Mapping[str, Any],
    up: str,
    policy: Policy,
) -> list[Finding]:
    ev = dict(base)
    if arch:
        ev["arch"] = arch
    where = f" ({arch} slice)" if arch else ""
    if u is None:
        return []
    ss, us = _first_signer(s), _first_signer(u)
    ev["signer_actual"] = _signer_name(ss)
    ev["signer_expected"] = _signer_name(us)
    if ss is not None and us is not None and ss.sha256.lower() == us.sha256.lower():
        if s.container_sha256 is None or u.container_sha256 is None:
            return []
        if s.container_sha256 == u.container_sha256:
            return []
        ev["expected_container_sha256"] = u.container_sha256
        ev["actual_container_sha256"] = s.container_sha256
        if _vendor_appended_nested(s, u):
            ev["nested_signers"] = [_signer_name(n) for n in s.nested_signers]
            names = ", ".join(_signer_name(n) for n in s.nested_signers)
            return [
                _finding(
                    "resigned-upstream-file",
                    r,
                    f"{r.path}{where} is {up}'s file with its upstream signature intact; the "
                    f"vendor appended a nested signature by {names}",
                    ev,
                    policy,
                )
            ]
        return [
            _finding(
                "signature-modified",
                r,
                f"{r.path}{where} has {up}'s content and signer ({_signer_name(ss)}) but its "
                "signature container differs from upstream's: a payload can hide in padding, "
                "unauthenticated attributes or extra certificates",
                ev,
                policy,
            )
        ]
    if ss is None and us is None:
        return []
    if ss is None:
        msg = (
            f"{r.path}{where} has {up}'s content but its signature was removed "
            f"(upstream signer: {_signer_name(us)})"
        )
    elif us is None:
        msg = (
            f"{r.path}{where} has {up}'s content (upstream ships it unsigned) and was signed "
            f"by {_signer_name(ss)}"
        )
    else:
        msg = (
            f"{r.path}{where} has {up}'s content but was re-signed by {_signer_name(ss)} "
            f"(upstream signer: {_signer_name(us)})"
        )
    return [_finding("resigned-upstream-file", r, msg, ev, policy)]


# --- anomalies -----------------------------------------------------------------------------


def _anomaly_finding(
    e: FileEntry, a: Anomaly, status: Status | None, result: FileResult | None, path: str
) -> Finding:
    sev = a.severity or default_severity(a.rule)
    if a.rule == "weak-digest":
        sev = Severity.INFO if status == Status.IDENTICAL else Severity.MEDIUM
    ev: dict[str, Any] = {str(k): _jsonable(v) for k, v in a.evidence.items()}
    ev.setdefault("actual_sha256", e.sha256)
    if result is not None and result.reference is not None:
        ev.setdefault("expected_sha256", result.reference.sha256)
    if a.arch:
        ev.setdefault("arch", a.arch)
    if a.region_sha256:
        ev.setdefault("region_sha256", a.region_sha256)
    msg = a.message.strip() or a.rule
    if path and not msg.startswith(path):
        msg = f"{path}{f' ({a.arch} slice)' if a.arch else ''}: {msg}"
    upstream_path = inherited_from(a, e, result)
    if upstream_path is not None:
        # docs/contract.md "Judge the change, not the upstream": info unless the policy keeps it
        ev["inherited"] = True
        ev["inherited_from"] = upstream_path
        msg = f"{msg} (present in upstream too: {upstream_path})"
    return Finding(
        rule=a.rule,
        severity=sev,
        path=path,
        location=e.location,
        message=msg,
        evidence=ev,
    )


def _problem_finding(a: Anomaly, default_rule: str, where: str = "") -> Finding:
    rule = a.rule or default_rule
    ev: dict[str, Any] = {str(k): _jsonable(v) for k, v in a.evidence.items()}
    location = str(ev.get("location") or ev.get("path") or where)
    path = str(ev.get("path") or location)
    msg = a.message.strip() or rule
    if location and location not in msg:
        msg = f"{location}: {msg}"
    return Finding(
        rule=rule,
        severity=a.severity or default_severity(rule),
        path=path,
        location=location,
        message=msg,
        evidence=ev,
    )


# --- signer rules --------------------------------------------------------------------------


def _signer_violation(
    rule: SignerRule, policy: Policy, s: SignatureFacts, u: SignatureFacts | None
) -> str | None:
    """Why ``s`` breaks ``rule`` (None when it complies)."""
    req = rule.require
    signer = _first_signer(s)
    all_signers = list(s.signers) + list(s.nested_signers) if s.signed else []
    if req == SignerRequirement.UNSIGNED:
        return f"must be unsigned but is signed by {_signer_name(signer)}" if s.signed else None
    if req == SignerRequirement.SIGNED:
        if not s.signed:
            return "must be signed but is unsigned"
        if not rule.signer.empty and not any(rule.signer.matches(x) for x in s.signers):
            return (
                f"signed by {_signer_name(signer)}, which does not match {rule.signer.describe()}"
            )
        return None
    if req == SignerRequirement.UPSTREAM_SIGNER_ONLY:
        if u is None:
            if not s.signed:
                return "must carry upstream's signature but is unsigned"
            if rule.signer.empty:
                return "must carry upstream's signature, but there is no upstream file to compare"
            bad = [x for x in all_signers if not rule.signer.matches(x)]
            if bad:
                return f"signed by {_signer_name(bad[0])}, not by {rule.signer.describe()}"
            return None
        if not u.signed:
            return (
                f"upstream ships it unsigned, but it is signed by {_signer_name(signer)}"
                if s.signed
                else None
            )
        if not s.signed:
            return f"must be signed by upstream's signer ({_signer_name(_first_signer(u))})"
        if _thumbs(s.signers) != _thumbs(u.signers):
            return (
                f"signed by {_signer_name(signer)}, but only upstream's signer "
                f"({_signer_name(_first_signer(u))}) is allowed"
            )
        extra = _thumbs(s.nested_signers) - _thumbs(u.nested_signers)
        if extra:
            names = [_signer_name(n) for n in s.nested_signers if n.sha256.lower() in extra]
            return f"carries an added signature by {', '.join(names)}; only upstream's is allowed"
        if not rule.signer.empty and not all(rule.signer.matches(x) for x in s.signers):
            return f"signed by {_signer_name(signer)}, not by {rule.signer.describe()}"
        return None
    # unsigned-or-vendor-signed
    if not s.signed:
        return None
    vendor: SignerMatcher | None = rule.signer if not rule.signer.empty else policy.vendor
    if vendor is None:
        return None
    if s.signers and all(vendor.matches(x) for x in s.signers):
        return None
    if (
        u is not None
        and u.signed
        and u.container_sha256 is not None
        and s.primary_container_sha256 == u.container_sha256
        and _thumbs(s.signers) == _thumbs(u.signers)
        and all(vendor.matches(n) for n in s.nested_signers)
    ):
        return None  # the vendor's nested signature appended to an intact upstream one
    return (
        f"signed by {_signer_name(signer)}, which is neither the vendor "
        f"({vendor.describe()}) nor upstream's intact signature"
    )


def _signer_rule_findings(r: FileResult, policy: Policy) -> list[Finding]:
    if r.shipped is None or not policy.signer_rules:
        return []
    out: list[Finding] = []
    for rule in policy.signer_rules:
        if match_any(r.path, (rule.path,)) is None:
            continue
        for arch, s, u in _sig_pairs(r.shipped, r.reference):
            why = _signer_violation(rule, policy, s, u)
            if why is None:
                continue
            where = f" ({arch} slice)" if arch else ""
            ev: dict[str, Any] = {
                "policy_rule": rule.path,
                "require": rule.require.value,
                "actual_sha256": r.shipped.sha256,
                "signer_actual": _signer_name(_first_signer(s)),
            }
            if u is not None:
                ev["signer_expected"] = _signer_name(_first_signer(u))
            if not rule.signer.empty:
                ev["signer_allowed"] = rule.signer.describe()
            if arch:
                ev["arch"] = arch
            out.append(
                Finding(
                    rule="untrusted-signer",
                    severity=default_severity("untrusted-signer"),
                    path=r.path,
                    location=_location(r),
                    message=f"{r.path}{where}: {why} (policy signer rule for '{rule.path}': "
                    f"{rule.require.value})",
                    evidence=ev,
                )
            )
    return out


# --- overrides and waivers -----------------------------------------------------------------


def _covered_sha256(f: Finding) -> str | None:
    ev = f.evidence
    v = ev.get("expected_sha256") if f.rule == "missing-file" else ev.get("actual_sha256")
    return str(v).lower() if v else None


def _apply_policy(findings: list[Finding], policy: Policy, today: date) -> list[Finding]:
    out: list[Finding] = []
    expired_hits: dict[int, list[Finding]] = {}
    for f in findings:
        if f.rule not in UNWAIVABLE and f.rule in policy.severity:
            f = dataclasses.replace(f, severity=policy.severity[f.rule])
        if f.evidence.get("inherited") is True and not policy.keep_inherited:
            f = dataclasses.replace(f, severity=Severity.INFO)
        if f.rule not in UNWAIVABLE:
            sha = _covered_sha256(f)
            for w in policy.waivers:
                if w.rule is not None and w.rule != f.rule:
                    continue
                if w.path is not None and match_any(f.path, (w.path,)) is None:
                    continue
                if sha is None or sha != w.sha256.lower():
                    continue
                if w.expired(today):
                    expired_hits.setdefault(w.index, []).append(f)
                    continue
                f = dataclasses.replace(f, suppressed=True, waiver=w.to_waiver())
                break
        out.append(f)
    for w in policy.waivers:
        if not w.expired(today):
            continue
        hits = expired_hits.get(w.index, [])
        paths = sorted({h.path for h in hits}) or [w.path or ""]
        for p in paths:
            rules = sorted({h.rule for h in hits if h.path == p})
            ev = {
                "waiver_index": w.index,
                "reason": w.reason,
                "expires": w.expires.isoformat(),
                "sha256": w.sha256,
                "rules": rules,
                "policy": policy.source_path,
            }
            covered = f"; {', '.join(rules)} on this file applies again" if rules else ""
            sev = policy.severity.get("waiver-expired", default_severity("waiver-expired"))
            out.append(
                Finding(
                    rule="waiver-expired",
                    severity=sev,
                    path=p,
                    location=p or (policy.source_path or policy.name),
                    message=f"waiver #{w.index + 1} ({w.reason!r}) for "
                    f"{w.rule or 'any rule'} on {w.path or 'any path'} expired on "
                    f"{w.expires.isoformat()}{covered}",
                    evidence=ev,
                )
            )
    return out


# --- entry point ---------------------------------------------------------------------------


def evaluate(
    results: Sequence[FileResult],
    shipped: Inventory,
    refs: Sequence[Reference],
    policy: Policy,
    today: date,
    *,
    extra: Sequence[Anomaly] = (),
) -> tuple[Finding, ...]:
    """All findings for one verification, sorted (severity, path, rule, message).

    ``extra``: anomalies of checks outside the artifact, e.g. ``in-toto-failure`` from
    ``verifier.attest.intoto.verify_layout`` (located at ``evidence["layout"]``).
    """
    ctx = _Ctx(refs, policy)
    raw: list[Finding] = []
    for r in results:
        raw.extend(_status_findings(r, ctx))
        raw.extend(_signer_rule_findings(r, policy))
    # FileResult paths are relative to the application root; inventory paths to the artifact
    # (the two indexes only when a file has anomalies: not for 100,000 data files)
    by_path: dict[str, FileResult] = {}
    by_location: dict[str, FileResult] = {}
    for e in shipped.entries:
        if not e.facts.anomalies:
            continue
        if not by_path:
            by_path = {r.path: r for r in results}
            by_location = {r.shipped.location: r for r in results if r.shipped is not None}
        res = by_location.get(e.location) or by_path.get(e.path)
        path = res.path if res is not None else e.path
        for a in e.facts.anomalies:
            raw.append(_anomaly_finding(e, a, res.status if res else None, res, path))
    for a in shipped.problems:
        raw.append(_problem_finding(a, MALFORMED, shipped.source))
    for ref in refs:
        for a in ref.problems:
            p = _problem_finding(a, "reference-mismatch", ref.component.source)
            ev = dict(p.evidence)
            ev.setdefault("component", ref.component.name)
            ev.setdefault("source", ref.component.source)
            raw.append(dataclasses.replace(p, evidence=ev))
    for a in extra:
        f = _problem_finding(a, a.rule, str(a.evidence.get("layout", "")))
        upstream_path = bundle_inherited_from(a, refs)
        if upstream_path is not None:
            ev = {**f.evidence, "inherited": True, "inherited_from": upstream_path}
            msg = f"{f.message} (present in upstream too: {upstream_path})"
            f = dataclasses.replace(f, evidence=ev, message=msg)
        raw.append(f)
    seen: set[tuple[str, str, str, str]] = set()
    unique: list[Finding] = []
    for f in raw:
        k = (f.rule, f.path, f.location, f.message)
        if k not in seen:
            seen.add(k)
            unique.append(f)
    final = _apply_policy(unique, policy, today)
    return tuple(sorted(final, key=Finding.sort_key))
