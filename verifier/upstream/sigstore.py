"""Verify an upstream source's Sigstore bundle offline, against an identity policy.

``verify_source_bundle(artifact, bundle, identity)`` checks, with sigstore-python and its
embedded trust root (``Verifier.production(offline=True)`` or ``.staging``), that ``bundle``
signs exactly the bytes of ``artifact`` and that the signing certificate's identity (SAN) and
OIDC issuer match the policy (exact strings or regular expressions, matched in full).
``source_bundle_anomaly`` turns a failure into a ``reference-mismatch`` anomaly.

Part of the upstream stage (a reference is proven before it is used); ``attest`` uses it too
(``biv attest verify-bundle``) and shares its identity matching and log settings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from verifier.errors import ReferenceMismatchError, UsageError
from verifier.hashing import sha256_file
from verifier.model import Anomaly, SigstoreIdentity
from verifier.record import record

if TYPE_CHECKING:
    from cryptography import x509

MAX_BUNDLE_BYTES = 4 << 20
_OID_SAN_OTHERNAME = "1.3.6.1.4.1.57264.1.7"
_OID_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
_OID_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"


def _der_utf8(value: bytes) -> str | None:
    """Decode a DER UTF8String (tag 0x0c), short or long length form."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    n = value[1]
    off = 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or len(value) < 2 + k:
            return None
        n = int.from_bytes(value[2 : 2 + k], "big")
        off = 2 + k
    if off + n != len(value):
        return None
    try:
        return value[off:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def cert_identities(cert: x509.Certificate) -> tuple[set[str], str | None]:
    """(SAN identities, OIDC issuer) of a Fulcio certificate."""
    from cryptography import x509

    sans: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans.update(san.get_values_for_type(x509.RFC822Name))
        sans.update(san.get_values_for_type(x509.UniformResourceIdentifier))
        for on in san.get_values_for_type(x509.OtherName):
            if on.type_id.dotted_string == _OID_SAN_OTHERNAME:
                v = _der_utf8(on.value)
                sans.add(v if v is not None else on.value.decode("utf-8", "replace"))
    except x509.ExtensionNotFound:
        pass
    issuer: str | None = None
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        raw = getattr(ext.value, "value", None)
        if not isinstance(raw, bytes):
            continue
        if oid == _OID_ISSUER_V2:
            issuer = _der_utf8(raw) or issuer
        elif oid == _OID_ISSUER_V1 and issuer is None:
            issuer = raw.decode("utf-8", "replace")
    return sans, issuer


@record
class IdentityPolicy:
    """A sigstore-python ``VerificationPolicy``: identity and issuer, exact or regex."""

    identity: str | None = None
    identity_regex: str | None = None
    issuer: str | None = None
    issuer_regex: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.identity_regex is None):
            raise UsageError("give exactly one of identity or identity_regex")
        if (self.issuer is None) == (self.issuer_regex is None):
            raise UsageError("give exactly one of issuer or issuer_regex")
        for rx in (self.identity_regex, self.issuer_regex):
            if rx is not None:
                try:
                    re.compile(rx)
                except re.error as e:
                    raise UsageError(f"invalid regular expression {rx!r}: {e}") from None

    @classmethod
    def of(cls, s: SigstoreIdentity) -> IdentityPolicy:
        return cls(s.identity, s.identity_regex, s.issuer, s.issuer_regex)

    def describe(self) -> str:
        ident = self.identity if self.identity is not None else f"/{self.identity_regex}/"
        iss = self.issuer if self.issuer is not None else f"/{self.issuer_regex}/"
        return f"identity {ident} issued by {iss}"

    def verify(self, cert: x509.Certificate) -> None:
        from sigstore.errors import VerificationError

        sans, issuer = cert_identities(cert)
        if self.issuer is not None:
            ok_issuer = issuer == self.issuer
        else:
            assert self.issuer_regex is not None
            ok_issuer = issuer is not None and re.fullmatch(self.issuer_regex, issuer) is not None
        if not ok_issuer:
            want = self.issuer if self.issuer is not None else f"/{self.issuer_regex}/"
            raise VerificationError(f"certificate OIDC issuer is {issuer!r}, expected {want}")
        if self.identity is not None:
            ok = self.identity in sans
        else:
            assert self.identity_regex is not None
            ok = any(re.fullmatch(self.identity_regex, s) for s in sans)
        if not ok:
            want = self.identity if self.identity is not None else f"/{self.identity_regex}/"
            raise VerificationError(f"certificate identity {sorted(sans)} does not match {want}")


def quiet_sigstore_logs() -> None:
    """sigstore-python warns on every offline trust-root load; biv says so itself."""
    logging.getLogger("sigstore").setLevel(logging.ERROR)


def _read(path: str, what: str, cap: int | None = None) -> bytes:
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(cap + 1 if cap else -1)
    except OSError as e:
        raise UsageError(f"cannot read {what}: {e.strerror or e}", where=path) from None
    if cap and len(data) > cap:
        raise ReferenceMismatchError(f"{what} larger than {cap} bytes", where=path)
    return data


def _sha256_file(path: str) -> bytes:
    try:
        return bytes.fromhex(sha256_file(path))
    except OSError as e:
        raise UsageError(f"cannot read artifact: {e.strerror or e}", where=path) from None


