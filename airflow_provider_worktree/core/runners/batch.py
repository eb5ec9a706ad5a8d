"""Batch mode: every shard of a run as one entry of a Message Batch (half price), each reply applied per shard.

Plain Python, no Airflow: ``ClaudeBatchSubmitOperator`` and ``ClaudeBatchTrigger`` are thin faces over
:class:`BatchCoordinator`, and ``ClaudeMaintenanceOperator(mode="batch")`` over :func:`batch_runner`.

1. **Submit** (:meth:`BatchCoordinator.submit`). The shards' files are read from one checkout of the base commit
   (a worktree made and removed by the package, exactly what a shard's worktree would hold). Each shard becomes
   one request: the task's system prompt, the text editor tool, and a conversation in which the shard's files
   have already been viewed with that tool (the same ``view`` output an interactive run gets; a file larger than
   one view in consecutive views; for a range of a big file, ``lines``, from its first line to the range's
   end), ending with :data:`ONE_RESPONSE_INSTRUCTION`: all edits in one reply. A shard whose prompt would exceed
   ``max_prompt_bytes`` is left to the interactive runner
   (``interactive``); one whose worst case (its prompt bound priced as a cache write, plus ``max_tokens`` of
   output, at batch prices) does not fit the shard's budget even at ``max_tokens_floor`` is not sent
   (``over_budget``). The rest go out as one batch, split at the API's limits (100,000 requests, 256 MB). Every
   batch id is written to the shard database the moment the API returns it; submitting again resumes.
2. **Wait**: the operator defers on :class:`~airflow_provider_worktree.triggers.batch.ClaudeBatchTrigger` (or
   polls with :meth:`BatchCoordinator.wait`), with backoff.
3. **Collect** (:meth:`BatchCoordinator.collect`): each result is stored with its shard, and its spend is recorded
   once as the shard's attempt 0 (status ``batch``) at batch prices.
4. **Apply**: each shard's task claims the shard's lease as usual and runs the lifecycle with
   :class:`BatchEntryRunner`, which applies the stored reply's tool calls through the same
   :class:`~airflow_provider_worktree.core.sandbox.editor.TextEditorTool` (confinement, shard scope) as the agent loop;
   then verify, commit and record as in an interactive run. An errored, expired or canceled entry (and an
   ``interactive`` one) runs interactively instead, or fails with its reason (``fallback="fail"``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_worktree.core.errors import (
    ConfigurationError,
    ShardFailed,
    WorktreeProviderError,
)
from airflow_provider_worktree.core.health.metrics import to_epoch
from airflow_provider_worktree.core.runners.budget import Budget, upper_bound_tokens
from airflow_provider_worktree.core.runners.prices import PriceTable
from airflow_provider_worktree.core.runners.turns import _block_to_param, run_tool_uses
from airflow_provider_worktree.core.runners.types import RunResult, Usage
from airflow_provider_worktree.core.sandbox import (
    CLIPPED_MARK,
    TextEditorTool,
    ToolResult,
)
from airflow_provider_worktree.core.store.batches import ENTRY_RESULTS
from airflow_provider_worktree.core.tasks import (
    CONVENTION_FILES,
    MaintenanceTask,
    get_task,
    read_conventions,
    render_shard_prompt,
    system_prompt_for,
)

log = logging.getLogger(__name__)

#: The last user turn of a batch request ends with this: there is no second turn, so every edit goes in the one
#: reply. (The offline test double looks for it to make all its edits at once.)
ONE_RESPONSE_INSTRUCTION = (
    "This request is processed in a batch and gets exactly one response: there is no second turn, and the "
    "results of your tool calls are not shown to you. The files of the shard are shown above in full. Make every "
    "edit now, in this one reply, as str_replace_based_edit_tool calls (str_replace, insert or create; no view), "
    "then stop."
)
#: Appended for a range shard (``lines``): its file is shown from the top to the end of the range.
RANGE_NOTE = (" (This shard is lines {0}-{1} of a large file: the file is shown from its first line to line {1}; "
              "edit only lines {0}-{1}.)")
#: The Message Batches API's limits on one batch (https://docs.anthropic.com/en/docs/build-with-claude/batch-processing).
API_MAX_REQUESTS = 100_000
API_MAX_BATCH_BYTES = 256 * 1024 * 1024
#: A shard's request larger than this (bytes of request JSON, about 100k tokens) runs interactively instead.
DEFAULT_MAX_PROMPT_BYTES = 400_000
MODES = ("interactive", "batch")
FALLBACKS = ("interactive", "fail")
#: The worktree the submission reads the shards' files from (made and removed within ``submit``).
PREP_SHARD_ID = "batch-prompts"


class BatchNotReady(WorktreeProviderError):
    """The shard's batch has not ended, or its result is not collected yet: a retry later finds it."""


