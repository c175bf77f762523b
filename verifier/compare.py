"""Match shipped files to reference files and give each path a status (docs/contract.md).

Steps, each a small function:
1. ``bundle_renames``: a macOS ``Electron.app`` shipped as ``<Product>.app`` (and its helpers
   and main executable renamed likewise) maps reference paths onto shipped ones.
2. ``find_app_root``: installers nest the application; the root is the shipped folder under
   which the most reference paths exist.
3. ``pairing.pair_files``: one to one, by path, by versioned path (a wheel's
   ``NAME-VER.data/``), Electron's renamed main executable (its markers and code sections, or
   ``--main-exe``), content, then a unique code file name; each result records ``paired_by``.
4. ``compare_pair``: the status of one shipped file against its reference(s), normalised as
   docs/contract.md "Upstream references" says; the best match wins when several references offer
   the same path (Electron's ffmpeg from the main zip or from the ffmpeg zip).
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from operator import attrgetter
from typing import Any

from verifier.binary import diff as pe_diff
from verifier.binary import macho_compare
from verifier.model import (
    FileEntry,
    FileFormat,
    FileResult,
    Inventory,
    Reference,
    SliceResult,
    Status,
)
from verifier.pairing import PairedBy, pair_files
from verifier.record import record

MAC_BUNDLE = "Electron.app"
MAC_FRAMEWORK_MARK = "/Contents/Frameworks/Electron Framework.framework/"
MAC_MAIN = "Contents/MacOS/Electron"

_RANK = {
    Status.IDENTICAL: 0,
    Status.IDENTICAL_EXCEPT_SIGNATURE: 1,
    Status.RESOURCES_ONLY: 2,
    Status.DIVERGENT: 3,
}


@record
class CompareOptions:
    main_exe: str | None = None  # shipped path (relative to the app root) of the renamed exe
    app_root: str | None = None  # override the detected application root


@record
class Comparison:
    app_root: str
    results: tuple[FileResult, ...]
    renames: Mapping[str, str]  # reference path -> shipped path, where they differ


IsOwn = Callable[[str, FileEntry], bool]


@record
class PathMap:
    """Where the paths of both sides meet: reference paths after bundle renames (``mapped``)
    and shipped entries by their path relative to the application root (``rel``)."""

    mapped: Mapping[str, list[tuple[Reference, FileEntry]]]
    renames: dict[str, str]
    root: str
    rel: dict[str, FileEntry]


def _mapped(
    shipped: Inventory, refs: Sequence[Reference]
) -> tuple[dict[str, list[tuple[Reference, FileEntry]]], dict[str, str]]:
    """Step 1: the reference files by their path after bundle renames, and the renames."""
    ref_paths: dict[str, list[tuple[Reference, FileEntry]]] = defaultdict(list)
    for ref in refs:
        for f in ref.files:
            ref_paths[f.path].append((ref, f))

    renames = bundle_renames(ref_paths.keys(), shipped)
    mapped = ref_paths  # nothing renamed (most artifacts): not copied
    if renames:
        mapped = defaultdict(list)
        for p, lst in ref_paths.items():
            mapped[renames.get(p, p)].extend(lst)
    return mapped, renames


def with_app_root(
    shipped: Inventory, refs: Sequence[Reference], opts: CompareOptions = CompareOptions()
) -> CompareOptions:
    """``opts`` with the application root found (step 2), unless it names one: for the
    stages that map paths more than once (``identical_by_path``, then ``compare``) on
    inventories whose paths do not change between them."""
    if opts.app_root is not None:
        return opts
    mapped, _renames = _mapped(shipped, refs)
    return replace(opts, app_root=find_app_root(mapped.keys(), shipped).strip("/"))


def map_paths(
    shipped: Inventory, refs: Sequence[Reference], opts: CompareOptions = CompareOptions()
) -> PathMap:
    """Steps 1 and 2 (paths only: no file's facts are read)."""
    mapped, renames = _mapped(shipped, refs)
    root = opts.app_root if opts.app_root is not None else find_app_root(mapped.keys(), shipped)
    root = root.strip("/")
    # every later stage (policy, reports) sees paths relative to the application root
    rel = {}
    for e in shipped.entries:
        p = _relative(e.path, root) if root else e.path
        rel[p] = e if p == e.path else replace(e, path=p)
    return PathMap(mapped, renames, root, rel)


def identical_by_path(
    shipped: Inventory, refs: Sequence[Reference], opts: CompareOptions = CompareOptions()
) -> tuple[set[int], set[int]]:
    """The shipped and the reference files (by ``id``: the objects of ``shipped`` and
    ``refs``) that pairing pairs by path, its first step, which reads no facts, with files of
    the same sha256 and size only: they compare as identical whatever their digests beyond
    the sha256, so ``inventory.complete`` need not add them."""
    m = map_paths(shipped, refs, opts)
    ship_ok: set[int] = set()
    ref_ok: set[int] = set()
    for e in shipped.entries:
        p = _relative(e.path, m.root) if m.root else e.path
        here, candidates = m.rel.get(p), m.mapped.get(p)
        if here is None or not candidates or (here.sha256, here.size) != (e.sha256, e.size):
            continue
        if all((f.sha256, f.size) == (e.sha256, e.size) for _r, f in candidates):
            ship_ok.add(id(e))
            ref_ok.update(id(f) for _r, f in candidates)
    return ship_ok, ref_ok


def compare(
    shipped: Inventory,
    refs: Sequence[Reference],
    is_own: IsOwn,
    opts: CompareOptions = CompareOptions(),
) -> Comparison:
    m = map_paths(shipped, refs, opts)
    mapped, renames, root, rel = m.mapped, m.renames, m.root, m.rel
    pairing = pair_files(mapped, rel, is_own, opts.main_exe)
    for ref_path, shipped_path in pairing.renames.items():
        renames[ref_path] = shipped_path
    renamed_from = {v: k for k, v in renames.items()}
    bundle_main = {renames[p] for p in renames if p.endswith(MAC_MAIN)}

    results: list[FileResult] = []
    for path, candidates in sorted(pairing.pairs.items()):
        how = pairing.how[path]
        if how == PairedBy.PATH and path in bundle_main:
            how = PairedBy.MAIN_EXE
        results.append(_best_match(path, rel[path], candidates, renamed_from.get(path), how))
    for path, candidates in sorted(pairing.unpaired_refs.items()):
        ref, rf = candidates[0]
        results.append(FileResult(path, Status.MISSING, None, rf, ref.component.name))
    for path in pairing.unpaired_shipped:
        entry = rel[path]
        status = Status.OWN if path in pairing.own else Status.UNEXPECTED
        results.append(FileResult(path, status, entry, None, None))
    results.sort(key=attrgetter("path"))
    return Comparison(root, tuple(results), dict(renames))


def _relative(path: str, root: str) -> str:
    if not root:
        return path
    if path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return posixpath.relpath(path, root)


# --- mapping -------------------------------------------------------------------------------


def bundle_renames(ref_paths: Iterable[str], shipped: Inventory) -> dict[str, str]:
    """Map an upstream ``Electron.app`` onto the shipped ``<Product>.app``.

    The reference may be the folder holding ``Electron.app`` (paths ``Electron.app/...``) or
    the bundle itself (paths ``Contents/...``); the shipped bundle may sit anywhere in the
    artifact or be the artifact. Helpers (``Electron Helper``) and the main binary
    (``Contents/MacOS/Electron``) are renamed after the product, as packagers do.
    """
    paths = list(ref_paths)
    prefixed = any(p.startswith(MAC_BUNDLE + "/") for p in paths)
    bare = any(p.startswith(MAC_FRAMEWORK_MARK[1:]) for p in paths)
    if not (prefixed or bare):
        return {}
    bundle_dir = None  # the shipped bundle, relative to the artifact ('' = the artifact)
    for e in shipped.entries:
        i = ("/" + e.path).find(MAC_FRAMEWORK_MARK)
        if i >= 0:
            bundle_dir = e.path[: i - 1] if i > 0 else ""
            break
    if bundle_dir is None:
        return {}
    name = posixpath.basename(bundle_dir or shipped.source.rstrip("/").replace("\\", "/"))
    product = name[: -len(".app")] if name.endswith(".app") and name != MAC_BUNDLE else None
    out: dict[str, str] = {}
    for p in paths:
        if p.startswith(MAC_BUNDLE + "/"):
            inner = p[len(MAC_BUNDLE) + 1 :]
        elif bare and p.startswith("Contents/"):
            inner = p
        else:
            continue
        if product:
            inner = inner.replace("Electron Helper", f"{product} Helper")
            if inner == MAC_MAIN:
                inner = f"Contents/MacOS/{product}"
        q = f"{posixpath.basename(bundle_dir)}/{inner}" if bundle_dir else inner
        if q != p:
            out[p] = q
    return out


def find_app_root(ref_paths: Iterable[str], shipped: Inventory) -> str:
    """The shipped folder under which the most reference paths exist ('' = artifact root)."""
    refs = set(ref_paths)
    paths = [e.path for e in shipped.entries]
    if refs.issubset(paths):
        # every reference path at the artifact root: no folder holds more of them, and a tie
        # goes to the shortest folder name, ''
        return ""
    names = {r.rpartition("/")[2] for r in refs}
    votes: dict[str, set[str]] = defaultdict(set)
    for p in paths:
        # every reference path the shipped path ends with, at a '/': a lookup per folder
        # level rather than a comparison with every reference file of the same name (none
        # when no reference file has its name)
        if p.rpartition("/")[2] not in names:
            continue
        if p in refs:
            votes[""].add(p)
        i = p.find("/")
        while i >= 0:
            if p[i + 1 :] in refs:
                votes[p[:i]].add(p[i + 1 :])
            i = p.find("/", i + 1)
    if not votes:
        return ""
    return min(votes, key=lambda k: (-len(votes[k]), len(k), k))


# --- status of one pair --------------------------------------------------------------------


def _best_match(
    path: str,
    entry: FileEntry,
    candidates: Sequence[tuple[Reference, FileEntry]],
    renamed_from: str | None,
    paired_by: PairedBy,
) -> FileResult:
    if entry.format == FileFormat.MACHO and any(
        rf.format == FileFormat.MACHO for _, rf in candidates
    ):
        return _macho_match(path, entry, candidates, renamed_from, paired_by)
    best: FileResult | None = None
    for ref, rf in candidates:
        status, evidence = compare_pair(entry, rf)
        if renamed_from:
            evidence["renamed_from"] = renamed_from
        if len(candidates) > 1:
            evidence["matched_reference"] = ref.component.name
        r = FileResult(path, status, entry, rf, ref.component.name, evidence, (), paired_by)
        if best is None or _RANK[status] < _RANK[best.status]:
            best = r
    assert best is not None
    return best


def compare_pair(shipped: FileEntry, ref: FileEntry) -> tuple[Status, dict[str, Any]]:
    """Status and evidence of one shipped file against one reference file (not Mach-O)."""
    ev: dict[str, Any] = {"expected_sha256": ref.sha256, "actual_sha256": shipped.sha256}
    if shipped.sha256 == ref.sha256 and shipped.size == ref.size:
        return Status.IDENTICAL, ev
    if is_seal_file(shipped.path):
        # a bundle seal is signature data, rewritten by every re-signing; whether it is
        # right is the bundle check's job (an invalid seal is invalid-signature)
        ev["seal"] = True
        return Status.IDENTICAL_EXCEPT_SIGNATURE, ev
    if shipped.format != ref.format:
        ev["format_expected"] = ref.format.value
        ev["format_actual"] = shipped.format.value
        return Status.DIVERGENT, ev
    sf, rf = shipped.facts, ref.facts
    if shipped.format == FileFormat.PE:
        ev["expected_normalized_sha256"] = rf.normalized_sha256
        ev["actual_normalized_sha256"] = sf.normalized_sha256
        if sf.normalized_sha256 and sf.normalized_sha256 == rf.normalized_sha256:
            ev.update(_signer_evidence(shipped, ref))
            return Status.IDENTICAL_EXCEPT_SIGNATURE, ev
        if pe_diff.pe_resources_only(sf, rf):
            if sf.fuses is not None:
                ev["fuses"] = sf.fuses.to_dict()
                if rf.fuses is not None and rf.fuses.values != sf.fuses.values:
                    ev["fuses_expected"] = rf.fuses.to_dict()
            return Status.RESOURCES_ONLY, ev
        ev.update(pe_diff.describe_pe_divergence(shipped, ref))
        ev.update(_signer_evidence(shipped, ref))
        return Status.DIVERGENT, ev
    if shipped.format == FileFormat.ELF:
        ev.update(_section_evidence(shipped, ref))
        ev.update(pe_diff.describe_elf_divergence(shipped, ref))
    return Status.DIVERGENT, ev


def is_seal_file(path: str) -> bool:
    """``_CodeSignature/CodeResources`` and friends of a macOS bundle."""
    return "/_CodeSignature/" in f"/{path}" or path.endswith("/CodeResources")


def _signer_evidence(shipped: FileEntry, ref: FileEntry) -> dict[str, Any]:
    s, r = shipped.facts.signature, ref.facts.signature
    return {
        "signer_expected": r.signers[0].subject if r.signers else None,
        "signer_actual": s.signers[0].subject if s.signers else None,
    }


def _section_evidence(shipped: FileEntry, ref: FileEntry) -> dict[str, Any]:
    ours = {s.name: s for s in shipped.facts.sections}
    theirs = {s.name: s for s in ref.facts.sections}
    changed = []
    for name in sorted(set(ours) | set(theirs)):
        a, b = ours.get(name), theirs.get(name)
        if a is None or b is None or a.sha256 != b.sha256:
            changed.append({"name": name, "differing_bytes": None})
    return {"sections": changed} if changed else {}


def _macho_match(
    path: str,
    entry: FileEntry,
    candidates: Sequence[tuple[Reference, FileEntry]],
    renamed_from: str | None,
    paired_by: PairedBy,
) -> FileResult:
    refs = [rf for _, rf in candidates if rf.format == FileFormat.MACHO]
    slices, evidence = macho_compare.compare_slices(entry, refs)
    ev: dict[str, Any] = {"expected_sha256": refs[0].sha256, "actual_sha256": entry.sha256}
    ev.update(evidence)
    if renamed_from:
        ev["renamed_from"] = renamed_from
    status = aggregate_slices(slices) if slices else Status.DIVERGENT
    if entry.sha256 == refs[0].sha256:
        status = Status.IDENTICAL
    if status == Status.DIVERGENT:
        ev.update(pe_diff.describe_macho_divergence(entry, refs, ev))
    names = sorted({ref.component.name for ref, _ in candidates})
    return FileResult(path, status, entry, refs[0], names[0], ev, tuple(slices), paired_by)


def aggregate_slices(slices: Sequence[SliceResult]) -> Status:
    """A file's status is its worst slice's (a missing slice makes it divergent)."""
    worst = Status.IDENTICAL
    for s in slices:
        st = s.status if s.status in _RANK else Status.DIVERGENT
        if _RANK[st] > _RANK[worst]:
            worst = st
    return worst


# --- does the reference fit? ---------------------------------------------------------------

CODE_SUFFIX = ".node"


def unexplained_code(results: Sequence[FileResult]) -> tuple[int, int]:
    """(unexpected, total) over the shipped code files (PE, Mach-O, ELF, ``.node``) that are
    not the app's own: when most are unexpected, the references do not explain the artifact
    (docs/contract.md "A reference that does not fit is no reference")."""
    total = unexpected = 0
    for r in results:
        e = r.shipped
        if e is None or r.status == Status.OWN:
            continue
        if not (e.format.is_code or e.path.lower().endswith(CODE_SUFFIX)):
            continue
        total += 1
        unexpected += r.status == Status.UNEXPECTED
    return unexpected, total
