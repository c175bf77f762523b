"""macOS bundle seals: ``_CodeSignature/CodeResources`` and nested code, recursively.

``check_bundle(root_dir, bundle_rel, ctx)`` verifies one ``.app`` / ``.framework`` (or any
bundle with ``Contents/`` or ``Versions/``) found under ``root_dir``:

* the main executable's code signature (``binary.macho.analyze_macho``) with its external
  special slots checked: Info.plist (slot 1) and CodeResources (slot 3);
* every entry of ``files2`` (or ``files`` for old seals): the file's sha256 (``hash2``) or
  sha1 (``hash``), symlink targets, ``optional`` entries, and nested code by ``cdhash``;
* files on disk that the seal does not list and no ``omit`` rule excludes (added files);
* nested bundles (``Frameworks/*.framework``, helpers, ...) recursively, depth-capped.

A changed, added or removed file inside a sealed bundle makes the bundle's signature invalid:
each problem is an ``invalid-signature`` anomaly whose evidence ``path`` is the offending
file's path relative to ``root_dir``. Nothing is followed outside ``root_dir``.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from verifier.model import Anomaly, BinaryFacts, Blob, Severity, SignatureFacts
from verifier.signing import codesign

MAX_CODERESOURCES = 16 << 20
MAX_INFO_PLIST = 1 << 20
MAX_RULES = 512
MAX_DEPTH = 8
MAX_FILES = 200_000

BUNDLE_SUFFIXES = (".app", ".framework", ".appex", ".xpc", ".bundle", ".plugin", ".kext")


@dataclass(frozen=True)
class BundleResult:
    path: str  # relative to root_dir
    valid: bool | None
    signature: SignatureFacts
    anomalies: tuple[Anomaly, ...]
    nested: tuple[BundleResult, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


def _safe_join(root: str, rel: str) -> str | None:
    """``root/rel`` if it stays inside ``root`` (no '..', no absolute), else None."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        return None
    full = os.path.join(root, *p.parts)
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.dirname(full))
    if parent != real_root and not parent.startswith(real_root + os.sep):
        return None
    return full


def _file_digests(path: str) -> tuple[bytes, bytes]:
    s1, s2 = hashlib.sha1(), hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            s1.update(chunk)
            s2.update(chunk)
    return s1.digest(), s2.digest()


