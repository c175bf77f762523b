"""Policy: schema, loading and evaluation (statuses + facts + policy -> findings).

Modules: ``model`` (``Policy``, ``Policy.default()``), ``load`` (``load_policy``,
``check_policy``), ``evaluate``, ``glob``. The package re-exports the evaluation functions:
``from verifier.policy import evaluate`` is the *function*; import names from the module
with ``from verifier.policy.evaluate import ...`` when you need anything else.
"""

from verifier.policy.evaluate import (
    classify_own,
    effective_fail_on,
    evaluate,
    exit_code,
    finding_fails,
    is_allowed_changed,
    is_allowed_missing,
    is_allowed_resources_only,
    renamed_main_allowed,
    verdict,
)
from verifier.policy.model import Policy

__all__ = [
    "Policy",
    "classify_own",
    "effective_fail_on",
    "evaluate",
    "exit_code",
    "finding_fails",
    "is_allowed_changed",
    "is_allowed_missing",
    "is_allowed_resources_only",
    "renamed_main_allowed",
    "verdict",
]
