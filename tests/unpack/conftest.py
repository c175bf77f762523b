"""Tests of artifact readers (``verifier/unpack``): zip, tar, asar, installers, nested
archives, the sandbox, and archives as real extractors see them (hostile members, links, names).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.unpack_helpers import Box


@pytest.fixture
def box(tmp_path: Path) -> Box:
    """A sandbox for unpack tests (see ``support.unpack_helpers.Box``)."""
    return Box(tmp_path)
