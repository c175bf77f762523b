"""The vendor's in-toto supply-chain metadata (``biv verify --layout L --layout-key K --links D``).

``verify_layout`` runs the in-toto library's complete verification (``in_toto_verify``: layout
signatures, expiry, link signatures by authorised functionaries, thresholds, artifact rules);
every failure is an ``in-toto-failure`` anomaly (policy turns it into a finding, high).

``electron_release_layout`` builds the example layout shipped in ``attestations/`` (steps
fetch-electron, build, sign, package): packaged upstream files MATCH the fetched Electron
release, except as the sign step may MODIFY them (Authenticode signing of ``.exe``/``.dll``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from verifier.errors import UsageError
from verifier.model import Anomaly

RULE = "in-toto-failure"
STEPS = ("fetch-electron", "build", "sign", "package")


def load_key_dict(path: str) -> dict[str, Any]:
    """A public key (PEM SubjectPublicKeyInfo, or a private key) as in-toto's key dict."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read layout key: {e.strerror or e}", where=path) from None
    pub: Any
    try:
        pub = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        try:
            pub = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise UsageError(f"not a PEM public key ({e})", where=path) from None
    try:
        key = SSlibKey.from_crypto(pub)
    except ValueError as e:
        raise UsageError(f"unsupported key type: {e}", where=path) from None
    d: dict[str, Any] = key.to_dict()
    d["keyid"] = key.keyid
    return d


def _anomaly(message: str, layout: str, **evidence: Any) -> Anomaly:
    ev = {"layout": layout, **evidence}
    return Anomaly(RULE, message, ev)


def verify_layout(
    layout: str,
    layout_keys: Sequence[str],
    links_dir: str,
    *,
    substitution: Mapping[str, str] | None = None,
) -> tuple[Anomaly, ...]:
    """Verify ``layout`` (signed by every key in ``layout_keys``) with the links in ``links_dir``.

    Returns ``()`` when everything verifies, else one ``in-toto-failure`` anomaly saying what
    failed. Raises ``UsageError`` for unreadable arguments (missing files, bad keys).
    """
    from in_toto import exceptions as itx
    from in_toto.models.metadata import Metadata
    from in_toto.verifylib import in_toto_verify
    from securesystemslib import exceptions as ssx

    if not layout_keys:
        raise UsageError("--layout needs at least one --layout-key")
    if not Path(links_dir).is_dir():
        raise UsageError("links directory not found", where=links_dir)
    keys = {}
    for k in layout_keys:
        d = load_key_dict(k)
        keys[d["keyid"]] = d
    if not Path(layout).is_file():
        raise UsageError("layout file not found", where=layout)
    try:
        metadata = Metadata.load(layout)
    except (OSError, ValueError, KeyError, TypeError, itx.Error, ssx.Error) as e:
        return (_anomaly(f"the in-toto layout cannot be read: {e}", layout),)
    try:
        in_toto_verify(
            metadata,
            keys,
            link_dir_path=links_dir,
            substitution_parameters=dict(substitution or {}),
            persist_inspection_links=False,
        )
    except itx.LayoutExpiredError as e:
        return (_anomaly(f"the in-toto layout has expired: {e}", layout, error="expired"),)
    except itx.SignatureVerificationError as e:
        return (_anomaly(f"in-toto signature check failed: {e}", layout, error="signature"),)
    except itx.LinkNotFoundError as e:
        return (_anomaly(f"in-toto link metadata missing: {e}", layout, error="link-missing"),)
    except itx.ThresholdVerificationError as e:
        return (_anomaly(f"in-toto threshold not met: {e}", layout, error="threshold"),)
    except itx.RuleVerificationError as e:
        return (_anomaly(f"in-toto artifact rule violated: {e}", layout, error="artifact-rule"),)
    except (itx.Error, ssx.Error, OSError, ValueError, KeyError, TypeError) as e:
        return (_anomaly(f"in-toto verification failed: {type(e).__name__}: {e}", layout),)
    return ()


def input_attestations(layout: str, links_dir: str) -> list[tuple[str, str]]:
    """(uri, sha256) of the layout and every link file, for the VSA's ``inputAttestations``."""
    import hashlib

    out = []
    paths = [layout, *sorted(str(p) for p in Path(links_dir).glob("*.link") if p.is_file())]
    for p in paths:
        out.append((p, hashlib.sha256(Path(p).read_bytes()).hexdigest()))
    return out


# --- the example layout ----------------------------------------------------------------------


