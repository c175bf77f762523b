"""Which function covers an address: a sorted table of function starts, extents and names.

Filled from what a binary says about itself (PE ``.pdata`` and exports, Mach-O
``LC_FUNCTION_STARTS`` and ``LC_SYMTAB``, ELF ``.symtab``/``.dynsym``), by the table parsers
in ``pe_tables``, ``macho_tables`` and ``elf_tables``. Lookups are ``bisect`` on a sorted list;
building the list is capped by the parsers (``MAX_SYMBOLS``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from verifier.record import record

MAX_SYMBOLS = 400_000  # function starts or symbols kept per binary
MAX_NAME = 256  # characters of a symbol name kept in evidence
MAX_COVERING = 8  # functions named per changed range


@record
class Symbol:
    """A function (or symbol) at ``start``; ``end`` is None when the binary gives no extent."""

    start: int
    end: int | None
    name: str | None
    source: str  # pdata, export, function-starts, symtab, dynsym

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "start": self.start, "end": self.end, "source": self.source}


def short_name(raw: bytes) -> str:
    """A symbol name as text (latin-1 never fails), cut to ``MAX_NAME`` characters."""
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


class Lookup(Protocol):
    """What the explanation asks of a symbol source."""

    def covering(self, addr: int) -> Symbol | None: ...

    def overlapping(
        self, lo: int, hi: int, cap: int = MAX_COVERING
    ) -> tuple[list[Symbol], int]: ...


class SymbolTable:
    """Functions sorted by start. ``names`` (address -> name) label starts without a name."""

    def __init__(
        self,
        symbols: Iterable[Symbol],
        names: Mapping[int, str] | None = None,
        notes: Iterable[str] = (),
        namer: Callable[[int], str | None] | None = None,
    ) -> None:
        best: dict[int, Symbol] = {}
        for s in symbols:
            cur = best.get(s.start)
            if cur is None or (cur.name is None and s.name is not None) or cur.end is None:
                best[s.start] = s
        extra = names or {}
        self._syms = sorted(
            (
                Symbol(s.start, s.end, extra.get(s.start), s.source)
                if s.name is None and s.start in extra
                else s
                for s in best.values()
            ),
            key=lambda s: s.start,
        )
        self._starts = [s.start for s in self._syms]
        self.notes = tuple(notes)
        self._namer = namer

    def __len__(self) -> int:
        return len(self._syms)

    def _extent(self, i: int) -> int | None:
        s = self._syms[i]
        if s.end is not None:
            return s.end
        return self._syms[i + 1].start if i + 1 < len(self._syms) else None

    def _full(self, i: int) -> Symbol:
        """Symbol ``i`` with its extent and (lazily resolved) name."""
        s = self._syms[i]
        name = s.name
        if name is None and self._namer is not None:
            name = self._namer(s.start)
        return Symbol(s.start, self._extent(i), name, s.source)

    def covering(self, addr: int) -> Symbol | None:
        """The function whose [start, end) holds ``addr`` (end: the next start if unknown)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        s = self._full(i)
        if s.end is not None and addr >= s.end:
            return None
        return s

    def overlapping(self, lo: int, hi: int, cap: int = MAX_COVERING) -> tuple[list[Symbol], int]:
        """Functions overlapping [lo, hi), at most ``cap``, and how many more there are."""
        out: list[Symbol] = []
        first = self.covering(lo)
        if first is not None:
            out.append(first)
        i = bisect.bisect_right(self._starts, lo)
        j = bisect.bisect_left(self._starts, hi)
        for k in range(i, min(j, i + cap)):
            if len(out) >= cap:
                break
            out.append(self._full(k))
        more = max(0, (j - i) - (len(out) - (1 if first is not None else 0)))
        return out, more


EMPTY = SymbolTable(())
