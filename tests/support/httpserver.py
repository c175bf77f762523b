"""A real HTTP server on 127.0.0.1 for network tests (threads, ``http.server``).

    with LocalServer(root=tmp_path) as srv:      # serves files under root
        srv.url                                   # "http://127.0.0.1:PORT/"
        srv.put("a/b.txt", b"bytes")              # serve bytes at a path
        srv.fault("a/b.txt", "stall")             # stall | drop | truncate | 404 | 500 | ...
        srv.fault_all("500")                      # every path
        srv.count, srv.paths                      # requests seen (counting server)

Faults: ``stall`` sends headers then nothing (until the server stops or ``stall_seconds``),
``hang`` sends nothing at all, ``drop`` closes the connection without an answer,
``truncate`` promises more bytes than it sends and closes, ``trickle`` sends one byte of the
body per second (each read is fast, the download never ends), a number answers with that
status.
A fault can be limited to the first N requests (``times=N``) to test retries.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class _Fault:
    mode: str
    times: int | None  # None = always


class LocalServer:
    def __init__(self, root: str | Path | None = None, stall_seconds: float = 10.0) -> None:
        self.root = Path(root) if root is not None else None
        self.stall_seconds = stall_seconds
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, _Fault] = {}
        self.all_fault: _Fault | None = None
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- configuration ----------------------------------------------------------------

    def put(self, path: str, data: bytes) -> str:
        self.files[path.lstrip("/")] = data
        return self.url + path.lstrip("/")

    def fault(self, path: str, mode: str, times: int | None = None) -> None:
        self.faults[path.lstrip("/")] = _Fault(mode, times)

    def fault_all(self, mode: str | None, times: int | None = None) -> None:
        self.all_fault = None if mode is None else _Fault(mode, times)

    def clear(self) -> None:
        self.faults.clear()
        self.all_fault = None

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.paths)

    def reset_count(self) -> None:
        with self._lock:
            self.paths.clear()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> LocalServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

            def do_HEAD(self) -> None:
                server._handle(self, head=True)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- handling ---------------------------------------------------------------------

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            for f in (self.faults.get(path), self.all_fault):
                if f is None:
                    continue
                if f.times is None:
                    return f.mode
                if f.times > 0:
                    f.times -= 1
                    return f.mode
        return None

    def _body(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        if self.root is None:
            return None
        p = (self.root / path).resolve()
        root = self.root.resolve()
        if root not in p.parents and p != root:
            return None
        return p.read_bytes() if p.is_file() else None

    def _handle(self, h: BaseHTTPRequestHandler, head: bool = False) -> None:
        path = unquote(urlsplit(h.path).path).lstrip("/")
        with self._lock:
            self.paths.append(path)
        mode = self._take_fault(path)
        if mode == "hang":
            self._stop.wait(self.stall_seconds)
            return
        if mode == "drop":
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return
        if mode is not None and mode.isdigit():
            self._send(h, int(mode), f"fault {mode}\n".encode(), head)
            return
        body = self._body(path)
        if body is None:
            self._send(h, 404, b"not found\n", head)
            return
        if mode == "stall":
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.flush()
            self._stop.wait(self.stall_seconds)
            h.close_connection = True
            return
        if mode == "trickle":
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            for i in range(len(body)):
                try:
                    h.wfile.write(body[i : i + 1])
                    h.wfile.flush()
                except OSError:
                    break
                if self._stop.wait(1.0):
                    break
            h.close_connection = True
            return
        if mode == "truncate":
            h.send_response(200)
            h.send_header("Content-Length", str(len(body) + 1000))
            h.end_headers()
            h.wfile.write(body[: max(1, len(body) // 2)])
            h.wfile.flush()
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return
        self._send(h, 200, body, head)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, head: bool) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        if not head:
            h.wfile.write(body)