def electron_release_layout(
    functionary_keys: Mapping[str, str] | str,
    *,
    expires: datetime | None = None,
    upstream_dir: str = "electron",
    build_dir: str = "dist",
    package_dir: str = "package",
) -> dict[str, Any]:
    """The in-toto layout (as a dict, unsigned) of an Electron app's release pipeline.

    ``functionary_keys``: a public key path for every step, or one path for all steps.
    Steps and rules:

    - fetch-electron: creates the upstream release files under ``electron/``;
    - build: its materials MATCH fetch-electron's products; its products under ``dist/``
      MATCH the upstream files, except that it CREATEs the app's own files (``app.asar``...)
      and the renamed main executable;
    - sign: may MODIFY ``.exe`` and ``.dll`` files in ``dist/`` (code signing); everything
      else MATCHes build's products;
    - package: the packaged files under ``package/`` MATCH the fetched release, or the sign
      step's products (what it signed, and the app's own files); nothing else may appear.
    """
    keys, step_keyids = _functionaries(functionary_keys)
    exp = expires or (datetime.now(UTC) + timedelta(days=365))
    return {
        "_type": "layout",
        "expires": exp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "readme": "Electron app release: fetch-electron, build, sign, package. Packaged "
        "upstream files must match the fetched Electron release, except as the sign step "
        "modifies them. Generated by attestations/make_layout.py.",
        "keys": keys,
        "steps": _electron_steps(step_keyids, upstream_dir, build_dir, package_dir),
        "inspect": [],
    }


def _functionaries(
    functionary_keys: Mapping[str, str] | str,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """(keyid -> in-toto key dict, step -> [keyid]) from a key path per step, or one for all."""
    per_step = (
        {s: functionary_keys for s in STEPS}
        if isinstance(functionary_keys, str)
        else dict(functionary_keys)
    )
    missing = [s for s in STEPS if s not in per_step]
    if missing:
        raise UsageError(f"no functionary key for step(s): {', '.join(missing)}")
    keys: dict[str, dict[str, Any]] = {}
    step_keyids: dict[str, list[str]] = {}
    for s in STEPS:
        d = load_key_dict(per_step[s])
        keys[d["keyid"]] = d
        step_keyids[s] = [d["keyid"]]
    return keys, step_keyids


def _step(
    name: str, keyids: list[str], materials: list[list[str]], products: list[list[str]]
) -> dict[str, Any]:
    return {
        "_type": "step",
        "name": name,
        "threshold": 1,
        "pubkeys": keyids,
        "expected_command": [],
        "expected_materials": materials,
        "expected_products": products,
    }


def _electron_steps(
    step_keyids: Mapping[str, list[str]], u: str, b: str, p: str
) -> list[dict[str, Any]]:
    """The four steps and their artifact rules (upstream ``u``, build ``b``, package ``p``)."""
    return [
        _step(
            "fetch-electron",
            step_keyids["fetch-electron"],
            [["DISALLOW", "*"]],
            [["CREATE", f"{u}/*"], ["DISALLOW", "*"]],
        ),
        _step(
            "build",
            step_keyids["build"],
            [
                ["MATCH", f"{u}/*", "WITH", "PRODUCTS", "FROM", "fetch-electron"],
                ["ALLOW", "src/*"],
                ["DISALLOW", "*"],
            ],
            [
                ["MATCH", "*", "IN", b, "WITH", "PRODUCTS", "IN", u, "FROM", "fetch-electron"],
                ["CREATE", f"{b}/resources/app.asar"],
                ["CREATE", f"{b}/resources/app.asar.unpacked/*"],
                ["CREATE", f"{b}/*.exe"],
                ["DISALLOW", "*"],
            ],
        ),
        _step(
            "sign",
            step_keyids["sign"],
            [["MATCH", f"{b}/*", "WITH", "PRODUCTS", "FROM", "build"], ["DISALLOW", "*"]],
            [
                ["MODIFY", f"{b}/*.exe"],
                ["MODIFY", f"{b}/*.dll"],
                ["MATCH", f"{b}/*", "WITH", "PRODUCTS", "FROM", "build"],
                ["DISALLOW", "*"],
            ],
        ),
        _step(
            "package",
            step_keyids["package"],
            [["MATCH", f"{b}/*", "WITH", "PRODUCTS", "FROM", "sign"], ["DISALLOW", "*"]],
            [
                ["MATCH", "*", "IN", p, "WITH", "PRODUCTS", "IN", u, "FROM", "fetch-electron"],
                ["MATCH", "*", "IN", p, "WITH", "PRODUCTS", "IN", b, "FROM", "sign"],
                ["DISALLOW", "*"],
            ],
        ),
    ]


def sign_layout(layout: Mapping[str, Any], owner_key: str, out: str) -> str:
    """Sign ``layout`` with the owner's private PEM key (in-toto Metablock); returns keyid."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from in_toto.models.layout import Layout
    from in_toto.models.metadata import Metablock
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]

    try:
        priv = serialization.load_pem_private_key(Path(owner_key).read_bytes(), password=None)
    except OSError as e:
        raise UsageError(f"cannot read owner key: {e.strerror or e}", where=owner_key) from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise UsageError(f"not a PEM private key ({e})", where=owner_key) from None
    signer = CryptoSigner(priv)
    meta = Metablock(signed=Layout.read(json.loads(json.dumps(layout))))
    meta.create_signature(signer)
    tmp = f"{out}.tmp{os.getpid()}"
    meta.dump(tmp)
    Path(tmp).replace(out)
    return str(signer.public_key.keyid)
