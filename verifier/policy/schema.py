"""JSON Schema (draft 2020-12) of biv policy files (``biv.policy/v1``).

``x-message`` is biv's own keyword: the sentence a user sees when a ``pattern`` fails.
"""

from __future__ import annotations

from typing import Any

from verifier.rules import RULES

SEVERITIES = ["critical", "high", "medium", "low", "info"]
REQUIREMENTS = ["signed", "upstream-signer-only", "unsigned-or-vendor-signed", "unsigned"]
#: rules a policy may re-rate or waive (malformed-input always fails: not listed)
ADJUSTABLE_RULES = sorted(r for r in RULES if r != "malformed-input")

_GLOB: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 1024}
_GLOBS: dict[str, Any] = {"type": "array", "items": _GLOB, "maxItems": 10000}
_SHA256: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9a-fA-F]{64}$",
    "x-message": "must be a sha256 digest: 64 hexadecimal digits",
}
_REGEX: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 1024}
_STR_OR_LIST = {"type": ["string", "array"], "items": {"type": "string", "minLength": 1}}

_SIGNER_MATCH: dict[str, Any] = {
    "subject": _REGEX,
    "issuer": _REGEX,
    "thumbprint": {
        "type": ["string", "array"],
        "items": _SHA256,
        "pattern": "^[0-9a-fA-F]{64}$",
        "x-message": "must be a certificate thumbprint: the sha256 of its DER, 64 hex digits",
    },
    "team_id": _STR_OR_LIST,
}

_SIGSTORE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "bundle": {"type": "string", "minLength": 1},
        "identity": {"type": "string", "minLength": 1},
        "identity_regex": _REGEX,
        "issuer": {"type": "string", "minLength": 1},
        "issuer_regex": _REGEX,
        "instance": {"enum": ["production", "staging"]},
    },
}

_NPM_NAME_GLOB: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 214}
_NPM_DEPS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "skip": {"type": "array", "items": _NPM_NAME_GLOB, "maxItems": 10000},
        "pin": {
            "type": "array",
            "maxItems": 10000,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "version", "integrity"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 214},
                    "version": {"type": "string", "minLength": 1, "maxLength": 128},
                    "integrity": {
                        "type": "string",
                        "pattern": r"^sha(1|256|384|512)-[A-Za-z0-9+/=]+"
                        r"(\s+sha(1|256|384|512)-[A-Za-z0-9+/=]+)*$",
                        "x-message": "must be a Subresource Integrity string such as sha512-BASE64",
                    },
                },
            },
        },
    },
}

POLICY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://biv.invalid/schemas/policy/v1",
    "title": "biv policy",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "schema": {"enum": ["biv.policy/v1"]},
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string"},
        "extends": {"type": "string", "minLength": 1},
        "fail_on": {"enum": SEVERITIES},
        "inherited": {"enum": ["info", "keep"]},
        "vendor": {
            "type": "object",
            "additionalProperties": False,
            "properties": _SIGNER_MATCH,
            "minProperties": 1,
        },
        "components": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "source"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "source": {"type": "string", "minLength": 1},
                    "sigstore": _SIGSTORE,
                },
            },
        },
        "allow": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "renamed_main_executable": {"type": "boolean"},
                "resources_only": _GLOBS,
                "missing": _GLOBS,
                "changed": _GLOBS,
            },
        },
        "own": _GLOBS,
        "npm_dependencies": _NPM_DEPS,
        "signers": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path", "require"],
                "properties": {
                    "path": _GLOB,
                    "require": {"enum": REQUIREMENTS},
                    "reason": {"type": "string"},
                    **_SIGNER_MATCH,
                },
            },
        },
        "severity": {
            "type": "object",
            "propertyNames": {"enum": ADJUSTABLE_RULES},
            "additionalProperties": {"enum": SEVERITIES},
        },
        "waivers": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["sha256", "reason", "expires"],
                "properties": {
                    "sha256": _SHA256,
                    "reason": {"type": "string", "minLength": 1},
                    "expires": {
                        "type": "string",
                        "pattern": r"^\d{4}-\d{2}-\d{2}$",
                        "x-message": "must be a date written YYYY-MM-DD",
                    },
                    "rule": {"enum": ADJUSTABLE_RULES},
                    "path": _GLOB,
                },
            },
        },
    },
}
