"""Caps that keep unpacking a hostile artifact bounded in space, time and depth."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

from verifier.record import record

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


@record
class Limits:
    """Every cap that applies while unpacking one artifact (all layers together).

    Sizes count bytes *written* (extracted), never the sizes an archive header claims.
    """

    max_artifact_bytes: int = 8 * GiB  # the top-level archive file itself (not read above it)
    max_total_bytes: int = 8 * GiB  # all extracted bytes, every layer
    max_member_bytes: int = 4 * GiB  # one extracted file
    max_members: int = 200_000  # files, every layer (asar members included)
    max_ratio: int = 200  # extracted / compressed, for members above ratio_min_bytes
    ratio_min_bytes: int = 1 * MiB
    max_depth: int = 4  # archive layers (the top-level archive is layer 1)
    max_archives: int = 500  # archives opened, every layer (each costs a sandbox run)
    max_seconds: float = 3600.0  # wall clock for the whole unpack
    max_name_len: int = 4096  # bytes of a member's '/'-joined path
    max_dir_depth: int = 256  # directory levels inside one tree
    max_asar_header: int = 64 * MiB
    max_asar_depth: int = 512  # directory levels inside an asar header
    max_problems: int = 1000  # per archive; the rest are summarised in one problem
    # the extraction sandbox (a child process), per archive
    worker_timeout_s: float = 600.0  # wall clock
    worker_cpu_s: int = 300
    worker_memory_bytes: int = 2 * GiB
    # small members may go to pack files instead of files of their own (``pack.py``): set by
    # ``unpack`` for the sandbox when it knows every registered reader
    pack_members: bool = False

    def with_budget(self, *, bytes_left: int, members_left: int) -> Limits:
        """These limits, with the totals narrowed to what is left of the budget."""
        return replace(
            self,
            max_total_bytes=max(0, min(self.max_total_bytes, bytes_left)),
            max_members=max(0, min(self.max_members, members_left)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Limits:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Budget:
    """What is left of the whole-artifact caps while layers are unpacked one by one."""

    def __init__(self, limits: Limits) -> None:
        self.members_left = limits.max_members
        self.bytes_left = limits.max_total_bytes
        self.archives_left = limits.max_archives
        self.deadline = time.monotonic() + limits.max_seconds

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def narrowed(self, limits: Limits) -> Limits:
        """``limits`` with totals and the worker timeout cut to what is left."""
        return replace(
            limits.with_budget(bytes_left=self.bytes_left, members_left=self.members_left),
            worker_timeout_s=max(0.0, min(limits.worker_timeout_s, self.seconds_left())),
        )
