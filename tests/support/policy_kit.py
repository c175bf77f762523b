"""Building blocks for tests of ``verifier.policy.evaluate``: signers, signature facts, file
entries and results, and ``run`` (evaluate over them with the default policy at a fixed date).
Shared by the policy tests and the mutant-killing tests."""

from __future__ import annotations

from datetime import date
from typing import Any

from verifier.model import (
    Anomaly,
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    FileResult,
    Finding,
    Inventory,
    Reference,
    SignatureFacts,
    SignatureKind,
    Signer,
    SliceFacts,
    SliceResult,
    Status,
)
from verifier.policy import Policy
from verifier.policy.evaluate import evaluate

TODAY = date(2026, 11, 27)
MS = Signer("CN=Microsoft Corporation", "CN=Microsoft Code Signing PCA 2011", "01", "aa" * 32)
VENDOR = Signer("CN=3CX Ltd, O=3CX Ltd", "CN=DigiCert EV CS CA", "02", "bb" * 32)
EVIL = Signer("CN=Evil Corp", "CN=Some CA", "03", "cc" * 32)
GITHUB = Signer("CN=GitHub, Inc.", "CN=DigiCert", "04", "dd" * 32)


def sig(
    *signers: Signer,
    container: str = "c0",
    primary: str | None = None,
    nested: tuple[Signer, ...] = (),
) -> SignatureFacts:
    return SignatureFacts(
        kind=SignatureKind.AUTHENTICODE,
        signed=True,
        valid=True,
        signers=signers,
        container_sha256=container,
        primary_container_sha256=primary or container,
        nested_signers=nested,
    )


def entry(
    path: str,
    sha: str = "11" * 32,
    fmt: FileFormat = FileFormat.PE,
    signature: SignatureFacts | None = None,
    anomalies: tuple[Anomaly, ...] = (),
    slices: tuple[SliceFacts, ...] = (),
) -> FileEntry:
    facts = BinaryFacts(
        format=fmt, signature=signature or SignatureFacts(), anomalies=anomalies, slices=slices
    )
    return FileEntry(path, f"setup.exe!/{path}", ("setup.exe",), 100, sha, facts)


def result(
    status: Status,
    shipped: FileEntry | None,
    reference: FileEntry | None,
    evidence: dict[str, Any] | None = None,
    slices: tuple[SliceResult, ...] = (),
) -> FileResult:
    path = (shipped or reference).path  # type: ignore[union-attr]
    return FileResult(
        path, status, shipped, reference, "electron" if reference else None, evidence or {}, slices
    )


REFS = (Reference(Component("electron", "28.1.0", "electron:28.1.0"), ()),)


def run(
    *results: FileResult,
    policy: Policy | None = None,
    problems: tuple[Anomaly, ...] = (),
    refs: tuple[Reference, ...] = REFS,
    today: date = TODAY,
) -> tuple[Finding, ...]:
    entries = tuple(r.shipped for r in results if r.shipped is not None)
    inv = Inventory("setup.exe", "ff" * 32, 1000, entries, problems)
    return evaluate(results, inv, refs, policy or Policy.default(), today)


def rules(findings: tuple[Finding, ...]) -> list[tuple[str, str]]:
    return [(f.rule, f.severity.value) for f in findings]
