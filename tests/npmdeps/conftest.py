"""Tests of ``deps:npm`` (``verifier/npmdeps``): an app's npm dependencies against registry
tarballs.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
