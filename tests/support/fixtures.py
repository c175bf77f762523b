"""Public test data committed under ``tests/fixtures/`` (see its README for provenance).

``fixture(*parts)`` is a committed file; a missing one is an error, never a skip: the fixtures
are part of the repository. ``sigstore_files(dest)`` lays the Sigstore fixtures out in ``dest``
with the rfc8785 wheel (fetched from PyPI, pinned by sha256: ``support.fetch``) beside its
bundle, where biv looks for ``ARTIFACT.sigstore`` by default.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from support.fetch import RFC8785_WHEEL, rfc8785_wheel
from support.paths import FIXTURES


def fixture(*parts: str) -> Path:
    """A committed fixture file or folder (``fixture("sarif", "sarif-schema-2.1.0.json")``)."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"test fixture missing from the repository: {path}")
    return path


@dataclass(frozen=True)
class SigstoreFiles:
    """The real Sigstore fixtures, side by side in one folder."""

    dir: Path
    wheel: Path  # rfc8785 0.1.2 from PyPI
    wheel_bundle: Path  # its production bundle
    staging: Path  # bundle_v3.txt
    staging_bundle: Path  # its staging bundle


def sigstore_files(dest: Path) -> SigstoreFiles:
    """Copy the committed bundles and the pinned wheel into ``dest`` (created)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in fixture("sigstore").iterdir():
        if f.name != "README.md":
            shutil.copyfile(f, dest / f.name)
    wheel = dest / RFC8785_WHEEL
    shutil.copyfile(rfc8785_wheel(), wheel)
    return SigstoreFiles(
        dir=dest,
        wheel=wheel,
        wheel_bundle=dest / f"{RFC8785_WHEEL}.sigstore",
        staging=dest / "bundle_v3.txt",
        staging_bundle=dest / "bundle_v3.txt.sigstore",
    )
