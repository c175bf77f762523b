"""macOS bundle seals: ``_CodeSignature/CodeResources`` and nested code, recursively.

``check_bundle(root_dir, bundle_rel, ctx)`` verifies one ``.app`` / ``.framework`` (or any
bundle with ``Contents/`` or ``Versions/``) found under ``root_dir``:

* the main executable's code signature (``analysis.macho.analyze_macho``) with its external
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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from verifier.analysis import AnalysisContext
from verifier.analysis.macho import analyze_macho
from verifier.checks.macos.layout import (
    MAX_INFO_PLIST,
    Layout,
    inside,
    layout,
    read_capped,
    safe_join,
)
from verifier.checks.macos.seal import Rule, cdhashes, external_slot_problems, rule_for, rules
from verifier.model import (
    Anomaly,
    BinaryFacts,
    Blob,
    MachOFileDetails,
    MachOSignatureDetails,
    Severity,
    SignatureFacts,
    SignatureKind,
)
from verifier.record import record
from verifier.signing.codesign import CSSLOT_INFOSLOT, CSSLOT_RESOURCEDIR

MAX_CODERESOURCES = 16 << 20
MAX_DEPTH = 8
MAX_FILES = 200_000

BUNDLE_SUFFIXES = (".app", ".framework", ".appex", ".xpc", ".bundle", ".plugin", ".kext")

Known = Mapping[str, tuple[str, BinaryFacts | None]]


@record
class BundleDetails:
    executable: str | None = None  # the main executable, relative to root_dir
    sealed_files: int = 0  # entries the seal lists
    checked: int = 0  # sealed files and nested code checked
    cdhashes: tuple[str, ...] = ()  # the main executable's, sorted


@record
class BundleResult:
    path: str  # relative to root_dir
    valid: bool | None
    signature: SignatureFacts
    anomalies: tuple[Anomaly, ...]
    nested: tuple[BundleResult, ...] = ()
    details: BundleDetails = BundleDetails()


def _file_digests(path: str) -> tuple[bytes, bytes]:
    s1, s2 = hashlib.sha1(), hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            s1.update(chunk)
            s2.update(chunk)
    return s1.digest(), s2.digest()


def _file_cdhashes(sig: SignatureFacts) -> tuple[str, ...]:
    """The cdhashes of a Mach-O file's signature, per slice as judged (sorted)."""
    out: set[str] = set()
    if isinstance(sig.details, MachOFileDetails):
        for _arch, d in sig.details.per_slice:
            if isinstance(d, MachOSignatureDetails):
                out.update(cd.cdhash for cd in d.code_directories)
    return tuple(sorted(out))


