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

Token counts are a stand-in (about 4 bytes of canonical JSON per token, per content segment) but consistent:
``count_tokens`` returns exactly what ``/v1/messages`` bills as input for the same request.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from airflow_provider_worktree.core.runners.api import Usage
from airflow_provider_worktree.testing.model import EDITOR, RuleBasedModel

DEFAULT_MODEL_ID = "claude-offline-test-double"
log = logging.getLogger(__name__)
_REDACT = {"x-api-key", "authorization", "proxy-authorization", "cookie"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                529: "overloaded_error"}
#: The Message Batches API's limits: requests per batch, bytes per create request, seconds until a batch expires.
DEFAULT_MAX_BATCH_REQUESTS = 100_000
DEFAULT_MAX_BATCH_BYTES = 256 * 1024 * 1024
BATCH_EXPIRY_SECONDS = 24 * 3600
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_BATCHES = "/v1/messages/batches"


# ---------------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Fault:
    """One injected fault, applied to the next request of ``endpoint`` (``messages``, ``count_tokens`` or
    ``batches``). As a per-entry batch fault (:attr:`OfflineMessagesServer.batch_entry_faults`): a ``status`` makes
    the entry ``errored`` with ``error_type``/``message``, a ``reply`` replaces the model's, a ``delay`` is slept
    before the entry is processed."""

    kind: str
    status: int | None = None
    error_type: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reply: dict[str, Any] | None = None
    #: ``messages``, ``count_tokens`` or ``batches`` (any Message Batches API call).
    endpoint: str = "messages"
    #: Streaming requests: send this many events of the reply, then an ``error`` event, and end the stream.
    #: Non-streaming requests get ``status`` instead.
    after_events: int | None = None


def rate_limit(retry_after: float | None = 1, *, retry_after_ms: int | None = None) -> Fault:
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    return Fault("rate_limit", 429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate "
                 "limit (offline test double).", headers)


def overloaded() -> Fault:
    return Fault("overloaded", 529, "overloaded_error", "Overloaded")


def server_error() -> Fault:
    return Fault("server_error", 500, "api_error", "Internal server error")


def bad_request(message: str = "invalid request") -> Fault:
    return Fault("bad_request", 400, "invalid_request_error", message)


def authentication_error(message: str = "invalid x-api-key") -> Fault:
    return Fault("authentication_error", 401, "authentication_error", message)


def mid_stream_error(after_events: int = 3, error_type: str = "overloaded_error",
                     message: str = "Overloaded") -> Fault:
    """A streaming reply that breaks off after ``after_events`` events with an ``error`` event (as the real API
    does when it is overloaded mid-stream); a non-streaming request gets the matching status (529 by default)."""
    status = next((code for code, kind in _ERROR_TYPES.items() if kind == error_type), 500)
    return Fault("mid_stream_error", status, error_type, message, after_events=max(0, int(after_events)))


def slow(seconds: float) -> Fault:
    return Fault("slow", delay=float(seconds))


def malformed_tool_call() -> Fault:
    """The model calls the editor with an input that is not an object, then the next call carries on."""
    return Fault("malformed_tool_call", reply={"content": [{"type": "tool_use", "id": _fault_id(), "name": EDITOR,
                                                            "input": "view everything please"}],
                                               "stop_reason": "tool_use"})


def escape_attempt(path: str = "../../etc/passwd", command: str = "view") -> Fault:
    """The model tries to reach ``path`` (outside the worktree) with the editor."""
    tool_input: dict[str, Any] = {"command": command, "path": path}
    if command == "create":
        tool_input["file_text"] = "escaped\n"
    elif command == "str_replace":
        tool_input.update(old_str="root", new_str="pwned")
    elif command == "insert":
        tool_input.update(insert_line=0, insert_text="pwned")
    return Fault("escape_attempt", reply={"content": [{"type": "tool_use", "id": _fault_id(), "name": EDITOR,
                                                       "input": tool_input}], "stop_reason": "tool_use"})


def forbidden_command(cmd: str = "rm -rf /") -> Fault:
    return Fault("forbidden_command", reply={"content": [{"type": "tool_use", "id": _fault_id(), "name": "run_command",
                                                          "input": {"command": cmd}}], "stop_reason": "tool_use"})


