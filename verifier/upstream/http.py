"""HTTP for upstream sources: timeouts, bounded retries with backoff, streaming, progress.

Every failure becomes ``ReferenceUnavailableError`` with one line naming the URL and the
cause. Nothing here trusts what it fetched: callers check digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

import requests

from verifier import __version__, lifecycle
from verifier.errors import ReferenceUnavailableError
from verifier.record import record
from verifier.upstream.options import FetchOptions

CHUNK = 1 << 16
T = TypeVar("T")
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@record
class Downloaded:
    path: str
    sha256: str
    sha512: str
    size: int


class _Transient(Exception):
    pass


class Deadline:
    """The overall time and minimum rate one download (retries included) may take."""

    def __init__(self, url: str, opts: FetchOptions) -> None:
        self.url = url
        self.total = opts.deadline
        self.min_rate = opts.min_rate
        self.window = opts.rate_window
        self.start = time.monotonic()
        self.window_start = self.start
        self.window_bytes = 0

    def check(self, n: int = 0) -> None:
        now = time.monotonic()
        if now - self.start > self.total:
            raise ReferenceUnavailableError(
                f"download did not finish within its {self.total:g} s deadline", where=self.url
            )
        self.window_bytes += n
        if now - self.window_start >= self.window:
            rate = self.window_bytes / (now - self.window_start)
            if rate < self.min_rate:
                raise ReferenceUnavailableError(
                    f"download slower than {self.min_rate} bytes/s ({rate:.0f} bytes/s over "
                    f"{now - self.window_start:.0f} s)",
                    where=self.url,
                )
            self.window_start, self.window_bytes = now, 0


def _chunks(r: requests.Response, deadline: Deadline) -> Iterator[bytes]:
    """The body as it arrives (``read1``: whatever one read gives, so a trickling server is
    seen between bytes), checked against the deadline after every read."""
    import urllib3.exceptions as u3

    raw = r.raw
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # not urllib3 2.x: whole chunks
        for chunk in r.iter_content(CHUNK):
            deadline.check(len(chunk))
            yield chunk
        return
    while True:
        deadline.check()
        try:
            chunk = read1(CHUNK, decode_content=True)
        except u3.ReadTimeoutError as exc:
            raise requests.Timeout(str(exc)) from exc
        except (u3.ProtocolError, u3.IncompleteRead) as exc:
            raise requests.exceptions.ChunkedEncodingError(str(exc)) from exc
        except u3.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(str(exc)) from exc
        if not chunk:
            return
        deadline.check(len(chunk))
        yield chunk


class Progress:
    """A one-line progress bar on a TTY; silent otherwise."""

    def __init__(self, label: str, total: int | None, enabled: bool, stream: IO[str]) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream
        self.enabled = enabled and _isatty(stream)
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        self._draw()

    def _draw(self) -> None:
        mib = self.done / (1 << 20)
        if self.total:
            pct = min(100, self.done * 100 // self.total)
            bar = "#" * (pct // 4)
            line = f"\r{self.label[:40]:40} [{bar:25}] {pct:3d}% {mib:7.1f} MiB"
        else:
            line = f"\r{self.label[:40]:40} {mib:7.1f} MiB"
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class HttpClient:
    """A ``requests`` session with biv's network policy."""

    def __init__(self, opts: FetchOptions) -> None:
        self.opts = opts
        self._session: requests.Session | None = None
        self.requests_made = 0

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            s = self.opts.session_factory()
            s.headers.setdefault("User-Agent", f"biv/{__version__}")
            self._session = s
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- public -----------------------------------------------------------------------

    def get_bytes(self, url: str, *, what: str = "document") -> bytes:
        """GET a small document (capped at ``max_metadata_bytes``)."""
        data = self.get_bytes_or_none(url, what=what, none_on_404=False)
        assert data is not None
        return data

    def get_bytes_or_none(
        self, url: str, *, what: str = "document", none_on_404: bool = True
    ) -> bytes | None:
        """Like ``get_bytes``; a 404 answer gives None instead of an error."""
        limit = self.opts.max_metadata_bytes
        deadline = Deadline(url, self.opts)

        def attempt() -> bytes | None:
            with self._open(url, none_on_404=none_on_404) as r:
                if r is None:
                    return None
                buf = bytearray()
                for chunk in _chunks(r, deadline):
                    buf += chunk
                    if len(buf) > limit:
                        raise ReferenceUnavailableError(
                            f"{what} larger than {limit} bytes", where=url
                        )
                _check_length(r, len(buf))
                return bytes(buf)

        return self._retrying(url, attempt, deadline)

    def download(self, url: str, dest_dir: str, *, label: str | None = None) -> Downloaded:
        """Stream ``url`` into a new file in ``dest_dir``, hashing as it arrives."""
        Path(dest_dir).mkdir(parents=True, exist_ok=True)
        limit = self.opts.max_download_bytes
        deadline = Deadline(url, self.opts)

        def attempt() -> Downloaded:
            fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-")
            lifecycle.track_file(tmp)  # removed if biv is interrupted
            h256 = hashlib.sha256()
            h512 = hashlib.sha512()
            size = 0
            try:
                with os.fdopen(fd, "wb") as out, self._open(url) as r:
                    assert r is not None
                    total = _content_length(r)
                    bar = Progress(
                        label or url.rsplit("/", 1)[-1], total, self.opts.progress, sys.stderr
                    )
                    try:
                        for chunk in _chunks(r, deadline):
                            size += len(chunk)
                            if size > limit:
                                raise ReferenceUnavailableError(
                                    f"download larger than {limit} bytes", where=url
                                )
                            h256.update(chunk)
                            h512.update(chunk)
                            out.write(chunk)
                            bar.update(len(chunk))
                    finally:
                        bar.close()
                    _check_length(r, size)
            except BaseException:
                _unlink(tmp)
                raise
            finally:
                lifecycle.untrack_file(tmp)
            return Downloaded(tmp, h256.hexdigest(), h512.hexdigest(), size)

        return self._retrying(url, attempt, deadline)

    # --- internals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(self, url: str, *, none_on_404: bool = False) -> Iterator[requests.Response | None]:
        r = self._request(url)
        if r.status_code == 404 and none_on_404:
            r.close()
            yield None
            return
        if r.status_code != 200:
            r.close()
            raise ReferenceUnavailableError(
                f"HTTP {r.status_code} {r.reason or ''}".strip(), where=url
            )
        with r:
            yield r

    def _request(self, url: str) -> requests.Response:
        if self.opts.offline:
            raise ReferenceUnavailableError("offline mode and not in the cache", where=url)
        if not url.startswith(("https://", "http://")):
            raise ReferenceUnavailableError("only http(s) URLs can be fetched", where=url)
        self.requests_made += 1
        try:
            r = self.session.get(url, stream=True, timeout=(self.opts.timeout, self.opts.timeout))
        except requests.Timeout as exc:
            raise _Transient(f"timed out after {self.opts.timeout:g}s ({_short(exc)})") from exc
        except requests.ConnectionError as exc:
            raise _Transient(f"connection failed: {_short(exc)}") from exc
        except requests.RequestException as exc:
            raise ReferenceUnavailableError(f"request failed: {_short(exc)}", where=url) from exc
        if url.startswith("https://") and not r.url.startswith("https://"):
            r.close()
            raise ReferenceUnavailableError(
                f"refusing a redirect from https to {r.url.split('://', 1)[0]}", where=url
            )
        if r.status_code in _TRANSIENT_STATUS:
            r.close()
            raise _Transient(f"HTTP {r.status_code} {r.reason or ''}".strip())
        return r

    def _retrying(self, url: str, attempt: Callable[[], T], deadline: Deadline | None = None) -> T:
        delay = self.opts.backoff
        tries = max(0, self.opts.retries) + 1
        last = "unknown error"
        for i in range(tries):
            if deadline is not None:
                deadline.check()
            try:
                return attempt()
            except _Transient as exc:
                last = str(exc)
            except requests.Timeout as exc:
                last = f"timed out after {self.opts.timeout:g}s ({_short(exc)})"
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                last = f"connection broken: {_short(exc)}"
            except requests.RequestException as exc:
                raise ReferenceUnavailableError(
                    f"request failed: {_short(exc)}", where=url
                ) from exc
            if i + 1 < tries and delay > 0:
                time.sleep(delay)
                delay *= 2
        raise ReferenceUnavailableError(f"{last} (after {tries} attempt(s))", where=url)


def _content_length(r: requests.Response) -> int | None:
    v = r.headers.get("Content-Length")
    if v is None or "Content-Encoding" in r.headers:
        return None
    try:
        n = int(v)
    except ValueError:
        return None
    return n if n >= 0 else None


def _check_length(r: requests.Response, got: int) -> None:
    want = _content_length(r)
    if want is not None and got != want:
        raise _Transient(f"connection closed after {got} of {want} bytes")


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 200 else text[:197] + "..."


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        Path(path).unlink()
