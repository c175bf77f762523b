"""Apple's trust anchors for Mach-O code signatures, and signers as biv names them.

Apple Root CA(s) and the Developer ID intermediates ship as package data
(``verifier/data/apple``); ``--trust-store`` roots are added to them. A Mach-O signer's team
id is its certificate's organizational unit.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from importlib import resources

from verifier.errors import MalformedInputError, UsageError
from verifier.model import Signer
from verifier.signing.certs import Cert, name_attributes
from verifier.signing.chain import issued_by
from verifier.signing.trust import Anchor, RootStore, load_pem_roots, pem_certs


@lru_cache(maxsize=1)
def apple_certificates() -> tuple[Cert, ...]:
    """Apple Root CA(s) and Developer ID intermediates shipped as package data."""
    certs: list[Cert] = []
    root = resources.files("verifier") / "data" / "apple"
    if not root.is_dir():
        return ()
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".pem"):
            for der in pem_certs(entry.read_bytes()):
                with contextlib.suppress(ValueError):
                    certs.append(Cert.from_der(der))
    return tuple(certs)


def apple_roots() -> tuple[Cert, ...]:
    """The self-signed certificates among Apple's package data: the trust anchors."""
    return tuple(c for c in apple_certificates() if c.self_issued and issued_by(c, c))


@lru_cache(maxsize=8)
def macho_roots(extra_pem: tuple[str, ...] = ()) -> RootStore:
    """Apple's roots plus ``--trust-store`` roots (unreadable files were refused earlier, by
    the CLI; here they add nothing)."""
    store = RootStore(Anchor(c, "apple") for c in apple_roots())
    if extra_pem:
        with contextlib.suppress(UsageError):
            store = store + load_pem_roots(extra_pem)
    return store


def signer_of(cert: Cert) -> Signer:
    """A Mach-O signer: the certificate's names, serial and thumbprint, and its team id."""
    team = None
    with contextlib.suppress(MalformedInputError):
        for rdn in name_attributes(cert.subject_der):
            for oid, _tag, raw in rdn:
                if oid == "2.5.4.11" and team is None:
                    team = raw.decode("utf-8", "replace")
    return Signer(
        subject=cert.subject,
        issuer=cert.issuer,
        serial=cert.serial,
        sha256=cert.sha256,
        team_id=team,
    )
