"""Learn everything biv needs about one file in one streaming pass: format, digests and
verified signatures (``analyze``), under an ``AnalysisContext`` (trust, judging time, level).

This stage sits above ``binary`` (parsing, digest plans) and ``signing`` (verification): it
sniffs the format, lets the format's parser plan the views, adds the views signature
verification needs (``signing.pe_signature``, ``signing.macho_signature``), streams the file
once, and assembles ``BinaryFacts``.
"""

from verifier.analysis.context import AnalysisContext
from verifier.analysis.dispatch import analyze

__all__ = ["AnalysisContext", "analyze"]
