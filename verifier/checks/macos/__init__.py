"""macOS app bundles: verify each top-level bundle's seal and nested code in the inventory.

``bundle.check_bundle`` does the work on the extracted tree (``layout``: where a
bundle keeps its parts; ``seal``: the seal's rules and special slots); this module finds the
bundles among the inventory's entries, hands it the digests the inventory already has (so no
file is read twice) and maps its anomalies back to app-root-relative paths.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from verifier.analysis import AnalysisContext
from verifier.checks.macos.bundle import check_bundle
from verifier.model import Anomaly, FileResult, Inventory

_PLIST = "Contents/Info.plist"
# containers that cannot represent symbolic links (a wheel's installer writes none, and the
# format has no place for them): a sealed symlink absent from such a tree is a note
_LINKLESS_SUFFIXES = (".whl", ".egg", ".nupkg", ".jar")


def holds_links(container: Sequence[str]) -> bool:
    """Whether every archive layer a file came through can hold symbolic links."""
    return not any(layer.lower().endswith(_LINKLESS_SUFFIXES) for layer in container)


def bundle_seal_anomalies(
    inv: Inventory, results: Sequence[FileResult], ctx: AnalysisContext | None = None
) -> list[Anomaly]:
    by_path = {e.path: e for e in inv.entries}
    rel_of_location = {r.shipped.location: r.path for r in results if r.shipped is not None}
    out: list[Anomaly] = []
    for e in inv.entries:
        if not (e.path == _PLIST or e.path.endswith("/" + _PLIST)):
            continue
        # the bundle's folder inside the inventory ('' when the artifact is the bundle)
        inv_prefix = e.path[: -len(_PLIST)]
        if "Contents/" in inv_prefix:
            continue  # a nested bundle: its top-level bundle checks it
        if e.blob is None or e.blob.offset != 0:
            continue  # not a file on disk (inside an asar)
        disk_bundle = e.blob.path[: -len(_PLIST) - 1]
        bundle = os.path.basename(disk_bundle)
        if not bundle.endswith(".app"):
            continue
        root_dir = os.path.dirname(disk_bundle)
        known = {
            f"{bundle}/{p[len(inv_prefix) :]}": (x.sha256, x.facts)
            for p, x in by_path.items()
            if p.startswith(inv_prefix)
        }
        links = holds_links(e.container)
        result = check_bundle(root_dir, bundle, ctx, known=known, links=links)
        for a in result.anomalies:
            key = str(a.evidence.get("path") or bundle)
            inner = key[len(bundle) + 1 :] if key.startswith(bundle + "/") else ""
            inv_path = inv_prefix + inner if inner else (inv_prefix.rstrip("/") or bundle)
            entry = by_path.get(inv_path)
            location = entry.location if entry is not None else inv_path
            path = rel_of_location.get(location, inv_path)
            ev = {**a.evidence, "path": path, "location": location, "bundle": bundle}
            out.append(replace(a, evidence=ev))
    return out
