"""Where ``shared/`` (DESIGN.md and public fixtures) is: beside the checkout, or as given.

CI clones the repository into a fresh folder with a copy of ``shared/`` beside it; a developer
may have it elsewhere (``$BIV_SHARED``). Tests that need it fail with a clear message when it
cannot be found: the fixtures are part of the project's test data, not optional.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def shared_dir() -> Path:
    candidates = [os.environ.get("BIV_SHARED"), ROOT.parent / "shared", "/work/shared"]
    for c in candidates:
        if c and (Path(c) / "fixtures").is_dir():
            return Path(c)
    where = "looked at $BIV_SHARED, ../shared, /work/shared"
    if os.environ.get("BIV_ALLOW_MISSING_SHARED") == "1":
        # a checkout without the project's shared/ folder (e.g. the GitHub workflow)
        import pytest

        pytest.skip(f"shared/ fixtures not available ({where})", allow_module_level=True)
    raise FileNotFoundError(f"shared/ not found ({where}); set BIV_SHARED")


def fixture(*parts: str) -> Path:
    return shared_dir().joinpath("fixtures", *parts)