class BatchTimeout(WorktreeProviderError):
    """The batch did not end within the wait's timeout; it keeps running, and a retry resumes it."""


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ConfigurationError(f"mode={mode!r} is not one of {MODES}: 'interactive' runs each shard's agent loop "
                                 "now; 'batch' sends every shard as one Message Batches entry at half price.")
    return str(mode)


def custom_id_for(shard_id: str) -> str:
    """The batch entry's ``custom_id`` for a shard: readable, unique, within the API's ``[A-Za-z0-9_-]{1,64}``."""
    digest = hashlib.sha256(shard_id.encode("utf-8")).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', shard_id)[:48]}-{digest}"


@dataclass
class BatchRequest:
    """One shard's entry as built for submission; ``params`` is None unless ``status == "queued"``."""

    shard_id: str
    custom_id: str
    status: str  # queued | interactive | over_budget
    params: dict[str, Any] | None = None
    reason: str | None = None
    max_tokens: int | None = None
    size_bytes: int = 0

    def request(self) -> dict[str, Any]:
        return {"custom_id": self.custom_id, "params": self.params}


def build_request(shard: Mapping[str, Any], task: MaintenanceTask, root: str, *, model: str, max_tokens: int,
                  max_tokens_floor: int = 1024, budget: Budget | None = None, custom_prompt: str | None = None,
                  max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES) -> BatchRequest:
    """The batch request of one shard, its files read from ``root`` (a checkout of the base commit) with the
    interactive runner's own text editor, so the model sees what it would see there."""
    shard_id = str(shard["shard_id"])
    out = BatchRequest(shard_id, custom_id_for(shard_id), "interactive")
    files = [str(f) for f in shard.get("files") or []]
    span = shard.get("lines")
    upto = int(span[1]) if isinstance(span, (list, tuple)) and len(span) == 2 else None
    editor = TextEditorTool(root)
    calls: list[tuple[dict[str, Any], ToolResult]] = []
    for f in files:
        chunks = _read_whole(editor, f, upto)
        if chunks is None:
            out.reason = f"{f} has a line longer than one view ({editor.max_view_chars} characters)"
            return out
        calls += chunks
    ids = [f"toolu_batchview_{i:04d}" for i in range(len(calls))]
    params: dict[str, Any] = {
        "model": model, "max_tokens": int(max_tokens),
        "system": [{"type": "text", "text": system_prompt_for(task, read_conventions(root)),
                    "cache_control": {"type": "ephemeral"}}],
        "tools": [{**editor.definition(), "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text",
                                          "text": render_shard_prompt(task, shard, custom_prompt=custom_prompt)}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": i, "name": editor.name, "input": inp}
                                              for i, (inp, _) in zip(ids, calls)]},
            {"role": "user", "content": [res.to_block(i) for i, (_, res) in zip(ids, calls)]
             + [{"type": "text", "text": ONE_RESPONSE_INSTRUCTION + (RANGE_NOTE.format(*span) if upto else "")}]},
        ],
    }
    out.size_bytes = len(json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if out.size_bytes > max_prompt_bytes:
        out.reason = f"its request is {out.size_bytes} bytes, over max_prompt_bytes={max_prompt_bytes}"
        return out
    if budget is not None and not budget.unlimited:
        fitted, why = budget.fit_max_tokens(upper_bound_tokens(params), int(max_tokens), max_tokens_floor, model)
        if fitted is None:
            out.status, out.reason = "over_budget", f"its worst case does not fit the budget at batch prices: {why}"
            return out
        params["max_tokens"] = fitted
    out.status, out.params, out.max_tokens = "queued", params, int(params["max_tokens"])
    return out


def _read_whole(editor: TextEditorTool, path: str, upto: int | None = None,
                ) -> list[tuple[dict[str, Any], ToolResult]] | None:
    """``view`` calls that show the whole file (or its lines 1 to ``upto``, for a range shard), as the agent loop
    reads a file larger than one view: each next view starts at the line the previous one was cut in. None when
    a single line does not fit one view."""
    calls: list[tuple[dict[str, Any], ToolResult]] = []
    start = 1
    while upto is None or start <= upto:
        inp: dict[str, Any] = {"command": "view", "path": path}
        if start > 1:
            inp["view_range"] = [start, -1]
        res = editor.execute(inp)
        calls.append((inp, res))
        cut = res.content.rfind("\n")
        if res.is_error or not res.content[cut + 1:].startswith(CLIPPED_MARK):
            return calls
        shown = re.findall(r"^ *(\d+)\t", res.content[:cut], re.M)
        if not shown or int(shown[-1]) <= start:
            return None
        start = int(shown[-1])  # the last line shown may be cut: show it again, whole
    return calls


def split_parts(requests: Sequence[BatchRequest], max_requests: int = API_MAX_REQUESTS,
                max_bytes: int = API_MAX_BATCH_BYTES) -> list[list[BatchRequest]]:
    """Queued requests in batches within the API's limits (count and bytes, with room for the JSON around)."""
    parts: list[list[BatchRequest]] = []
    size = 0
    for r in requests:
        need = r.size_bytes + len(r.custom_id) + 64
        if not parts or len(parts[-1]) >= max_requests or size + need > max_bytes:
            parts.append([])
            size = 0
        parts[-1].append(r)
        size += need
    return parts


def _created_epoch(batch: Any) -> float:
    value = getattr(batch, "created_at", None)
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return to_epoch(value) or 0.0


def _counts(batch: Any) -> dict[str, int]:
    c = getattr(batch, "request_counts", None)
    return {k: int(getattr(c, k, 0) or 0) for k in ("processing", "succeeded", "errored", "canceled", "expired")}


class BatchCoordinator:
    """Submit a run's shards as Message Batches, follow them, and collect their results into the shard database.

    :param store: the shard database (:class:`~airflow_provider_worktree.core.store.shards.ShardStore`).
    :param client: an ``anthropic.Anthropic`` client (``AnthropicHook().get_conn()``): first-party API only.
    :param run_id: the Airflow run id.
    :param model: model id of every request.
    :param max_tokens: each request's ``max_tokens`` (shrunk to fit the budget, not below ``max_tokens_floor``).
    :param budget: the per-shard cap (its token and dollar limits); checked per request at batch prices.
    :param prices: price table (list prices; batch prices are its :meth:`~.runners.PriceTable.for_batch`).
    :param max_prompt_bytes: shards with a larger request run interactively.
    """

    def __init__(self, store: Any, client: Any, run_id: str, *, model: str, max_tokens: int = 8192,
                 max_tokens_floor: int = 1024, budget: Budget | None = None, prices: PriceTable | None = None,
                 max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES, max_requests: int = API_MAX_REQUESTS,
                 max_batch_bytes: int = API_MAX_BATCH_BYTES, logger: logging.Logger | None = None) -> None:
        if store is None:
            raise ConfigurationError("batch mode needs the shard status database (it records the batch ids and "
                                     "results): set shard_status_conn_id.")
        if not model:
            raise ConfigurationError("model is empty: pass a model id, or set extra['model'] on the anthropic "
                                     "connection.")
        if not hasattr(getattr(client, "messages", None), "batches"):
            raise ConfigurationError("batch mode needs the first-party Anthropic API (client.messages.batches); "
                                     "this connection's client has none (Bedrock and Vertex have their own batch "
                                     "services): use mode='interactive'.")
        if int(max_tokens) < 1 or int(max_prompt_bytes) < 1:
            raise ConfigurationError(f"max_tokens={max_tokens} and max_prompt_bytes={max_prompt_bytes} must be >= 1.")
        self.store, self.client, self.run_id, self.model = store, client, run_id, model
        self.max_tokens, self.max_tokens_floor = int(max_tokens), int(max_tokens_floor)
        self.prices = prices if prices is not None else (budget.prices if budget is not None else PriceTable())
        self.batch_prices = self.prices.for_batch()
        self.budget = None
        if budget is not None and not budget.unlimited:
            self.budget = Budget(budget.max_input_tokens, budget.max_output_tokens, budget.max_total_tokens,
                                 budget.max_cost_usd, self.batch_prices)
        self.max_prompt_bytes, self.max_requests, self.max_batch_bytes = (int(max_prompt_bytes), int(max_requests),
                                                                          int(max_batch_bytes))
        self.log = logger or log

    # -- submit ---------------------------------------------------------------------------------------------------
    def submit(self, shards: Sequence[Mapping[str, Any]], *, manager: Any, task: MaintenanceTask | None = None,
               base_ref: str = "HEAD", custom_prompt: str | None = None) -> dict[str, Any]:
        """Submit the run's shards (once): build their requests, create the batches, record each id. A run that
        already submitted resumes: its recorded batches are kept, a part whose id was never recorded (the worker
        died between the API call and the write) is found again in the API's list, or else created. Returns
        :meth:`state`."""
        shards = [dict(s) for s in shards]
        parts = {p["part"]: p for p in self.store.batch_parts(self.run_id)}
        if parts and all(p["batch_id"] for p in parts.values()):
            self.log.info("run %s: resuming its %d batch(es) %s; nothing is submitted again", self.run_id,
                          len(parts), ", ".join(p["batch_id"] for p in parts.values()))
            return self.state()
        by_id = {str(s["shard_id"]): s for s in shards}
        self.store.register_shards(self.run_id, shards)
        built: dict[str, BatchRequest] = {}
        entries = self.store.batch_entries(self.run_id)
        if not entries:
            base_sha = manager.resolve_commit(base_ref)
            built = self._build(list(by_id.values()), manager, base_sha, task, custom_prompt)
            queued = [r for r in built.values() if r.status == "queued"]
            part_of = {r.shard_id: n for n, group in enumerate(split_parts(queued, self.max_requests,
                                                                            self.max_batch_bytes)) for r in group}
            self.store.put_batch_entries(self.run_id, [
                {"shard_id": r.shard_id, "custom_id": r.custom_id, "status": r.status, "reason": r.reason,
                 "base_sha": base_sha, "model": self.model, "max_tokens": r.max_tokens,
                 "part": part_of.get(r.shard_id)} for r in built.values()])
            entries = self.store.batch_entries(self.run_id)
            for r in built.values():
                if r.status != "queued":
                    self.log.info("shard %s is not in the batch (%s): %s", r.shard_id, r.status, r.reason)
        todo: dict[int, list[dict[str, Any]]] = {}
        for e in entries:
            if e["status"] == "queued" and e["part"] is not None:
                todo.setdefault(int(e["part"]), []).append(e)
        for part, members in sorted(todo.items()):
            row = self.store.begin_batch_part(self.run_id, part, len(members), self.model)
            if row["batch_id"]:
                continue
            if part in parts and self._recover(row):
                continue
            if any(e["shard_id"] not in built for e in members):  # a resumed submission: rebuild from the base
                missing = [by_id[e["shard_id"]] for e in members if e["shard_id"] in by_id]
                if len(missing) != len(members):
                    raise ConfigurationError(
                        f"run {self.run_id}: batch part {part} must be created again but the shards given do not "
                        "include all of its entries; pass the run's planned shards.")
                built.update(self._build(missing, manager, members[0]["base_sha"], task, custom_prompt))
            batch = self.client.messages.batches.create(requests=[built[e["shard_id"]].request() for e in members])
            self.store.set_batch_id(self.run_id, part, batch.id)
            self.log.info("run %s: batch %s created with %d request(s) (part %d)", self.run_id, batch.id,
                          len(members), part)
        return self.state()

    def _build(self, shards: list[dict[str, Any]], manager: Any, base_sha: str, task: MaintenanceTask | None,
               custom_prompt: str | None) -> dict[str, BatchRequest]:
        files = sorted({str(f) for s in shards for f in s.get("files") or []} | set(CONVENTION_FILES))
        path = manager.worktree_path(self.run_id, PREP_SHARD_ID)
        if os.path.lexists(path):  # left by a submission that died: it holds no work
            manager.remove_worktree(path, force=True)
        wt = manager.create_worktree(self.run_id, PREP_SHARD_ID, base_ref=base_sha, sparse_paths=files)
        try:
            out = {}
            for s in shards:
                t = task or get_task(str(s.get("task") or "custom"))
                out[str(s["shard_id"])] = build_request(
                    s, t, wt.path, model=self.model, max_tokens=self.max_tokens,
                    max_tokens_floor=self.max_tokens_floor, budget=self.budget, custom_prompt=custom_prompt,
                    max_prompt_bytes=self.max_prompt_bytes)
            return out
        finally:
            manager.remove_worktree(wt.path, force=True)

    def _recover(self, row: Mapping[str, Any]) -> bool:
        """A part noted as ``submitting`` without an id: the worker that created it may have died before writing
        the id. Adopt the one batch of the API's list created since then with the same number of requests."""
        since = row.get("created_at")
        t0 = (to_epoch(since) or 0.0) - 120
        known = {p["batch_id"] for p in self.store.batch_parts(self.run_id) if p["batch_id"]}
        found = []
        for b in self.client.messages.batches.list(limit=100):
            created = _created_epoch(b)
            if created < t0:
                break
            if b.id not in known and sum(_counts(b).values()) == int(row["requests"]):
                found.append(b.id)
        if len(found) == 1:
            self.store.set_batch_id(self.run_id, int(row["part"]), found[0])
            self.log.warning("run %s: part %s had no recorded batch id; adopted %s (created after the part was "
                             "begun, same request count)", self.run_id, row["part"], found[0])
            return True
        self.log.warning("run %s: part %s had no recorded batch id and %d candidate(s) in the API's list; it is "
                         "created again", self.run_id, row["part"], len(found))
        return False

    # -- follow -----------------------------------------------------------------------------------------------------
    def batch_ids(self, pending_only: bool = False) -> list[str]:
        return [p["batch_id"] for p in self.store.batch_parts(self.run_id)
                if p["batch_id"] and not (pending_only and p["status"] == "collected")]

    def refresh(self) -> dict[str, Any]:
        """Ask the API how each uncollected batch is doing and note it. Returns :meth:`state`."""
        for p in self.store.batch_parts(self.run_id):
            if p["batch_id"] and p["status"] != "collected":
                b = self.client.messages.batches.retrieve(p["batch_id"])
                self.store.update_batch(self.run_id, p["part"], status=b.processing_status,
                                        request_counts=_counts(b), ended=b.processing_status == "ended")
        return self.state()

    def collect(self) -> dict[str, Any]:
        """Store the results of every ended batch not collected yet (each entry's spend once, at batch prices).
        Batches still running are left; call again later. Returns :meth:`state`."""
        self.refresh()
        for p in self.store.batch_parts(self.run_id):
            if p["status"] != "ended":
                continue
            n = 0
            bounds = {e["custom_id"]: e for e in self.store.batch_entries(self.run_id, part=p["part"])}
            for item in self.client.messages.batches.results(p["batch_id"]):
                n += self._record(item, bounds.get(item.custom_id))
            self.store.update_batch(self.run_id, p["part"], status="collected", collected=True)
            self.log.info("run %s: collected batch %s (%d new result(s))", self.run_id, p["batch_id"], n)
        return self.state()

    def _record(self, item: Any, entry: Mapping[str, Any] | None) -> bool:
        result = item.result
        kind = getattr(result, "type", None)
        if kind not in ENTRY_RESULTS:
            kind, reason = "errored", f"unknown result type {kind!r}"
        else:
            reason = None
        if kind == "succeeded":
            msg = result.message
            content = []
            for block in getattr(msg, "content", None) or []:
                param, raw = _block_to_param(block)
                if param.get("type") == "tool_use":
                    param["input"] = raw  # applied as received: a malformed input is a tool error, as interactively
                content.append(param)
            max_out = int((entry or {}).get("max_tokens") or self.max_tokens)
            usage = Usage.from_api(getattr(msg, "usage", None),
                                   worst=lambda: Usage(self.max_prompt_bytes, max_out, self.max_prompt_bytes,
                                                       self.max_prompt_bytes))
            model = getattr(msg, "model", None) or self.model
            return self.store.record_batch_result(
                self.run_id, item.custom_id, "succeeded", stop_reason=getattr(msg, "stop_reason", None),
                response={"id": getattr(msg, "id", None), "model": model, "content": content},
                usage=usage.to_dict(), cost_usd=round(self.batch_prices.cost(usage, model), 6))
        if kind == "errored":
            err = getattr(getattr(result, "error", None), "error", None)
            reason = reason or (f"{getattr(err, 'type', 'error')}: {getattr(err, 'message', '')}".strip()
                                if err is not None else "errored")
        return self.store.record_batch_result(self.run_id, item.custom_id, kind,
                                              reason=reason or f"the batch entry {kind}")

    def wait(self, *, poll_interval: float = 30.0, max_poll_interval: float = 600.0, timeout: float | None = None,
             sleep: Callable[[float], Any] = time.sleep) -> dict[str, Any]:
        """Poll (backoff: each wait 1.5x the last, up to ``max_poll_interval``, jittered) until every batch
        ended, then :meth:`collect`. Raises :class:`BatchTimeout` after ``timeout`` seconds (the batch keeps
        running; call again to resume)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = max(0.01, float(poll_interval))
        while True:
            state = self.collect()
            if state["collected"]:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise BatchTimeout(f"run {self.run_id}: batch(es) {', '.join(self.batch_ids(True))} did not end "
                                   f"within {timeout:.0f}s; they keep running, and a retry resumes them")
            sleep(interval * random.uniform(0.8, 1.0))
            interval = min(interval * 1.5, max(interval, float(max_poll_interval)))

    def cancel(self) -> dict[str, Any]:
        """Ask the API to cancel the run's unfinished batches (entries already processed stay billed)."""
        for p in self.store.batch_parts(self.run_id):
            if p["batch_id"] and p["status"] not in ("ended", "collected"):
                self.client.messages.batches.cancel(p["batch_id"])
        return self.refresh()

    def state(self) -> dict[str, Any]:
        """The run's batch mode at a glance (JSON-safe, for XCom): ``{run_id, batch_ids, collected, entries
        (state -> count), interactive, over_budget, cost_usd, parts}``."""
        return self.store.batch_state(self.run_id)


# ---------------------------------------------------------------------------------------------------------------
# Apply
# ---------------------------------------------------------------------------------------------------------------
class BatchEntryRunner:
    """A runner (the lifecycle's ``Runner``) that applies a collected batch reply instead of calling the API.

    The reply's tool calls run through :class:`~airflow_provider_worktree.core.sandbox.editor.TextEditorTool` in the
    shard's worktree with the shard's write scope, as in the agent loop (:func:`~.runners.run_tool_uses`). Its
    result reports no usage: the entry's spend was recorded once, when it was collected (attempt 0)."""

    def __init__(self, entry: Mapping[str, Any], *, allowed_write: Callable[[str], bool] | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.entry = dict(entry)
        self.model = (self.entry.get("response") or {}).get("model") or self.entry.get("model")
        self.allowed_write = allowed_write
        self.budget = None
        self.log = logger or log
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def run(self, worktree_path: str, shard_prompt: str, system_prompt: str | None = None) -> RunResult:
        started = time.monotonic()
        editor = TextEditorTool(worktree_path, allowed_write=self.allowed_write)
        content = list((self.entry.get("response") or {}).get("content") or [])
        results = run_tool_uses(content, {editor.name: editor.execute}, self._cancel.is_set, self.log)
        refused = [r for r in results if r.get("is_error")]
        text = "\n".join(b.get("text", "") for b in content if b.get("type") == "text" and b.get("text"))
        if refused:
            text += f"\n({len(refused)} of {len(results)} tool call(s) refused: " + " | ".join(
                str(r.get("content"))[:200] for r in refused[:5]) + ")"
        self.log.info("batch reply of shard %s applied: %d tool call(s), %d refused, %d file(s) written",
                      self.entry.get("shard_id"), len(results), len(refused), len(editor.files_written))
        stop = "cancelled" if self._cancel.is_set() else "end_turn"
        return RunResult(stop_reason=stop, turns=1, usage=Usage(), cost_usd=0.0, files_written=editor.files_written,
                         final_text=text.strip(), error="the run was cancelled" if stop == "cancelled" else None,
                         model=self.model, duration_s=round(time.monotonic() - started, 3))


@dataclass
class BatchPlanForShard:
    """How batch mode runs one shard: ``runner`` and the ``base_ref`` its worktree must start at (the commit
    its prompt was read from; None for an interactive fallback), and why (``note``)."""

    runner: Any
    base_ref: str | None
    note: str


def batch_runner(store: Any, run_id: str, shard_id: str, *, interactive: Callable[[], Any],
                 fallback: str = "interactive", allowed_write: Callable[[str], bool] | None = None,
                 logger: logging.Logger | None = None) -> BatchPlanForShard:
    """The runner of one shard in batch mode, from its entry in the shard database.

    ``succeeded``: a :class:`BatchEntryRunner` on the entry's base commit. ``interactive`` (too large for one
    prompt), ``errored``, ``expired``, ``canceled``: ``interactive()`` (the agent loop), unless
    ``fallback="fail"``, which raises a permanent failure with the entry's reason. ``over_budget`` always fails
    permanently; ``queued`` raises :class:`BatchNotReady` (transient: the batch is still running or not
    collected)."""

    if fallback not in FALLBACKS:
        raise ConfigurationError(f"batch_fallback={fallback!r} is not one of {FALLBACKS}.")
    if store is None:
        raise ConfigurationError("batch mode needs the shard status database: set shard_status_conn_id.")
    entry = store.batch_entry(run_id, shard_id)
    lg = logger or log
    if entry is None:
        raise ConfigurationError(f"shard {shard_id} of run {run_id} has no batch entry: submit the run's shards with "
                                 "ClaudeBatchSubmitOperator before the shards' tasks, or use mode='interactive'.")
    status, reason = entry["status"], entry.get("reason") or ""
    if status == "succeeded":
        return BatchPlanForShard(BatchEntryRunner(entry, allowed_write=allowed_write, logger=lg), entry["base_sha"],
                                 f"batch reply of {entry['custom_id']}")
    if status == "queued":
        raise BatchNotReady(f"shard {shard_id}: its batch entry has no result yet (the batch is running or was not "
                            "collected); the submit task collects it, and a retry of this task finds it.")
    if status == "over_budget":
        raise ShardFailed(f"shard {shard_id} was not sent: {reason}", permanent=True)
    if fallback == "fail" and status != "interactive":
        raise ShardFailed(f"shard {shard_id}: its batch entry {status} ({reason}); batch_fallback='fail'",
                          permanent=True)
    lg.warning("shard %s runs interactively: its batch entry is %s (%s)", shard_id, status, reason)
    return BatchPlanForShard(interactive(), None, f"interactive: batch entry {status} ({reason})")
