"""Which platform and architecture the shipped artifact was built for (``pypi:``, ``electron:``).

A build may carry code of several targets (a 64-bit Windows wheel with a legacy 32-bit DLL, a
universal macOS app). Choosing the first one seen fetches the wrong upstream and turns a clean
build into dozens of false alarms, so the choice is made in this order:

1. the **main executable**: Electron's (its ``Electron/X.Y.Z`` marker or fuse wire, else its
   upstream name); a universal one names both macOS targets, used together;
2. the **majority of code bytes**: a target whose code (PE files, Mach-O slices, ELF files)
   is more than half of all code bytes, and that has the most code files too (one big legacy
   DLL does not outvote twenty small native ones);
3. otherwise the candidates **remain**, and the source compares the artifact with each
   candidate's upstream and keeps the one with the most files identical (or identical except
   for signatures) — see ``score``.

The choice and why is recorded in the report's component (``target``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import field

from verifier.model import JSON, FileEntry, FileFormat, Inventory, Reference
from verifier.record import record

Target = tuple[str, str]  # (platform, arch), e.g. ("win32", "x64")

_PLATFORM = {FileFormat.PE: "win32", FileFormat.MACHO: "darwin", FileFormat.ELF: "linux"}
_MAIN_NAMES = ("electron.exe", "Electron Framework", "electron")


def label(t: Target) -> str:
    return f"{t[0]}-{t[1]}"


@record
class TargetChoice:
    """The candidates seen, the options still open (each a set of targets used together)."""

    candidates: tuple[tuple[Target, int], ...] = ()  # every target with its code bytes
    options: tuple[tuple[Target, ...], ...] = ()  # 1 option: decided; several: compare each
    reason: str = ""
    scores: tuple[tuple[str, int], ...] = field(default=())  # option label -> matching files

    @property
    def decided(self) -> bool:
        return len(self.options) == 1

    def chosen(self) -> tuple[Target, ...]:
        return self.options[0] if self.options else ()

    def to_dict(self) -> JSON:
        """The report's ``components[].target``: candidates, choice and why."""
        return {
            "candidates": [{"target": label(t), "code_bytes": n} for t, n in self.candidates],
            "chosen": [label(t) for t in self.chosen()],
            "reason": self.reason,
            "scores": {k: v for k, v in self.scores},
        }


#: architecture names as platforms, toolchains and package tags spell them -> Electron's names
_ARCH = {
    "x64": "x64",
    "x86_64": "x64",
    "amd64": "x64",
    "x86-64": "x64",
    "ia32": "ia32",
    "x86": "ia32",
    "i386": "ia32",
    "i686": "ia32",
    "arm64": "arm64",
    "aarch64": "arm64",
    "arm64e": "arm64",
    "armv7l": "armv7l",
    "armv7": "armv7l",
    "arm": "armv7l",
}


def normalize_arch(arch: str) -> str | None:
    """Electron's name (``x64``, ``ia32``, ``arm64``, ``armv7l``) for an architecture name."""
    return _ARCH.get(arch.strip().lower())


def _arch_of(name: str) -> str | None:
    return normalize_arch(name)


def code_targets(e: FileEntry) -> list[tuple[Target, int]]:
    """(target, bytes) for each architecture of one code file."""
    plat = _PLATFORM.get(e.format)
    if plat is None:
        return []
    if e.facts.slices:
        out = []
        for s in e.facts.slices:
            a = _arch_of(s.arch)
            if a:
                out.append(((plat, a), s.size or e.size))
        return out
    return [((plat, a), e.size) for a in (_arch_of(x) for x in e.facts.archs) if a]


def _main_executables(entries: Sequence[FileEntry]) -> list[FileEntry]:
    code = [e for e in entries if e.format in _PLATFORM]
    main = [e for e in code if e.facts.markers.get("electron_version") or e.facts.fuses]
    if not main:
        main = [e for e in code if e.path.rsplit("/", 1)[-1] in _MAIN_NAMES]
    return main


def choose(shipped: Inventory) -> TargetChoice:
    """The target(s) of the shipped artifact (see the module docstring)."""
    totals: Counter[Target] = Counter()
    files: Counter[Target] = Counter()
    for e in shipped.entries:
        for t, n in code_targets(e):
            totals[t] += n
            files[t] += 1
    candidates = tuple(sorted(totals.items()))
    if not totals:
        return TargetChoice((), (), "no code files: the target cannot be told")
    if len(totals) == 1:
        (t,) = totals
        return TargetChoice(candidates, ((t,),), f"all code is {label(t)}")

    main = _main_executables(shipped.entries)
    main_targets = sorted({t for e in main for t, _ in code_targets(e)})
    if main_targets:
        names = ", ".join(sorted({e.path for e in main})[:3])
        plats = {t[0] for t in main_targets}
        if len(plats) == 1:
            return TargetChoice(
                candidates,
                (tuple(main_targets),),
                f"the main executable ({names}) is {' + '.join(map(label, main_targets))}",
            )

    whole = sum(totals.values())
    top, top_bytes = max(totals.items(), key=lambda kv: (kv[1], kv[0]))
    most_files = all(files[top] > n for t, n in files.items() if t != top)
    if top_bytes * 2 > whole and most_files:
        share = 100 * top_bytes // whole
        return TargetChoice(
            candidates, ((top,),), f"{label(top)} holds the majority of code bytes ({share}%)"
        )
    ranked = sorted(totals, key=lambda t: (-totals[t], t))
    return TargetChoice(
        candidates,
        tuple((t,) for t in ranked),
        "no main executable, and no target holds both the majority of code bytes and the "
        "most code files: compared with each candidate",
    )


def score(shipped: Inventory, refs: Iterable[Reference]) -> int:
    """How many shipped files the references explain: identical, or identical once
    signatures are removed (by content, wherever they lie)."""
    sha: set[str] = set()
    norm: set[str] = set()
    for r in refs:
        for f in r.files:
            sha.add(f.sha256)
            if f.format.is_code and f.facts.normalized_sha256:
                norm.add(f.facts.normalized_sha256)
    n = 0
    for e in shipped.entries:
        if e.sha256 in sha or (
            e.format.is_code and e.facts.normalized_sha256 and e.facts.normalized_sha256 in norm
        ):
            n += 1
    return n


def decide(choice: TargetChoice, scored: Sequence[tuple[tuple[Target, ...], int]]) -> TargetChoice:
    """The option with the most explained files (ties: the first, i.e. the most code bytes)."""
    best = max(range(len(scored)), key=lambda i: (scored[i][1], -i))
    opt, n = scored[best]
    return TargetChoice(
        choice.candidates,
        (opt,),
        f"{choice.reason}; {' + '.join(map(label, opt))} explains the most files ({n})",
        tuple((" + ".join(map(label, o)), s) for o, s in scored),
    )
