"""Command-line pieces for policies and attestations, for ``verifier.cli`` to wire in.

- ``add_verify_options(verify_parser)``: ``--attest OUT``, ``--signing-key KEY``,
  ``--sigstore``, ``--sigstore-staging``, ``--resource-uri URI``, ``--layout LAYOUT``,
  ``--layout-key KEY`` (repeatable), ``--links DIR``.
- ``add_commands(subparsers)``: ``biv policy check FILE``, ``biv attest verify OUT --artifact
  FILE (--key PEM | --cert-identity ID --cert-oidc-issuer ISSUER)``, ``biv attest
  verify-bundle FILE --bundle B (--cert-identity ID | --cert-identity-regexp RE)
  (--cert-oidc-issuer I | --cert-oidc-issuer-regexp RE) [--staging]``.
- ``dispatch(args) -> int | None``: runs those commands (None: not one of them).
- ``check_verify_options(args)``: usage errors before any work is done.
- ``layout_anomalies(args)``: in-toto verification for ``biv verify`` (pass to
  ``evaluate(..., extra=...)``); ``write_attestation(report, args, inputs)`` after verify.

This module is the command line's side of the seam between the CLI and the library: the CLI
imports it at start-up, so the library modules its commands run are imported where they are
used (``biv --version`` and ``biv --help`` load none of them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from verifier.errors import ReferenceMismatchError, UsageError

if TYPE_CHECKING:  # kept out of the CLI's start-up
    from verifier.attest.vsa import InputAttestation
    from verifier.model import Anomaly, Report

P = TypeVar("P", bound=argparse.ArgumentParser)


def add_verify_options(v: argparse.ArgumentParser) -> None:
    g = v.add_argument_group("attestations")
    g.add_argument(
        "--attest",
        metavar="OUT",
        help="write a signed SLSA verification summary (in-toto, DSSE) here",
    )
    g.add_argument(
        "--signing-key",
        metavar="KEY",
        help="PEM private key (Ed25519 or ECDSA P-256) that signs --attest",
    )
    g.add_argument(
        "--sigstore",
        action="store_true",
        help="sign --attest keyless with Sigstore (ambient OIDC credentials, CI)",
    )
    g.add_argument("--sigstore-staging", action="store_true", help=argparse.SUPPRESS)
    g.add_argument(
        "--resource-uri",
        metavar="URI",
        help="resourceUri of the attestation (default: the ARTIFACT as given)",
    )
    g.add_argument("--layout", metavar="LAYOUT", help="the vendor's signed in-toto layout")
    g.add_argument(
        "--layout-key",
        action="append",
        default=[],
        metavar="KEY",
        help="public key of the layout's owner (repeatable)",
    )
    g.add_argument("--links", metavar="DIR", help="directory of the in-toto link files")


def check_verify_options(args: argparse.Namespace) -> None:
    """Usage errors (exit 2) for the options above, before any work is done."""
    attest = getattr(args, "attest", None)
    key = getattr(args, "signing_key", None)
    sigstore = getattr(args, "sigstore", False)
    if attest and not key and not sigstore:
        raise UsageError("--attest needs --signing-key KEY or --sigstore")
    if (key or sigstore) and not attest:
        raise UsageError("--signing-key/--sigstore need --attest OUT")
    if key and sigstore:
        raise UsageError("give either --signing-key or --sigstore, not both")
    if key:
        from verifier.attest.dsse import load_private_key  # lazy: CLI seam (cryptography)

        load_private_key(key)  # fail early on a bad key
    layout = getattr(args, "layout", None)
    if layout and (not getattr(args, "layout_key", None) or not getattr(args, "links", None)):
        raise UsageError("--layout needs --layout-key KEY and --links DIR")
    if not layout and (getattr(args, "layout_key", None) or getattr(args, "links", None)):
        raise UsageError("--layout-key/--links need --layout LAYOUT")


def layout_anomalies(args: argparse.Namespace) -> tuple[Anomaly, ...]:
    """in-toto verification for ``biv verify --layout`` (empty when no layout is given)."""
    layout = getattr(args, "layout", None)
    if not layout:
        return ()
    from verifier.attest.intoto import verify_layout  # lazy: CLI seam

    return verify_layout(layout, list(args.layout_key), args.links)


def layout_inputs(args: argparse.Namespace) -> list[InputAttestation]:
    """InputAttestations for the layout and links used (for the VSA)."""
    layout = getattr(args, "layout", None)
    if not layout:
        return []
    from verifier.attest.intoto import input_attestations  # lazy: CLI seam
    from verifier.attest.vsa import InputAttestation  # lazy: CLI seam (cryptography)

    return [
        InputAttestation(uri, sha, "in-toto") for uri, sha in input_attestations(layout, args.links)
    ]


def write_attestation(
    report: Report,
    args: argparse.Namespace,
    # InputAttestations (Any: verifier/cli.py's _tuf_inputs still says list[object])
    inputs: Sequence[Any] = (),
    *,
    intoto_ok: bool = False,
    sigstore_sources: bool = False,
) -> str | None:
    """Write the VSA for ``biv verify --attest``; returns a one-line note, or None."""
    out = getattr(args, "attest", None)
    if not out:
        return None
    from verifier.attest.vsa import VsaOptions, build_statement, write_vsa  # lazy: CLI seam

    opts = VsaOptions(
        resource_uri=getattr(args, "resource_uri", None),
        input_attestations=tuple(inputs),
        intoto_verified=intoto_ok,
        sigstore_sources=sigstore_sources,
    )
    if getattr(args, "sigstore", False):
        from verifier.attest.sigstore_sign import sign_vsa_keyless  # lazy: CLI seam (sigstore)

        sign_vsa_keyless(
            build_statement(report, opts), out, staging=getattr(args, "sigstore_staging", False)
        )
        return f"signed verification summary (Sigstore bundle) written to {out}"
    write_vsa(report, out, args.signing_key, opts)
    return f"signed verification summary (DSSE) written to {out}"


def add_commands(sub: argparse._SubParsersAction[P]) -> None:
    """``biv policy check`` and ``biv attest verify|verify-bundle``."""
    pol = sub.add_parser("policy", help="policy files")
    psub = pol.add_subparsers(dest="policy_command", required=True)
    chk = psub.add_parser("check", help="validate a policy file")
    chk.add_argument("file", metavar="FILE")

    att = sub.add_parser("attest", help="verify attestations")
    asub = att.add_subparsers(dest="attest_command", required=True)
    ver = asub.add_parser("verify", help="verify a verification summary written by --attest")
    ver.add_argument("attestation", metavar="OUT")
    ver.add_argument(
        "--artifact",
        required=True,
        metavar="FILE",
        help="the artifact the summary is about (file or directory)",
    )
    ver.add_argument("--key", metavar="PEM", help="public key of --signing-key")
    ver.add_argument("--cert-identity", metavar="ID", help="Sigstore signer identity")
    ver.add_argument("--cert-oidc-issuer", metavar="ISSUER", help="Sigstore OIDC issuer")
    ver.add_argument("--staging", action="store_true", help="Sigstore staging instance")
    ver.add_argument("--offline", action="store_true", help="Sigstore: no trust-root update")

    vb = asub.add_parser("verify-bundle", help="verify an upstream file's Sigstore bundle offline")
    vb.add_argument("file", metavar="FILE")
    vb.add_argument("--bundle", metavar="BUNDLE", help="default: FILE.sigstore")
    ident = vb.add_mutually_exclusive_group(required=True)
    ident.add_argument("--cert-identity", metavar="ID")
    ident.add_argument("--cert-identity-regexp", metavar="RE")
    iss = vb.add_mutually_exclusive_group(required=True)
    iss.add_argument("--cert-oidc-issuer", metavar="ISSUER")
    iss.add_argument("--cert-oidc-issuer-regexp", metavar="RE")
    vb.add_argument("--staging", action="store_true", help="Sigstore staging trust root")


def dispatch(args: argparse.Namespace) -> int | None:
    """Run ``policy``/``attest`` commands; None when ``args.command`` is another command."""
    cmd = getattr(args, "command", None)
    if cmd == "policy":
        from verifier.policy.load import check_policy  # lazy: CLI seam (PyYAML)

        print(check_policy(args.file))
        return 0
    if cmd != "attest":
        return None
    if args.attest_command == "verify":
        from verifier.attest.vsa import verify_attestation  # lazy: CLI seam (cryptography)

        got = verify_attestation(
            args.attestation,
            args.artifact,
            key=args.key,
            cert_identity=args.cert_identity,
            cert_oidc_issuer=args.cert_oidc_issuer,
            staging=args.staging,
            offline=args.offline,
        )
        print(got.summary())
        if not got.passed:
            print("biv: the attested verification FAILED", file=sys.stderr)
            return 1
        return 0
    from verifier.upstream.sigstore import IdentityPolicy, verify_source_bundle  # lazy: CLI seam

    policy = IdentityPolicy(
        identity=args.cert_identity,
        identity_regex=args.cert_identity_regexp,
        issuer=args.cert_oidc_issuer,
        issuer_regex=args.cert_oidc_issuer_regexp,
    )
    try:
        proof = verify_source_bundle(
            args.file, args.bundle or f"{args.file}.sigstore", policy, staging=args.staging
        )
    except ReferenceMismatchError as e:
        print(f"biv: reference-mismatch: {e.diagnostics()}", file=sys.stderr)
        return 1
    for line in proof:
        print(f"OK: {line}")
    return 0
