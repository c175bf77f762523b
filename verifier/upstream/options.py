"""Options shared by every fetched upstream source (electron, pypi, npm, url, TUF)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field

import requests

from verifier.record import record

DEFAULT_ELECTRON_BASE = "https://github.com/electron/electron/releases/download/"
DEFAULT_NPM_REGISTRY = "https://registry.npmjs.org/"
DEFAULT_PYPI = "https://pypi.org/"


def default_cache_dir() -> str:
    import platformdirs

    return platformdirs.user_cache_dir("biv")


@record
class FetchOptions:
    """How to obtain upstream releases.

    ``cache_dir`` None means ``platformdirs.user_cache_dir("biv")``. ``mirror`` is the
    ``--mirror`` flag for Electron downloads (it beats ``ELECTRON_MIRROR``). ``env`` None means
    ``os.environ`` (read for ``ELECTRON_MIRROR`` / ``ELECTRON_CUSTOM_DIR`` like @electron/get).
    """

    cache_dir: str | None = None
    offline: bool = False
    mirror: str | None = None
    electron_custom_dir: str | None = None
    npm_registry: str = DEFAULT_NPM_REGISTRY
    pypi_url: str = DEFAULT_PYPI
    timeout: float = 30.0  # seconds, for connect and for each read
    retries: int = 3  # extra attempts after the first, for transient faults only
    backoff: float = 0.5  # seconds, doubled each retry
    progress: bool = True  # a progress bar on stderr, only when stderr is a TTY
    session_factory: Callable[[], requests.Session] = requests.Session
    env: Mapping[str, str] | None = field(default=None, hash=False)
    ffmpeg: bool = True  # also fetch Electron's ffmpeg-v*.zip as a second reference
    max_metadata_bytes: int = 64 << 20  # cap on JSON / SHASUMS documents
    max_download_bytes: int = 2 << 30  # cap on one archive
    # an overall deadline per download, retries included (a server that trickles a byte
    # every few seconds never trips the per-read timeout), and a minimum average rate over
    # each ``rate_window`` seconds; either one failing makes the source unavailable (exit 3)
    deadline: float = 3600.0
    min_rate: int = 1024  # bytes per second
    rate_window: float = 60.0

    def resolved_cache_dir(self) -> str:
        return self.cache_dir or default_cache_dir()