@dataclass
class _Check:
    """The check of one bundle: what it found so far."""

    root_dir: str
    bundle_rel: str
    ctx: AnalysisContext | None
    known: Known
    links: bool
    depth: int
    anomalies: list[Anomaly] = field(default_factory=list)
    nested: list[BundleResult] = field(default_factory=list)

    def rel_of(self, full: str) -> str:
        return os.path.relpath(full, self.root_dir).replace(os.sep, "/")

    def bad(self, msg: str, full: str | None, **ev: Any) -> None:
        path = self.rel_of(full) if full else self.bundle_rel
        self.anomalies.append(
            Anomaly(
                "invalid-signature",
                f"{self.bundle_rel}: {msg}",
                {"path": path, "bundle": self.bundle_rel, **ev},
            )
        )

    def facts_of(self, full: str, specials: Mapping[int, bytes] | None = None) -> BinaryFacts:
        """The inventory's facts of a Mach-O file, else a fresh analysis."""
        pre = self.known.get(self.rel_of(full))
        if pre is not None and pre[1] is not None:
            return pre[1]
        _sha, facts = analyze_macho(
            Blob.of_file(full), self.rel_of(full), self.ctx, specials=specials
        )
        return facts

    def adopt(self, facts: BinaryFacts, full: str) -> None:
        """The anomalies of a Mach-O file of the bundle, keyed by its path."""
        self.anomalies.extend(
            replace(a, evidence={**a.evidence, "path": self.rel_of(full)}) for a in facts.anomalies
        )

    def main_executable(
        self, lay: Layout, info_bytes: bytes | None, seal_bytes: bytes | None
    ) -> SignatureFacts:
        """The main executable's signature, its special slots checked against the files."""
        if lay.executable is None:
            self.bad("main executable not found", None)
            return SignatureFacts()
        specials: dict[int, bytes] = {}
        if info_bytes is not None:
            specials[CSSLOT_INFOSLOT] = info_bytes
        if seal_bytes is not None:
            specials[CSSLOT_RESOURCEDIR] = seal_bytes
        pre = self.known.get(self.rel_of(lay.executable))
        facts = self.facts_of(lay.executable, specials)
        if pre is not None and pre[1] is not None:
            for problem in external_slot_problems(facts, specials):
                self.bad(problem, lay.executable)
        self.adopt(facts, lay.executable)
        for s in facts.slices:
            d = s.signature.details
            slots = dict(d.special_slots) if isinstance(d, MachOSignatureDetails) else {}
            if slots.get("resources") == "external" and seal_bytes is None:
                self.bad("CodeResources is sealed but missing", lay.code_resources)
            if slots.get("info-plist") == "external" and info_bytes is None:
                self.bad("Info.plist is sealed but missing", lay.info_plist or lay.content)
        if facts.signature.kind == SignatureKind.NONE:
            self.bad("main executable is not signed", lay.executable)
        return facts.signature

    def sealed_link(self, lay: Layout, rel: str, full: str, target: str) -> None:
        if not os.path.lexists(full) and not self.links:
            self.anomalies.append(_unrepresentable_link(self.bundle_rel, rel, target, lay, self))
        elif not os.path.lexists(full):
            self.bad(f"sealed symlink {rel} is missing", full)
        elif not os.path.islink(full):
            self.bad(f"sealed symlink {rel} is not a link", full)
        elif os.readlink(full) != target:
            self.bad(f"symlink {rel} changed", full)

    def nested_code(self, rel: str, full: str, cdhash: object) -> None:
        """Nested code (a bundle, or a lone Mach-O file) named by its cdhash."""
        want = bytes(cdhash).hex() if isinstance(cdhash, bytes) else ""
        if os.path.isdir(full):
            sub = check_bundle(
                self.root_dir,
                self.rel_of(full),
                self.ctx,
                known=self.known,
                links=self.links,
                _depth=self.depth + 1,
            )
            self.nested.append(sub)
            self.anomalies.extend(sub.anomalies)
            have = set(sub.details.cdhashes)
        else:
            nf = self.facts_of(full)
            self.adopt(nf, full)
            have = cdhashes(nf)
        if want not in have:
            self.bad(f"nested code {rel} does not match its sealed cdhash", full)

    def sealed_file(self, rel: str, full: str, d: Mapping[str, Any]) -> None:
        h2 = d.get("hash2")
        h1 = d.get("hash")
        pre_f = self.known.get(self.rel_of(full))
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
            self.bad(f"sealed file {rel} was modified", full, actual_sha256=sha256.hex())

    def sealed(self, lay: Layout, files: Mapping[object, object], nested_dirs: set[str]) -> int:
        """Every file the seal lists; the number checked."""
        checked = 0
        for rel, entry in list(files.items())[:MAX_FILES]:
            if not isinstance(rel, str):
                continue
            full = safe_join(lay.content, rel)
            if full is None:
                self.bad(f"sealed path {rel!r} escapes the bundle", None)
                continue
            d: Mapping[str, Any] = entry if isinstance(entry, dict) else {"hash": entry}
            if "symlink" in d:
                self.sealed_link(lay, rel, full, str(d["symlink"]))
                continue
            if not os.path.lexists(full):
                if not bool(d.get("optional", False)):
                    self.bad(f"sealed file {rel} is missing", full)
                continue
            if os.path.islink(full) or not inside(self.root_dir, full):
                self.bad(f"sealed path {rel} is a symlink or leaves the bundle", full)
                continue
            if "cdhash" in d:
                nested_dirs.add(rel)
                self.nested_code(rel, full, d["cdhash"])
            elif os.path.islink(full) or not os.path.isfile(full):
                self.bad(f"sealed file {rel} is not a regular file", full)
                continue
            else:
                self.sealed_file(rel, full, d)
            checked += 1
        return checked

    def added(
        self, lay: Layout, files: Mapping[object, object], seal_rules: list[Rule], nested: set[str]
    ) -> None:
        """Files present but not sealed (and not omitted by a rule)."""
        skip_dirs = {os.path.join(lay.content, "_CodeSignature")}
        for n in nested:
            skip_dirs.add(os.path.join(lay.content, *n.split("/")))
        seen = 0
        for dirpath, dirnames, filenames in os.walk(lay.content):
            dirnames[:] = sorted(
                dn for dn in dirnames if os.path.join(dirpath, dn) not in skip_dirs
            )
            names = list(filenames) + [
                dn for dn in dirnames if os.path.islink(os.path.join(dirpath, dn))
            ]
            for fn in sorted(names):
                seen += 1
                if seen > MAX_FILES:
                    self.bad("too many files in bundle", None)
                    break
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, lay.content).replace(os.sep, "/")
                if full == lay.executable or rel in files or full in skip_dirs:
                    continue
                if lay.info_plist and full == lay.info_plist:
                    continue
                rule = rule_for(seal_rules, rel)
                if rule is None or rule.omit:
                    continue
                self.bad(f"file {rel} was added to the sealed bundle", full)

    def result(
        self, valid: bool | None, sig: SignatureFacts, details: BundleDetails
    ) -> BundleResult:
        return BundleResult(
            self.bundle_rel, valid, sig, tuple(self.anomalies), tuple(self.nested), details
        )


