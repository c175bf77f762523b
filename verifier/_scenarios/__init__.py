"""Scenario builders: the test kit that ``biv demo`` and the test suite share. Private.

Not part of biv's documented API (docs/INTERNALS.md "Layers"): nothing here verifies
anything. It writes inputs for the verifier: PE files (``pewriter``), Mach-O files, fat files,
signatures and app bundles (``macho``, ``macho_app``), DMG images (``macho_dmg``), throwaway
PKIs (``pki``), ``osslsigncode`` wrappers (``osslsign``), 3CX-style tampering (``payload``),
an app's npm packages and a registry on 127.0.0.1 (``npm_deps``), and the whole 3CX scenario
(``scenario``).

Only the demo runner (``verifier.demo``) and the tests and benchmarks import it; an
import-linter contract (``pyproject.toml``, id ``scenarios-private``) forbids every other
module of the product from doing so. Names here may change without notice.
"""
