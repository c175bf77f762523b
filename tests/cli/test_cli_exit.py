"""How the command line ends (``cli.run``): at once, once its output is out.

biv ends its process with ``os._exit`` after flushing the standard streams, so that a large
run does not spend its last tens of milliseconds freeing objects one by one. These tests
hold it to what a normal exit gave: every byte of a report far larger than a pipe's buffer
reaches the reader, the exit code is the verdict's, and no work directory is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from support.cli import biv


def _env(**extra: str) -> dict[str, str]:
    """biv's environment with its standard output buffered, as it is for most users (this
    machine's shell sets PYTHONUNBUFFERED, under which there is nothing left to flush)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return {**env, **extra}


def _tree(root: Path, n: int) -> Path:
    for i in range(n):
        p = root / f"d{i % 9}" / f"file-{i:05d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(hashlib.sha256(str(i).encode()).digest())
    return root


def test_a_report_larger_than_a_pipe_buffer_arrives_whole(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "app", 800)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = biv(
        "verify", tree, "--against", f"path:{tree}", "--format", "json", env=_env(TMPDIR=str(tmp))
    )
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) > 256 << 10  # several pipe buffers' worth
    doc = json.loads(p.stdout)
    assert doc["verdict"] == "pass"
    assert len(doc["files"]) == 800
    assert list(tmp.iterdir()) == []  # its work directories removed before it ended


def test_the_exit_code_is_the_verdicts(tmp_path: Path) -> None:
    """A tampered file fails the run: exit code 1 through the same ending, and a report
    smaller than the stream's buffer (held there until the flush) is out too."""
    up = _tree(tmp_path / "up", 3)
    shipped = _tree(tmp_path / "shipped", 3)
    (shipped / "d0" / "file-00000.txt").write_bytes(b"tampered")
    p = biv("verify", shipped, "--against", f"path:{up}", "--format", "json", env=_env())
    assert 0 < len(p.stdout) < 8 << 10
    doc = json.loads(p.stdout)
    assert p.returncode == 1, p.stderr
    assert doc["verdict"] == "fail"
