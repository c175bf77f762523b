"""The extraction sandbox: caps on the child process, registry of readers."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from verifier.errors import ArtifactError
from verifier.unpack import Limits, registry, unpack


def make_zip(path: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.dll", b"a")
    path.write_bytes(buf.getvalue())
    return path


def test_wall_clock_timeout_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    art = make_zip(tmp_path / "a.zip")
    u = unpack(str(art), str(tmp_path / "w"), Limits(worker_timeout_s=0.001))
    assert u.members == ()
    (a,) = u.problems
    assert a.rule == "malformed-input" and "timed out" in a.message
    assert a.evidence["location"] == "a.zip"


def test_memory_cap_applies_to_the_worker(tmp_path: Path) -> None:
    art = make_zip(tmp_path / "a.zip")
    u = unpack(str(art), str(tmp_path / "w"), Limits(worker_memory_bytes=16 << 20))
    assert u.members == ()
    assert len(u.problems) == 1 and u.problems[0].rule == "malformed-input"


def test_registry_finds_readers_by_content() -> None:
    registry.load_builtin()
    names = [r.name for r in registry.readers()]
    assert {"zip", "tar", "asar"} <= set(names)
    zr = registry.find(b"PK\x03\x04rest", "whatever.bin")
    assert zr is not None and zr.name == "zip"
    assert registry.find(b"MZ\x90\x00", "setup.zip") is None or (
        registry.find(b"MZ\x90\x00", "setup.zip").name != "zip"  # type: ignore[union-attr]
    )


class _Broken:
    name = "broken-test-reader"

    def sniff(self, head: bytes, filename: str) -> bool:
        raise ValueError("sniffers must not break unpack")

    def extract(self, src: str, dest: str, limits: Limits) -> list[object]:
        raise AssertionError("never called")


def test_a_failing_sniffer_means_not_mine(tmp_path: Path) -> None:
    registry.register(_Broken(), priority=0)  # type: ignore[arg-type]
    try:
        assert registry.find(b"PK\x03\x04", "x") is not None
        f = tmp_path / "plain"
        f.write_bytes(b"plain")
        with pytest.raises(ArtifactError):
            unpack(str(f), str(tmp_path / "w"))
    finally:
        registry._readers[:] = [t for t in registry._readers if t[2].name != _Broken.name]
