"""A signed verdict: SLSA Verification Summary Attestation v1 in an in-toto Statement v1.

``build_statement(report, opts)`` -> dict (the Statement); ``write_vsa(report, out, key_path,
opts)`` signs it as a DSSE envelope with a PEM key; ``verify_attestation(path, artifact, ...)``
checks signature, statement shape and subject digest (``biv attest verify``).

Levels are biv's own (they are not SLSA build levels, so they do not start with ``SLSA_``):

- ``BIV_UPSTREAM_MATCH_L1``: compared with at least one upstream reference and no finding at
  or above the fail threshold (verdict ``pass``);
- ``BIV_UPSTREAM_MATCH_L2``: L1, and no unsuppressed finding of medium severity or above and no
  waiver used;
- ``BIV_INTOTO_VERIFIED``: the vendor's in-toto layout and links verified (``--layout``);
- ``BIV_SIGSTORE_SOURCES``: every reference source's Sigstore bundle verified.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from verifier.attest.dsse import (
    INTOTO_PAYLOAD_TYPE,
    AttestationError,
    Envelope,
    load_private_key,
    load_public_key,
    read_envelope_json,
    sign_envelope,
    verify_envelope,
)
from verifier.attest.sigstore_verify import verify_sigstore_vsa
from verifier.errors import UsageError
from verifier.hashing import sha256_file
from verifier.model import Report, Severity, Verdict
from verifier.record import record
from verifier.unpack import directory_digest, tree_digest

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
VSA_PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
DEFAULT_VERIFIER_ID = "https://github.com/biv-verifier/biv"
BIV_PREDICATE_SCHEMA = "biv.vsa/v1"

LEVEL_MATCH_L1 = "BIV_UPSTREAM_MATCH_L1"
LEVEL_MATCH_L2 = "BIV_UPSTREAM_MATCH_L2"
LEVEL_INTOTO = "BIV_INTOTO_VERIFIED"
LEVEL_SIGSTORE = "BIV_SIGSTORE_SOURCES"


@record
class InputAttestation:
    uri: str
    sha256: str
    kind: str = ""  # "sigstore-bundle", "in-toto-link", "in-toto-layout", "tuf-metadata"...

    @classmethod
    def of_file(cls, path: str, kind: str = "", uri: str | None = None) -> InputAttestation:
        return cls(uri or path, file_sha256(path), kind)


@record
class VsaOptions:
    resource_uri: str | None = None  # default: the artifact's path or URL as given
    verifier_id: str = DEFAULT_VERIFIER_ID
    input_attestations: Sequence[InputAttestation] = ()
    intoto_verified: bool = False  # the vendor's in-toto layout verified without failure
    sigstore_sources: bool = False  # every source came with a verified Sigstore bundle
    policy_uri: str | None = None  # default: the policy file path, else biv:policy/<name>
    extra: Mapping[str, Any] = field(default_factory=dict)  # merged into predicate["biv"]


def file_sha256(path: str) -> str:
    try:
        return sha256_file(path)
    except OSError as e:
        raise UsageError(f"cannot read: {e.strerror or e}", where=path) from None


def artifact_digest(path: str) -> str:
    """sha256 of a file, or the tree digest of a directory (as in the report)."""
    if Path(path).is_dir():
        return directory_digest(path)
    return file_sha256(path)


def _levels(report: Report, opts: VsaOptions) -> list[str]:
    if report.verdict != Verdict.PASS or not report.components:
        return []
    levels = [LEVEL_MATCH_L1]
    if not any(
        (not f.suppressed and f.severity.at_least(Severity.MEDIUM)) or f.waiver is not None
        for f in report.findings
    ):
        levels.append(LEVEL_MATCH_L2)
    if opts.intoto_verified:
        levels.append(LEVEL_INTOTO)
    if opts.sigstore_sources:
        levels.append(LEVEL_SIGSTORE)
    return levels


def _policy_ref(report: Report, opts: VsaOptions) -> dict[str, Any]:
    pol = dict(report.policy)
    name = str(pol.get("name") or "electron-app")
    uri = opts.policy_uri or pol.get("path") or f"biv:policy/{name}"
    sha = pol.get("sha256")
    if not sha:
        sha = hashlib.sha256(
            json.dumps(pol, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
    return {"uri": str(uri), "digest": {"sha256": str(sha)}}


def _reference_files(report: Report) -> dict[str, dict[str, Any]]:
    """Per component: how many upstream files were compared, and their tree digest (sha256
    of the canonical JSON of the sorted [upstream path, sha256] pairs, as for directories)."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    for r in report.files:
        if r.reference is not None and r.component:
            pairs.setdefault(r.component, []).append((r.reference.path, r.reference.sha256))
    return {
        name: {"count": len(p), "tree_sha256": tree_digest(sorted(set(p)))}
        for name, p in pairs.items()
    }


