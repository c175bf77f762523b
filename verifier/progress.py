"""A small progress display for long work (unpacking, hashing, downloading), on stderr.

Silent when ``quiet`` or when the stream is not a terminal (CI logs, pipes); colour only when
:func:`color_enabled` says so (``NO_COLOR`` set to anything non-empty disables it, as does
``TERM=dumb``; https://no-color.org). Matches ``verifier.api.Progress``:
``progress(stage, done, total)``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

__all__ = ["ProgressDisplay", "color_enabled", "is_tty", "make_progress"]

_BAR = 24


def is_tty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # closed or odd streams
        return False


def color_enabled(stream: Any) -> bool:
    """True when ``stream`` is a terminal that wants colour (``NO_COLOR`` honoured)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return is_tty(stream)


class ProgressDisplay:
    """One self-overwriting status line: ``biv: unpacking  120/800 [####....]  15%``."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and is_tty(self.stream)
        self.color = self.enabled and color_enabled(self.stream)
        self.min_interval = min_interval
        self.clock = clock
        self._last = float("-inf")
        self._last_stage: str | None = None
        self._shown = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        final = total > 0 and done >= total
        if stage == self._last_stage and not final and now - self._last < self.min_interval:
            return
        self._last, self._last_stage = now, stage
        self._write(self._line(stage, done, total))

    def _line(self, stage: str, done: int, total: int) -> str:
        label = "".join(c if c.isprintable() else "?" for c in stage)[:40]
        if total > 0:
            frac = max(0.0, min(1.0, done / total))
            filled = round(frac * _BAR)
            bar = "#" * filled + "." * (_BAR - filled)
            if self.color:
                bar = f"\x1b[32m{'#' * filled}\x1b[2m{'.' * (_BAR - filled)}\x1b[0m"
            return f"biv: {label:<12} {done:>7}/{total:<7} [{bar}] {frac * 100:3.0f}%"
        return f"biv: {label:<12} {done:>7}"

    def _write(self, line: str) -> None:
        try:
            self.stream.write("\r\x1b[K" + line)
            self.stream.flush()
            self._shown = True
        except (OSError, ValueError):
            self.enabled = False

    def message(self, text: str) -> None:
        """A line of detail (``-v``) that stays, printed above the status line."""
        if not self.enabled:
            return
        self.clear()
        try:
            self.stream.write(text.rstrip("\n") + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False

    def clear(self) -> None:
        if self.enabled and self._shown:
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                self.enabled = False
            self._shown = False

    close = clear

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.clear()


def make_progress(quiet: bool, stream: TextIO | None = None) -> ProgressDisplay | None:
    """A display for ``api.VerifyRequest.progress``, or None when it would print nothing."""
    p = ProgressDisplay(stream, quiet=quiet)
    return p if p.enabled else None
