"""Tests of the private test kit (``verifier/_scenarios``: PE writer, test PKI, osslsigncode
wrapper, 3CX scenario) and ``biv demo``.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
