"""Explain a divergent binary: what changed, where, in which function, as instructions.

docs/contract.md "Explaining a divergence". For a divergent code file whose upstream bytes are at
hand, the evidence gains:

* ``changes``: merged changed byte ranges after normalisation, each with its region (section or
  segment), address (RVA for PE, VM address otherwise), the functions covering it (``.pdata``
  and exports, ``LC_FUNCTION_STARTS`` and symbols, ELF symbols) and its entropy;
* ``disassembly``: for changes in executable regions of x86, x86-64 and ARM64 code, upstream's
  and the shipped instructions side by side (``disasm``);
* ``imports_added`` / ``imports_removed`` / ``exports_added`` / ``exports_removed`` /
  ``sections_added`` / ``sections_removed`` / ``strings_added``;
* ``explanation``: status (``explained``, ``unavailable`` with the reason), the caps applied
  (``limits``), what a cap cut (``truncated``), notes on tables that could not be read.

Everything is bounded by ``ExplainLimits`` (bytes, ranges, instructions, strings; never the
clock), and nothing here raises on bad input: a parser error makes the explanation
``unavailable`` with the reason. Reports carry no file bytes: instruction text, addresses,
strings and counts only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from verifier.binary import content, disasm, layout
from verifier.binary.changes import Change, Reader, RegionPair, ScanLimits, ScanResult, scan
from verifier.binary.disasm import DisasmLimits
from verifier.errors import MalformedInputError
from verifier.hashing import Span
from verifier.model import Blob, FileEntry, FileFormat, SliceFacts
from verifier.record import record

UNAVAILABLE_NO_BYTES = (
    "the upstream file is known only by its digests (a biv.refs/v1 inventory or a cached "
    "reference without bytes): there are no upstream bytes to compare, so what changed "
    "cannot be shown"
)


@record
class ExplainLimits:
    scan: ScanLimits = field(default_factory=ScanLimits)
    disasm: DisasmLimits = field(default_factory=DisasmLimits)
    max_changes_reported: int = 64  # changes listed in the evidence
    max_strings: int = 32
    max_string_bytes: int = 512 << 10  # shipped bytes searched for strings, per unit
    string_margin: int = 64  # bytes around a change searched too (a string may start before)
    max_entropy_bytes: int = 4 << 20  # bytes measured for entropy, per unit
    max_entropy_range: int = 1 << 20  # bytes measured per change (its first bytes)
    max_list: int = 64  # names listed per imports/exports/sections key

    def to_dict(self) -> dict[str, int]:
        d = dataclasses.asdict(self)
        flat: dict[str, int] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                flat.update(v)
            else:
                flat[k] = v
        return flat


DEFAULT = ExplainLimits()
# ``biv inspect --against``: the full side-by-side view for one pair
FULL = ExplainLimits(
    disasm=DisasmLimits(max_windows=64, max_rows_per_window=256, max_rows_per_file=4000),
    max_changes_reported=256,
    max_strings=128,
    max_list=512,
)


@dataclass
class UnitExplanation:
    arch: str
    evidence: dict[str, Any] = field(default_factory=dict)
    # (region name, occurrence) -> differing bytes (None where a cap stopped the count)
    differing: dict[tuple[str, int], int | None] = field(default_factory=dict)


def unavailable(reason: str) -> dict[str, Any]:
    return {"explanation": {"status": "unavailable", "reason": reason}}


def explain_entries(
    shipped: FileEntry, ref: FileEntry, limits: ExplainLimits = DEFAULT
) -> dict[str, Any]:
    """Evidence keys explaining a divergent PE or ELF file (for Mach-O see ``explain_macho``)."""
    if shipped.blob is None or ref.blob is None:
        return unavailable(UNAVAILABLE_NO_BYTES)
    if shipped.format != ref.format or shipped.format not in (FileFormat.PE, FileFormat.ELF):
        return unavailable(f"no explanation for {shipped.format.value} against {ref.format.value}")
    return explain_blobs(shipped.blob, ref.blob, shipped.format, limits).evidence


def explain_blobs(
    a: Blob, b: Blob, fmt: FileFormat, limits: ExplainLimits = DEFAULT
) -> UnitExplanation:
    """Explain shipped blob ``a`` against upstream blob ``b`` (PE or ELF)."""
    try:
        if fmt == FileFormat.PE:
            ua, ub = layout.pe_unit(a), layout.pe_unit(b)
        else:
            ua, ub = layout.elf_unit(a), layout.elf_unit(b)
    except (MalformedInputError, OSError) as exc:
        out = UnitExplanation("?")
        out.evidence = unavailable(f"cannot parse the pair: {_msg(exc)}")
        return out
    return explain_units(a, b, ua, ub, limits)


def explain_macho(
    shipped: FileEntry, refs: Sequence[FileEntry], limits: ExplainLimits = DEFAULT
) -> list[UnitExplanation]:
    """The explanation of each divergent slice (matched by arch) of a Mach-O file."""
    if shipped.blob is None:
        return []
    ref_slices: dict[str, tuple[FileEntry, SliceFacts]] = {}
    for rf in refs:
        for rs in rf.facts.slices:
            ref_slices.setdefault(rs.arch, (rf, rs))
    out: list[UnitExplanation] = []
    for s in shipped.facts.slices:
        match = ref_slices.get(s.arch)
        if match is None or match[1].normalized_sha256 == s.normalized_sha256:
            continue
        rf, rs = match
        if rf.blob is None:
            ue = UnitExplanation(s.arch)
            ue.evidence = unavailable(UNAVAILABLE_NO_BYTES)
            out.append(ue)
            continue
        out.append(
            explain_slice(
                shipped.blob, s.offset, s.size, rf.blob, rs.offset, rs.size, s.arch, limits
            )
        )
    return out


def explain_slice(
    a: Blob,
    aoff: int,
    asize: int,
    b: Blob,
    boff: int,
    bsize: int,
    arch: str,
    limits: ExplainLimits = DEFAULT,
) -> UnitExplanation:
    try:
        ua, ub = layout.macho_unit(a, aoff, asize), layout.macho_unit(b, boff, bsize)
    except (MalformedInputError, OSError) as exc:
        ue = UnitExplanation(arch)
        ue.evidence = unavailable(f"cannot parse the {arch} slices: {_msg(exc)}")
        return ue
    return explain_units(a, b, ua, ub, limits)


def _msg(exc: BaseException) -> str:
    return exc.message if isinstance(exc, MalformedInputError) else str(exc)


# --- the explanation of one unit ------------------------------------------------------------


def _pairs(
    ua: layout.Unit, ub: layout.Unit
) -> tuple[list[RegionPair], list[tuple[layout.Region | None, layout.Region | None]]]:
    rb = {r.key: r for r in ub.regions}
    pairs: list[RegionPair] = []
    regions: list[tuple[layout.Region | None, layout.Region | None]] = []
    for r in ua.regions:
        o = rb.pop(r.key, None)
        mask = tuple(sorted({*r.mask, *(o.mask if o else ())}, key=lambda s: (s.offset, s.length)))
        pairs.append(RegionPair(r.name, _span(r), _span(o) if o else None, mask))
        regions.append((r, o))
    for o in rb.values():
        pairs.append(RegionPair(o.name, None, _span(o), o.mask))
        regions.append((None, o))
    return pairs, regions


def _span(r: layout.Region) -> Span:
    return Span(r.offset, r.size)


Regions = Sequence[tuple[layout.Region | None, layout.Region | None]]
Window = tuple[int, Change, dict[str, Any]]  # (region index, change, its evidence)


def explain_units(
    a: Blob, b: Blob, ua: layout.Unit, ub: layout.Unit, limits: ExplainLimits
) -> UnitExplanation:
    pairs, regions = _pairs(ua, ub)
    try:
        with open(a.path, "rb") as fa, open(b.path, "rb") as fb:
            res = scan(_Shifted(fa, a.offset), _Shifted(fb, b.offset), pairs, limits.scan)
    except OSError as exc:
        ue = UnitExplanation(ua.arch)
        ue.evidence = unavailable(f"cannot read the files: {exc}")
        return ue
    ue = UnitExplanation(ua.arch)
    for i, (r, o) in enumerate(regions):
        reg = r or o
        assert reg is not None
        ue.differing[reg.key] = res.differing.get(i)
    ev: dict[str, Any] = {}
    truncated = list(res.truncated)
    notes = [*ua.notes, *(f"upstream: {n}" for n in ub.notes)]
    with open(a.path, "rb") as fa, open(b.path, "rb") as fb:
        m = _measure(_Shifted(fa, a.offset), _Shifted(fb, b.offset), ua, regions, res, limits)
        if m.strings_cut:
            truncated.append(
                f"strings searched in the first {limits.max_string_bytes} changed bytes only"
            )
        if m.entropy_cut:
            truncated.append(
                f"entropy measured over the first {limits.max_entropy_bytes} changed bytes only"
            )
        ev["disassembly"] = _disassembly(
            _Shifted(fa, a.offset),
            _Shifted(fb, b.offset),
            ua,
            regions,
            m.windows,
            limits.disasm,
            truncated,
            notes,
        )
    if len(res.changes) > limits.max_changes_reported:
        truncated.append(
            f"{len(res.changes)} changed ranges: the first {limits.max_changes_reported} listed"
        )
    strings = _new_strings(m.strings, m.strings_more, limits.max_strings, truncated)
    ev["changes"] = m.changes
    ev.update(_names(ua, ub, regions, limits.max_list, truncated))
    ev["strings_added"] = [s.to_dict() for s in strings]
    ev["explanation"] = {
        "status": "explained",
        "reason": None,
        "arch": ua.arch,
        "address_kind": ua.address_kind,
        "changed_bytes": sum(v for v in res.differing.values() if v is not None),
        "changes_total": len(res.changes) + res.omitted_changes,
        "layout": _layout(ua, regions, res),
        "limits": limits.to_dict(),
        "truncated": truncated,
        "notes": notes,
    }
    ue.evidence = ev
    return ue


@record
class _Measured:
    """Each change described, with what its bytes say (entropy, new strings)."""

    changes: list[dict[str, Any]]  # the first ``max_changes_reported``
    strings: list[content.FoundString]  # new strings near the changes, unsorted
    strings_more: int  # strings found beyond the cap
    windows: list[Window]  # changes in executable regions, to disassemble
    strings_cut: bool  # the budget of bytes searched for strings ran out
    entropy_cut: bool  # the budget of bytes measured for entropy ran out


def _measure(
    fa: Reader, fb: Reader, ua: layout.Unit, regions: Regions, res: ScanResult, lim: ExplainLimits
) -> _Measured:
    """Describe each change within the entropy and string budgets (shipped bytes ``fa``,
    upstream's ``fb``, both relative to their unit's blob)."""
    changes: list[dict[str, Any]] = []
    ent_left = lim.max_entropy_bytes
    str_left = lim.max_string_bytes
    strings: list[content.FoundString] = []
    strings_more = 0
    windows: list[Window] = []
    for n, ch in enumerate(res.changes):
        r, o = regions[ch.region]
        d = _change_dict(ch, r, o, ua)
        if r is not None and ch.length and ent_left > 0:
            k = min(ch.length, lim.max_entropy_range, ent_left)
            ent_left -= k
            d["entropy"] = content.entropy(_read(fa, r.offset + ch.offset, k))
            d["entropy_bytes"] = k
        if r is not None and ch.length and str_left > 0:
            m = lim.string_margin
            lo = max(0, ch.offset - m)
            k = min(ch.offset + ch.length + m, r.size) - lo
            k = min(k, str_left)
            str_left -= k
            sh = _read(fa, r.offset + lo, k)
            up = b""
            if o is not None and lo < o.size:
                up = _read(fb, o.offset + lo, min(k, o.size - lo))
            found, more = content.new_strings(sh, up, r.offset + lo, lim.max_strings)
            strings.extend(found)
            strings_more += more
        if n < lim.max_changes_reported:
            changes.append(d)
        if r is not None and d.get("executable") and disasm.supported(ua.arch):
            windows.append((ch.region, ch, d))
    return _Measured(changes, strings, strings_more, windows, str_left <= 0, ent_left <= 0)


def _new_strings(
    strings: list[content.FoundString], more: int, cap: int, truncated: list[str]
) -> list[content.FoundString]:
    """The new strings, without repeats, most telling kind first, at most ``cap``."""
    strings = _dedupe(strings)
    strings.sort(key=lambda f: (content._KIND_ORDER[f.kind], f.offset))
    if len(strings) > cap:
        more += len(strings) - cap
        strings = strings[:cap]
    if more:
        truncated.append(f"{more} more new strings not listed (cap {cap})")
    return strings


def _names(
    ua: layout.Unit, ub: layout.Unit, regions: Regions, cap: int, truncated: list[str]
) -> dict[str, list[str]]:
    """Imports, exports and sections added or removed (at most ``cap`` names each)."""
    added_regions = {r.name for r, o in regions if r is not None and o is None}
    sets: dict[str, set[str] | frozenset[str]] = {
        "imports_added": ua.imports - ub.imports,
        "imports_removed": ub.imports - ua.imports,
        "exports_added": ua.exports - ub.exports,
        "exports_removed": ub.exports - ua.exports,
        "sections_added": (set(ua.sections) - set(ub.sections)) | (added_regions - {"(overlay)"}),
        "sections_removed": set(ub.sections) - set(ua.sections),
    }
    return {key: _capped(names, cap, key, truncated) for key, names in sets.items()}


class _Shifted:
    """A file seen from ``base`` on (an asar member stored in place)."""

    def __init__(self, fh: BinaryIO, base: int) -> None:
        self.fh, self.base = fh, base

    def seek(self, pos: int, /) -> int:
        return int(self.fh.seek(self.base + pos))

    def read(self, n: int, /) -> bytes:
        data: bytes = self.fh.read(n)
        return data


def _read(fh: Reader, pos: int, n: int) -> bytes:
    fh.seek(pos)
    data: bytes = fh.read(max(0, n))
    return data


def _dedupe(items: list[content.FoundString]) -> list[content.FoundString]:
    seen: set[tuple[str, int]] = set()
    out = []
    for f in items:
        if (f.value, f.offset) not in seen:
            seen.add((f.value, f.offset))
            out.append(f)
    return out


def _capped(
    names: set[str] | frozenset[str], cap: int, key: str, truncated: list[str]
) -> list[str]:
    out = sorted(names)
    if len(out) > cap:
        truncated.append(f"{key}: {len(out)} names, the first {cap} listed")
    return out[:cap]


def _layout(
    ua: layout.Unit,
    regions: Sequence[tuple[layout.Region | None, layout.Region | None]],
    res: ScanResult,
) -> list[dict[str, Any]]:
    """The shipped unit's regions in file order with their sizes (for the picture of the file)."""
    out = []
    for i, (r, o) in enumerate(regions):
        if r is None:
            continue
        out.append(
            {
                "name": r.name,
                "offset": r.offset,
                "size": r.size,
                "executable": r.executable,
                "status": "added" if o is None else ("changed" if res.differing.get(i) else "same"),
                # sections inside a Mach-O segment (absolute offsets), for the picture
                "sections": [
                    {"name": x.name, "offset": r.offset + x.offset, "size": x.size}
                    for x in r.subs[:64]
                ],
            }
        )
    return sorted(out, key=lambda d: (d["offset"], d["name"]))


