"""Tests of signed verdicts (``verifier/attest``): in-toto links and layouts, SLSA VSA, DSSE,
Sigstore signing and verification of attestations, and their CLI.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
