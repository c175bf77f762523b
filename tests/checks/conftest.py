"""Tests of the checks stage (``verifier/checks``): macOS bundle seals, Electron fuses and ASAR
integrity.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
