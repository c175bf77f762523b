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


def test_per_file_pass_measures_every_file_and_the_worst_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst-file pass of ``BENCH=realtree`` (child interpreters running biv's
    analysis): every file gets a row, and only the files furthest over the goal are
    measured a second time, never slower for it."""
    monkeypatch.setenv("BIV_BENCH_INSTALL", "editable")  # this interpreter, this tree
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_realtree as rt
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from verifier._scenarios import pewriter

    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    for i in range(6):
        (tree / f"data{i}.txt").write_bytes(b"x" * (1000 * (i + 1)))
    (tree / "bin" / "app.exe").write_bytes(pewriter.build_pe(pewriter.ffmpeg_dll()))
    calls: list[tuple[int, list[str] | None]] = []
    real = rt.per_file

    def spy(t: Path, rounds: int = 2, only: list[str] | None = None) -> list[dict[str, object]]:
        calls.append((rounds, only))
        return real(t, rounds, only)

    monkeypatch.setattr(rt, "AGAIN_FILES", 2)
    monkeypatch.setattr(rt, "per_file", spy)
    rows = rt.per_file_checked(tree)
    assert sorted(r["path"] for r in rows) == sorted(
        ["bin/app.exe", *(f"data{i}.txt" for i in range(6))]
    )
    assert all(r["analysis_s"] > 0 and r["hash_s"] > 0 for r in rows)
    assert {r["path"]: r["format"] for r in rows}["bin/app.exe"] == "pe"
    assert calls[0] == (2, None)
    assert calls[1][0] == rt.AGAIN_ROUNDS and len(calls[1][1] or []) == 2
    first = {r["path"]: r for r in real(tree)}
    w = rt.worst(rows)
    assert w is not None and w["path"] in (calls[1][1] or [])
    assert w["goal_fraction"] == max(rt._over(r) for r in rows)
    assert set(first) == {r["path"] for r in rows}
