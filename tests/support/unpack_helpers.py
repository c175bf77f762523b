"""Shared checks for the unpack tests: nothing written outside the work directory."""

from __future__ import annotations

import os
from pathlib import Path

from verifier.unpack import Limits, Unpacked, unpack


def snapshot(root: Path, exclude: Path) -> set[str]:
    """Every path under ``root`` except those under ``exclude``."""
    out: set[str] = set()
    ex = str(exclude)
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == ex or dirpath.startswith(ex + os.sep):
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if p != ex:
                out.add(p)
    return out


def blobs_inside(u: Unpacked, *allowed: Path) -> None:
    """Every member's bytes live under one of ``allowed`` (the work dir or the artifact)."""
    roots = [str(a.resolve()) for a in allowed]
    for m in u.members:
        real = os.path.realpath(m.blob.path)
        assert any(real == r or real.startswith(r + os.sep) for r in roots), m


def rules(u: Unpacked) -> set[str]:
    return {a.rule for a in u.problems}


def messages(u: Unpacked) -> str:
    return "\n".join(f"{a.evidence.get('location')}: {a.message}" for a in u.problems)


class Box:
    """A test sandbox: ``art`` for inputs, ``work`` (two levels down) for unpack's output.

    ``unchanged()`` asserts nothing appeared outside ``work`` (traversal lands at most a
    few levels up, inside ``root``)."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.art = tmp_path / "art"
        self.art.mkdir(parents=True)
        self.work = tmp_path / "w1" / "w2" / "work"
        self.work.parent.mkdir(parents=True)
        self.before: set[str] | None = None

    def freeze(self) -> None:
        self.before = snapshot(self.root, self.work)

    def unchanged(self) -> None:
        assert self.before is not None, "call freeze() before unpacking"
        assert snapshot(self.root, self.work) == self.before


def run(box: Box, art: Path, limits: Limits | None = None) -> Unpacked:
    """Unpack ``art`` into the box; check nothing escaped and every blob stays inside."""
    box.freeze()
    u = unpack(str(art), str(box.work), limits)
    box.unchanged()
    blobs_inside(u, box.work, box.art)
    return u


def assert_unreadable_top(box: Box, art: Path, match: str) -> Unpacked:
    """A top-level archive that cannot be read is one ``malformed-input`` problem (exit 1,
    docs/contract.md "Exit codes and precedence"), and an ``ArtifactError`` only for a caller
    that asks (``strict_top``)."""
    import pytest

    from verifier.errors import ArtifactError

    u = run(box, art)
    (a,) = [p for p in u.problems if match in p.message]
    assert a.rule == "malformed-input"
    assert a.evidence["location"] == art.name
    with pytest.raises(ArtifactError, match=match) as exc:
        unpack(str(art), str(box.work.parent / "strict"), strict_top=True)
    assert "\n" not in exc.value.diagnostics()
    return u
