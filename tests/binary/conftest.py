"""Tests of parsing and normalisation of PE, Mach-O and ELF (``verifier/binary``), and the
explanation of a divergence (changes, disassembly, structure).

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
