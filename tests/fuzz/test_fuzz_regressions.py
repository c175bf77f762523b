"""Every fuzz seed and every input the fuzzer found (``tests/fuzz/regressions/TARGET/``) is
replayed here under ``make test``: biv's own errors are fine, anything else fails.

``make fuzz`` (``tests/fuzz/run.py``) runs the same targets under atheris.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.paths import TESTS

from fuzz.targets import TARGETS, run_one

HERE = TESTS / "fuzz"
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


def test_unknown_certificate_algorithm_is_a_signature_finding(tmp_path: Path) -> None:
    """Found by fuzzing ``macho``: a CMS certificate signed with an algorithm cryptography
    does not know raised ``UnsupportedAlgorithm`` out of the chain builder (an internal error
    for the whole run). It cannot have issued anything: the signature is untrusted, the file
    is still parsed (not a parser slip)."""
    from verifier.analysis import analyze
    from verifier.model import Blob

    src = HERE / "regressions" / "macho" / "cms-cert-unknown-signature-algorithm"
    path = tmp_path / "x.dylib"
    path.write_bytes(src.read_bytes())
    _, facts = analyze(Blob.of_file(path), "x.dylib")
    got = {a.rule for a in facts.anomalies}
    assert "untrusted-signer" in got and "malformed-input" not in got
