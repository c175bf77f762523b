"""A bundle's seal (``_CodeSignature/CodeResources``): its rules and what it says of the
special slots the main executable's signature hashes (Info.plist, CodeResources)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from verifier.model import BinaryFacts, MachOSignatureDetails
from verifier.signing.codesign import CSSLOT_INFOSLOT, CSSLOT_RESOURCEDIR, SPECIAL_SLOT_NAMES

MAX_RULES = 512
_HASHES = {"sha1": "sha1", "sha256": "sha256", "sha256-truncated": "sha256"}


@dataclass
class Rule:
    pattern: re.Pattern[str]
    weight: float
    omit: bool
    optional: bool
    nested: bool


def rules(raw: object) -> list[Rule]:
    """The seal's ``rules2`` (or ``rules``), capped; unreadable entries are skipped."""
    out: list[Rule] = []
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
            Rule(
                pat,
                float(d.get("weight", 1) or 1),
                bool(d.get("omit", False)),
                bool(d.get("optional", False)),
                bool(d.get("nested", False)),
            )
        )
    return out


def rule_for(rules: list[Rule], rel: str) -> Rule | None:
    best: Rule | None = None
    for r in rules:
        if r.pattern.search(rel) and (best is None or r.weight > best.weight):
            best = r
    return best


def cdhashes(facts: BinaryFacts) -> set[str]:
    """The cdhash of every CodeDirectory of every slice (what a seal names nested code by)."""
    out: set[str] = set()
    for s in facts.slices:
        d = s.signature.details
        if isinstance(d, MachOSignatureDetails):
            out.update(cd.cdhash for cd in d.code_directories)
    return out


def external_slot_problems(facts: BinaryFacts, specials: Mapping[int, bytes]) -> list[str]:
    """Check Info.plist / CodeResources against the slot hashes recorded in ``facts``."""
    problems: list[str] = []
    for s in facts.slices:
        d = s.signature.details
        if not isinstance(d, MachOSignatureDetails):
            continue
        for cd in d.code_directories:
            algo = _HASHES.get(cd.hash_type, "sha384")
            for slot, want in cd.special_hashes:
                if slot not in (CSSLOT_INFOSLOT, CSSLOT_RESOURCEDIR):
                    continue
                name = SPECIAL_SLOT_NAMES[slot]
                content = specials.get(slot)
                if content is None:
                    problems.append(f"{s.arch}: special slot {name} is sealed but missing")
                elif hashlib.new(algo, content).digest()[: cd.hash_size].hex() != want:
                    problems.append(f"{s.arch}: special slot {name} does not match its content")
    return list(dict.fromkeys(problems))
