"""``analyze``: sniff a file's format and hand it to that format's analysis, once.

``analyze`` never raises on bad bytes: a file that looks like a binary but cannot be parsed
safely gets a ``malformed-input`` anomaly, which fails the verdict (this is the one boundary
where parser faults become findings).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable

from verifier.analysis.context import AnalysisContext
from verifier.analysis.macho import analyze_macho
from verifier.analysis.pe import analyze_pe
from verifier.binary import cafebabe
from verifier.binary.elf_digests import analyze_elf
from verifier.binary.sniff import SNIFF, is_fat, sniff
from verifier.errors import MalformedInputError
from verifier.hashing import sha256_file
from verifier.model import Anomaly, BinaryFacts, Blob, FileFormat

_PARSER_SLIPS = (struct.error, IndexError, KeyError, ValueError, OverflowError, UnicodeError)


def _crypto_slips() -> tuple[type[Exception], ...]:
    """cryptography's errors on certificates inside signatures (UnsupportedAlgorithm,
    InvalidVersion), which derive from Exception only: fuzzing found both escaping
    (tests/fuzz/regressions/). cryptography is loaded where a signature is checked, so
    before it is loaded none of them can have been raised."""
    if "cryptography" not in sys.modules:
        return ()
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.x509 import InvalidVersion

    return (UnsupportedAlgorithm, InvalidVersion)


_Handler = Callable[[Blob, str, AnalysisContext, bytes, str | None], tuple[str, BinaryFacts]]


def _pe(
    blob: Blob, name: str, ctx: AnalysisContext, head: bytes, known: str | None
) -> tuple[str, BinaryFacts]:
    return analyze_pe(blob, name, ctx, head, known)


def _elf(
    blob: Blob, name: str, ctx: AnalysisContext, head: bytes, known: str | None
) -> tuple[str, BinaryFacts]:
    return analyze_elf(blob, core=ctx.core, known=known)


def _macho(
    blob: Blob, name: str, ctx: AnalysisContext, head: bytes, known: str | None
) -> tuple[str, BinaryFacts]:
    return analyze_macho(blob, name, ctx, known)


_HANDLERS: dict[FileFormat, _Handler] = {
    FileFormat.PE: _pe,
    FileFormat.ELF: _elf,
    FileFormat.MACHO: _macho,
}


def analyze(
    blob: Blob, name: str, ctx: AnalysisContext | None = None, sha256: str | None = None
) -> tuple[str, BinaryFacts]:
    """``(sha256, facts)`` of ``blob`` (``name`` is for messages), every digest in one pass.

    ``sha256``: the blob's digest when the caller already has it (unpack hashed the file):
    it is not computed again.
    """
    ctx = ctx or AnalysisContext()
    head = blob.read(0, SNIFF)
    fmt = sniff(head, blob.size)
    fat = fmt == FileFormat.MACHO and is_fat(head)
    if fat and cafebabe.classify(blob.read, blob.size) != "macho":
        fmt = FileFormat.DATA  # a Java class, or bytes no loader would run
    handler = _HANDLERS.get(fmt)
    if handler is None:
        # ASAR and data: the plain sha256 only (ASAR members are inventoried by unpack)
        sha = sha256 or sha256_file(blob.path, blob.offset, blob.size)
        return sha, BinaryFacts(format=fmt, normalized_sha256=sha)
    try:
        return handler(blob, name, ctx, head, sha256)
    except MalformedInputError as exc:
        return _malformed(blob, name, fmt, exc)
    except Exception as exc:
        if not isinstance(exc, _PARSER_SLIPS + _crypto_slips()):
            raise
        # A parser that let a low-level error through: still the input's fault as far as
        # the verdict goes, never a crash.
        err = MalformedInputError(f"{type(exc).__name__}: {exc}")
        return _malformed(blob, name, fmt, err)


def _malformed(
    blob: Blob, name: str, fmt: FileFormat, exc: MalformedInputError
) -> tuple[str, BinaryFacts]:
    sha = sha256_file(blob.path, blob.offset, blob.size)
    msg = f"{name}: cannot parse as {fmt.value}: {exc.message}"
    anomaly = Anomaly("malformed-input", msg, {"format": fmt.value})
    return sha, BinaryFacts(format=fmt, anomalies=(anomaly,))