def _change_dict(
    ch: Change, r: layout.Region | None, o: layout.Region | None, ua: layout.Unit
) -> dict[str, Any]:
    base = r or o
    assert base is not None
    name, addr, executable = base.locate(ch.offset)
    d: dict[str, Any] = {
        "region": name,
        "kind": ch.kind,
        "offset": r.offset + ch.offset if r is not None else None,
        "length": ch.length,
        "upstream_offset": o.offset + ch.offset if o is not None else None,
        "upstream_length": ch.upstream_length,
        "address": addr,
        "address_kind": ua.address_kind,
        "executable": executable and r is not None,
        "exact": ch.exact,
        "arch": ua.arch,
    }
    if r is not None:
        fields = ua.fields_in(r.offset + ch.offset, r.offset + ch.offset + max(ch.length, 1))
        if fields:
            d["fields"] = fields  # header fields or load commands the change touches
    bounds = base.bounds(ch.offset)
    if addr is not None and r is not None and ch.length and bounds is not None:
        syms, more = ua.symbols.overlapping(addr, addr + ch.length)
        # a symbol of another section (the nearest export before an added section) is no answer
        syms = [s for s in syms if bounds[0] <= s.start < bounds[1]]
        # the last function of a section ends with it (function starts and symbols say where
        # a function begins; an export without .pdata is only the nearest name before)
        syms = [
            dataclasses.replace(s, end=bounds[1])
            if s.end is None and s.source not in ("export", "entry")
            else s
            for s in syms
        ]
        d["functions"] = [s.to_dict() for s in syms]
        if more:
            d["functions_more"] = more
    else:
        d["functions"] = []
    return d


