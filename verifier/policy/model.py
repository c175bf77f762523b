"""The policy model: what "built from upstream" means for one application.

``Policy.default()`` is biv's packaged Electron policy (docs/contract.md "Default policy"); it
is the same policy as ``policies/electron-app.yaml`` (a test asserts it). Policy files are read by
``verifier.policy.load``; ``verifier.policy.evaluate`` applies a policy to comparison results.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import field
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from verifier.model import JSON, Severity, Signer, SigstoreIdentity, Waiver
from verifier.record import record

DEFAULT_POLICY_NAME = "electron-app"


class SignerRequirement(StrEnum):
    """What a signer rule demands of the files its path glob matches."""

    #: signed, by a signer that matches the rule's constraints (subject, issuer, thumbprint...)
    SIGNED = "signed"
    #: signed by upstream's signer only (same certificate), no other signature added
    UPSTREAM_SIGNER_ONLY = "upstream-signer-only"
    #: unsigned, or signed by the vendor (the rule's constraints, else the policy's ``vendor``);
    #: a vendor signature nested in an intact upstream signature is accepted too
    UNSIGNED_OR_VENDOR_SIGNED = "unsigned-or-vendor-signed"
    #: no signature at all
    UNSIGNED = "unsigned"


@record
class SignerMatcher:
    """Constraints on a signing certificate; every constraint given must hold."""

    subject: str | None = None  # regular expression, searched in the subject DN
    issuer: str | None = None  # regular expression, searched in the issuer DN
    thumbprints: tuple[str, ...] = ()  # sha256 of the certificate DER, lower-case hex
    team_ids: tuple[str, ...] = ()  # Apple Team IDs

    @property
    def empty(self) -> bool:
        return not (self.subject or self.issuer or self.thumbprints or self.team_ids)

    def matches(self, signer: Signer) -> bool:
        if self.subject is not None and not re.search(self.subject, signer.subject):
            return False
        if self.issuer is not None and not re.search(self.issuer, signer.issuer):
            return False
        if self.thumbprints and signer.sha256.lower() not in self.thumbprints:
            return False
        return not (self.team_ids and (signer.team_id or "") not in self.team_ids)

    def describe(self) -> str:
        parts = []
        if self.subject is not None:
            parts.append(f"subject ~ /{self.subject}/")
        if self.issuer is not None:
            parts.append(f"issuer ~ /{self.issuer}/")
        if self.thumbprints:
            parts.append("thumbprint in [" + ", ".join(t[:12] for t in self.thumbprints) + "]")
        if self.team_ids:
            parts.append("team id in [" + ", ".join(self.team_ids) + "]")
        return " and ".join(parts) or "any signer"

    def to_dict(self) -> JSON:
        d: JSON = {}
        if self.subject is not None:
            d["subject"] = self.subject
        if self.issuer is not None:
            d["issuer"] = self.issuer
        if self.thumbprints:
            d["thumbprint"] = list(self.thumbprints)
        if self.team_ids:
            d["team_id"] = list(self.team_ids)
        return d


@record
class SignerRule:
    path: str  # glob
    require: SignerRequirement
    signer: SignerMatcher = SignerMatcher()
    reason: str = ""


@record
class WaiverRule:
    """A waiver: suppresses findings on exactly the file with ``sha256`` until ``expires``."""

    sha256: str  # of the covered file (shipped; for missing-file, the upstream file)
    reason: str
    expires: date  # last day the waiver applies
    rule: str | None = None  # None: any rule
    path: str | None = None  # glob; None: any path
    index: int = 0  # position among the policy's waivers, for messages
    where: str = field(default="", compare=False)  # FILE:LINE: key of its definition

    def to_waiver(self) -> Waiver:
        return Waiver(reason=self.reason, expires=self.expires.isoformat(), sha256=self.sha256)

    def expired(self, today: date) -> bool:
        return today > self.expires


@record
class ComponentSpec:
    name: str
    source: str  # a SOURCE string, e.g. "electron:28.1.0"
    sigstore: SigstoreIdentity | None = None


@record
class NpmPin:
    """``npm_dependencies.pin``: NAME@VERSION's tarball must also match ``integrity``."""

    name: str
    version: str
    integrity: str  # Subresource Integrity: ``sha512-BASE64`` (several hashes allowed)


#: the source that turns on the check of the app's npm dependencies
#: (docs/contract.md "npm dependencies")
NPM_DEPS_SOURCE = "deps:npm"
#: what biv compares with when a policy names no upstream of its own (only ``deps:npm``)
IMPLIED_SOURCE = "electron:auto"


def _frozen_map(m: Mapping[str, Severity] | None = None) -> Mapping[str, Severity]:
    return MappingProxyType(dict(m or {}))


