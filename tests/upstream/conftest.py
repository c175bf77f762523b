"""Tests of references (``verifier/upstream``): sources, fetching, proof, the reference cache,
TUF, Sigstore bundles of sources, the biv.refs/v1 document.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
