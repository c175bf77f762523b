"""Progress display: silent when quiet or not a TTY; NO_COLOR honoured (real pty, no mocks)."""

from __future__ import annotations

import io
import os
import select
from collections.abc import Iterator
from typing import TextIO

import pytest

from verifier.progress import ProgressDisplay, color_enabled, make_progress


@pytest.fixture
def tty() -> Iterator[tuple[TextIO, int]]:
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w", encoding="utf-8")
    try:
        yield stream, master
    finally:
        stream.close()
        os.close(master)


def _read(master: int, expect: bool = True) -> str:
    """All that arrived on the pty (waits up to 2 s for the first byte when ``expect``)."""
    out = b""
    wait = 2.0 if expect else 0.2
    while select.select([master], [], [], wait)[0]:
        chunk = os.read(master, 65536)
        if not chunk:
            break
        out += chunk
        wait = 0.1
    return out.decode()


def test_silent_when_not_a_tty() -> None:
    buf = io.StringIO()
    p = ProgressDisplay(buf)
    p("unpacking", 1, 10)
    p.message("detail")
    p.clear()
    assert buf.getvalue() == ""
    assert make_progress(False, buf) is None
    assert not color_enabled(buf)


def test_tty_shows_progress_and_quiet_silences(
    tty: tuple[TextIO, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, master = tty
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    t = [0.0]
    p = ProgressDisplay(stream, clock=lambda: t[0])
    assert p.enabled and p.color
    p("hashing", 5, 10)
    p("hashing", 6, 10)  # throttled: same stage, too soon
    t[0] = 1.0
    p("hashing", 10, 10)
    p.clear()
    out = _read(master)
    assert "5/10" in out and "6/10" not in out and "10/10" in out and "100%" in out
    assert "\x1b[32m" in out
    q = ProgressDisplay(stream, quiet=True)
    q("hashing", 1, 2)
    assert _read(master, expect=False) == ""
    assert make_progress(True, stream) is None


def test_no_color(tty: tuple[TextIO, int], monkeypatch: pytest.MonkeyPatch) -> None:
    stream, master = tty
    monkeypatch.setenv("NO_COLOR", "1")
    assert not color_enabled(stream)
    p = ProgressDisplay(stream)
    p("downloading", 3, 4)
    out = _read(master)
    assert "3/4" in out and "\x1b[32m" not in out
    monkeypatch.setenv("NO_COLOR", "")
    monkeypatch.setenv("TERM", "dumb")
    assert not color_enabled(stream)


def test_hostile_stage_names_are_sanitised(tty: tuple[TextIO, int]) -> None:
    stream, master = tty
    p = ProgressDisplay(stream)
    p("evil\x1b]0;title\x07", 1, 0)
    out = _read(master)
    assert "\x1b]0" not in out and "\x07" not in out and "evil?" in out
