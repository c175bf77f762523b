"""Apple disk images (UDIF ``.dmg``), extracted with 7-Zip.

A DMG is recognised by its 512-byte ``koly`` trailer. Extraction runs in two steps, each with
``installers.extract_7z`` (listing first, hostile names refused, caps checked, symlinks and
special files dropped afterwards): 7-Zip's ``Dmg`` handler writes the partitions out as
files, then each partition is opened as HFS+, APFS, ISO 9660 or UDF into ``dest``.
Partitions none of them opens (partition maps, free space) are skipped; a DMG in which no
partition opens is a ``MalformedInputError``. ``7z`` (Debian ``p7zip-full``) or ``7zz``
(Debian ``7zip``) must be installed, else ``ToolMissingError``.

7-Zip flattens a disk image's symlinks (a framework's ``Versions/Current -> A``): its ISO
handler ignores Rock Ridge links and writes an empty file, and links of other volumes are
dropped with the rest of what external tools write. They are not compared as links; a
``dmg-symlinks-flattened`` note names them (Rock Ridge links are listed with ``isoinfo``,
Debian ``genisoimage``, when it is installed).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from verifier.errors import MalformedInputError, ToolMissingError
from verifier.unpack import registry
from verifier.unpack.installers import extract_7z
from verifier.unpack.limits import Limits
from verifier.unpack.result import Extraction, Problem

KOLY = b"koly"
TRAILER = 512
PARTITION_KINDS = ("HFS", "APFS", "Iso", "Udf")


def is_dmg(filename: str) -> bool:
    """Whether the file ends with a UDIF ``koly`` trailer (cheap: one 512-byte read)."""
    try:
        size = Path(filename).stat().st_size
        if size < TRAILER:
            return False
        with open(filename, "rb") as fh:
            fh.seek(size - TRAILER)
            tail = fh.read(TRAILER)
    except OSError:
        return False
    return tail[:4] == KOLY and tail[8:12] == b"\0\0\x02\0"


def seven_zip() -> str:
    tool = shutil.which("7z") or shutil.which("7zz")
    if tool is None:
        raise ToolMissingError(
            "reading a DMG needs 7-Zip: install 7z (Debian p7zip-full) or 7zz (Debian 7zip)"
        )
    return tool


def iso_symlinks(image: str, limits: Limits) -> list[tuple[str, str]]:
    """(path, target) of each Rock Ridge symlink of an ISO 9660 image (``isoinfo -R -l``;
    [] without isoinfo or when it fails)."""
    tool = shutil.which("isoinfo")
    if tool is None:
        return []
    try:
        proc = subprocess.run(
            [tool, "-R", "-l", "-i", image],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=limits.worker_timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    out: list[tuple[str, str]] = []
    where = ""
    for line in proc.stdout[: 64 << 20].decode("utf-8", "surrogateescape").splitlines():
        if line.startswith("Directory listing of "):
            where = line[len("Directory listing of ") :].strip("/")
        elif line.startswith("l") and "]  " in line and " -> " in line:
            name, _, target = line.split("]  ", 1)[1].partition(" -> ")
            out.append((f"{where}/{name}" if where else name, target))
    return out


def extract_dmg(src: str, dest: str, limits: Limits) -> Extraction:
    seven_zip()
    parts_dir = f"{dest}.dmgparts"
    Path(parts_dir).mkdir()
    problems: list[Problem] = []
    notes: list[Problem] = []
    try:
        problems += extract_7z(src, parts_dir, limits, kind="Dmg")
        opened = 0
        failures: list[str] = []
        parts = sorted(p for p in Path(parts_dir).rglob("*") if p.is_file())
        for part in parts:
            for kind in PARTITION_KINDS:
                found: list[Problem] = []
                try:
                    problems += extract_7z(str(part), dest, limits, kind=kind, notes=found)
                except MalformedInputError as e:
                    failures.append(f"{part.name} as {kind}: {e.message}"[:200])
                    continue
                opened += 1
                for n in found:  # links of an HFS+/APFS volume that 7-Zip listed or wrote
                    notes.append(Problem("", n.message.replace("tool-links-dropped", _KIND, 1)))
                if kind == "Iso" and (links := sorted(iso_symlinks(str(part), limits))):
                    path, target = links[0]
                    notes.append(
                        Problem(
                            "",
                            f"{_KIND}: the disk image holds {len(links)} symlink(s) (first: "
                            f"{path!r} -> {target!r}) that 7-Zip writes as empty files: they "
                            "are compared as files, not as links",
                        )
                    )
                break
        if not opened:
            raise MalformedInputError(
                "no partition of the disk image could be read"
                + (f" ({failures[0]})" if failures else "")
            )
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return Extraction(problems, [], notes=notes)


_KIND = "dmg-symlinks-flattened"


class DmgReader:
    name = "dmg"

    def sniff(self, head: bytes, filename: str) -> bool:
        # a UDIF image has no magic at its start, only a trailer: reading every file's tail
        # would cost an extra open per file of a 10,000-file tree, so only files named
        # *.dmg are looked at (as 7-Zip does)
        return filename.lower().endswith(".dmg") and is_dmg(filename)

    def extract(self, src: str, dest: str, limits: Limits) -> Extraction:
        return extract_dmg(src, dest, limits)


registry.register(DmgReader(), priority=40)
