"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.unpack_helpers import Box


@pytest.fixture(scope="session", autouse=True)
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """biv's default cache and config directories (platformdirs: the analysis cache and its
    key, fetched releases) are private to the test session, never the user's."""
    import os

    base = tmp_path_factory.mktemp("user-dirs")
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config")):
        os.environ[var] = str(base / sub)


@pytest.fixture
def box(tmp_path: Path) -> Box:
    """A sandbox for unpack tests (see ``support.unpack_helpers.Box``)."""
    return Box(tmp_path)
