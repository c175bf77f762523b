"""A SOURCE's trailing options: ``LOCATION,key=value,...`` (e.g. ``,bundle=F,identity=ID``).

A leaf of the upstream stage: ``resolve`` (every SOURCE) and ``sources`` (fetched SOURCEs) both
split options here, so neither imports the other for it.
"""

from __future__ import annotations

import re

_OPTION = re.compile(r"^[a-z][a-z0-9_-]{0,31}=")


def split_options(text: str) -> tuple[str, dict[str, str]]:
    """``LOCATION,key=value,...`` -> (LOCATION, options); a location may itself hold commas."""
    parts = text.split(",")
    opts: dict[str, str] = {}
    while len(parts) > 1 and _OPTION.match(parts[-1]):
        k, _, v = parts.pop().partition("=")
        opts[k] = v
    return ",".join(parts), opts