def build_statement(report: Report, opts: VsaOptions = VsaOptions()) -> dict[str, Any]:
    """The in-toto Statement v1 with a SLSA VSA v1 predicate for ``report``."""
    art = dict(report.artifact)
    path = str(art.get("path", ""))
    name = path.rstrip("/").rsplit("/", 1)[-1] or path or "artifact"
    counts: dict[str, int] = {s.value: 0 for s in Severity}
    suppressed = 0
    for f in report.findings:
        if f.suppressed:
            suppressed += 1
        else:
            counts[f.severity.value] += 1
    ref_files = _reference_files(report)
    biv: dict[str, Any] = {
        "schema": BIV_PREDICATE_SCHEMA,
        "verdict": report.verdict.value,
        "failOn": report.fail_on.value,
        "artifact": {"path": path, "sha256": art.get("sha256"), "size": art.get("size")},
        "references": [
            {
                "name": c.name,
                "version": c.version,
                "source": c.source,
                "platform": c.platform,
                "arch": c.arch,
                "digests": dict(sorted(c.digests.items())),
                "proof": list(c.proof),
                "files": ref_files.get(c.name, {"count": 0, "tree_sha256": None}),
            }
            for c in report.components
        ],
        "findings": {"unsuppressed": counts, "suppressed": suppressed},
        "rules": sorted({f.rule for f in report.findings if not f.suppressed}),
        "inconclusive": list(report.inconclusive_reasons),
        **dict(opts.extra),
    }
    predicate: dict[str, Any] = {
        "verifier": {"id": opts.verifier_id, "version": {"biv": report.tool_version}},
        "timeVerified": report.generated_at,
        "resourceUri": opts.resource_uri or path,
        "policy": _policy_ref(report, opts),
        "inputAttestations": [
            {"uri": a.uri, "digest": {"sha256": a.sha256}}
            for a in sorted(opts.input_attestations, key=lambda a: (a.uri, a.sha256))
        ],
        "verificationResult": "PASSED" if report.verdict == Verdict.PASS else "FAILED",
        "verifiedLevels": _levels(report, opts),
        "biv": biv,
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": str(art.get("sha256", ""))}}],
        "predicateType": VSA_PREDICATE_TYPE,
        "predicate": predicate,
    }


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_statement(statement: Mapping[str, Any], key_path: str) -> Envelope:
    return sign_envelope(statement_bytes(statement), load_private_key(key_path))


def write_vsa(
    report: Report, out: str, key_path: str, opts: VsaOptions = VsaOptions()
) -> dict[str, Any]:
    """``biv verify --attest OUT --signing-key KEY``: write the signed VSA (DSSE JSON).

    Written for failed verdicts too (``verificationResult: FAILED``). Returns the Statement.
    """
    stmt = build_statement(report, opts)
    env = sign_statement(stmt, key_path)
    try:
        Path(out).write_text(env.to_json())
    except OSError as e:
        raise UsageError(f"cannot write attestation: {e.strerror or e}", where=out) from None
    return stmt


