"""Tests of the real-world corpus gate: genuine packages from PyPI and npm verified against
themselves (``manifest.toml``; ``make corpus`` runs every tier).

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
