"""Every fuzz seed and every input the fuzzer found (``tests/fuzz/regressions/TARGET/``) is
replayed here under ``make test``: biv's own errors are fine, anything else fails.

``make fuzz`` (``tests/fuzz/run.py``) runs the same targets under atheris.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz.targets import TARGETS, run_one

HERE = Path(__file__).resolve().parent / "fuzz"
CASES = sorted(
    (target, p)
    for kind in ("seeds", "regressions")
    for target in TARGETS
    for p in (HERE / kind / target).glob("*")
    if p.is_file()
)


def test_every_target_has_seeds() -> None:
    assert {t for t, _ in CASES} == set(TARGETS)


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_replay(target: str, path: Path) -> None:
    run_one(target, path.read_bytes())
