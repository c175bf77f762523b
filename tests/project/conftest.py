"""Tests of the shape of the code: the import-layer contract, imports at module top, the
function-length rule, and citations of the contract that resolve inside the repository.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