def _inside(root: str, path: str) -> bool:
    """Whether ``path`` (symlinks resolved) stays inside ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def _read_capped(path: str, cap: int) -> bytes | None:
    try:
        if os.path.getsize(path) > cap:
            return None
        with open(path, "rb") as fh:
            return fh.read(cap + 1)
    except OSError:
        return None


@dataclass
class _Layout:
    content: str  # the directory CodeResources keys are relative to
    info_plist: str | None
    executable: str | None
    code_resources: str


def _layout(bundle: str, root_dir: str) -> _Layout | None:
    versions = os.path.join(bundle, "Versions")
    if os.path.isdir(versions) and not os.path.isdir(os.path.join(bundle, "Contents")):
        cur = os.path.join(versions, "Current")
        if os.path.islink(cur):
            target = os.readlink(cur)
            content = _safe_join(versions, target)
        else:
            names = sorted(n for n in os.listdir(versions) if n != "Current")
            content = os.path.join(versions, names[0]) if names else None
        if content is None or not os.path.isdir(content) or not _inside(root_dir, content):
            return None
        info = os.path.join(content, "Resources", "Info.plist")
    else:
        content = os.path.join(bundle, "Contents")
        if not os.path.isdir(content) or not _inside(root_dir, content):
            return None
        info = os.path.join(content, "Info.plist")
    exe_name = None
    info_ok = os.path.isfile(info) and _inside(root_dir, info)
    info_bytes = _read_capped(info, MAX_INFO_PLIST) if info_ok else None
    if info_bytes is not None:
        try:
            pl = plistlib.loads(info_bytes)
            if isinstance(pl, dict) and isinstance(pl.get("CFBundleExecutable"), str):
                exe_name = pl["CFBundleExecutable"]
        except Exception:
            exe_name = None
    if exe_name is None:
        exe_name = os.path.splitext(os.path.basename(bundle.rstrip("/")))[0]
    exe_dir = (
        content if bundle.rstrip("/").endswith(".framework") else os.path.join(content, "MacOS")
    )
    exe = _safe_join(exe_dir, exe_name) if "/" not in exe_name else None
    return _Layout(
        content=content,
        info_plist=info if info_ok else None,
        executable=exe if exe and os.path.isfile(exe) and _inside(root_dir, exe) else None,
        code_resources=os.path.join(content, "_CodeSignature", "CodeResources"),
    )


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    weight: float
    omit: bool
    optional: bool
    nested: bool


def _rules(raw: Any) -> list[_Rule]:
    out: list[_Rule] = []
    if not isinstance(raw, dict):
        return out
    for key, val in list(raw.items())[:MAX_RULES]:
        try:
            pat = re.compile(str(key))
        except re.error:
            continue
        d = val if isinstance(val, dict) else {}
        if val is False:
            continue
        out.append(
            _Rule(
                pat,
                float(d.get("weight", 1) or 1),
                bool(d.get("omit", False)),
                bool(d.get("optional", False)),
                bool(d.get("nested", False)),
            )
        )
    return out


def _rule_for(rules: list[_Rule], rel: str) -> _Rule | None:
    best: _Rule | None = None
    for r in rules:
        if r.pattern.search(rel) and (best is None or r.weight > best.weight):
            best = r
    return best


def _cdhashes(sig: SignatureFacts, facts_slices: Any) -> set[str]:
    out: set[str] = set()
    for s in facts_slices:
        for cd in s.signature.details.get("code_directories", []):
            out.add(str(cd.get("cdhash", "")))
    return out


def check_bundle(
    root_dir: str,
    bundle_rel: str,
    ctx: Any = None,
    *,
    known: Mapping[str, tuple[str, BinaryFacts | None]] | None = None,
    links: bool = True,
    _depth: int = 0,
) -> BundleResult:
    """Verify the bundle at ``root_dir/bundle_rel`` and its nested code (see module doc).

    ``known`` maps root-relative paths to ``(sha256, facts)`` the caller already computed
    (the inventory): sealed files are then compared by digest without reading them again,
    and Mach-O files are not analysed again (their special slots are checked from the
    CodeDirectory hashes in ``facts``).

    ``links``: whether the container the tree came from can hold symbolic links. A wheel
    cannot: a sealed symlink that is simply absent there is an ``info`` note (the seal cannot
    be checked for it), not an invalid signature. A link with another target, or a file or
    folder in its place, is invalid whatever the container.
    """
    from verifier.binary import macho

    anomalies: list[Anomaly] = []
    details: dict[str, Any] = {}
    nested: list[BundleResult] = []

    def rel_of(full: str) -> str:
        return os.path.relpath(full, root_dir).replace(os.sep, "/")

    def bad(msg: str, full: str | None, **ev: Any) -> None:
        path = rel_of(full) if full else bundle_rel
        anomalies.append(
            Anomaly(
                "invalid-signature",
                f"{bundle_rel}: {msg}",
                {"path": path, "bundle": bundle_rel, **ev},
            )
        )

    bundle = _safe_join(root_dir, bundle_rel)
    lay = (
        _layout(bundle, root_dir)
        if bundle and os.path.isdir(bundle) and _inside(root_dir, bundle)
        else None
    )
    if bundle is None or lay is None:
        bad("not a bundle (no Contents/ or Versions/)", None)
        return BundleResult(bundle_rel, False, SignatureFacts(), tuple(anomalies))
    if _depth > MAX_DEPTH:
        bad("nested bundles too deep", None)
        return BundleResult(bundle_rel, False, SignatureFacts(), tuple(anomalies))
    seal_bytes = (
        _read_capped(lay.code_resources, MAX_CODERESOURCES)
        if os.path.isfile(lay.code_resources) and _inside(root_dir, lay.code_resources)
        else None
    )
    info_bytes = _read_capped(lay.info_plist, MAX_INFO_PLIST) if lay.info_plist else None
    # the main executable and its special slots
    sig = SignatureFacts()
    if lay.executable is None:
        bad("main executable not found", None)
    else:
        specials: dict[int, bytes] = {}
        if info_bytes is not None:
            specials[codesign.CSSLOT_INFOSLOT] = info_bytes
        if seal_bytes is not None:
            specials[codesign.CSSLOT_RESOURCEDIR] = seal_bytes
        pre = (known or {}).get(rel_of(lay.executable))
        if pre is not None and pre[1] is not None:
            facts = pre[1]
            for problem in _external_slot_problems(facts, specials):
                bad(problem, lay.executable)
        else:
            _sha, facts = macho.analyze_macho(
                Blob.of_file(lay.executable), rel_of(lay.executable), ctx, specials=specials
            )
        sig = facts.signature
        for a in facts.anomalies:
            anomalies.append(replace(a, evidence={**a.evidence, "path": rel_of(lay.executable)}))
        details["executable"] = rel_of(lay.executable)
        for s in facts.slices:
            slots = s.signature.details.get("special_slots", {})
            if slots.get("resources") == "external" and seal_bytes is None:
                bad("CodeResources is sealed but missing", lay.code_resources)
            if slots.get("info-plist") == "external" and info_bytes is None:
                bad("Info.plist is sealed but missing", lay.info_plist or lay.content)
        if sig.kind.value == "none":
            bad("main executable is not signed", lay.executable)
    if seal_bytes is None:
        if os.path.exists(lay.code_resources):
            bad("CodeResources too large or unreadable", lay.code_resources)
        elif sig.signed:
            bad("bundle has no _CodeSignature/CodeResources", lay.code_resources)
        ok = not anomalies if sig.kind.value != "none" else False
        return BundleResult(bundle_rel, ok, sig, tuple(anomalies), (), details)
    try:
        seal = plistlib.loads(seal_bytes)
        if not isinstance(seal, dict):
            raise ValueError("not a dictionary")
    except Exception as exc:
        bad(f"CodeResources unreadable: {exc}"[:200], lay.code_resources)
        return BundleResult(bundle_rel, False, sig, tuple(anomalies), (), details)
    use2 = isinstance(seal.get("files2"), dict)
    files = seal.get("files2") if use2 else seal.get("files")
    rules = _rules(seal.get("rules2") if use2 else seal.get("rules"))
    if not isinstance(files, dict):
        bad("CodeResources lists no files", lay.code_resources)
        files = {}
    details["sealed_files"] = len(files)
    nested_dirs: set[str] = set()
    checked = 0
    for rel, entry in list(files.items())[:MAX_FILES]:
        if not isinstance(rel, str):
            continue
        full = _safe_join(lay.content, rel)
        if full is None:
            bad(f"sealed path {rel!r} escapes the bundle", None)
            continue
        d: dict[str, Any] = entry if isinstance(entry, dict) else {"hash": entry}
        optional = bool(d.get("optional", False))
        if "symlink" in d:
            target = str(d["symlink"])
            if not os.path.lexists(full) and not links:
                anomalies.append(_unrepresentable_link(bundle_rel, rel, target, lay, rel_of))
            elif not os.path.lexists(full):
                bad(f"sealed symlink {rel} is missing", full)
            elif not os.path.islink(full):
                bad(f"sealed symlink {rel} is not a link", full)
            elif os.readlink(full) != target:
                bad(f"symlink {rel} changed", full)
            continue
        if not os.path.lexists(full):
            if not optional:
                bad(f"sealed file {rel} is missing", full)
            continue
        if os.path.islink(full) or not _inside(root_dir, full):
            bad(f"sealed path {rel} is a symlink or leaves the bundle", full)
            continue
        if "cdhash" in d:
            nested_dirs.add(rel)
            want = bytes(d["cdhash"]).hex() if isinstance(d["cdhash"], bytes) else ""
            if os.path.isdir(full):
                sub = check_bundle(
                    root_dir, rel_of(full), ctx, known=known, links=links, _depth=_depth + 1
                )
                nested.append(sub)
                anomalies.extend(sub.anomalies)
                have = set(sub.details.get("cdhashes", []))
            else:
                pre_n = (known or {}).get(rel_of(full))
                if pre_n is not None and pre_n[1] is not None:
                    nf = pre_n[1]
                else:
                    _sha, nf = macho.analyze_macho(Blob.of_file(full), rel_of(full), ctx)
                anomalies.extend(
                    replace(a, evidence={**a.evidence, "path": rel_of(full)}) for a in nf.anomalies
                )
                have = _cdhashes(nf.signature, nf.slices)
            if want not in have:
                bad(f"nested code {rel} does not match its sealed cdhash", full)
            checked += 1
            continue
        if os.path.islink(full) or not os.path.isfile(full):
            bad(f"sealed file {rel} is not a regular file", full)
            continue
        h2 = d.get("hash2")
        h1 = d.get("hash")
        pre_f = (known or {}).get(rel_of(full))
        if isinstance(h2, bytes) and pre_f is not None:
            sha1, sha256 = b"", bytes.fromhex(pre_f[0])
        else:
            sha1, sha256 = _file_digests(full)
        if isinstance(h2, bytes):
            ok = h2 == sha256
        elif isinstance(h1, bytes):
            ok = h1 == sha1
        else:
            ok = False
        if not ok:
            bad(f"sealed file {rel} was modified", full, actual_sha256=sha256.hex())
        checked += 1
    details["checked"] = checked
    # files present but not sealed
    skip_dirs = {os.path.join(lay.content, "_CodeSignature")}
    for n in nested_dirs:
        skip_dirs.add(os.path.join(lay.content, *n.split("/")))
    seen = 0
    for dirpath, dirnames, filenames in os.walk(lay.content):
        dirnames[:] = sorted(dn for dn in dirnames if os.path.join(dirpath, dn) not in skip_dirs)
        names = list(filenames) + [
            dn for dn in dirnames if os.path.islink(os.path.join(dirpath, dn))
        ]
        for fn in sorted(names):
            seen += 1
            if seen > MAX_FILES:
                bad("too many files in bundle", None)
                break
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, lay.content).replace(os.sep, "/")
            if full == lay.executable or rel in files or full in skip_dirs:
                continue
            if lay.info_plist and full == lay.info_plist:
                continue
            rule = _rule_for(rules, rel)
            if rule is None or rule.omit:
                continue
            bad(f"file {rel} was added to the sealed bundle", full)
    cdh: set[str] = set()
    if lay.executable is not None:
        for per in sig.details.get("per_slice", {}).values():
            for cd in per.get("code_directories", []):
                cdh.add(str(cd.get("cdhash", "")))
    details["cdhashes"] = sorted(cdh)
    valid: bool | None = not any(
        a.rule == "invalid-signature" and a.severity != Severity.INFO for a in anomalies
    )
    if sig.kind.value == "none":
        valid = False
    return BundleResult(bundle_rel, valid, sig, tuple(anomalies), tuple(nested), details)


def _unrepresentable_link(
    bundle_rel: str, rel: str, target: str, lay: _Layout, rel_of: Any
) -> Anomaly:
    """The note for a sealed symlink a link-less container (a wheel) could not carry.

    It is attached to the seal file (present on both sides of a comparison, so a paired
    upstream bundle with the same gap makes it inherited); its region is the sealed entry
    itself (``path NUL target``), so the same missing link matches whatever else changed.
    """
    entry = f"{rel}\0{target}".encode()
    return Anomaly(
        "invalid-signature",
        f"{bundle_rel}: sealed symlink {rel} -> {target} is absent: its container cannot hold "
        "symbolic links, so the seal cannot be checked for it (note)",
        {
            "path": rel_of(lay.code_resources),
            "bundle": bundle_rel,
            "sealed_symlink": rel,
            "symlink_target": target,
            "reason": "container-cannot-hold-links",
        },
        region_sha256=hashlib.sha256(entry).hexdigest(),
        severity=Severity.INFO,
    )


def is_seal_file(path: str) -> bool:
    """Whether ``path`` ('/'-separated) is a bundle seal (``_CodeSignature/CodeResources``
    and friends): part of the signature, re-written by every re-signing."""
    return "/_CodeSignature/" in f"/{path}" or path.endswith("/CodeResources")


def _external_slot_problems(facts: BinaryFacts, specials: Mapping[int, bytes]) -> list[str]:
    """Check Info.plist / CodeResources against the slot hashes recorded in ``facts``."""
    problems: list[str] = []
    for s in facts.slices:
        for cd in s.signature.details.get("code_directories", []):
            algo = {"sha1": "sha1", "sha256": "sha256", "sha256-truncated": "sha256"}.get(
                str(cd.get("hash_type")), "sha384"
            )
            size = int(cd.get("hash_size", 0))
            for n, want in (cd.get("special_hashes") or {}).items():
                slot = int(n)
                if slot not in (codesign.CSSLOT_INFOSLOT, codesign.CSSLOT_RESOURCEDIR):
                    continue
                name = codesign.SPECIAL_SLOT_NAMES[slot]
                content = specials.get(slot)
                if content is None:
                    problems.append(f"{s.arch}: special slot {name} is sealed but missing")
                elif hashlib.new(algo, content).digest()[:size].hex() != want:
                    problems.append(f"{s.arch}: special slot {name} does not match its content")
    return list(dict.fromkeys(problems))


def verify_bundle(root_dir: str, bundle_rel: str, ctx: Any = None) -> tuple[Anomaly, ...]:
    """The anomalies of ``check_bundle`` (empty when the bundle and nested code verify)."""
    return check_bundle(root_dir, bundle_rel, ctx).anomalies


def find_bundles(root_dir: str, max_depth: int = 6) -> list[str]:
    """Top-level bundles (``*.app`` etc.) under ``root_dir``, relative paths, sorted."""
    out: list[str] = []
    base_depth = root_dir.rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, _files in os.walk(root_dir):
        if dirpath.count(os.sep) - base_depth >= max_depth:
            dirnames[:] = []
            continue
        keep = []
        for dn in sorted(dirnames):
            if dn.endswith(BUNDLE_SUFFIXES) and not os.path.islink(os.path.join(dirpath, dn)):
                out.append(
                    os.path.relpath(os.path.join(dirpath, dn), root_dir).replace(os.sep, "/")
                )
            else:
                keep.append(dn)
        dirnames[:] = keep
    return out


def verify_tree(root_dir: str, ctx: Any = None) -> dict[str, tuple[Anomaly, ...]]:
    """Check every top-level bundle under ``root_dir`` (an extracted artifact).

    Returns ``{path: anomalies}`` keyed by the offending file's path relative to
    ``root_dir`` ('/'-separated), ready to attach to inventory entries; a problem with no
    single file (e.g. a missing seal) is keyed by the bundle's own path.
    """
    out: dict[str, list[Anomaly]] = {}

    def collect(r: BundleResult) -> None:
        for a in r.anomalies:
            key = str(a.evidence.get("path") or r.path)
            if a not in out.setdefault(key, []):
                out[key].append(a)

    for rel in find_bundles(root_dir):
        collect(check_bundle(root_dir, rel, ctx))
    return {k: tuple(v) for k, v in sorted(out.items())}
