"""Tests of policies (``verifier/policy``): loading, evaluation, inherited anomalies.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
