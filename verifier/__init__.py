"""biv: build-integrity verifier.

Compares shipped, code-signed artifacts with the upstream releases they were built from.
The public API lives in :mod:`verifier.api`; the CLI (:mod:`verifier.cli`) only wires it.
"""

__version__ = "0.1.0"
