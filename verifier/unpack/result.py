"""What unpacking produces: members (byte ranges on disk) and problems."""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

from verifier.record import record

if TYPE_CHECKING:  # the sandbox worker imports this module; keep it light
    from verifier import model

MALFORMED = "malformed-input"


@record(slots=True)
class Member:
    """One file of the artifact.

    ``path``: '/'-separated path inside the artifact, nested archives appearing as
    directories (``app/inner.zip/x.dll``). ``location``: the full path through containers,
    ``!/`` between an archive and a member (``outer.zip!/app/inner.zip!/x.dll``).
    ``container``: the archive layers, outermost first, each named by its path inside its
    parent layer, so that ``location == "!/".join(container + (leaf,))``.
    ``sha256`` is filled when unpacking already hashed the bytes (None otherwise).
    """

    path: str
    location: str
    container: tuple[str, ...]
    blob: model.Blob
    sha256: str | None = None
    # the first MAGIC_SIZE bytes, when unpacking read them anyway (enough to tell data from
    # executable formats without opening the file again)
    magic: bytes = b""


@record
class Unpacked:
    source: str  # the artifact's path as given
    sha256: str  # file digest, or tree digest for a directory ('' when not read: over a cap)
    size: int  # file size, or the sum of the file sizes for a directory
    members: tuple[Member, ...]  # sorted by path
    problems: tuple[model.Anomaly, ...]  # malformed-input, one per hostile member
    links: tuple[model.Link, ...] = ()  # symlinks and hard links, sorted by path
    # reader names of every archive layer opened ('zip', 'msi', 'nsis', 'dmg'...)
    formats: frozenset[str] = frozenset()
    notes: tuple[model.Note, ...] = ()  # what the external extractors cannot represent


@record
class LinkRecord:
    """A link inside one archive layer, as stored (never created on disk).

    A symbolic link: ``target`` is the link's text; ``from_root`` says it is relative to the
    archive's root (asar, an absolute target in a .deb) rather than to the link's own
    directory (tar, zip, a directory tree).

    A hard link (``hard``, tar ``LNKTYPE``): ``target`` is the cleaned path of the regular
    member stored earlier in the same layer whose file it shares (chains already followed).
    """

    member: str
    target: str
    from_root: bool = False
    hard: bool = False


@record
class Extraction:
    """What an extractor reports: members it skipped (problems) and links it did not create.

    ``Extractor.extract`` may return a plain list of problems (no links) or this."""

    problems: list[Problem]
    links: list[LinkRecord]
    files: int = -1  # files and bytes written, when the extractor counted them (-1: not)
    size: int = -1
    # what the extractor (an external tool) cannot represent, met in this archive: the
    # report's notes (``member`` '' = the archive itself)
    notes: list[Problem] = field(default_factory=list)
    # members in pack files (``pack.py``), per pack: their names and sizes, in order
    packs: list[tuple[list[str], list[int]]] = field(default_factory=list)


@record
class Problem:
    """A hostile or unreadable member, named by its path inside one archive layer."""

    member: str  # '' = the archive itself
    message: str


def anomaly(location: str, path: str, message: str) -> model.Anomaly:
    # lazy: the sandbox worker imports this module and must start without verifier.model
    from verifier import model

    return model.Anomaly(
        rule=MALFORMED, message=message, evidence={"location": location, "path": path}
    )
