"""Tests of replays of the fuzzing corpus and of every crash the fuzzers found (``make fuzz``
runs the fuzzers).

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
