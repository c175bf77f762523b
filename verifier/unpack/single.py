"""A lone PE, Mach-O or ELF file that no archive reader claims: an artifact of one file.

``biv verify ffmpeg.dll --against path:electron-v28/`` compares it like any member, and
``--against path:node.exe`` uses one file as the reference. Its sha256 comes from the
analysis pass (read once).
"""

from __future__ import annotations

import os

from verifier.binary.sniff import SNIFF, sniff
from verifier.model import Blob
from verifier.unpack import registry
from verifier.unpack.limits import Limits
from verifier.unpack.result import Member, Unpacked


def single_binary(path: str) -> Unpacked | None:
    """``path`` as an Unpacked of one member when it is a lone binary, else None."""
    if not os.path.isfile(path):
        return None
    blob = Blob.of_file(path)
    if blob.size > Limits().max_artifact_bytes:
        return None  # unpack reports it over the cap, unread
    head = blob.read(0, SNIFF)
    if not sniff(head, blob.size).is_code:
        return None
    registry.load_builtin()
    if registry.find(head, path) is not None:
        return None  # an installer or archive: unpack it
    name = os.path.basename(path)
    return Unpacked(path, "", blob.size, (Member(name, name, (), blob),), ())
