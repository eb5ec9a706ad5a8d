"""The Message Batches API of the offline test double: the batches' state and how their entries are processed.

``POST /v1/messages/batches`` creates a batch, ``GET .../batches`` lists them newest first (``limit`` 1-1000,
default 20; ``before_id``/``after_id``), ``GET|DELETE .../batches/{id}`` retrieves or deletes one,
``POST .../batches/{id}/cancel`` cancels it and ``GET .../batches/{id}/results`` gives its results as JSON Lines
(``content-type: application/binary``; a 404 ``not_found_error`` until the batch has ended).

A batch's entries are processed like non-streaming ``/v1/messages`` requests (the same validation, the same model,
usage accounting and prompt cache, but billed into a separate total), each exactly once, when the batch is due
(``batch_delay`` seconds after its creation; on the next call that looks at it) or when a test says so
(:meth:`MessageBatches.finish_batches`, :meth:`MessageBatches.expire_batch`).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from airflow_provider_worktree.core.runners import Usage
from airflow_provider_worktree.testing.errors import ApiError, error_object, error_type_for
from airflow_provider_worktree.testing.faults import Fault
from airflow_provider_worktree.testing.validation import check_auth, validate

log = logging.getLogger(__name__)
#: The Message Batches API's limits: requests per batch, bytes per create request, seconds until a batch expires.
DEFAULT_MAX_BATCH_REQUESTS = 100_000
DEFAULT_MAX_BATCH_BYTES = 256 * 1024 * 1024
BATCH_EXPIRY_SECONDS = 24 * 3600
BATCHES_PATH = "/v1/messages/batches"
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


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


def _errored(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "errored", "error": error_object(error_type, message)}


class MessageBatches:
    """The Message Batches endpoints, mixed into :class:`~airflow_provider_worktree.testing.OfflineMessagesServer`
    (whose docstring lists the attributes for tests). It uses the server's ``_lock``, ``model``, ``api_key``,
    ``base_url``, ``_take_fault(endpoint)`` and ``_message(body, reply, batch=True)``."""

    _lock: threading.Lock
    model: Any
    api_key: str | None
    base_url: str
    _take_fault: Callable[[str], Fault | None]
    _message: Callable[..., dict[str, Any]]

    def _init_batches(self, batch_delay: float, max_batch_requests: int, max_batch_bytes: int) -> None:
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

    def _reset_batches(self) -> None:
        """Forget every batch and the batch totals (the server's lock held)."""
        self.batch_billed = Usage()
        self.batch_bills.clear()
        self.batch_processed.clear()
        self.batch_creates = 0
        self.batch_entry_faults = {}
        self._batches.clear()

    # -- test helpers -----------------------------------------------------------------------------------------------
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

    # -- the endpoints (called from handler threads) ----------------------------------------------------------------
    def _batches_api(self, method: str, path: str, query: str, headers: Mapping[str, str], body: Any,
                     size: int) -> tuple[int, dict[str, str], Any]:
        parts = path[len(BATCHES_PATH):].strip("/").split("/") if path != BATCHES_PATH else []
        route = {(): {"POST": "create", "GET": "list"}, (1,): {"GET": "retrieve", "DELETE": "delete"},
                 (1, "cancel"): {"POST": "cancel"}, (1, "results"): {"GET": "results"}}
        key = () if not parts else ((1,) if len(parts) == 1 else (1, parts[1]) if len(parts) == 2 else None)
        action = route.get(key, {}).get(method) if key is not None else None  # type: ignore[arg-type]
        if action is None:
            raise ApiError(404, f"{method} {path} is not served by the offline test double")
        check_auth(headers, self.api_key)
        self._take_fault("batches")
        try:
            return self._batch_action(action, parts, query, body, size)
        except ValueError as exc:  # batch_entry_faults misconfigured by the test
            raise ApiError(500, str(exc)) from exc

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
                    raise ApiError(400, f"Message Batch {batch.id} cannot be deleted while it is {batch.status}: "
                                        "cancel it and wait until it has ended.")
                with self._lock:
                    self._batches.pop(batch.id, None)
            return 200, {}, {"id": batch.id, "type": "message_batch_deleted"}
        with batch.lock:  # results
            if batch.status != "ended":
                raise ApiError(404, f"Message Batch {batch.id} has no results yet: it is {batch.status}; results "
                                    "are available once processing has ended (results_url is set then).")
            lines = [json.dumps({"custom_id": e.custom_id, "result": e.result}, ensure_ascii=False) + "\n"
                     for e in batch.entries]
        return 200, {}, "".join(lines).encode("utf-8")

    def _batch(self, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"Message Batch {batch_id!r} was not found (unknown or deleted).")
        return batch

    def _batch_create(self, body: Any, size: int) -> dict[str, Any]:
        if size > self.max_batch_bytes:
            raise ApiError(413, f"The request body is {size} bytes; a Message Batch may be at most "
                                f"{self.max_batch_bytes} bytes.")
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, "requests: a Message Batch needs at least one request")
        if len(requests) > self.max_batch_requests:
            raise ApiError(400, f"requests: a Message Batch may hold at most {self.max_batch_requests} requests, "
                                f"got {len(requests)}")
        seen: set[str] = set()
        entries = []
        for i, req in enumerate(requests):
            if not isinstance(req, dict):
                raise ApiError(400, f"requests.{i}: must be an object with custom_id and params")
            custom_id = req.get("custom_id")
            if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
                raise ApiError(400, f"requests.{i}.custom_id: String should match pattern "
                                    f"'^[a-zA-Z0-9_-]{{1,64}}$' (got {custom_id!r})")
            if custom_id in seen:
                raise ApiError(400, f"requests.{i}.custom_id: {custom_id!r} is used more than once; each request "
                                    "in a Message Batch needs a unique custom_id")
            seen.add(custom_id)
            if not isinstance(req.get("params"), dict):
                raise ApiError(400, f"requests.{i}.params: Field required (an object of Messages API parameters)")
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
            raise ApiError(400, f"limit: Input should be a valid integer (got {raw_limit!r})") from None
        if not 1 <= limit <= 1000:
            raise ApiError(400, f"limit: Input should be between 1 and 1000 (got {limit})")
        before, after = (query.get("before_id") or [None])[-1], (query.get("after_id") or [None])[-1]
        if before and after:
            raise ApiError(400, "before_id and after_id cannot be given together")
        with self._lock:
            batches = list(reversed(self._batches.values()))  # newest first
        for b in batches:
            self._settle(b)
        ids = [b.id for b in batches]
        cursor = before or after
        if cursor and cursor not in ids:
            raise ApiError(400, f"{'before_id' if before else 'after_id'}: no Message Batch {cursor!r}")
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
                "results_url": f"{self.base_url}{BATCHES_PATH}/{batch.id}/results" if ended else None}

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
            return _errored(outcome.error_type or error_type_for(outcome.status),
                            outcome.message or "injected fault (offline test double)")
        params = entry.params
        try:
            validate(params, need_max_tokens=True)
            if "stream" in params and params["stream"] is not False:
                raise ApiError(400, "stream: requests in a Message Batch cannot be streamed; leave stream out "
                                    "or set it to false")
            if outcome is not None and outcome.reply is not None:
                reply: Mapping[str, Any] = outcome.reply
            else:
                reply = self.model.reply(params)
            message = self._message(params, reply, batch=True)
        except ApiError as err:
            return _errored(err.error_type, err.message)
        except Exception as exc:  # the model broke: the entry errors, the batch goes on
            log.exception("offline model failed on batch entry %s", entry.custom_id)
            return _errored("api_error", f"the offline model failed: {type(exc).__name__}: {exc}")
        with self._lock:
            self.batch_bills[entry.custom_id] = self.batch_bills.get(entry.custom_id, 0) + 1
        return {"type": "succeeded", "message": message}