def verify_source_bundle(
    artifact: str,
    bundle: str,
    policy: IdentityPolicy,
    *,
    staging: bool = False,
    offline: bool = True,
) -> tuple[str, ...]:
    """Verify ``bundle`` for ``artifact``; returns human-readable proof steps.

    Raises ``ReferenceMismatchError`` when the bundle does not verify (wrong bytes, identity,
    issuer, or a bundle that is not valid) and ``UsageError`` for unreadable files.
    """
    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore.verify import Verifier
    from sigstore_models.common.v1 import HashAlgorithm

    raw = _read(bundle, "Sigstore bundle", MAX_BUNDLE_BYTES)
    digest = _sha256_file(artifact)
    quiet_sigstore_logs()
    try:
        b = Bundle.from_json(raw)
    except (SigstoreError, ValueError) as e:
        raise ReferenceMismatchError(f"not a valid Sigstore bundle: {e}", where=bundle) from None
    try:
        verifier = (
            Verifier.staging(offline=offline) if staging else Verifier.production(offline=offline)
        )
    except SigstoreError as e:
        raise ReferenceMismatchError(
            f"cannot load the Sigstore trust root: {e}", where=bundle
        ) from None
    try:
        verifier.verify_artifact(Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest), b, policy)
    except (SigstoreError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ReferenceMismatchError(
            f"Sigstore bundle does not verify for {Path(artifact).name}: {msg}", where=bundle
        ) from None
    instance = "staging" if staging else "production"
    return (
        f"sha256 {digest.hex()} signed in Sigstore bundle {Path(bundle).name} "
        f"({instance} trust root, offline) by {policy.describe()}",
    )


def source_bundle_anomaly(
    artifact: str,
    bundle: str,
    policy: IdentityPolicy,
    *,
    staging: bool = False,
    offline: bool = True,
) -> Anomaly | None:
    """None when the bundle verifies, else a ``reference-mismatch`` anomaly for the source."""
    try:
        verify_source_bundle(artifact, bundle, policy, staging=staging, offline=offline)
    except ReferenceMismatchError as e:
        return Anomaly(
            "reference-mismatch",
            e.message,
            {"bundle": bundle, "artifact": artifact, "identity_policy": policy.describe()},
        )
    return None


# --- for the upstream stage: SOURCE options and policy components ---------------------------

_OPTION_KEYS = {
    "bundle": "bundle",
    "identity": "identity",
    "identity_regex": "identity_regex",
    "identity-regexp": "identity_regex",
    "issuer": "issuer",
    "issuer_regex": "issuer_regex",
    "issuer-regexp": "issuer_regex",
    "instance": "instance",
}


def identity_for_source(
    options: Mapping[str, str], declared: SigstoreIdentity | None = None
) -> SigstoreIdentity | None:
    """The Sigstore identity policy of one source.

    ``options``: the SOURCE's options (``electron:28.1.0,bundle=F,identity=ID,issuer=I``;
    also ``identity_regex``/``issuer_regex``, ``instance=staging``); ``declared``: the policy
    component's ``sigstore`` entry (``Policy.sigstore_for(source)``). Options win. None when
    the source has no bundle requirement at all.
    """
    if declared is None and not any(k in options for k in _OPTION_KEYS):
        return None
    fields: dict[str, str | None] = {}
    if declared is not None:
        fields = {
            "bundle": declared.bundle,
            "identity": declared.identity,
            "identity_regex": declared.identity_regex,
            "issuer": declared.issuer,
            "issuer_regex": declared.issuer_regex,
            "instance": declared.instance,
        }
    for k, v in options.items():
        name = _OPTION_KEYS.get(k)
        if name is None:
            continue
        if name in ("identity", "identity_regex"):
            fields.pop("identity", None)
            fields.pop("identity_regex", None)
        if name in ("issuer", "issuer_regex"):
            fields.pop("issuer", None)
            fields.pop("issuer_regex", None)
        fields[name] = v
    instance = fields.get("instance") or "production"
    if instance not in ("production", "staging"):
        raise UsageError(f"instance={instance}: expected production or staging")
    return SigstoreIdentity(
        identity=fields.get("identity"),
        identity_regex=fields.get("identity_regex"),
        issuer=fields.get("issuer"),
        issuer_regex=fields.get("issuer_regex"),
        bundle=fields.get("bundle"),
        instance=instance,
    )


def check_source(
    artifact: str, ident: SigstoreIdentity, *, offline: bool = True
) -> tuple[tuple[str, ...], tuple[Anomaly, ...]]:
    """Verify the downloaded ``artifact`` of a source against its Sigstore identity policy.

    Returns (proof lines for ``Component.proof``, problems for ``Reference.problems``). A
    failure is one ``reference-mismatch`` anomaly: the reference must then not be used.
    ``ident.bundle`` defaults to ``ARTIFACT.sigstore``. Raises ``UsageError`` when the
    identity policy is incomplete (no identity or no issuer).
    """
    policy = IdentityPolicy.of(ident)
    bundle = ident.bundle or f"{artifact}.sigstore"
    staging = ident.instance == "staging"
    if not Path(bundle).is_file():
        return (), (
            Anomaly(
                "reference-mismatch",
                f"Sigstore bundle {bundle} not found: the source cannot be proven",
                {"bundle": bundle, "artifact": artifact, "identity_policy": policy.describe()},
            ),
        )
    try:
        proof = verify_source_bundle(artifact, bundle, policy, staging=staging, offline=offline)
    except ReferenceMismatchError as e:
        ev = {"bundle": bundle, "artifact": artifact, "identity_policy": policy.describe()}
        return (), (Anomaly("reference-mismatch", e.message, ev),)
    return proof, ()
