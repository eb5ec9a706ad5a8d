"""An offline Messages API server on loopback: a TEST DOUBLE for tests, the smoke run and benchmarks.

It speaks the Anthropic Messages API as the real clients use it (the ``anthropic`` SDK and the Claude Code CLI):
``POST /v1/messages`` as JSON or, with ``"stream": true``, as server-sent events in the API's event sequence
(``message_start``, ``ping``, ``content_block_start``/``content_block_delta``/``content_block_stop`` for text,
tool_use and thinking blocks, ``message_delta`` with the stop reason and usage, ``message_stop``);
``POST /v1/messages/count_tokens``; ``GET /v1/models`` and ``GET /v1/models/{id}``. The beta shapes are
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
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airflow_provider_worktree.core.runners import Usage
from airflow_provider_worktree.testing.model import EDITOR, RuleBasedModel

DEFAULT_MODEL_ID = "claude-offline-test-double"
log = logging.getLogger(__name__)
_REDACT = {"x-api-key", "authorization", "proxy-authorization", "cookie"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                529: "overloaded_error"}


# ---------------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Fault:
    """One injected fault, applied to the next request of ``endpoint`` (``messages`` or ``count_tokens``)."""

    kind: str
    status: int | None = None
    error_type: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reply: dict[str, Any] | None = None
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

    Attributes for tests: ``billed`` (a :class:`Usage` total over successful ``/v1/messages`` replies),
    ``requests`` (every request: ``{"path", "method", "headers" (keys redacted), "body", "status"}``),
    ``faults`` (a list consumed first-in first-out; see :meth:`inject`).
    """

    def __init__(self, model: Any = None, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0, *,
                 api_key: str | None = None, min_cache_tokens: int = 0, model_id: str = DEFAULT_MODEL_ID,
                 request_log: str | os.PathLike[str] | None = None) -> None:
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
        with self._lock:
            self.billed = Usage()
            self.requests.clear()
            self.faults.clear()
            self._cache.clear()

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
            status, extra_headers, payload = self._dispatch(method, path, headers, body)
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

    def _dispatch(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        path = path.split("?", 1)[0].rstrip("/")  # "?beta=true" (the SDK's beta client) selects the same endpoints
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

    @staticmethod
    def _model_info(model_id: str) -> dict[str, Any]:
        """Any model id is served (the test double answers every model); the display name says what it is."""
        return {"type": "model", "id": model_id, "display_name": f"{model_id} (offline test double)",
                "created_at": "2025-01-01T00:00:00Z"}

    def _message(self, body: dict[str, Any], reply: Mapping[str, Any]) -> dict[str, Any]:
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
            self.billed.add(Usage.from_api(usage))
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
        data = b"" if stream else json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else
                               ("Overloaded" if status == 529 else ""))
            self.send_header("request-id", f"req_offline_{uuid.uuid4().hex[:16]}")
            for k, v in extra.items():
                self.send_header(k, v)
            if not stream:
                self.send_header("content-type", "application/json")
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