def _fault_id() -> str:
    return f"toolu_fault_{uuid.uuid4().hex[:16]}"


# ---------------------------------------------------------------------------------------------------------------
# Token accounting
# ---------------------------------------------------------------------------------------------------------------
def _strip_cache_control(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_cache_control(v) for k, v in obj.items() if k != "cache_control"}
    if isinstance(obj, list):
        return [_strip_cache_control(v) for v in obj]
    return obj


def _tokens(obj: Any) -> int:
    raw = json.dumps(_strip_cache_control(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return max(1, math.ceil(len(raw.encode("utf-8")) / 4))


def _segments(body: dict[str, Any]) -> list[tuple[Any, bool]]:
    """The prompt in cache order (tools, system, messages) as (segment, has_cache_control) pairs."""
    segs: list[tuple[Any, bool]] = []
    for tool in body.get("tools") or []:
        segs.append((tool, isinstance(tool, dict) and "cache_control" in tool))
    system = body.get("system")
    if isinstance(system, str):
        segs.append(({"system": system}, False))
    elif isinstance(system, list):
        for block in system:
            segs.append((block, isinstance(block, dict) and "cache_control" in block))
    for m in body.get("messages") or []:
        content = m.get("content")
        if isinstance(content, str):
            segs.append(({"role": m.get("role"), "text": content}, False))
        elif isinstance(content, list):
            segs.append(({"role": m.get("role")}, False))
            for block in content:
                segs.append((block, isinstance(block, dict) and "cache_control" in block))
    return segs


# ---------------------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _BatchEntry:
    custom_id: str
    params: Any
    #: The entry's ``result`` object once decided (``{"type": "succeeded", "message": ...}`` and so on).
    result: dict[str, Any] | None = None


@dataclass
class _Batch:
    id: str
    created_at: float          # wall clock (the RFC 3339 timestamps)
    created_mono: float        # monotonic (when it is due)
    entries: list[_BatchEntry]
    status: str = "in_progress"
    ended_at: float | None = None
    cancel_initiated_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Raw:
    """A response body that is not JSON (the JSON Lines of batch results)."""

    def __init__(self, data: bytes, content_type: str) -> None:
        self.data, self.content_type = data, content_type


class _ApiError(Exception):
    def __init__(self, status: int, message: str, error_type: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.error_type = error_type or _ERROR_TYPES.get(status, "api_error")
        self.headers = dict(headers or {})


class OfflineMessagesServer:
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
                 max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> None:
        self.model = model if model is not None else RuleBasedModel()
        self.latency = float(latency)
        self.host, self.port = host, int(port)
        self.api_key = api_key
        self.min_cache_tokens = min_cache_tokens
        self.model_id = model_id
        self.request_log = os.fspath(request_log) if request_log else None
        self.billed = Usage()
        self.requests: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.batch_delay = float(batch_delay)
        self.max_batch_requests = int(max_batch_requests)
        self.max_batch_bytes = int(max_batch_bytes)
        self.batch_billed = Usage()
        self.batch_bills: dict[str, int] = {}
        self.batch_processed: dict[str, int] = {}
        self.batch_creates = 0
        self.batch_entry_faults: dict[str, str | Fault] | Callable[[str], str | Fault | None] = {}
        self._batches: dict[str, _Batch] = {}   # in creation order
        self._batch_seq = itertools.count(1)
        self._cache: set[str] = set()
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
            self._cache.clear()
            self.batch_billed = Usage()
            self.batch_bills.clear()
            self.batch_processed.clear()
            self.batch_creates = 0
            self.batch_entry_faults = {}
            self._batches.clear()

    def batch_ids(self) -> list[str]:
        """The ids of the batches not deleted, oldest first."""
        with self._lock:
            return list(self._batches)

    def finish_batches(self) -> list[str]:
        """End every batch that has not ended, now, as if it were due: entries are processed (a canceling batch's
        unprocessed entries are canceled). Returns the ids of the batches it ended. A ``batch_entry_faults``
        value that is not None, "expired", "canceled" or a :class:`Fault` raises ValueError (over HTTP: a 500)."""
        with self._lock:
            batches = list(self._batches.values())
        return [b.id for b in batches if self._settle(b, force=True)]

    def expire_batch(self, batch_id: str) -> None:
        """End ``batch_id`` now with every unprocessed entry ``expired`` (as the API does after 24 hours)."""
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise KeyError(f"no Message Batch {batch_id!r} on this server (known: {self.batch_ids()})")
        with batch.lock:
            if batch.status != "ended":
                self._end(batch, "expired")

    def _next_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self.faults):
                if fault.endpoint == endpoint:
                    return self.faults.pop(i)
        return None

    # -- request handling (called from handler threads) -----------------------------------------------------------
    def count_request(self, body: dict[str, Any]) -> int:
        return sum(_tokens(s) for s, _ in _segments(body))

    def _check_auth(self, headers: Mapping[str, str]) -> None:
        key = headers.get("x-api-key") or ""
        auth = headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            key = key or auth[7:]
        if not key:
            raise _ApiError(401, "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            raise _ApiError(401, "invalid x-api-key")

    def _validate(self, body: dict[str, Any], *, need_max_tokens: bool) -> None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _ApiError(400, "model: Field required")
        if need_max_tokens:
            mt = body.get("max_tokens")
            if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
                raise _ApiError(400, "max_tokens: must be a positive integer")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _ApiError(400, "messages: at least one message is required")
        # Like the API: consecutive turns of one role are merged into one turn; "system" messages in the middle
        # of the conversation (Claude Code sends them) are instructions, not turns.
        turns: list[tuple[int, str, list[Any]]] = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
                raise _ApiError(400, f"messages.{i}.role: must be 'user', 'assistant' or 'system'")
            content = m.get("content")
            if not isinstance(content, (str, list)) or (isinstance(content, list) and not content):
                raise _ApiError(400, f"messages.{i}.content: must be a string or a non-empty list of blocks")
            if m["role"] == "system":
                continue
            blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
            for b in blocks:
                if b.get("type") == "tool_use" and not isinstance(b.get("input"), dict):
                    raise _ApiError(400, f"messages.{i}: tool_use.input must be an object")
            if turns and turns[-1][1] == m["role"]:
                turns[-1][2].extend(blocks)
            else:
                turns.append((i, m["role"], blocks))
        if not turns or turns[0][1] != "user":
            raise _ApiError(400, "messages.0: roles must alternate, starting with 'user'")
        pending: set[str] = set()
        for i, role, blocks in turns:
            if role == "user":
                results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
                if pending - results:
                    raise _ApiError(400, f"messages.{i}: tool_use ids were found without tool_result blocks "
                                         f"immediately after: {sorted(pending - results)}")
                if results - pending:
                    raise _ApiError(400, f"messages.{i}: unexpected tool_use_id found in tool_result blocks: "
                                         f"{sorted(x for x in results - pending if x)}")
                pending = set()
            else:
                pending = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
        n_cache = sum(1 for _, cc in _segments(body) if cc)
        if n_cache > 4:
            raise _ApiError(400, f"A maximum of 4 blocks with cache_control may be provided. Found {n_cache}.")
        for tool in body.get("tools") or []:
            if isinstance(tool, dict) and str(tool.get("type", "")).startswith("text_editor_") \
                    and tool.get("name") != EDITOR:
                raise _ApiError(400, f"tools: {tool.get('type')} must be named {EDITOR}")

    def _bill_input(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(input, cache_write, cache_read) tokens, updating the prompt cache."""
        segs = _segments(body)
        sizes = [_tokens(s) for s, _ in segs]
        total = sum(sizes)
        model = str(body.get("model"))
        breakpoints = [i for i, (_, cc) in enumerate(segs) if cc]
        if not breakpoints or total < self.min_cache_tokens:
            return total, 0, 0
        # Like the real API, a cached prefix is found at any earlier block boundary (not only at this request's
        # breakpoints), and entries are written at this request's breakpoints.
        last = breakpoints[-1]
        digests, h = [], hashlib.sha256(model.encode())
        for seg, _ in segs[: last + 1]:
            h.update(json.dumps(_strip_cache_control(seg), sort_keys=True).encode())
            digests.append(h.hexdigest())
        with self._lock:
            hit = max((i for i, d in enumerate(digests) if d in self._cache), default=-1)
            self._cache.update(digests[i] for i in breakpoints)
        read = sum(sizes[: hit + 1])
        write = sum(sizes[hit + 1: last + 1]) if last > hit else 0
        return total - read - write, write, read

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
        except _ApiError as err:
            status, extra_headers = err.status, err.headers
            payload = {"type": "error", "error": {"type": err.error_type, "message": err.message}}
        entry["status"] = status
        entry["stream"] = isinstance(payload, _EventStream)
        if self.request_log:
            line = json.dumps(entry, ensure_ascii=False, default=str)
            with self._lock, open(self.request_log, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        return status, extra_headers, payload

    def _dispatch(self, method: str, path: str, headers: Mapping[str, str], body: Any, *,
                  size: int = 0) -> tuple[int, dict[str, str], Any]:
        path, _, query = path.partition("?")  # "?beta=true" (the SDK's beta client) selects the same endpoints
        path = path.rstrip("/")
        if path == _BATCHES or path.startswith(_BATCHES + "/"):
            return self._batches_api(method, path, query, headers, body, size)
        if method == "GET" and path == "/v1/models":
            self._check_auth(headers)
            info = self._model_info(self.model_id)
            return 200, {}, {"data": [info], "has_more": False, "first_id": self.model_id, "last_id": self.model_id}
        if method == "GET" and path.startswith("/v1/models/") and path.count("/") == 3:
            self._check_auth(headers)
            return 200, {}, self._model_info(path.rsplit("/", 1)[1])
        if method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            raise _ApiError(404, f"{method} {path} is not served by the offline test double")
        self._check_auth(headers)
        if not isinstance(body, dict):
            raise _ApiError(400, "the request body must be a JSON object")
        endpoint = "messages" if path == "/v1/messages" else "count_tokens"
        stream = endpoint == "messages" and body.get("stream") is True
        fault = self._next_fault(endpoint)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status and not (stream and fault.after_events is not None):
            raise _ApiError(fault.status, fault.message, fault.error_type, fault.headers)
        if endpoint == "count_tokens":
            self._validate(body, need_max_tokens=False)
            return 200, {}, {"input_tokens": self.count_request(body)}
        self._validate(body, need_max_tokens=True)
        if "stream" in body and not isinstance(body["stream"], bool):
            raise _ApiError(400, "stream: Input should be a valid boolean")
        reply = fault.reply if fault is not None and fault.reply is not None else self.model.reply(body)
        if self.latency:
            time.sleep(self.latency)
        message = self._message(body, reply)
        if not stream:
            return 200, {}, message
        error = None
        if fault is not None and fault.after_events is not None:
            error = (fault.after_events, {"type": "error", "error": {"type": fault.error_type or "api_error",
                                                                       "message": fault.message}})
        return 200, {}, _EventStream(message, error)

    # -- the Message Batches API ------------------------------------------------------------------------------------
    def _batches_api(self, method: str, path: str, query: str, headers: Mapping[str, str], body: Any,
                     size: int) -> tuple[int, dict[str, str], Any]:
        parts = path[len(_BATCHES):].strip("/").split("/") if path != _BATCHES else []
        route = {(): {"POST": "create", "GET": "list"}, (1,): {"GET": "retrieve", "DELETE": "delete"},
                 (1, "cancel"): {"POST": "cancel"}, (1, "results"): {"GET": "results"}}
        key = () if not parts else ((1,) if len(parts) == 1 else (1, parts[1]) if len(parts) == 2 else None)
        action = route.get(key, {}).get(method) if key is not None else None  # type: ignore[arg-type]
        if action is None:
            raise _ApiError(404, f"{method} {path} is not served by the offline test double")
        self._check_auth(headers)
        fault = self._next_fault("batches")
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status:
            raise _ApiError(fault.status, fault.message, fault.error_type, fault.headers)
        try:
            return self._batch_action(action, parts, query, body, size)
        except ValueError as exc:  # batch_entry_faults misconfigured by the test
            raise _ApiError(500, str(exc)) from exc

    def _batch_action(self, action: str, parts: list[str], query: str, body: Any,
                      size: int) -> tuple[int, dict[str, str], Any]:
        if action == "create":
            return 200, {}, self._batch_create(body, size)
        if action == "list":
            return 200, {}, self._batch_list(parse_qs(query))
        batch = self._batch(parts[0])
        self._settle(batch)
        if action == "retrieve":
            return 200, {}, self._batch_json(batch)
        if action == "cancel":
            with batch.lock:
                if batch.status == "in_progress":
                    batch.status, batch.cancel_initiated_at = "canceling", time.time()
                return 200, {}, self._batch_json(batch)
        if action == "delete":
            with batch.lock:
                if batch.status != "ended":
                    raise _ApiError(400, f"Message Batch {batch.id} cannot be deleted while it is {batch.status}: "
                                         "cancel it and wait until it has ended.")
                with self._lock:
                    self._batches.pop(batch.id, None)
            return 200, {}, {"id": batch.id, "type": "message_batch_deleted"}
        with batch.lock:  # results
            if batch.status != "ended":
                raise _ApiError(404, f"Message Batch {batch.id} has no results yet: it is {batch.status}; results "
                                     "are available once processing has ended (results_url is set then).")
            lines = [json.dumps({"custom_id": e.custom_id, "result": e.result}, ensure_ascii=False) + "\n"
                     for e in batch.entries]
        return 200, {}, _Raw("".join(lines).encode("utf-8"), "application/binary")

    def _batch(self, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise _ApiError(404, f"Message Batch {batch_id!r} was not found (unknown or deleted).")
        return batch

    def _batch_create(self, body: Any, size: int) -> dict[str, Any]:
        if size > self.max_batch_bytes:
            raise _ApiError(413, f"The request body is {size} bytes; a Message Batch may be at most "
                                 f"{self.max_batch_bytes} bytes.")
        if not isinstance(body, dict):
            raise _ApiError(400, "the request body must be a JSON object")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise _ApiError(400, "requests: a Message Batch needs at least one request")
        if len(requests) > self.max_batch_requests:
            raise _ApiError(400, f"requests: a Message Batch may hold at most {self.max_batch_requests} requests, "
                                 f"got {len(requests)}")
        seen: set[str] = set()
        entries = []
        for i, req in enumerate(requests):
            if not isinstance(req, dict):
                raise _ApiError(400, f"requests.{i}: must be an object with custom_id and params")
            custom_id = req.get("custom_id")
            if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
                raise _ApiError(400, f"requests.{i}.custom_id: String should match pattern "
                                     f"'^[a-zA-Z0-9_-]{{1,64}}$' (got {custom_id!r})")
            if custom_id in seen:
                raise _ApiError(400, f"requests.{i}.custom_id: {custom_id!r} is used more than once; each request "
                                     "in a Message Batch needs a unique custom_id")
            seen.add(custom_id)
            if not isinstance(req.get("params"), dict):
                raise _ApiError(400, f"requests.{i}.params: Field required (an object of Messages API parameters)")
            entries.append(_BatchEntry(custom_id, req["params"]))
        now = time.time()
        with self._lock:
            batch_id = f"msgbatch_offline_{next(self._batch_seq):06d}{uuid.uuid4().hex[:12]}"
            batch = self._batches[batch_id] = _Batch(batch_id, now, time.monotonic(), entries)
            self.batch_creates += 1
        return self._batch_json(batch)

    def _batch_list(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        raw_limit = (query.get("limit") or ["20"])[-1]
        try:
            limit = int(raw_limit)
        except ValueError:
            raise _ApiError(400, f"limit: Input should be a valid integer (got {raw_limit!r})") from None
        if not 1 <= limit <= 1000:
            raise _ApiError(400, f"limit: Input should be between 1 and 1000 (got {limit})")
        before, after = (query.get("before_id") or [None])[-1], (query.get("after_id") or [None])[-1]
        if before and after:
            raise _ApiError(400, "before_id and after_id cannot be given together")
        with self._lock:
            batches = list(reversed(self._batches.values()))  # newest first
        for b in batches:
            self._settle(b)
        ids = [b.id for b in batches]
        cursor = before or after
        if cursor and cursor not in ids:
            raise _ApiError(400, f"{'before_id' if before else 'after_id'}: no Message Batch {cursor!r}")
        if before:
            end = ids.index(before)
            page, has_more = batches[max(0, end - limit): end], end - limit > 0
        else:
            start = ids.index(after) + 1 if after else 0
            page, has_more = batches[start: start + limit], start + limit < len(batches)
        data = [self._batch_json(b) for b in page]
        return {"data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}

    def _batch_json(self, batch: _Batch) -> dict[str, Any]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        ended = batch.status == "ended"
        if ended:  # like the API: entries move out of "processing" only once the whole batch has ended
            for e in batch.entries:
                counts[e.result["type"] if e.result else "expired"] += 1
        else:
            counts["processing"] = len(batch.entries)
        return {"id": batch.id, "type": "message_batch", "processing_status": batch.status,
                "request_counts": counts, "created_at": _rfc3339(batch.created_at),
                "expires_at": _rfc3339(batch.created_at + BATCH_EXPIRY_SECONDS),
                "ended_at": _rfc3339(batch.ended_at), "archived_at": None,
                "cancel_initiated_at": _rfc3339(batch.cancel_initiated_at),
                "results_url": f"{self.base_url}{_BATCHES}/{batch.id}/results" if ended else None}

    def _settle(self, batch: _Batch, *, force: bool = False) -> bool:
        """End ``batch`` if it is due (or ``force``): a canceling batch's unprocessed entries are canceled, an
        in-progress batch's entries are processed. Under the batch's lock, so each entry is processed once.
        True if this call ended it."""
        if batch.status == "ended":
            return False
        with batch.lock:
            if batch.status == "ended":
                return False
            if batch.status == "canceling":
                self._end(batch, "canceled")
                return True
            if not force and time.monotonic() < batch.created_mono + self.batch_delay:
                return False
            todo = [e for e in batch.entries if e.result is None]
            outcomes = [self._entry_fault(e.custom_id) for e in todo]  # a bad fault setting fails before any work
            for entry, outcome in zip(todo, outcomes):
                entry.result = self._process_entry(entry, outcome)
            self._end(batch, "expired")
            return True

    @staticmethod
    def _end(batch: _Batch, unprocessed: str) -> None:
        """Mark ``batch`` ended (its lock held), giving every entry without a result the result ``unprocessed``."""
        for e in batch.entries:
            if e.result is None:
                e.result = {"type": unprocessed}
        batch.ended_at = time.time()
        batch.status = "ended"  # last: readers that skip the lock see an ended batch complete

    def _entry_fault(self, custom_id: str) -> str | Fault | None:
        faults = self.batch_entry_faults
        outcome = faults(custom_id) if callable(faults) else (faults or {}).get(custom_id)
        if outcome is None or isinstance(outcome, Fault) or outcome in ("expired", "canceled"):
            return outcome
        raise ValueError(f"batch_entry_faults[{custom_id!r}] is {outcome!r}: use None, 'expired', 'canceled' or a "
                         "Fault (offline test double misconfigured)")

    def _process_entry(self, entry: _BatchEntry, outcome: str | Fault | None) -> dict[str, Any]:
        """One entry's result, processed like a non-streaming ``/v1/messages`` request (the batch lock held)."""
        with self._lock:
            self.batch_processed[entry.custom_id] = self.batch_processed.get(entry.custom_id, 0) + 1
        if isinstance(outcome, str):
            return {"type": outcome}
        if outcome is not None and outcome.delay:
            time.sleep(outcome.delay)
        if outcome is not None and outcome.status:
            return self._errored(outcome.error_type or _ERROR_TYPES.get(outcome.status, "api_error"),
                                 outcome.message or "injected fault (offline test double)")
        params = entry.params
        try:
            self._validate(params, need_max_tokens=True)
            if "stream" in params and params["stream"] is not False:
                raise _ApiError(400, "stream: requests in a Message Batch cannot be streamed; leave stream out "
                                     "or set it to false")
            if outcome is not None and outcome.reply is not None:
                reply: Mapping[str, Any] = outcome.reply
            else:
                reply = self.model.reply(params)
            message = self._message(params, reply, batch=True)
        except _ApiError as err:
            return self._errored(err.error_type, err.message)
        except Exception as exc:  # the model broke: the entry errors, the batch goes on
            log.exception("offline model failed on batch entry %s", entry.custom_id)
            return self._errored("api_error", f"the offline model failed: {type(exc).__name__}: {exc}")
        with self._lock:
            self.batch_bills[entry.custom_id] = self.batch_bills.get(entry.custom_id, 0) + 1
        return {"type": "succeeded", "message": message}

    @staticmethod
    def _errored(error_type: str, message: str) -> dict[str, Any]:
        return {"type": "errored", "error": {"type": "error", "error": {"type": error_type, "message": message}}}

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
        out_tokens = max(1, _tokens(content))
        if out_tokens > max_tokens:  # truncate like the real API: the reply is cut, stop_reason max_tokens
            text = " ".join(b.get("text", "") for b in content if b.get("type") == "text")
            content = [{"type": "text", "text": text[: max(0, max_tokens * 4 - 40)]}]
            stop, out_tokens = "max_tokens", max_tokens
        inp, write, read = self._bill_input(body)
        usage = {"input_tokens": inp, "output_tokens": out_tokens, "cache_creation_input_tokens": write,
                 "cache_read_input_tokens": read}
        if reply.get("usage"):
            usage.update(reply["usage"])
        with self._lock:
            (self.batch_billed if batch else self.billed).add(Usage.from_api(usage))
            n = next(self._ids)
        return {"id": f"msg_offline_{n:06d}", "type": "message", "role": "assistant", "model": body["model"],
                "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}


# ---------------------------------------------------------------------------------------------------------------
# Server-sent events
# ---------------------------------------------------------------------------------------------------------------
_CHUNK = 24  # characters per delta: the real API sends a few tokens per event


def _pieces(text: str, size: int = _CHUNK) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i: i + size]


class _EventStream:
    """A finished message as the API's server-sent events; ``error`` = (after how many events, the error event)."""

    def __init__(self, message: dict[str, Any], error: tuple[int, dict[str, Any]] | None = None) -> None:
        self.message, self.error = message, error

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        sent = 0
        for name, data in self._all_events():
            if self.error is not None and sent >= self.error[0]:
                yield "error", self.error[1]
                return
            yield name, data
            sent += 1

    def _all_events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        msg = self.message
        usage = dict(msg["usage"])
        start_usage = {**usage, "output_tokens": min(1, usage.get("output_tokens", 1))}
        yield "message_start", {"type": "message_start", "message": {
            **msg, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}
        yield "ping", {"type": "ping"}
        for index, block in enumerate(msg["content"]):
            yield from self._block_events(index, block)
        yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"],
                                                                   "stop_sequence": msg.get("stop_sequence")},
                                "usage": usage}
        yield "message_stop", {"type": "message_stop"}

    @staticmethod
    def _block_events(index: int, block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        kind = block.get("type")

        def delta(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}

        if kind == "text":
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "text", "text": ""}}
            for piece in _pieces(str(block.get("text", ""))):
                yield delta({"type": "text_delta", "text": piece})
        elif kind in ("tool_use", "server_tool_use"):
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {**block, "input": {}}}
            for piece in _pieces(json.dumps(block.get("input", {}), ensure_ascii=False)):
                yield delta({"type": "input_json_delta", "partial_json": piece})
        elif kind == "thinking":
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
            for piece in _pieces(str(block.get("thinking", ""))):
                yield delta({"type": "thinking_delta", "thinking": piece})
            yield delta({"type": "signature_delta", "signature": str(block.get("signature", ""))})
        else:  # redacted_thinking and other whole blocks arrive complete in their start event
            yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}


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
        stream = isinstance(payload, _EventStream)
        if isinstance(payload, _Raw):
            data, content_type = payload.data, payload.content_type
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
            for name, event in payload.events():
                chunk = f"event: {name}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode("utf-8")
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
