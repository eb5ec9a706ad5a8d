"""An offline Messages API server on loopback: a TEST DOUBLE for tests, the smoke run and benchmarks.

It speaks the Anthropic Messages API as the real clients use it (the ``anthropic`` SDK and the Claude Code CLI):
``POST /v1/messages`` as JSON or, with ``"stream": true``, as server-sent events in the API's event sequence
(``message_start``, ``ping``, ``content_block_start``/``content_block_delta``/``content_block_stop`` for text,
tool_use and thinking blocks, ``message_delta`` with the stop reason and usage, ``message_stop``);
``POST /v1/messages/count_tokens``; ``GET /v1/models`` and ``GET /v1/models/{id}``; and the Message Batches API
(``POST /v1/messages/batches`` to create, ``GET .../batches`` to list newest first with ``limit``/``before_id``/
``after_id``, ``GET .../batches/{id}``, ``POST .../batches/{id}/cancel``, ``DELETE .../batches/{id}``, and
``GET .../batches/{id}/results`` as JSON Lines once the batch has ended). A batch's entries are processed like
non-streaming ``/v1/messages`` requests (same validation, same model, same usage accounting, billed into a separate
total), each exactly once, when the batch is due (``batch_delay`` seconds after its creation; on the next call
that looks at it) or when a test says so. The beta shapes are
accepted (``?beta=true``, ``anthropic-beta`` headers), and so are what the CLI sends: mid-conversation
``role: "system"`` messages, consecutive same-role turns (the API merges them), ``thinking`` blocks and
parameters, ``metadata``, ``cache_control`` with a ``ttl``. Errors have the API's shapes and status codes,
before a stream starts or as an ``error`` event inside it; usage carries prompt-cache accounting; billing totals
are thread-safe; every request is logged (API keys redacted).

Its "model" is deterministic code (:class:`RuleBasedModel`, :class:`ScriptedModel`), not Claude: the model answers
``reply(request) -> {"content", "stop_reason", "usage"?}`` in the non-streaming shape and this server turns that
into JSON or events. Real maintenance needs an API key and the real API.

Its parts: :mod:`.validation` (what it refuses), :mod:`.tokens` (token counts and the prompt cache),
:mod:`.streaming` (the server-sent events), :mod:`.batches` (the Message Batches API), :mod:`.faults` (what a test
injects) and :mod:`.errors` (the API's error shapes). This module holds the HTTP server and the routing.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airflow_provider_worktree.core.runners import Usage
from airflow_provider_worktree.testing.batches import (
    BATCHES_PATH,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_REQUESTS,
    MessageBatches,
)
from airflow_provider_worktree.testing.errors import ApiError, error_object
from airflow_provider_worktree.testing.faults import Fault
from airflow_provider_worktree.testing.model import RuleBasedModel
from airflow_provider_worktree.testing.streaming import EventStream
from airflow_provider_worktree.testing.ratelimits import OrgLimiter, RateLimits
from airflow_provider_worktree.testing.tokens import PromptCache, count_request, tokens
from airflow_provider_worktree.testing.validation import check_auth, validate

DEFAULT_MODEL_ID = "claude-offline-test-double"
log = logging.getLogger(__name__)
_REDACT = {"x-api-key", "authorization", "proxy-authorization", "cookie"}


class OfflineMessagesServer(MessageBatches):
    """A loopback Messages API test double. ``with OfflineMessagesServer() as srv: srv.base_url``.

    :param model: what answers ``/v1/messages``: an object with ``reply(request) -> dict`` (default
        :class:`RuleBasedModel`).
    :param latency: seconds to wait before each ``/v1/messages`` reply (benchmarks).
    :param api_key: if set, requests must carry it (``x-api-key`` or ``Authorization: Bearer``); otherwise any
        non-empty key is accepted.
    :param min_cache_tokens: prompts shorter than this are not cached (the real API's minimum is 1024-4096).
    :param request_log: append every request (keys redacted, with its status) to this file as one JSON line, to
        see what a client such as the Claude Code CLI sends.
    :param batch_delay: a Message Batch is due (all its entries processed, then ``ended``) this many seconds after
        its creation. Processing is lazy: the first retrieve, list, cancel, delete or results call after that
        moment does it, under the batch's lock, so every entry is processed exactly once however many clients
        poll at the same time. 0 (the default): the first call after the create. See also
        :meth:`finish_batches` and :meth:`expire_batch`.
    :param max_batch_requests: more requests in one create is a 400 (the API's limit is 100,000).
    :param max_batch_bytes: a create body larger than this is a 413 ``request_too_large`` (the API: 256 MB).

    Endpoints: ``POST /v1/messages`` (JSON or server-sent events), ``POST /v1/messages/count_tokens``,
    ``GET /v1/models``, ``GET /v1/models/{id}``, and the Message Batches API: ``POST /v1/messages/batches``,
    ``GET /v1/messages/batches`` (newest first; ``limit`` 1-1000, default 20; ``before_id``/``after_id``),
    ``GET|DELETE /v1/messages/batches/{id}``, ``POST /v1/messages/batches/{id}/cancel`` and
    ``GET /v1/messages/batches/{id}/results`` (JSON Lines, ``content-type: application/binary``; a 404
    ``not_found_error`` until the batch has ended). ``?beta=true`` selects the same endpoints; anything else is a
    404.

    Batch entries are processed like non-streaming ``/v1/messages`` requests: the same validation (an invalid
    entry, or one with ``"stream": true``, is ``errored`` with an ``invalid_request_error``), the same model and
    usage accounting, and the same prompt cache, but billed into ``batch_billed``, never ``billed``. The results
    file lists the entries in request order.

    Attributes for tests: ``billed`` (a :class:`Usage` total over successful ``/v1/messages`` replies),
    ``requests`` (every request: ``{"path", "method", "headers" (keys redacted), "body", "status"}``),
    ``faults`` (a list consumed first-in first-out; see :meth:`inject`; a fault with ``endpoint="batches"``
    applies to the next Message Batches API call).
    Batches: ``batch_billed`` (a :class:`Usage` total over the ``succeeded`` batch entries), ``batch_bills``
    (custom_id -> how many entries with that custom_id were billed, i.e. succeeded, over all batches: a resubmitted
    entry billed twice shows as 2), ``batch_processed`` (custom_id -> how many times an entry with that custom_id
    was processed, whatever its result), ``batch_creates`` (successful creates), ``batch_entry_faults`` (the
    outcome of entries by custom_id: a dict, or a callable ``custom_id -> None | "expired" | "canceled" | Fault``;
    ``"expired"``/``"canceled"`` give that result, a :class:`Fault` with a ``status`` makes the entry ``errored``
    with the fault's error type and message, one with a ``reply`` answers instead of the model).
    """

    def __init__(self, model: Any = None, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0, *,
                 api_key: str | None = None, min_cache_tokens: int = 0, model_id: str = DEFAULT_MODEL_ID,
                 request_log: str | os.PathLike[str] | None = None, batch_delay: float = 0.0,
                 max_batch_requests: int = DEFAULT_MAX_BATCH_REQUESTS,
                 max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES, rate_limits: RateLimits | None = None) -> None:
        self.model = model if model is not None else RuleBasedModel()
        #: The organisation's rate limits (:mod:`.ratelimits`), enforced on ``POST /v1/messages``; None: none.
        self.limiter = OrgLimiter(rate_limits) if rate_limits is not None and rate_limits.active else None
        self.latency = float(latency)
        self.host, self.port = host, int(port)
        self.api_key = api_key
        self.min_cache_tokens = min_cache_tokens
        self.model_id = model_id
        self.request_log = os.fspath(request_log) if request_log else None
        self.billed = Usage()
        self.requests: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self._init_batches(batch_delay, max_batch_requests, max_batch_bytes)
        self._cache = PromptCache()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started; call start() or use it as a context manager.")
        return f"http://{self.host}:{self.port}"

    def start(self) -> OfflineMessagesServer:
        if self._httpd is not None:
            return self
        server = self

        class Handler(_Handler):
            owner = server

        httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, name="offline-messages-server", daemon=True)
        self._thread.start()
        log.info("offline Messages API TEST DOUBLE (not Claude) listening on %s; its replies come from %s",
                 self.base_url, type(self.model).__name__)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OfflineMessagesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test helpers -----------------------------------------------------------------------------------------------
    def inject(self, *faults: Fault) -> None:
        """Queue faults; each applies to the next request of its endpoint."""
        with self._lock:
            self.faults.extend(faults)

    def message_requests(self) -> list[dict[str, Any]]:
        """Logged ``POST /v1/messages`` requests (``?beta=true`` included)."""
        with self._lock:
            return [r for r in self.requests if r["path"].split("?", 1)[0] == "/v1/messages"]

    def reset(self) -> None:
        """Forget billing, requests, faults, the prompt cache and every batch."""
        with self._lock:
            self.billed = Usage()
            self.requests.clear()
            self.faults.clear()
            self._reset_batches()
        self._cache.clear()

    def _take_fault(self, endpoint: str, *, streaming: bool = False) -> Fault | None:
        """The next queued fault of ``endpoint``, after its delay; raised as the API error it stands for if it has
        a status (except a mid-stream error on a streaming request, which the stream carries)."""
        with self._lock:
            i = next((i for i, f in enumerate(self.faults) if f.endpoint == endpoint), None)
            fault = None if i is None else self.faults.pop(i)
        if fault is None:
            return None
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status and not (streaming and fault.after_events is not None):
            raise ApiError(fault.status, fault.message, fault.error_type, fault.headers)
        return fault

    # -- request handling (called from handler threads) -----------------------------------------------------------
    def count_request(self, body: dict[str, Any]) -> int:
        return count_request(body)

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, dict[str, str], Any]:
        """Answer one request: ``(status, extra headers, payload)``; the payload is a JSON value, an event stream
        or raw bytes (batch results)."""
        entry: dict[str, Any] = {"method": method, "path": path, "time": time.time(),
                                 "headers": {k: ("<redacted>" if k.lower() in _REDACT else v) for k, v in headers.items()}}
        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        entry["body"] = body
        with self._lock:
            self.requests.append(entry)
        try:
            status, extra_headers, payload = self._dispatch(method, path, headers, body, size=len(raw))
        except ApiError as err:
            status, extra_headers, payload = err.status, err.headers, err.body()
        entry["status"] = status
        entry["stream"] = isinstance(payload, EventStream)
        if self.request_log:
            line = json.dumps(entry, ensure_ascii=False, default=str)
            with self._lock, open(self.request_log, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        return status, extra_headers, payload

    def _dispatch(self, method: str, path: str, headers: Mapping[str, str], body: Any, *,
                  size: int = 0) -> tuple[int, dict[str, str], Any]:
        path, _, query = path.partition("?")  # "?beta=true" (the SDK's beta client) selects the same endpoints
        path = path.rstrip("/")
        if path == BATCHES_PATH or path.startswith(BATCHES_PATH + "/"):
            return self._batches_api(method, path, query, headers, body, size)
        if method == "GET" and path == "/v1/models":
            check_auth(headers, self.api_key)
            info = self._model_info(self.model_id)
            return 200, {}, {"data": [info], "has_more": False, "first_id": self.model_id, "last_id": self.model_id}
        if method == "GET" and path.startswith("/v1/models/") and path.count("/") == 3:
            check_auth(headers, self.api_key)
            return 200, {}, self._model_info(path.rsplit("/", 1)[1])
        if method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            raise ApiError(404, f"{method} {path} is not served by the offline test double")
        check_auth(headers, self.api_key)
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        endpoint = "messages" if path == "/v1/messages" else "count_tokens"
        stream = endpoint == "messages" and body.get("stream") is True
        fault = self._take_fault(endpoint, streaming=stream)
        if endpoint == "count_tokens":
            validate(body, need_max_tokens=False)
            return 200, {}, {"input_tokens": count_request(body)}
        validate(body, need_max_tokens=True)
        if "stream" in body and not isinstance(body["stream"], bool):
            raise ApiError(400, "stream: Input should be a valid boolean")
        limits: dict[str, str] = {}
        reserved = 0.0
        if self.limiter is not None:  # admission on what the request will bill: cache reads do not count
            inp, write, _ = self._cache.bill_input(body, self.min_cache_tokens, update=False)
            limits, reserved = self.limiter.admit(inp + write, int(body["max_tokens"]))
        reply = fault.reply if fault is not None and fault.reply is not None else self.model.reply(body)
        if self.latency:
            time.sleep(self.latency)
        message = self._message(body, reply)
        if self.limiter is not None:
            limits = self.limiter.settle(reserved, int(message["usage"]["output_tokens"]))
        if not stream:
            return 200, limits, message
        error = None
        if fault is not None and fault.after_events is not None:
            error = (fault.after_events, error_object(fault.error_type or "api_error", fault.message))
        return 200, limits, EventStream(message, error)

    @staticmethod
    def _model_info(model_id: str) -> dict[str, Any]:
        """Any model id is served (the test double answers every model); the display name says what it is."""
        return {"type": "model", "id": model_id, "display_name": f"{model_id} (offline test double)",
                "created_at": "2025-01-01T00:00:00Z"}

    def _message(self, body: dict[str, Any], reply: Mapping[str, Any], *, batch: bool = False) -> dict[str, Any]:
        """The API's Message for ``reply`` to ``body``, billed into ``billed`` (``batch_billed`` if ``batch``)."""
        content = list(reply.get("content") or [])
        stop = reply.get("stop_reason") or ("tool_use" if any(b.get("type") == "tool_use" for b in content)
                                            else "end_turn")
        max_tokens = int(body["max_tokens"])
        out_tokens = max(1, tokens(content))
        if out_tokens > max_tokens:  # truncate like the real API: the reply is cut, stop_reason max_tokens
            text = " ".join(b.get("text", "") for b in content if b.get("type") == "text")
            content = [{"type": "text", "text": text[: max(0, max_tokens * 4 - 40)]}]
            stop, out_tokens = "max_tokens", max_tokens
        inp, write, read = self._cache.bill_input(body, self.min_cache_tokens)
        usage = {"input_tokens": inp, "output_tokens": out_tokens, "cache_creation_input_tokens": write,
                 "cache_read_input_tokens": read}
        if reply.get("usage"):
            usage.update(reply["usage"])
        with self._lock:
            (self.batch_billed if batch else self.billed).add(Usage.from_api(usage))
            n = next(self._ids)
        return {"id": f"msg_offline_{n:06d}", "type": "message", "role": "assistant", "model": body["model"],
                "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}


class _Handler(BaseHTTPRequestHandler):
    owner: OfflineMessagesServer
    protocol_version = "HTTP/1.1"
    server_version = "OfflineMessagesTestDouble/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.owner.handle(method, self.path, headers, raw)
        stream = isinstance(payload, EventStream)
        if isinstance(payload, bytes):  # batch results (JSON Lines), with the API's content type for them
            data, content_type = payload, "application/binary"
        else:
            data, content_type = (b"" if stream else json.dumps(payload).encode("utf-8")), "application/json"
        try:
            self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else
                               ("Overloaded" if status == 529 else ""))
            self.send_header("request-id", f"req_offline_{uuid.uuid4().hex[:16]}")
            for k, v in extra.items():
                self.send_header(k, v)
            if not stream:
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for chunk in payload.encoded():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")
