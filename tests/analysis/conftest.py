"""Tests of the one analysis pass per file (``verifier/analysis``), the analysis cache and the
digests it shares (``hashing``).

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
