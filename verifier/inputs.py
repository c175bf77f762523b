"""Files named on the command line (policy, trust stores, baselines): regular files only.

A FIFO, a device or a directory given as ``--policy`` or ``--trust-store`` is refused at
once: opening a FIFO for reading would block until a writer appears, and reading a device
may never end. The file is opened without blocking and checked after opening (no race
between the check and the read).
"""

from __future__ import annotations

import os
import stat

from verifier.errors import BivError, UsageError


def read_regular(
    path: str, limit: int, *, what: str = "file", error: type[BivError] = UsageError
) -> bytes:
    """Up to ``limit`` + 1 bytes of the regular file ``path``; ``error`` (exit 2) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror or e}", where=path) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{what} is not a regular file", where=path)
        return fh.read(limit + 1)


def check_regular(path: str, *, what: str = "file", error: type[BivError] = UsageError) -> None:
    """Refuse anything but an existing regular file, without opening it."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror or e}", where=path) from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} is not a regular file", where=path)