def _disassembly(
    fa: Reader,
    fb: Reader,
    ua: layout.Unit,
    regions: Regions,
    windows: list[Window],
    lim: DisasmLimits,
    truncated: list[str],
    notes: list[str],
) -> list[dict[str, Any]]:
    """Side-by-side instructions around the changes of executable regions, window by window,
    within the caps (what a cap cut goes to ``truncated``)."""
    if not windows:
        return []
    if not disasm.available():
        notes.append("disassembly unavailable: the capstone package is not installed")
        return []
    out: list[dict[str, Any]] = []
    rows_left = lim.max_rows_per_file
    groups = _group(windows, lim)
    if len(groups) > lim.max_windows:
        truncated.append(
            f"disassembly of the first {lim.max_windows} of {len(groups)} changed code ranges"
        )
        groups = groups[: lim.max_windows]
    for g in groups:
        if rows_left <= 0:
            truncated.append(
                f"disassembly stopped at {lim.max_rows_per_file} instructions per file"
            )
            break
        window = _window(fa, fb, ua, regions, g, lim, rows_left)
        if window is not None:
            rows_left -= sum(1 for x in window["rows"] if x["kind"] != "gap")
            out.append(window)
    return out


def _group(windows: list[Window], lim: DisasmLimits) -> list[list[Window]]:
    """Changes whose windows overlap (same region, close together) are shown as one."""
    groups: list[list[Window]] = []
    for w in windows:
        if (
            groups
            and groups[-1][-1][0] == w[0]
            and w[1].offset - (groups[-1][-1][1].offset + groups[-1][-1][1].length)
            < lim.max_window_bytes // 4
        ):
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def _window(
    fa: Reader,
    fb: Reader,
    ua: layout.Unit,
    regions: Regions,
    g: list[Window],
    lim: DisasmLimits,
    rows_left: int,
) -> dict[str, Any] | None:
    """One window: decoded from the start of the function holding the first change (or a
    short back-off), both sides from the same address, aligned row by row."""
    width = disasm.FIXED_WIDTH.get(ua.arch, 1)
    reg_i, first, d0 = g[0]
    r, o = regions[reg_i]
    assert r is not None
    name, addr0, _ex = r.locate(first.offset)
    if addr0 is None:
        return None
    delta = addr0 - first.offset  # address = delta + region-relative offset (this section)
    sub_lo = _sub_start(r, first.offset)
    fn = d0.get("functions") or []
    start = first.offset - lim.back_off
    if (
        fn
        and fn[0].get("start") is not None
        and fn[0]["start"] <= addr0
        and addr0 - fn[0]["start"] <= lim.max_back
    ):
        start = fn[0]["start"] - delta
    start = max(start, sub_lo, 0)
    if width > 1:
        start -= (start + delta) % width
        start = max(start, sub_lo)
    last = g[-1][1]
    end = min(last.offset + last.length + 16 * max(width, 4), r.size, start + lim.max_window_bytes)
    sh = _read(fa, r.offset + start, end - start)
    up = b""
    if o is not None and start < o.size:
        up = _read(fb, o.offset + start, min(end, o.size) - start)
    cap = min(lim.max_rows_per_window, rows_left) * 4 + 64
    ins_s = disasm.disassemble(ua.arch, sh, start + delta, cap)
    ins_u = disasm.disassemble(ua.arch, up, start + delta, cap)
    spans = [
        (c.offset + delta, c.offset + delta + max(c.length, c.upstream_length)) for _i, c, _d in g
    ]
    rows, cut = disasm.side_by_side(
        ins_u, ins_s, spans, lim.context, min(lim.max_rows_per_window, rows_left)
    )
    cut = cut or (end - start >= lim.max_window_bytes and end < last.offset + last.length)
    return {
        "arch": ua.arch,
        "region": name,
        "address": start + delta,
        "address_kind": ua.address_kind,
        "change": {"address": addr0, "length": sum(c.length for _i, c, _d in g)},
        "function": fn[0] if fn else None,
        "upstream_present": o is not None,
        "rows": [x.to_dict() for x in rows],
        "truncated": bool(cut),
    }


def _sub_start(r: layout.Region, rel: int) -> int:
    for s in r.subs:
        if s.offset <= rel < s.offset + s.size:
            return s.offset
    return 0
