"""Deferrable wait of :class:`~airflow_provider_worktree.operators.batch.ClaudeBatchSubmitOperator`.

Polls the run's Message Batches from the triggerer until every one has ended, like the official Anthropic
provider's ``AnthropicBatchTrigger`` (the SDK call runs in a thread; transient polling errors are tolerated;
the deadline is wall clock so it survives a triggerer restart), with two differences: it follows all the
batches of a run (a run is split at the API's limits), and it backs off: each wait is ``backoff`` times the
last, up to ``max_poll_interval`` (a batch takes minutes to hours; polling every few seconds for a day helps
nobody). Killing the deferred task does not cancel the batches: their results are paid for, and a rerun of
the task collects them.

It yields exactly one event: ``{"status": "success", "batch_ids", "request_counts"}`` once every batch ended,
``{"status": "error", "message"}`` after the official provider's
``MAX_CONSECUTIVE_POLL_FAILURES`` failed polls in a row, or
``{"status": "timeout", "message"}`` past ``end_time``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.anthropic.hooks.anthropic import MAX_CONSECUTIVE_POLL_FAILURES, BatchStatus
from airflow.triggers.base import BaseTrigger, TriggerEvent



class ClaudeBatchTrigger(BaseTrigger):
    """Wait until every Message Batch in ``batch_ids`` has ended.

    :param batch_ids: the run's batch ids (from the shard database, via the submit operator).
    :param conn_id: the Anthropic connection (resolved in the triggerer: no key travels in the kwargs).
    :param poll_interval: the first wait between polls (the first poll is at once).
    :param max_poll_interval: the longest wait between polls.
    :param backoff: each wait is this many times the last.
    :param end_time: wall-clock deadline (``time.time()`` epoch seconds); ``None``: none.
    """

    def __init__(self, batch_ids: list[str], conn_id: str = "anthropic_default", poll_interval: float = 30.0,
                 max_poll_interval: float = 600.0, backoff: float = 1.5, end_time: float | None = None) -> None:
        super().__init__()
        self.batch_ids = list(batch_ids)
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.backoff = float(backoff)
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_worktree.triggers.batch.ClaudeBatchTrigger",
            {"batch_ids": self.batch_ids, "conn_id": self.conn_id, "poll_interval": self.poll_interval,
             "max_poll_interval": self.max_poll_interval, "backoff": self.backoff, "end_time": self.end_time},
        )

    def _retrieve_all(self) -> dict[str, Any]:
        from airflow.providers.anthropic.hooks.anthropic import AnthropicHook

        client = AnthropicHook(conn_id=self.conn_id).get_conn()
        return {bid: client.messages.batches.retrieve(bid) for bid in self.batch_ids}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        wait, failures = self.poll_interval, 0
        while True:
            try:
                batches = await asyncio.to_thread(self._retrieve_all)
            except Exception as exc:  # noqa: BLE001 - transient polling errors are tolerated a few times
                failures += 1
                if failures >= MAX_CONSECUTIVE_POLL_FAILURES:
                    yield TriggerEvent({"status": "error", "batch_ids": self.batch_ids,
                                        "message": f"polling batch(es) {', '.join(self.batch_ids)} failed {failures} "
                                                   f"times in a row: {type(exc).__name__}: {exc}"})
                    return
                self.log.warning("polling batches failed (%s); retrying", exc)
            else:
                failures = 0
                running = [bid for bid, b in batches.items() if BatchStatus.is_in_progress(b.processing_status)]
                if not running:
                    counts: dict[str, int] = {}
                    for b in batches.values():
                        for key in ("processing", "succeeded", "errored", "canceled", "expired"):
                            counts[key] = counts.get(key, 0) + int(getattr(b.request_counts, key, 0) or 0)
                    yield TriggerEvent({"status": "success", "batch_ids": self.batch_ids, "request_counts": counts,
                                        "message": f"batch(es) {', '.join(self.batch_ids)} ended"})
                    return
                self.log.info("batch(es) still running: %s; next poll in %.0fs", ", ".join(running), wait)
            if self.end_time is not None and time.time() > self.end_time:
                yield TriggerEvent({"status": "timeout", "batch_ids": self.batch_ids,
                                    "message": f"batch(es) {', '.join(self.batch_ids)} did not end before the "
                                               "deadline; they keep running, and a retry of the task resumes them"})
                return
            await asyncio.sleep(wait)
            wait = min(wait * self.backoff, max(self.poll_interval, self.max_poll_interval))
