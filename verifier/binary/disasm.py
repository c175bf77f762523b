"""Side-by-side disassembly of a changed range: upstream's instructions against the shipped ones.

Why: an analyst reads ``call 0x1a2b0`` and ``lea rcx, [rip + 0x3f2e]`` where a hex dump shows
nothing. Both sides are decoded from the same start address (a function start where the binary
gives one, so the instruction boundaries are the real ones), with capstone (a maintained
disassembler from PyPI), and aligned on instruction boundaries: outside the changed bytes both
streams are identical and show once as context; inside, the two sides are paired row by row
until both reach a common boundary again.

Caps (``DisasmLimits``) bound the bytes decoded and the rows kept per window and per file;
invalid bytes decode as ``.byte`` (capstone's skipdata), never as an error.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence
from functools import cache
from typing import Any

from verifier.record import record

# arch names of PE, Mach-O and ELF -> (capstone arch, mode) names, resolved lazily
_ARCHS = {
    "x86": ("CS_ARCH_X86", "CS_MODE_32"),
    "i386": ("CS_ARCH_X86", "CS_MODE_32"),
    "x64": ("CS_ARCH_X86", "CS_MODE_64"),
    "x86_64": ("CS_ARCH_X86", "CS_MODE_64"),
    "x86_64h": ("CS_ARCH_X86", "CS_MODE_64"),
    "arm64": ("CS_ARCH_ARM64", "CS_MODE_ARM"),
    "arm64e": ("CS_ARCH_ARM64", "CS_MODE_ARM"),
}
FIXED_WIDTH = {"arm64": 4, "arm64e": 4}


@record
class DisasmLimits:
    max_windows: int = 16  # changed ranges disassembled per file (or slice)
    max_rows_per_window: int = 64
    max_rows_per_file: int = 400
    context: int = 4  # unchanged instructions shown before and after a change
    max_back: int = 2048  # bytes from a function start to the change (else a short back-off)
    back_off: int = 48  # bytes decoded before a change when no function start is near
    max_window_bytes: int = 4096  # bytes decoded per side per window


@record
class Insn:
    address: int
    size: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "size": self.size, "text": self.text}


def supported(arch: str) -> bool:
    return arch in _ARCHS


@cache
def _engine(arch: str) -> Any:
    import capstone

    cs_arch, cs_mode = _ARCHS[arch]
    md = capstone.Cs(getattr(capstone, cs_arch), getattr(capstone, cs_mode))
    md.skipdata = True
    return md


def available() -> bool:
    try:
        import capstone  # noqa: F401
    except ImportError:
        return False
    return True


def disassemble(arch: str, code: bytes, address: int, max_insns: int) -> list[Insn]:
    """Up to ``max_insns`` instructions of ``code`` decoded at ``address`` (never raises on
    bad bytes: undecodable bytes become ``.byte`` rows)."""
    if not code or max_insns <= 0:
        return []
    md = _engine(arch)
    out = []
    for addr, size, mnemonic, op_str in md.disasm_lite(code, address, max_insns):
        out.append(Insn(addr, size, f"{mnemonic} {op_str}".strip()))
    return out


@record
class Row:
    kind: str  # same, changed, gap (unchanged instructions left out)
    upstream: Insn | None
    shipped: Insn | None
    skipped: int = 0  # for gap rows: how many unchanged instructions were left out

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "gap":
            return {"kind": "gap", "skipped": self.skipped}
        return {
            "kind": self.kind,
            "upstream": self.upstream.to_dict() if self.upstream else None,
            "shipped": self.shipped.to_dict() if self.shipped else None,
        }


def _hits(lo: int, hi: int, changes: Sequence[tuple[int, int]]) -> bool:
    return any(a < hi and lo < b for a, b in changes)


def _inside(p: int, changes: Sequence[tuple[int, int]]) -> bool:
    return any(a <= p < b for a, b in changes)


def side_by_side(
    upstream: Sequence[Insn],
    shipped: Sequence[Insn],
    changes: Sequence[tuple[int, int]],
    context: int,
    max_rows: int,
) -> tuple[list[Row], bool]:
    """Align two instruction streams decoded from the same address; ``changes`` are the
    changed [start, end) addresses. Returns the rows and whether ``max_rows`` cut them."""
    rows: list[Row] = []
    pending: collections.deque[Row] = collections.deque(maxlen=context)
    dropped = 0  # same rows that fell out of ``pending``
    after = 0  # same rows still to show after the last change
    seen_change = False
    i = j = 0
    last_change_end = max((b for _a, b in changes), default=0)

    def emit(r: Row) -> bool:
        if len(rows) >= max_rows:
            return False
        rows.append(r)
        return True

    while i < len(upstream) or j < len(shipped):
        u = upstream[i] if i < len(upstream) else None
        s = shipped[j] if j < len(shipped) else None
        if (
            u is not None
            and s is not None
            and u.address == s.address
            and u.size == s.size
            and u.text == s.text
            and not _hits(u.address, u.address + u.size, changes)
        ):
            row = Row("same", u, s)
            i, j = i + 1, j + 1
            if seen_change and after > 0:
                after -= 1
                if not emit(row):
                    return rows, True
            elif seen_change and u.address >= last_change_end:
                break  # all changes shown with their context
            else:
                if len(pending) == pending.maxlen:
                    dropped += 1
                pending.append(row)
            continue
        bu, bs, i, j = _changed_block(upstream, shipped, i, j, changes, max_rows)
        if dropped and (seen_change or pending) and not emit(Row("gap", None, None, dropped)):
            return rows, True
        for r in pending:
            if not emit(r):
                return rows, True
        pending.clear()
        dropped = 0
        for a, b in itertools.zip_longest(bu, bs):
            if not emit(Row("changed", a, b)):
                return rows, True
        seen_change = True
        after = context
    return rows, False


def _changed_block(
    upstream: Sequence[Insn],
    shipped: Sequence[Insn],
    i: int,
    j: int,
    changes: Sequence[tuple[int, int]],
    max_rows: int,
) -> tuple[list[Insn], list[Insn], int, int]:
    """A changed block: both streams consumed from ``i`` and ``j`` until they meet on an
    instruction boundary outside the changes (or ``max_rows`` is passed). Returns the
    upstream and shipped instructions of the block and where each stream goes on."""
    bu: list[Insn] = []
    bs: list[Insn] = []
    while True:
        pu = upstream[i].address if i < len(upstream) else None
        ps = shipped[j].address if j < len(shipped) else None
        if pu is None and ps is None:
            break
        if (bu or bs) and pu is not None and pu == ps and not _inside(pu, changes):
            break
        if ps is None or (pu is not None and pu < ps):
            bu.append(upstream[i])
            i += 1
        elif pu is None or ps < pu:
            bs.append(shipped[j])
            j += 1
        else:
            bu.append(upstream[i])
            bs.append(shipped[j])
            i, j = i + 1, j + 1
        if max(len(bu), len(bs)) > max_rows:
            break
    return bu, bs, i, j
