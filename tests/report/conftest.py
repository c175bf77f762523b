"""Tests of renderers (``verifier/report``): SARIF, HTML, and the release-to-release baseline.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
