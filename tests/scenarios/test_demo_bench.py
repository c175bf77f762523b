"""Smoke tests of benchmarks/run.py helpers (the full benchmark runs with ``make bench``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support.paths import REPO

BENCH = REPO / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("biv_bench_run", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["biv_bench_run"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_run_child_measures_the_command_not_the_parent(bench: ModuleType) -> None:
    ballast = bytearray(300 << 20)  # this process is now > 300 MiB
    ballast[::4096] = b"\1" * len(ballast[::4096])
    sec, rss, rc, _err = bench.run_child([sys.executable, "-S", "-c", "x = bytearray(64 << 20)"])
    assert rc == 0 and sec > 0
    assert rss is not None and 64 * 1024 < rss < 200 * 1024  # KiB: the child's 64 MiB, not ours
    sec, rss, rc, _err = bench.run_child(["exit 3"], shell=True)
    assert rc == 3
    del ballast


def test_run_child_reads_self_timing(bench: ModuleType) -> None:
    code = "import sys, time; time.sleep(0.3); print('@@T 0.001', file=sys.stderr)"
    sec, _rss, rc, _err = bench.run_child([sys.executable, "-c", code])
    assert rc == 0 and sec == pytest.approx(0.001)


def test_make_tree_sizes_and_reuse(bench: ModuleType, tmp_path: Path) -> None:
    files, nbytes = bench.make_tree(tmp_path / "t", 60, 3 << 20, signed_pes=0)
    assert files == 60
    assert abs(nbytes - (3 << 20)) < (3 << 20) * 0.05
    pes = list((tmp_path / "t" / "bin").iterdir())
    assert len(pes) == 5 and all(p.read_bytes()[:2] == b"MZ" for p in pes)
    marker = (tmp_path / "t" / ".biv-bench").stat().st_mtime_ns
    assert bench.make_tree(tmp_path / "t", 60, 3 << 20, signed_pes=0) == (files, nbytes)
    assert (tmp_path / "t" / ".biv-bench").stat().st_mtime_ns == marker  # reused, not rebuilt


def test_hash_tree_baseline_runs(bench: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 1000)
    for tool in ("sha256sum", "openssl"):
        _sec, _rss, rc, err = bench.run_child(
            [bench.hash_tree_cmd(tool, str(tmp_path), 2)], shell=True
        )
        assert rc == 0, err


def test_create_cost_measures_and_leaves_nothing(bench: ModuleType, tmp_path: Path) -> None:
    """The header's file-creation probe: a time per file, and its files removed."""
    cost = bench.create_cost(tmp_path, 20)
    assert set(cost) == {"wall_us", "system_us"}
    assert cost["wall_us"] > 0 and cost["system_us"] >= 0
    assert list(tmp_path.iterdir()) == []
