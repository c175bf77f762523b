"""npm dependencies inside an Electron app, verified against the registry (``deps:npm``).

docs/contract.md "npm dependencies". The stage runs after the comparison of the
artifact with its other upstreams and re-judges the files that sit in npm package folders:

    FileResults --discover--> packages (name, version, install path, files) + lockfiles
    packages --registry (fetch, prove, cache)--> published tarball inventories
    package folder x tarball inventory --judge--> FileResults (status per file), anomalies
    --> Components (one per dependency: version, integrity, how it was proven)

Modules: ``manifest`` (package.json, read defensively and compared as JSON), ``discover``,
``lockfile`` (package-lock v1-v3, npm-shrinkwrap, yarn v1), ``tarball`` (the published
files, read in process with caps), ``registry`` (fetch, prove, cache), ``judge`` (statuses),
``stage`` (the whole stage, called by ``verifier.api``).
"""

from __future__ import annotations

SOURCE = "deps:npm"


def is_deps_source(source: str) -> bool:
    """``deps:npm`` (options after commas are allowed and ignored)."""
    return source.split(",", 1)[0].strip() == SOURCE