@record
class VerifiedAttestation:
    statement: Mapping[str, Any]
    signer: str  # keyid (key) or certificate identity (Sigstore)
    artifact_sha256: str

    @property
    def result(self) -> str:
        return str(self.statement["predicate"].get("verificationResult"))

    @property
    def passed(self) -> bool:
        return self.result == "PASSED"

    @property
    def levels(self) -> list[str]:
        return list(self.statement["predicate"].get("verifiedLevels", []))

    def summary(self) -> str:
        p = self.statement["predicate"]
        return (
            f"attestation verified: signed by {self.signer}; subject sha256 "
            f"{self.artifact_sha256[:16]}... matches; verificationResult {self.result}; "
            f"levels {', '.join(self.levels) or '(none)'}; policy {p['policy']['uri']}; "
            f"verified at {p.get('timeVerified')}"
        )


def check_statement(
    payload_type: str, payload: bytes, artifact: str | None
) -> tuple[dict[str, Any], str]:
    """Shape of the Statement and its subject against ``artifact``; returns (statement, sha)."""
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise AttestationError(f"payloadType is {payload_type!r}, not {INTOTO_PAYLOAD_TYPE!r}")
    try:
        stmt = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise AttestationError(f"payload is not JSON: {e}") from None
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        raise AttestationError(f"payload is not an in-toto Statement v1 ({STATEMENT_TYPE})")
    if stmt.get("predicateType") != VSA_PREDICATE_TYPE:
        raise AttestationError(
            f"predicateType is {stmt.get('predicateType')!r}, not {VSA_PREDICATE_TYPE!r}"
        )
    pred = stmt.get("predicate")
    if not isinstance(pred, dict) or pred.get("verificationResult") not in ("PASSED", "FAILED"):
        raise AttestationError("predicate has no verificationResult PASSED or FAILED")
    for key in ("verifier", "resourceUri", "policy", "verifiedLevels"):
        if key not in pred:
            raise AttestationError(f"predicate lacks required field {key!r}")
    subjects = stmt.get("subject")
    digests = []
    if isinstance(subjects, list):
        for s in subjects:
            if isinstance(s, dict) and isinstance(s.get("digest"), dict):
                digests.append(str(s["digest"].get("sha256", "")).lower())
    if not digests:
        raise AttestationError("statement has no subject with a sha256 digest")
    if artifact is None:
        return stmt, digests[0]
    actual = artifact_digest(artifact)
    if actual not in digests:
        raise AttestationError(
            f"artifact sha256 {actual} is not the attested subject ({', '.join(digests)})",
            where=artifact,
        )
    return stmt, actual


def verify_attestation(
    path: str,
    artifact: str | None,
    key: str | None = None,
    cert_identity: str | None = None,
    cert_oidc_issuer: str | None = None,
    *,
    staging: bool = False,
    offline: bool = False,
) -> VerifiedAttestation:
    """``biv attest verify PATH --artifact FILE (--key PEM | --cert-identity --cert-oidc-issuer)``.

    Verifies the DSSE signature (key) or the Sigstore bundle (identity), then that the payload
    is a VSA whose subject digest is ``artifact``'s. Raises ``AttestationError`` (exit 1) when
    anything fails, ``UsageError`` (exit 2) for bad arguments. A valid VSA that records a
    FAILED verification still verifies: look at ``.passed``.
    """
    if key is None and cert_identity is None:
        raise UsageError("give --key PEM, or --cert-identity and --cert-oidc-issuer")
    if key is not None and cert_identity is not None:
        raise UsageError("give either --key or --cert-identity, not both")
    data = read_envelope_json(path)
    if cert_identity is not None:
        if not cert_oidc_issuer:
            raise UsageError("--cert-identity needs --cert-oidc-issuer")
        ptype, payload = verify_sigstore_vsa(
            path, cert_identity, cert_oidc_issuer, staging=staging, offline=offline
        )
        stmt, sha = check_statement(ptype, payload, artifact)
        return VerifiedAttestation(stmt, cert_identity, sha)
    assert key is not None
    if isinstance(data, dict) and "mediaType" in data and "dsseEnvelope" in data:
        data = data["dsseEnvelope"]  # a Sigstore bundle checked with a plain key
    env = Envelope.from_dict(data)
    try:
        kid = verify_envelope(env, load_public_key(key))
    except AttestationError as e:
        raise AttestationError(e.message, where=path) from None
    stmt, sha = check_statement(env.payload_type, env.payload, artifact)
    return VerifiedAttestation(stmt, f"key {kid[:16]}...", sha)
