"""Run biv's own command line in a child process, as a user would (``python -m verifier``).

One runner for every CLI test: output captured as text, a generous timeout as a guard against
hangs (a timeout is a failure, never a skip).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

TIMEOUT = 300


def biv(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """``biv ARGS...``; returns the finished process (returncode, stdout, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "verifier", *map(os.fspath, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else dict(env),
        timeout=timeout,
    )