def _read_seal(c: _Check, lay: Layout) -> bytes | None:
    if os.path.isfile(lay.code_resources) and inside(c.root_dir, lay.code_resources):
        return read_capped(lay.code_resources, MAX_CODERESOURCES)
    return None


def _parse_seal(c: _Check, lay: Layout, seal_bytes: bytes) -> dict[Any, Any] | None:
    try:
        seal = plistlib.loads(seal_bytes)
        if not isinstance(seal, dict):
            raise ValueError("not a dictionary")
    except Exception as exc:  # a hostile plist: the seal is unreadable, never a crash
        c.bad(f"CodeResources unreadable: {exc}"[:200], lay.code_resources)
        return None
    return seal


def check_bundle(
    root_dir: str,
    bundle_rel: str,
    ctx: AnalysisContext | None = None,
    *,
    known: Known | None = None,
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
    c = _Check(root_dir, bundle_rel, ctx, known or {}, links, _depth)
    bundle = safe_join(root_dir, bundle_rel)
    ok_dir = bundle is not None and os.path.isdir(bundle) and inside(root_dir, bundle)
    lay = layout(bundle, root_dir) if bundle is not None and ok_dir else None
    if lay is None:
        c.bad("not a bundle (no Contents/ or Versions/)", None)
        return c.result(False, SignatureFacts(), BundleDetails())
    if _depth > MAX_DEPTH:
        c.bad("nested bundles too deep", None)
        return c.result(False, SignatureFacts(), BundleDetails())
    seal_bytes = _read_seal(c, lay)
    info_bytes = read_capped(lay.info_plist, MAX_INFO_PLIST) if lay.info_plist else None
    sig = c.main_executable(lay, info_bytes, seal_bytes)
    details = BundleDetails(executable=c.rel_of(lay.executable) if lay.executable else None)
    unsigned = sig.kind == SignatureKind.NONE
    if seal_bytes is None:
        if os.path.exists(lay.code_resources):
            c.bad("CodeResources too large or unreadable", lay.code_resources)
        elif sig.signed:
            c.bad("bundle has no _CodeSignature/CodeResources", lay.code_resources)
        return c.result(not c.anomalies if not unsigned else False, sig, details)
    seal = _parse_seal(c, lay, seal_bytes)
    if seal is None:
        return c.result(False, sig, details)
    use2 = isinstance(seal.get("files2"), dict)
    files = seal.get("files2") if use2 else seal.get("files")
    if not isinstance(files, dict):
        c.bad("CodeResources lists no files", lay.code_resources)
        files = {}
    nested_dirs: set[str] = set()
    checked = c.sealed(lay, files, nested_dirs)
    c.added(lay, files, rules(seal.get("rules2") if use2 else seal.get("rules")), nested_dirs)
    details = replace(
        details,
        sealed_files=len(files),
        checked=checked,
        cdhashes=_file_cdhashes(sig) if lay.executable is not None else (),
    )
    valid = not any(
        a.rule == "invalid-signature" and a.severity != Severity.INFO for a in c.anomalies
    )
    return c.result(False if unsigned else valid, sig, details)


def _unrepresentable_link(
    bundle_rel: str, rel: str, target: str, lay: Layout, c: _Check
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
            "path": c.rel_of(lay.code_resources),
            "bundle": bundle_rel,
            "sealed_symlink": rel,
            "symlink_target": target,
            "reason": "container-cannot-hold-links",
        },
        region_sha256=hashlib.sha256(entry).hexdigest(),
        severity=Severity.INFO,
    )


def verify_bundle(
    root_dir: str, bundle_rel: str, ctx: AnalysisContext | None = None
) -> tuple[Anomaly, ...]:
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


def verify_tree(
    root_dir: str, ctx: AnalysisContext | None = None
) -> dict[str, tuple[Anomaly, ...]]:
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