@record
class Policy:
    name: str = DEFAULT_POLICY_NAME
    extends: str | None = None
    description: str = ""
    components: tuple[ComponentSpec, ...] = ()
    #: the renamed Electron main executable (compare sets ``evidence["renamed_from"]``) may be
    #: ``resources-only`` (rcedit changes its icon and version resources, fuses may be flipped)
    allow_renamed_main: bool = True
    allow_resources_only: tuple[str, ...] = ()  # globs
    allow_missing: tuple[str, ...] = ()  # globs
    allow_changed: tuple[str, ...] = ()  # globs: unsigned files that may differ from upstream
    own: tuple[str, ...] = ()  # globs: the application's own files
    vendor: SignerMatcher | None = None  # the vendor's signing identity
    signer_rules: tuple[SignerRule, ...] = ()
    severity: Mapping[str, Severity] = field(default_factory=_frozen_map, hash=False)
    fail_on: Severity | None = None
    waivers: tuple[WaiverRule, ...] = ()
    #: ``inherited: keep``: anomalies upstream's file has too keep their own severity
    #: (default ``info``: docs/contract.md "Judge the change, not the upstream")
    keep_inherited: bool = False
    #: npm dependencies: package-name patterns not checked, and integrity pins
    npm_skip: tuple[str, ...] = ()
    npm_pins: tuple[NpmPin, ...] = ()
    source_path: str | None = field(default=None, compare=False)
    sha256: str | None = field(default=None, compare=False)  # of the policy file

    @classmethod
    def default(cls) -> Policy:
        """biv's packaged Electron policy (identical to ``policies/electron-app.yaml``)."""
        return _DEFAULT

    def sources(self) -> tuple[str, ...]:
        """The SOURCE strings of the policy's components (used when no --against is given)."""
        return tuple(c.source for c in self.components)

    def effective_sources(self) -> tuple[str, ...]:
        """What is compared without --against: the components' sources, plus
        ``electron:auto`` first when they name no upstream (only ``deps:npm``, or nothing)."""
        declared = tuple(dict.fromkeys(self.sources()))
        if all(s.split(",", 1)[0] == NPM_DEPS_SOURCE for s in declared):
            return (IMPLIED_SOURCE, *declared)
        return declared

    def sigstore_for(self, source: str) -> SigstoreIdentity | None:
        """The Sigstore identity policy declared for ``source`` (a component's SOURCE)."""
        for c in self.components:
            if c.source == source and c.sigstore is not None:
                return c.sigstore
        return None

    def severity_of(self, rule: str, default: Severity) -> Severity:
        return self.severity.get(rule, default)

    def describe(self) -> JSON:
        """``{name, path, sha256}`` for the report's ``policy`` field.

        ``sha256`` is the policy file's digest, or for the packaged default (no file) the
        digest of its canonical JSON summary (``canonical_sha256``).
        """
        return {
            "name": self.name,
            "path": self.source_path,
            "sha256": self.sha256 or self.canonical_sha256(),
        }

    def canonical_sha256(self) -> str:
        """sha256 of the canonical JSON of the policy's rules (stable across runs)."""
        d = self.to_dict()
        d["description"] = self.description
        d["vendor"] = self.vendor.to_dict() if self.vendor else None
        d["components"] = [
            {"name": c.name, "source": c.source, "sigstore": c.sigstore is not None}
            for c in self.components
        ]
        d["waivers"] = [
            [w.rule, w.path, w.sha256, w.expires.isoformat(), w.reason] for w in self.waivers
        ]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """A plain summary (used by ``biv policy check``)."""
        return {
            "name": self.name,
            "extends": self.extends,
            "components": [c.name for c in self.components],
            "allow": {
                "renamed_main_executable": self.allow_renamed_main,
                "resources_only": list(self.allow_resources_only),
                "missing": list(self.allow_missing),
                "changed": list(self.allow_changed),
            },
            "own": list(self.own),
            "signers": [
                {"path": r.path, "require": r.require.value, **r.signer.to_dict()}
                for r in self.signer_rules
            ],
            "severity": {k: v.value for k, v in sorted(self.severity.items())},
            "fail_on": self.fail_on.value if self.fail_on else None,
            "inherited": "keep" if self.keep_inherited else "info",
            "waivers": len(self.waivers),
            "npm_dependencies": {
                "skip": list(self.npm_skip),
                "pin": [
                    {"name": p.name, "version": p.version, "integrity": p.integrity}
                    for p in self.npm_pins
                ],
            },
        }


_DEFAULT = Policy(
    name=DEFAULT_POLICY_NAME,
    description=(
        "biv's default for Electron apps: the renamed main executable may change its "
        "resources, Electron Framework its fuses; default_app.asar may be removed; "
        "Info.plist, icons, version and licence files may change; app.asar, "
        "app.asar.unpacked and installer helpers are the app's own, except the npm "
        "dependencies inside them, which are compared with their registry's tarballs."
    ),
    components=(ComponentSpec("npm-dependencies", NPM_DEPS_SOURCE),),
    allow_renamed_main=True,
    allow_resources_only=("Electron Framework",),
    allow_missing=("default_app.asar",),
    allow_changed=(
        "Info.plist",
        "*.icns",
        "*.ico",
        "version",
        "LICENSE",
        "LICENSE.*",
        "LICENSES.chromium.html",
    ),
    own=(
        "app.asar",
        "app-x64.asar",
        "app-arm64.asar",
        "**/app.asar.unpacked/**",
        "Update.exe",
        "elevate.exe",
        "Uninstall *.exe",
    ),
)
