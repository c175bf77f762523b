"""Where a macOS bundle keeps its parts (``Contents/`` or ``Versions/Current``): the main
executable, Info.plist and the seal, with every path kept inside the tree being checked."""

from __future__ import annotations

import os
import plistlib
from dataclasses import dataclass
from pathlib import PurePosixPath

MAX_INFO_PLIST = 1 << 20


def safe_join(root: str, rel: str) -> str | None:
    """``root/rel`` if it stays inside ``root`` (no '..', no absolute), else None."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        return None
    full = os.path.join(root, *p.parts)
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.dirname(full))
    if parent != real_root and not parent.startswith(real_root + os.sep):
        return None
    return full


def inside(root: str, path: str) -> bool:
    """Whether ``path`` (symlinks resolved) stays inside ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def read_capped(path: str, cap: int) -> bytes | None:
    try:
        if os.path.getsize(path) > cap:
            return None
        with open(path, "rb") as fh:
            return fh.read(cap + 1)
    except OSError:
        return None


@dataclass
class Layout:
    content: str  # the directory CodeResources keys are relative to
    info_plist: str | None
    executable: str | None
    code_resources: str


def _content_dir(bundle: str, root_dir: str) -> tuple[str, str] | None:
    """(content directory, Info.plist path) of a bundle, or None."""
    versions = os.path.join(bundle, "Versions")
    if os.path.isdir(versions) and not os.path.isdir(os.path.join(bundle, "Contents")):
        cur = os.path.join(versions, "Current")
        if os.path.islink(cur):
            content = safe_join(versions, os.readlink(cur))
        else:
            names = sorted(n for n in os.listdir(versions) if n != "Current")
            content = os.path.join(versions, names[0]) if names else None
        if content is None or not os.path.isdir(content) or not inside(root_dir, content):
            return None
        return content, os.path.join(content, "Resources", "Info.plist")
    content = os.path.join(bundle, "Contents")
    if not os.path.isdir(content) or not inside(root_dir, content):
        return None
    return content, os.path.join(content, "Info.plist")


def _executable_name(bundle: str, info_bytes: bytes | None) -> str:
    """CFBundleExecutable, else the bundle's name without its suffix."""
    name = None
    if info_bytes is not None:
        try:
            pl = plistlib.loads(info_bytes)
            if isinstance(pl, dict) and isinstance(pl.get("CFBundleExecutable"), str):
                name = str(pl["CFBundleExecutable"])
        except Exception:  # a hostile plist is just not a name
            name = None
    return name if name is not None else os.path.splitext(os.path.basename(bundle.rstrip("/")))[0]


def layout(bundle: str, root_dir: str) -> Layout | None:
    got = _content_dir(bundle, root_dir)
    if got is None:
        return None
    content, info = got
    info_ok = os.path.isfile(info) and inside(root_dir, info)
    exe_name = _executable_name(bundle, read_capped(info, MAX_INFO_PLIST) if info_ok else None)
    exe_dir = (
        content if bundle.rstrip("/").endswith(".framework") else os.path.join(content, "MacOS")
    )
    exe = safe_join(exe_dir, exe_name) if "/" not in exe_name else None
    return Layout(
        content=content,
        info_plist=info if info_ok else None,
        executable=exe if exe and os.path.isfile(exe) and inside(root_dir, exe) else None,
        code_resources=os.path.join(content, "_CodeSignature", "CodeResources"),
    )
