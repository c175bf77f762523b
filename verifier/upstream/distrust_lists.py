"""Known-bad digests and revoked signing certificates: the data, without TUF.

``verifier.distrust`` checks every verification against these, so this module stays light
(no TUF or securesystemslib import); ``tuf_publish`` and ``tuf_client`` publish and fetch
the same records.
"""

from __future__ import annotations

from datetime import UTC, datetime

from verifier.record import record

__all__ = ["THREECX_KNOWN_BAD", "KnownBad", "RevokedCert", "parse_time"]


@record
class KnownBad:
    sha256: str
    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"sha256": self.sha256, "name": self.name, "reason": self.reason}


@record
class RevokedCert:
    """A code-signing certificate distrusted for signatures made after ``distrust_after``."""

    sha256: str  # thumbprint: sha256 of the certificate's DER
    distrust_after: str  # ISO 8601 UTC, e.g. "2023-03-01T00:00:00Z"
    subject: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "sha256": self.sha256,
            "distrust_after": self.distrust_after,
            "subject": self.subject,
            "reason": self.reason,
        }

    @property
    def distrust_datetime(self) -> datetime:
        return parse_time(self.distrust_after)


def parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


_3CX = "3CX supply-chain attack (March 2023), public indicator"
THREECX_KNOWN_BAD: tuple[KnownBad, ...] = (
    KnownBad(
        "7986bbaee8940da11ce089383521ab420c443ab7b15ed42aed91fd31ce833896", "ffmpeg.dll", _3CX
    ),
    KnownBad(
        "c485674ee63ec8d4e8fde9800788175a8b02d3f9416d0e763360fff7f8eb4e02", "ffmpeg.dll", _3CX
    ),
    KnownBad(
        "11be1803e2e307b647a8a7e02d128335c448ff741bf06bf52b332e0bbf423b03",
        "d3dcompiler_47.dll",
        _3CX,
    ),
    KnownBad(
        "a64fa9f1c76457ecc58402142a8728ce34ccba378c17318b3340083eeb7acc67",
        "libffmpeg.dylib",
        _3CX,
    ),
    KnownBad(
        "fee4f9dabc094df24d83ec1a8c4e4ff573e5d9973caa676f58086c99561382d7",
        "libffmpeg.dylib",
        _3CX,
    ),
    KnownBad(
        "dde03348075512796241389dfea5560c20a3d2a2eac95c894e7bbed5e85a0acc",
        "3CXDesktopApp.exe",
        _3CX,
    ),
    KnownBad(
        "fad482ded2e25ce9e1dd3d3ecc3227af714bdfbbde04347dbc1b21d6a3670405",
        "3CXDesktopApp.exe",
        _3CX,
    ),
    KnownBad(
        "aa124a4b4df12b34e74ee7f6c683b2ebec4ce9a8edcf9be345823b4fdcf5d868",
        "3CXDesktopApp.msi",
        _3CX,
    ),
    KnownBad(
        "59e1edf4d82fae4978e97512b0331b7eb21dd4b838b850ba46794d9c7a2c0983",
        "3CXDesktopApp.msi",
        _3CX,
    ),
)
