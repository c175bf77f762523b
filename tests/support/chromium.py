"""Headless Chromium for the HTML report's screenshots (``support.png`` reads them)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp: Path, *args: str, size: str = "1280,2000") -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    profile.mkdir()
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            *args,
        ],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(tmp)},
    )
