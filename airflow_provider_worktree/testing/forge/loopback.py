"""The loopback HTTP server both offline forges run on (TEST DOUBLES): a threading server whose handler hands every
request (method, path, query, headers, body; chunked bodies read) to the forge's ``handle`` and writes what it
returns: JSON, or the bytes of git's smart HTTP."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


class LoopbackForge:
    """Start, stop and context management of a forge double with ``host``, ``port`` and ``handle(...)``."""

    host: str
    port: int
    request_log: Any = None
    _lock: Any
    _httpd: ThreadingHTTPServer | None = None

    def _log_exchange(self, method: str, path: str, query: str, status: int, request: Any, response: Any) -> None:
        """One exchange as a JSON line in ``request_log`` (when set), for checking the traffic against a contract."""
        if self.request_log is not None:
            with self._lock, self.request_log.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"method": method, "path": path, "query": query, "status": status,
                                    "request": request, "response": response}) + "\n")

    def _listening(self) -> str:
        return f"offline forge TEST DOUBLE listening on {self.host}:{self.port}"

    def start(self) -> Any:
        forge = self

        class Handler(_Handler):
            owner = forge

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, name=type(self).__name__, daemon=True).start()
        log.info("%s", self._listening())
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    owner: Any
    protocol_version = "HTTP/1.1"
    server_version = "OfflineForgeTestDouble/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not length and self.headers.get("transfer-encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        headers.update({"Content-Type": self.headers.get("content-type", ""),
                        "Content-Encoding": self.headers.get("content-encoding", ""),
                        "Git-Protocol": self.headers.get("git-protocol", ""),
                        "Authorization": self.headers.get("authorization", "")})
        status, extra, payload = self.owner.handle(method, parts.path, parts.query, headers, raw)
        data = payload if isinstance(payload, bytes) else b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            if not isinstance(payload, bytes):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")
