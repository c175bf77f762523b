"""Tests of the command line end to end (``verifier/cli.py`` over ``verifier/api.py``): exit
codes, output formats, progress, the GitHub Action, hostile inputs at run time (signals,
deadlines, untrusted strings).

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
