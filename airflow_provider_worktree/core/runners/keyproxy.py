"""A loopback proxy that adds the API key, so a process we run never holds it.

The Claude Code CLI needs to call the Messages API, and every command it runs inherits its environment (and can
read its ``/proc/<pid>/environ``). :class:`KeyProxy` keeps the real key in the worker: it listens on
``127.0.0.1`` on a random port, outside the box, for the duration of one run; the CLI gets
``ANTHROPIC_BASE_URL=http://127.0.0.1:<port>`` and, as its key, a random per-run token. Each request must carry
that token (``x-api-key`` or ``Authorization: Bearer``, compared in constant time); the proxy drops it, sets
``x-api-key`` to the real key and forwards the request to the real base URL (HTTPS verified with the system's
trust store; ``HTTPS_PROXY``/``NO_PROXY`` of the worker honoured). Responses come back as they arrive: a
streamed (SSE) body is relayed chunk by chunk, never buffered. A wrong or missing token is a 401 and nothing is
forwarded. The key appears in no response, log line or error message of the proxy.

What it does not do: a command that runs during the run can read the token and call the API through the proxy
until the run ends (the token is worthless afterwards); it can never learn the key.

Plain Python, standard library only: no Airflow import.
"""

from __future__ import annotations

import hmac
import http.client
import http.server
import logging
import secrets
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from typing import Any, Self

from airflow_provider_worktree.core.errors import ConfigurationError

__all__ = ["DEFAULT_UPSTREAM", "KeyProxy"]

DEFAULT_UPSTREAM = "https://api.anthropic.com"
#: Largest request body forwarded (the Messages API's own request limit is 32 MB).
MAX_BODY_BYTES = 64 * 1024 * 1024
_TOKEN_PREFIX = "wt-proxy-"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade"})
#: Request headers never forwarded: the client's credentials (replaced), and what the connection decides.
_DROPPED_REQUEST = _HOP_BY_HOP | {"host", "content-length", "x-api-key", "authorization"}
_CHUNK = 64 * 1024


class KeyProxy:
    """A loopback HTTP server that forwards to ``upstream`` with ``x-api-key: api_key``; see the module docstring.

    Use as a context manager (or :meth:`start` / :meth:`close`)::

        with KeyProxy("https://api.anthropic.com", key) as proxy:
            env = {"ANTHROPIC_BASE_URL": proxy.base_url, "ANTHROPIC_API_KEY": proxy.token}

    :param upstream: the real API base URL (``http`` or ``https``, optionally with a path prefix).
    :param api_key: the real key, sent upstream as ``x-api-key``.
    :param timeout: seconds of silence from the upstream before a request is given up.
    """

    def __init__(self, upstream: str | None, api_key: str, *, timeout: float = 600,
                 logger: logging.Logger | None = None) -> None:
        upstream = (upstream or DEFAULT_UPSTREAM).strip()
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"the API base URL {upstream!r} is not an http(s) URL; give one such as "
                                     f"{DEFAULT_UPSTREAM!r}.")
        if not api_key:
            raise ConfigurationError("the key proxy needs an API key to add.")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._upstream_origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self._key = api_key
        self.timeout = float(timeout)
        self.log = logger or logging.getLogger(__name__)
        #: The per-run token the client presents instead of the key.
        self.token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.requests = 0  # forwarded requests (for the runner's log)

    def __repr__(self) -> str:  # never the key, never the token
        return f"KeyProxy(upstream={self._upstream_origin + self._prefix!r}, listening={self.base_url!r})"

    # -- lifetime ---------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` once started, else None."""
        if self._server is None:
            return None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="wt-key-proxy", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop listening; the token is worthless from now on. Requests in flight are cut off."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request ------------------------------------------------------------------------------------------------
    def authorized(self, headers: Any) -> bool:
        presented = headers.get("x-api-key") or ""
        auth = headers.get("authorization") or ""
        if not presented and auth[:7].lower() == "bearer ":
            presented = auth[7:].strip()
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.token.encode())

    def upstream_connection(self) -> tuple[http.client.HTTPConnection, str]:
        """A connection to the upstream (through the worker's proxy when its environment names one) and the
        request target prefix for it."""
        proxies = urllib.request.getproxies()
        proxy = proxies.get(self._scheme)
        if proxy and not urllib.request.proxy_bypass(self._host):
            pp = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            proxy_host, proxy_port = pp.hostname or "", pp.port or 8080
            if self._scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    proxy_host, proxy_port, timeout=self.timeout, context=self._ssl)
                conn.set_tunnel(self._host, self._port)
                return conn, self._prefix
            conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=self.timeout)
            return conn, self._upstream_origin + self._prefix
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._ssl), \
                self._prefix
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout), self._prefix

    def redact(self, text: str) -> str:
        return text.replace(self._key, "[redacted]").replace(self.token, "[redacted]")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    proxy: KeyProxy

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Cut the connections still open (a stream in flight when the run ends)."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        self.server.proxy.log.debug("key proxy: " + format, *args)

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _error(self, status: int, kind: str, message: str) -> None:
        body = (f'{{"type":"error","error":{{"type":"{kind}","message":"{message}"}}}}').encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline(100).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(8192).strip():  # trailers
                        pass
                    return bytes(out)
                if len(out) + size > MAX_BODY_BYTES:
                    return None
                out += self.rfile.read(size)
                self.rfile.readline(10)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _forward(self) -> None:
        proxy = self.server.proxy
        if not self.path.startswith("/") or self.path.startswith("//"):
            self._error(400, "invalid_request_error", "the key proxy takes origin-form paths only")
            return
        if not proxy.authorized(self.headers):
            self.close_connection = True
            self._error(401, "authentication_error", "invalid x-api-key for the key proxy of this run")
            return
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._error(400, "invalid_request_error", "malformed request body")
            return
        if body is None:
            self.close_connection = True
            self._error(413, "request_too_large", "request body too large for the key proxy")
            return
        named = {h.strip().lower() for h in (self.headers.get("connection") or "").split(",")}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROPPED_REQUEST | named}
        headers["x-api-key"] = proxy._key
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["content-length"] = str(len(body))
        try:
            conn, prefix = proxy.upstream_connection()
            conn.request(self.command, prefix + self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            message = proxy.redact(f"{type(exc).__name__}: {exc}").replace('"', "'").replace("\\", "/")
            self.close_connection = True
            self._error(502, "api_error", f"the key proxy could not reach the API: {message}"[:500])
            return
        proxy.requests += 1
        try:
            self._relay(resp)
        except OSError:  # the client went away mid-stream
            self.close_connection = True
        finally:
            conn.close()

    def _relay(self, resp: http.client.HTTPResponse) -> None:
        self.send_response(resp.status, resp.reason)
        named = {h.strip().lower() for h in (resp.getheader("connection") or "").split(",")}
        for k, v in resp.getheaders():
            if k.lower() not in _HOP_BY_HOP | named | {"content-length", "server", "date"}:
                self.send_header(k, v)
        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        if no_body:
            self.send_header("content-length", "0" if self.command != "HEAD" else (resp.getheader("content-length")
                                                                                   or "0"))
            self.end_headers()
            return
        if resp.length is not None and not resp.chunked:
            self.send_header("content-length", str(resp.length))
            self.end_headers()
            while chunk := resp.read1(_CHUNK):
                self.wfile.write(chunk)
            self.wfile.flush()
            return
        # Streamed (SSE) or of unknown length: relay each piece as it arrives, chunked.
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        while chunk := resp.read1(_CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
