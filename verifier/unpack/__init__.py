"""Unpacking a shipped artifact safely: directory, zip, tar, asar, nested archives, installers.

Public API::

    unpack(path, workdir, limits=Limits()) -> Unpacked
    Limits, Member, Unpacked, tree_digest, directory_digest
    registry.register(reader)  # Extractor or InPlaceReader (see registry.py)

Naming: ``Member.path`` is the '/'-separated path inside the artifact with nested archives
shown as directories (``app/inner.zip/x.dll``); ``Member.location`` joins the layers with
``!/`` (``outer.zip!/app/inner.zip!/x.dll``); ``Member.container`` lists the layers, each
named by its path inside its parent, so ``location == "!/".join(container + (leaf,))``.
A nested archive (``.asar`` included) is itself a member too. ``Member.sha256`` is set for
every file on disk (walked and hashed here) and None for asar members (read in place).

Decisions:

* Directories are walked in-process; archives are extracted by a sandboxed child process
  (``sandbox.py``), one per layer of nesting, and what it wrote is walked again with the
  same checks. Asar archives are read in place, never extracted; archives *inside* an asar
  are not opened.
* Links are never followed nor created; they are recorded and checked per layer
  (``links.py``): one leaving the tree, a loop, or a member crossing a link is a
  ``malformed-input`` problem, the others are ``Unpacked.links`` (compared with upstream's).
  A tar hard link to an earlier member is a link, and its name a member with the stored
  file's bytes; any other hard link is a problem. Devices, FIFOs, sockets: problems.
* What an external tool cannot represent (a DMG's symlinks, an MSI's Binary streams...)
  comes back as ``Unpacked.notes``.
* Hostile members are skipped and reported; the archive goes on. The whole-archive caps
  (total bytes, overall ratio, member count) stop extraction with one problem. A top-level
  archive that cannot be read at all (missing, truncated, corrupt structure, unknown
  format) raises ``ArtifactError``; the same inside another archive is a problem. A
  sandbox that had to be stopped (timeout, memory/CPU cap, crash) is a problem.
* Size caps count bytes written, never header claims. A directory artifact given by the
  user is only counted against ``max_members`` (its bytes are already on disk).

This module stays light: the sandbox worker imports ``verifier.unpack.*`` in a fresh child
process, so the pipeline (``core``) is imported on first use only.
"""

from __future__ import annotations

from verifier.unpack.limits import Limits
from verifier.unpack.result import Member, Problem, Unpacked

__all__ = ["Limits", "Member", "Problem", "Unpacked", "directory_digest", "tree_digest", "unpack"]


def unpack(
    path: str,
    workdir: str,
    limits: Limits | None = None,
    *,
    hash_files: bool = True,
    strict_top: bool = False,
) -> Unpacked:
    """See :func:`verifier.unpack.core.unpack`."""
    # lazy: the sandbox worker imports verifier.unpack in a fresh child per archive layer;
    # the pipeline (core, walk) loads only where it runs
    from verifier.unpack import core

    return core.unpack(path, workdir, limits, hash_files=hash_files, strict_top=strict_top)


def tree_digest(pairs: list[tuple[str, str]]) -> str:
    """See :func:`verifier.unpack.core.tree_digest`."""
    # lazy: the sandbox worker imports verifier.unpack in a fresh child per archive layer;
    # the pipeline (core, walk) loads only where it runs
    from verifier.unpack import core

    return core.tree_digest(pairs)


def directory_digest(path: str) -> str:
    """The tree digest of the directory ``path`` (as the report gives for a directory
    artifact): its regular files walked as ``unpack`` walks them, hashed, then ``tree_digest``."""
    # lazy: the sandbox worker imports verifier.unpack in a fresh child per archive layer;
    # the pipeline (core, walk) loads only where it runs
    from verifier.unpack.limits import Budget
    from verifier.unpack.walk import walk

    limits = Limits()
    files, _ = walk(path, limits, Budget(limits), count_bytes=False)
    return tree_digest([(f.rel, f.sha256) for f in files])
