"""Rule metadata (docs/contract.md "Rule ids"): the one table policy and every renderer use.

A leaf module (it imports only ``verifier.model``): ``policy`` and ``report`` both read it, so
neither depends on the other. Rule ids are stable: they are never reused or renamed. New checks
get new ids here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from verifier.model import Severity
from verifier.record import record

#: SARIF ``properties.security-severity`` (GitHub code scanning: >9 critical, >=7 high,
#: >=4 medium, >0.1 low) for each biv severity.
SECURITY_SEVERITY: Mapping[Severity, str] = MappingProxyType(
    {
        Severity.CRITICAL: "9.5",
        Severity.HIGH: "8.0",
        Severity.MEDIUM: "5.5",
        Severity.LOW: "3.0",
        Severity.INFO: "1.0",
    }
)

#: SARIF ``level`` for each biv severity.
SARIF_LEVEL: Mapping[Severity, str] = MappingProxyType(
    {
        Severity.CRITICAL: "error",
        Severity.HIGH: "error",
        Severity.MEDIUM: "warning",
        Severity.LOW: "note",
        Severity.INFO: "note",
    }
)


@record
class Rule:
    id: str
    name: str  # PascalCase, SARIF reportingDescriptor.name
    short: str  # one line
    help: str  # a paragraph: what it means and what to do
    severity: Severity  # default severity
    tags: tuple[str, ...] = ()

    @property
    def security_severity(self) -> str:
        return SECURITY_SEVERITY[self.severity]


_RULES: tuple[Rule, ...] = (
    Rule(
        "signed-divergent-content",
        "SignedDivergentContent",
        "A file taken from an upstream component differs from it and carries a signature.",
        "After signatures are removed, the shipped file's bytes differ from the upstream "
        "release it should come from, yet it is signed (often with the vendor's own valid "
        "certificate). This is how the 3CX ffmpeg.dll was tampered with: a valid signature "
        "does not mean the content is upstream's. Compare the differing sections, rebuild "
        "from a clean environment, and treat the signing key as exposed.",
        Severity.CRITICAL,
        ("supply-chain", "tampering", "code-signing"),
    ),
    Rule(
        "divergent-content",
        "DivergentContent",
        "A file taken from an upstream component differs from it (unsigned).",
        "The shipped file's bytes differ from the upstream release it should come from. "
        "Unless the change is deliberate (and then declared in policy), the build pipeline "
        "modified a third-party file.",
        Severity.HIGH,
        ("supply-chain", "tampering"),
    ),
    Rule(
        "signature-modified",
        "SignatureModified",
        "Same signer as upstream, but the signature container differs from upstream's.",
        "The content is identical to upstream and the signer is the same, but the "
        "certificate table is different: a payload can hide in padding, unauthenticated "
        "attributes or extra certificates without breaking the signature.",
        Severity.CRITICAL,
        ("supply-chain", "tampering", "code-signing"),
    ),
    Rule(
        "signature-padding",
        "SignaturePadding",
        "Bytes inside WIN_CERTIFICATE after the PKCS#7 signature that it does not cover.",
        "Data was appended inside the Authenticode certificate table (CVE-2013-3900). "
        "Windows still reports a valid signature unless EnableCertPaddingCheck is set. "
        "The 3CX d3dcompiler_47.dll carried its encrypted payload this way. Inspect the "
        "byte ranges and replace the file with the upstream copy.",
        Severity.CRITICAL,
        ("supply-chain", "tampering", "code-signing", "CVE-2013-3900"),
    ),
    Rule(
        "data-after-signature",
        "DataAfterSignature",
        "Bytes after the certificate table or code signature.",
        "The file carries data after its signature (or a certificate table that is not at "
        "the end of the file). The signature does not cover that data.",
        Severity.HIGH,
        ("tampering", "code-signing"),
    ),
    Rule(
        "oversized-unauthenticated-attributes",
        "OversizedUnauthenticatedAttributes",
        "Unauthenticated attributes far larger than needed.",
        "The signature's unauthenticated attributes (not counting nested signatures and "
        "timestamps) are much larger than needed: a place to hide data that the signature "
        "does not cover.",
        Severity.MEDIUM,
        ("tampering", "code-signing"),
    ),
    Rule(
        "invalid-signature",
        "InvalidSignature",
        "Digest mismatch, bad signature, or malformed signature.",
        "The file's signature does not verify: the file was changed after signing or the "
        "signature is malformed.",
        Severity.HIGH,
        ("code-signing",),
    ),
    Rule(
        "untrusted-signer",
        "UntrustedSigner",
        "Signer not trusted, or not allowed for this file by policy.",
        "The certificate chain does not reach a trusted root, or the policy does not allow "
        "this signer for this file.",
        Severity.HIGH,
        ("code-signing",),
    ),
    Rule(
        "resigned-upstream-file",
        "ResignedUpstreamFile",
        "Upstream content unchanged, signer differs from upstream.",
        "The file's content is upstream's but it was re-signed by another signer (usually "
        "the vendor). Informational.",
        Severity.INFO,
        ("code-signing",),
    ),
    Rule(
        "resources-modified",
        "ResourcesModified",
        "Only PE resources (or fuses) changed, where that is not allowed.",
        "Code is unchanged, but resources or Electron fuse bytes differ from upstream in a "
        "file where policy does not allow that.",
        Severity.MEDIUM,
        ("tampering",),
    ),
    Rule(
        "unexpected-binary",
        "UnexpectedBinary",
        "Executable code not attributable to any upstream and not the app's own.",
        "The artifact contains executable code (PE, Mach-O, ELF, .node) that no reference "
        "accounts for and that policy does not declare as the application's own.",
        Severity.MEDIUM,
        ("supply-chain",),
    ),
    Rule(
        "missing-file",
        "MissingFile",
        "An upstream file is absent from the shipped artifact.",
        "A file of the upstream release is not in the shipped artifact.",
        Severity.LOW,
        ("supply-chain",),
    ),
    Rule(
        "reference-mismatch",
        "ReferenceMismatch",
        "A downloaded upstream does not match its published checksums.",
        "A downloaded upstream does not match its published checksums, two sources "
        "disagree, or its Sigstore bundle does not verify. The reference cannot be trusted.",
        Severity.CRITICAL,
        ("supply-chain", "provenance"),
    ),
    Rule(
        "known-malicious",
        "KnownMalicious",
        "Digest on a known-bad list.",
        "The file's sha256 is on a list of known malicious files.",
        Severity.CRITICAL,
        ("malware",),
    ),
    Rule(
        "malformed-input",
        "MalformedInput",
        "A member of the artifact that biv cannot parse safely.",
        "A hostile or truncated archive or corrupt headers: biv could not read this member "
        "safely, so it cannot vouch for it. Always fails the verdict.",
        Severity.HIGH,
        ("robustness",),
    ),
    Rule(
        "weak-digest",
        "WeakDigest",
        "Signature relies on MD5/SHA-1 only.",
        "The signature uses only MD5 or SHA-1 digests, which allow collisions.",
        Severity.MEDIUM,
        ("code-signing", "cryptography"),
    ),
    Rule(
        "multiple-certificates",
        "MultipleCertificates",
        "More than one WIN_CERTIFICATE entry.",
        "The certificate table holds more than one WIN_CERTIFICATE entry; Windows only "
        "checks the first, so the others are uncovered data.",
        Severity.MEDIUM,
        ("code-signing",),
    ),
    Rule(
        "pe-checksum-mismatch",
        "PeChecksumMismatch",
        "PE checksum field wrong.",
        "The PE optional header checksum does not match the file.",
        Severity.INFO,
        ("integrity",),
    ),
    Rule(
        "insecure-fuse",
        "InsecureFuse",
        "An Electron fuse in an insecure state.",
        "An Electron fuse (e.g. RunAsNode, EnableNodeCliInspectArguments) is in a state "
        "that lets attackers run code through the app.",
        Severity.LOW,
        ("electron", "hardening"),
    ),
    Rule(
        "asar-integrity-mismatch",
        "AsarIntegrityMismatch",
        "ASAR integrity declared by the app does not match the archive.",
        "The app declares an ASAR integrity hash that does not match the shipped archive.",
        Severity.HIGH,
        ("electron", "tampering"),
    ),
    Rule(
        "in-toto-failure",
        "InTotoFailure",
        "The vendor's in-toto layout or links do not verify.",
        "The in-toto supply-chain layout or its link metadata does not verify.",
        Severity.HIGH,
        ("provenance",),
    ),
    Rule(
        "waiver-expired",
        "WaiverExpired",
        "A waiver's expiry date has passed.",
        "A waiver in the policy has expired; the finding it covered applies again.",
        Severity.INFO,
        ("policy",),
    ),
    Rule(
        "unexpected-file",
        "UnexpectedFile",
        "A file inside an npm package folder that the package's published tarball lacks.",
        "The app's copy of an npm dependency holds a file that the registry's tarball for that "
        "name and version does not have. Code files (.js, .cjs, .mjs, .node, .dll, .so, .dylib, "
        ".exe) are high: Node loads whatever sits in the package folder. Find which build step "
        "wrote the file.",
        Severity.MEDIUM,
        ("npm", "tampering"),
    ),
    Rule(
        "unverifiable-dependency",
        "UnverifiableDependency",
        "A dependency found in the app that no registry can vouch for.",
        "The package name is not on the registry (a private package or a local file: "
        "dependency), so nothing upstream can confirm its content. It is listed for review.",
        Severity.INFO,
        ("npm",),
    ),
    Rule(
        "unexpected-link",
        "UnexpectedLink",
        "A symlink or hardlink that upstream lacks, or whose target differs from upstream's.",
        "Links are compared like files: a link points code at another file, so a new link or a "
        "changed target can substitute content without changing any file upstream has.",
        Severity.MEDIUM,
        ("archive", "tampering"),
    ),
    Rule(
        "name-collision",
        "NameCollision",
        "Two members whose names collide on Windows or macOS file systems.",
        "Two member names are equal case-insensitively or after Unicode normalisation. On a "
        "case-insensitive or normalising file system one overwrites the other, so what is "
        "installed is not what was compared.",
        Severity.HIGH,
        ("archive", "tampering"),
    ),
    Rule(
        "unknown-dependency-version",
        "UnknownDependencyVersion",
        "An npm dependency at a version its registry never published.",
        "The registry has the package but not this version: a patched dependency with a bumped "
        "version number looks like this, and Node never notices.",
        Severity.HIGH,
        ("npm", "tampering"),
    ),
    Rule(
        "signature-slack",
        "SignatureSlack",
        "Non-zero bytes in the space a Mach-O code signature reserved after its SuperBlob.",
        "Bytes between the end of the code signature SuperBlob and the end of "
        "LC_CODE_SIGNATURE's data are covered by no hash. Zero bytes are normal; other bytes can "
        "hide a payload. Remnants of an earlier signature (codesign re-signing in place) are low.",
        Severity.MEDIUM,
        ("signature", "macho"),
    ),
    Rule(
        "invalid-nested-signature",
        "InvalidNestedSignature",
        "A nested Authenticode signature that does not verify, under a valid primary one.",
        "Windows judges a file by its primary signature; a nested signature that fails to "
        "verify is not used, but it is data the signer did not vouch for and deserves a look.",
        Severity.MEDIUM,
        ("signature", "authenticode"),
    ),
)

#: All rules by id, in the order of docs/contract.md "Rule ids".
RULES: Mapping[str, Rule] = MappingProxyType({r.id: r for r in _RULES})


def rule(rule_id: str) -> Rule:
    """The metadata of ``rule_id``; an unknown id (a newer check) gets a generic entry."""
    r = RULES.get(rule_id)
    if r is not None:
        return r
    name = "".join(p.capitalize() for p in rule_id.replace("_", "-").split("-") if p)
    return Rule(rule_id, name or "Unknown", rule_id, rule_id, Severity.MEDIUM, ())


def default_severity(rule_id: str) -> Severity:
    """The default severity of ``rule_id`` (medium for an id not in the table)."""
    return rule(rule_id).severity
