"""Tests of the shape of the code: the import-layer contract and the function-length rule.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
