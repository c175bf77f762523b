"""Readers of archive and installer formats, found by sniffing the bytes (not the name).

Two kinds of reader plug in here:

* an :class:`Extractor` writes the members of an archive into a fresh directory
  (``dest``). It runs in the sandbox (a child process with resource limits, see
  ``sandbox.py``); afterwards the parent walks ``dest`` with the same checks as any
  directory (symlinks, special files, caps), so a reader that shells out to an external
  tool (7z, msiextract...) only has to extract into ``dest`` and report what it skipped.
* an :class:`InPlaceReader` lists members as byte ranges of the file itself (asar); it
  runs in the parent and must bound every offset, size and count itself.

Readers register themselves at import time with :func:`register`; modules listed in
``BUILTIN_MODULES`` are imported by :func:`load_builtin` (missing optional ones skipped).
The sandbox re-imports the extractor's module by name, so an extractor must be
registered at import time of a module under ``verifier.``; one child may run several
extractions in a row, so ``extract`` must keep no state between calls. Sniffing happens for
every file of every tree, so ``sniff`` must be cheap (look at ``head``; open the file only
when the head already looks right).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from verifier.record import record
from verifier.unpack.limits import Limits
from verifier.unpack.result import Extraction, LinkRecord, Problem

HEAD_SIZE = 64 * 1024  # bytes of a file that readers sniff

BUILTIN_MODULES = (
    "verifier.unpack.zipreader",
    "verifier.unpack.tarreader",
    "verifier.unpack.asar",
    "verifier.unpack.installers",  # optional (CI helper)
    "verifier.unpack.dmg",  # optional (Mach-O helper)
)
_OPTIONAL = {"verifier.unpack.installers", "verifier.unpack.dmg"}


@runtime_checkable
class Extractor(Protocol):
    """Writes members into ``dest``; runs in the sandbox."""

    name: str

    def sniff(self, head: bytes, filename: str) -> bool:
        """True when this reader handles the file.

        ``head``: its first ``HEAD_SIZE`` bytes (fewer if the file is smaller);
        ``filename``: its path on disk (a reader may open it, e.g. to read a trailer).
        Must be cheap and must not raise.
        """
        ...

    def extract(self, src: str, dest: str, limits: Limits) -> list[Problem] | Extraction:
        """Extract ``src`` into the empty directory ``dest``.

        Return one :class:`Problem` per member skipped as hostile or unreadable, or an
        :class:`Extraction` that also lists the symlinks (recorded, never created).
        Raise ``MalformedInputError`` when the archive as a whole cannot be read
        (the caller turns that into ``ArtifactError`` at top level, a problem when nested).
        Never write outside ``dest``; stop at ``limits``.
        """
        ...


@record
class Entry:
    """A member stored in place: ``size`` bytes at ``offset`` of the container file."""

    path: str  # '/'-separated, already validated
    offset: int
    size: int


@runtime_checkable
class InPlaceReader(Protocol):
    """Lists members as byte ranges of the file itself; runs in the parent."""

    name: str

    def sniff(self, head: bytes, filename: str) -> bool: ...

    def entries(
        self, src: str, limits: Limits
    ) -> tuple[list[Entry], list[Problem], list[LinkRecord]]:
        """Members of ``src`` (files, problems, links); raise ``MalformedInputError`` if it
        cannot be read at all."""
        ...


Reader = Extractor | InPlaceReader

_readers: list[tuple[int, int, Reader]] = []


def register(reader: Reader, *, priority: int = 50) -> None:
    """Add ``reader`` (lower ``priority`` is sniffed first; ties in registration order).

    Registering a reader with the name of one already registered replaces it.
    """
    for i, (_, _, r) in enumerate(_readers):
        if r.name == reader.name:
            del _readers[i]
            break
    _readers.append((priority, len(_readers), reader))
    _readers.sort(key=lambda t: (t[0], t[1]))


def readers() -> list[Reader]:
    return [r for _, _, r in _readers]


def get(name: str) -> Reader | None:
    for r in readers():
        if r.name == name:
            return r
    return None


def find(head: bytes, filename: str, among: Iterable[Reader] | None = None) -> Reader | None:
    """The first reader whose ``sniff`` accepts the file, or None."""
    for r in readers() if among is None else among:
        try:
            if r.sniff(head, filename):
                return r
        except Exception:  # noqa: S112 - a sniffer that fails means "not mine"
            continue
    return None


def claims_in_memory(head: bytes, name: str) -> bool:
    """Whether a member whose bytes are all in memory must become a file of its own: some
    reader claims it, or cannot tell without opening the file.

    Each sniffer gets ``head`` and a file name that holds ``name`` (so a test on the name
    still works) but cannot be opened (it starts with NUL): a sniffer that tries to read
    the file raises, and that counts as a claim. ``False`` means that no reader would
    claim the member whatever file held these bytes under this name.
    """
    unopenable = "\0" + name
    for _, _, r in _readers:  # (no list made: called once per packed member)
        try:
            if r.sniff(head, unopenable):
                return True
        except Exception:  # it wanted the file: let it have one
            return True
    return False


def builtin_only() -> bool:
    """Whether every registered reader comes from a ``verifier.`` module (so the sandbox,
    which imports reader modules by name, knows the same readers as this process)."""
    return all(type(r).__module__.startswith("verifier.") for r in readers())


def modules() -> list[str]:
    """The modules of the registered readers."""
    return sorted({type(r).__module__ for r in readers()})


def load_builtin() -> None:
    """Import the built-in reader modules (each registers its readers)."""
    for mod in BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if mod in _OPTIONAL and e.name == mod:
                continue
            raise
