"""One error hierarchy for biv, split by where the fault lies.

Every error carries the exit code the CLI uses for it (docs/contract.md "Exit codes") and a
one-line ``diagnostics()`` for the user. Nothing below ``BivError`` ever reaches the user
as a traceback.
"""

from __future__ import annotations


class BivError(Exception):
    """Base of every error biv raises on purpose."""

    exit_code: int = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def diagnostics(self) -> str:
        """One line saying what went wrong and where."""
        if self.where:
            return f"{self.where}: {self.message}"
        return self.message


# --- the user's fault: exit 2 -------------------------------------------------------------


class UsageError(BivError):
    """Bad command line, missing file, unknown source scheme."""


class ArtifactError(BivError):
    """The top-level artifact cannot be read at all."""


class PolicyError(BivError):
    """A policy file that is not valid (names file, line and key in ``where``)."""


# --- the input's fault: becomes a finding --------------------------------------------------


class MalformedInputError(BivError):
    """Untrusted bytes that biv cannot parse safely (hostile, truncated, corrupt).

    Raised by parsers; the stage that called the parser turns it into a
    ``malformed-input`` or ``invalid-signature`` finding. Never a pass.
    """


class LimitExceededError(MalformedInputError):
    """A cap on size, count, ratio or depth was hit."""


class SchemaError(MalformedInputError):
    """A JSON document biv reads back (a ``biv.refs/v1`` inventory, a cache record) whose
    shape is not its schema's: a missing key, a wrong type, an unknown key or enum value.

    ``where`` is the key path (``files[3].sections[0].size``). A ``path:`` source that is such
    a document is a usage error (exit 2); a fetched one is not a usable reference.
    """


# --- the network's / upstream's fault ----------------------------------------------------


class ReferenceUnavailableError(BivError):
    """A reference that must be fetched could not be obtained (exit 3)."""

    exit_code = 3


class ReferenceMismatchError(BivError):
    """A fetched reference failed verification (becomes ``reference-mismatch``)."""


class ToolMissingError(BivError):
    """An external tool (7z, msiextract, ...) that this input needs is not installed."""
