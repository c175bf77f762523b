"""Fixtures shared by the test folders (each folder mirrors one part of ``verifier/`` and has
its own ``conftest.py`` for what only it uses).

Expensive scenarios are built once per test session (once per xdist worker) and shared: tests
read them and copy what they change (``shutil.copytree`` into their own ``tmp_path``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.fixtures import SigstoreFiles, sigstore_files

from verifier._scenarios import macho_app
from verifier._scenarios.scenario import Scenario, build_scenario


@pytest.fixture(scope="session", autouse=True)
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """biv's default cache and config directories (platformdirs: the analysis cache and its
    key, fetched releases) are private to the test session, never the user's."""
    import os

    base = tmp_path_factory.mktemp("user-dirs")
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config")):
        os.environ[var] = str(base / sub)


@pytest.fixture(scope="session")
def sig(tmp_path_factory: pytest.TempPathFactory) -> SigstoreFiles:
    """The real Sigstore fixtures, with the rfc8785 wheel beside its bundle (read only)."""
    return sigstore_files(tmp_path_factory.mktemp("sigstore"))


@pytest.fixture(scope="session")
def scenario_build_seconds() -> list[float]:
    """How long building the shared demo scenario took (one entry once it is built)."""
    return []


@pytest.fixture(scope="session")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, scenario_build_seconds: list[float]
) -> Scenario:
    """The 3CX demo scenario (``verifier._scenarios.scenario``): upstream, clean and compromised
    builds, test PKIs. Shared by the session: do not change it, copy it."""
    t = time.monotonic()
    built = build_scenario(tmp_path_factory.mktemp("scenario") / "demo")
    scenario_build_seconds.append(time.monotonic() - t)
    return built


@pytest.fixture(scope="session")
def mac_scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The macOS scenario (``verifier._scenarios.macho_app``): upstream x64/arm64 apps, a clean and
    a 3CX-style vendor app, the test roots. Shared by the session: do not change it, copy it."""
    return macho_app.build_scenario(tmp_path_factory.mktemp("macapp"))
