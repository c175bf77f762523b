"""Tests of comparison and one-to-one pairing of shipped and upstream files
(``verifier/compare.py``, ``verifier/pairing.py``).

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
