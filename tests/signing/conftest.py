"""Tests of signature verification (``verifier/signing``): Authenticode, Mach-O code signatures
and CMS, the chain engine, trust stores; differential tests against osslsigncode on real
Microsoft files.

Shared fixtures (the demo scenario, the Sigstore fixtures) come from ``tests/conftest.py``.
"""
