#!/usr/bin/env python3
"""Generate (and sign) the example in-toto layout of an Electron app's release pipeline.

    python attestations/make_layout.py --owner-key owner.pem --functionary-key build.pub \
        [--step-key sign=signer.pub ...] [--expires-days 365] -o electron-release.layout

Steps: fetch-electron, build, sign, package. The rules say that the packaged upstream files
MATCH the fetched Electron release, except as the sign step may MODIFY them (see
verifier/attest/intoto.py, ``electron_release_layout``). ``--unsigned`` writes the layout body
as plain JSON instead, for review.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifier.attest.intoto import STEPS, electron_release_layout, sign_layout
from verifier.errors import BivError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--owner-key", help="private PEM key of the project owner (signs the layout)")
    ap.add_argument(
        "--functionary-key", required=True, help="public PEM key that may sign every step's link"
    )
    ap.add_argument(
        "--step-key",
        action="append",
        default=[],
        metavar="STEP=PUB",
        help=f"a different key for one step ({', '.join(STEPS)})",
    )
    ap.add_argument("--expires-days", type=int, default=365)
    ap.add_argument("--unsigned", action="store_true", help="write the unsigned layout JSON")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    keys = {s: a.functionary_key for s in STEPS}
    for item in a.step_key:
        step, _, pub = item.partition("=")
        if step not in STEPS or not pub:
            ap.error(f"--step-key {item!r}: expected STEP=PUB with STEP in {', '.join(STEPS)}")
        keys[step] = pub
    try:
        layout = electron_release_layout(
            keys, expires=datetime.now(UTC) + timedelta(days=a.expires_days)
        )
        if a.unsigned:
            Path(a.output).write_text(json.dumps(layout, indent=2, sort_keys=True) + "\n")
            return 0
        if not a.owner_key:
            ap.error("--owner-key is required unless --unsigned")
        keyid = sign_layout(layout, a.owner_key, a.output)
    except BivError as e:
        print(f"make_layout: {e.diagnostics()}", file=sys.stderr)
        return 2
    print(f"wrote {a.output} (signed by {keyid[:16]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
