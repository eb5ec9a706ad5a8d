"""One shard's whole lifecycle: claim, worktree, Claude, verify, commit, record, clean up.

Plain Python (no Airflow import): :class:`~airflow_provider_worktree.operators.maintenance.ClaudeMaintenanceOperator`
is a thin face over :func:`run_shard`, and the same function runs from a script or a test.

The whole lifecycle runs inside one call (try/finally), because a worktree is local to the worker that
made it: it is never split across tasks that another worker might run.
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from airflow_provider_worktree.core.errors import WorktreeProviderError
from airflow_provider_worktree.core.store import (
    Lease,
    LeaseLostError,
    ShardAlreadyCompleted,
    ShardBusy,
    ShardStore,
)
from airflow_provider_worktree.core.tasks import (
    MaintenanceTask,
    check_scope,
    read_conventions,
    render_shard_prompt,
    run_verify,
    system_prompt_for,
)
from airflow_provider_worktree.core.worktree import WorktreeManager, pid_alive

log = logging.getLogger(__name__)


class ShardFailed(WorktreeProviderError):
    """The shard's work did not succeed; the reason is recorded in the shard database."""

    def __init__(self, message: str, result: ShardResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class Runner(Protocol):
    """What the lifecycle needs of a Claude runner (``ApiRunner`` or ``ClaudeCodeRunner``)."""

    def run(self, worktree_path: str, shard_prompt: str, system_prompt: str | None = None) -> Any: ...

    def cancel(self) -> None: ...


@dataclass
class ShardResult:
    """The small, JSON-safe summary of one shard: the operator's XCom value. Never file contents."""

    run_id: str
    shard_id: str
    task: str
    status: str  # completed | failed | skipped
    attempt: int = 0
    worker_id: str = ""
    branch: str | None = None
    commit_sha: str | None = None
    files_changed: list[str] = field(default_factory=list)
    diffstat: str = ""
    stop_reason: str | None = None
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    metric_before: dict = field(default_factory=dict)
    metric_after: dict = field(default_factory=dict)
    verify: dict | None = None
    salvage_branch: str | None = None
    worktree_path: str | None = None
    peak_rss_mib: float | None = None
    error: str | None = None
    durations: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def store_fields(self) -> dict:
        """The columns the shard database keeps for this result."""
        return {
            "branch": self.branch,
            "commit_sha": self.commit_sha,
            "files_changed": self.files_changed,
            "diffstat": self.diffstat,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": self.cost_usd,
            "summary": {
                "stop_reason": self.stop_reason,
                "turns": self.turns,
                "metric_before": self.metric_before,
                "metric_after": self.metric_after,
                "verify": self.verify,
                "salvage_branch": self.salvage_branch,
                "worktree_path": self.worktree_path,
                "peak_rss_mib": self.peak_rss_mib,
                "durations": self.durations,
            },
        }


def default_worker_id() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


class _Heartbeat:
    """Renews the lease in the background; on a lost lease it cancels the runner (fencing)."""

    def __init__(self, store: ShardStore, lease: Any, interval: float, on_lost: Callable[[str], None]) -> None:
        self._store, self._lease, self._interval, self._on_lost = store, lease, interval, on_lost
        self._stop = threading.Event()
        self.lost: str | None = None
        self._thread = threading.Thread(target=self._loop, name="shard-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._store.heartbeat(self._lease)
            except LeaseLostError as exc:
                self.lost = str(exc)
                self._on_lost(self.lost)
                return
            except Exception as exc:  # noqa: BLE001 - a database blip must not kill the shard
                log.warning("heartbeat for shard %s failed (will retry): %s", self._lease.shard_id, exc)


@dataclass
class ShardConfig:
    """Everything about how to process a shard that is not the shard itself."""

    base_ref: str = "HEAD"
    verify_command: str | list[str] | None = None
    verify_timeout: float = 900.0
    commit: bool = True
    push: bool = False
    sparse: bool | None = None  # None: sparse only when there is no verify command (tests need the whole tree)
    heartbeat_interval: float = 30.0
    custom_prompt: str | None = None
    commit_message: str | None = None


def run_shard(
    shard: dict,
    run_id: str,
    *,
    task: MaintenanceTask,
    manager: WorktreeManager,
    runner: Runner,
    store: ShardStore | None = None,
    config: ShardConfig | None = None,
    worker_id: str | None = None,
    logger: logging.Logger | None = None,
) -> ShardResult:
    """Take one shard through its whole lifecycle and return its result.

    Raises :class:`ShardFailed` (after recording the failure and cleaning up) when the work did not
    succeed, so that Airflow's retries apply. A shard already completed in the store is skipped.
    """
    cfg = config or ShardConfig()
    lg = logger or log
    worker = worker_id or default_worker_id()
    shard_id, files = shard["shard_id"], list(shard.get("files") or [])
    res = ShardResult(run_id=run_id, shard_id=shard_id, task=task.name, status="running", worker_id=worker)
    t0 = time.monotonic()

    lease = None
    if store is not None:
        store.register_shards(run_id, [shard])
        try:
            lease = _claim(store, run_id, worker, shard_id, lg)
        except ShardAlreadyCompleted:
            row = store.get_shard(run_id, shard_id) or {}
            lg.info("shard %s of run %s is already completed: skipping (a rerun resumes)", shard_id, run_id)
            res.status = "skipped"
            res.branch, res.commit_sha = row.get("branch"), row.get("commit_sha")
            return res
        res.attempt = lease.attempt
    res.durations["claim_s"] = round(time.monotonic() - t0, 3)

    sparse = cfg.sparse if cfg.sparse is not None else not cfg.verify_command
    wt = None
    heartbeat: _Heartbeat | None = None
    try:
        if store is not None and lease is not None:  # from the claim on, so a slow checkout keeps the lease
            heartbeat = _Heartbeat(store, lease, cfg.heartbeat_interval, lambda _msg: runner.cancel())
            heartbeat.__enter__()
        t = time.monotonic()
        wt = manager.create_worktree(
            run_id, shard_id, attempt=max(res.attempt, 1), base_ref=cfg.base_ref,
            sparse_paths=files if sparse else None,
        )
        res.branch, res.worktree_path = wt.branch, wt.path
        res.durations["worktree_s"] = round(time.monotonic() - t, 3)
        lg.info("shard %s: worktree %s on branch %s (%s)", shard_id, wt.path, wt.branch,
                "sparse" if sparse else "full")

        res.metric_before = task.measure(wt.path, files)
        t = time.monotonic()
        prompt = render_shard_prompt(task, shard, custom_prompt=cfg.custom_prompt)
        system = system_prompt_for(task, read_conventions(wt.path))
        run = runner.run(wt.path, prompt, system_prompt=system)
        res.durations["model_s"] = round(time.monotonic() - t, 3)
        _copy_usage(res, run)
        if heartbeat is not None and heartbeat.lost:
            raise ShardFailed(f"lease lost while working, another worker owns the shard now: {heartbeat.lost}")
        if run.stop_reason in ("error", "cancelled"):
            raise ShardFailed(f"Claude run ended with {run.stop_reason}: {run.error or 'no detail'}")

        changed = manager.changed_files(wt.path, wt.base_sha)
        violations = check_scope(changed, shard, task)
        if violations:
            raise ShardFailed(
                f"the change left the shard's files: {', '.join(violations[:10])}; "
                "the shard is rejected and its work saved on a salvage branch"
            )

        if cfg.verify_command:
            t = time.monotonic()
            verify = run_verify(cfg.verify_command, wt.path, cfg.verify_timeout)
            res.verify = {"ok": verify.ok, "returncode": verify.returncode, "output_tail": verify.output_tail[-2000:]}
            res.durations["verify_s"] = round(time.monotonic() - t, 3)
            verify_ok: bool | None = verify.ok
        else:
            verify_ok = None
        res.metric_after = task.measure(wt.path, files)
        ok, reason = task.evaluate(res.metric_before, res.metric_after, verify_ok)
        if not ok:
            raise ShardFailed(f"verification failed: {reason}")

        if cfg.commit:
            t = time.monotonic()
            message = cfg.commit_message or f"{task.name}: {task.description} ({shard_id})"
            commit = manager.commit(wt.path, message, {"Airflow-Run-Id": run_id, "Shard-Id": shard_id})
            res.commit_sha, res.diffstat, res.files_changed = commit.sha, commit.diffstat, list(commit.files)
            if cfg.push and commit.sha:
                # A retry (attempt > 1) replaces what an earlier attempt, since fenced out, may have pushed
                # before it died; the first attempt never overwrites a remote branch.
                manager.push(wt.branch, path=wt.path, force=res.attempt > 1)
            res.durations["commit_s"] = round(time.monotonic() - t, 3)
        res.status = "completed"
    except BaseException as exc:
        res.status = "failed"
        res.error = str(exc) or type(exc).__name__
        partial = getattr(exc, "result", None)  # a runner error carries the spend so far
        if partial is not None and hasattr(partial, "usage"):
            _copy_usage(res, partial)
        raise_as: BaseException = exc if isinstance(exc, ShardFailed) else ShardFailed(res.error, res)
        if isinstance(raise_as, ShardFailed):
            raise_as.result = res
        _finish(res, store, lease, manager, wt, heartbeat, t0, lg)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise raise_as from (None if raise_as is exc else exc)
    _finish(res, store, lease, manager, wt, heartbeat, t0, lg)
    if res.status != "completed":
        raise ShardFailed(res.error or "shard failed", res)
    return res


def _owner_dead_here(worker_id: str | None) -> bool:
    """True when ``worker_id`` (``host:pid``) names a process of this host that no longer exists."""
    host, _, pid = (worker_id or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def _claim(store: ShardStore, run_id: str, worker: str, shard_id: str, lg: logging.Logger) -> Lease:
    """Claim the shard. A lease still held by a dead process of this host (the previous try of this task,
    killed) is released with its own fencing token and claimed again at once, instead of waiting for the
    heartbeat to go stale; a live holder, or one on another host, is left alone."""
    try:
        return store.assign_shard(run_id, worker, shard_id=shard_id)
    except ShardBusy as busy:
        row = store.get_shard(run_id, shard_id)
        if not _owner_dead_here(row.get("worker_id")):
            raise ShardFailed(
                f"{busy} Another live worker ({row.get('worker_id')}) holds shard {shard_id}; this try stops. "
                "If that worker is gone, the ShardStatusSensor or `airflow-worktree reset-stale` reclaims it."
            ) from busy
        lg.warning("shard %s: previous holder %s is dead; releasing its lease and claiming again",
                   shard_id, row.get("worker_id"))
        store.release(Lease(run_id=run_id, shard_id=shard_id, worker_id=row["worker_id"],
                            token=int(row["lease_token"]), attempt=int(row.get("attempt") or 0)))
        return store.assign_shard(run_id, worker, shard_id=shard_id)


def _copy_usage(res: ShardResult, run: Any) -> None:
    usage = run.usage
    res.stop_reason, res.turns = run.stop_reason, run.turns
    res.input_tokens, res.output_tokens = usage.input_tokens, usage.output_tokens
    res.cache_read_tokens, res.cache_write_tokens = usage.cache_read_tokens, usage.cache_write_tokens
    res.cost_usd = round(float(run.cost_usd or 0.0), 6)


def _finish(res: ShardResult, store, lease, manager, wt, heartbeat, t0: float, lg: logging.Logger) -> None:
    """Stop the heartbeat, remove the worktree (saving any uncommitted work), record the outcome."""
    if heartbeat is not None:
        heartbeat.__exit__(None, None, None)
    if wt is not None:
        try:
            removed = manager.remove_worktree(wt.path, force=True, keep_branch=True)
            res.salvage_branch = getattr(removed, "salvage_branch", None)
            if res.salvage_branch:
                lg.warning("shard %s: uncommitted work saved on branch %s", res.shard_id, res.salvage_branch)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the shard's own outcome
            lg.error("shard %s: could not remove worktree %s: %s (the janitor will prune it)",
                     res.shard_id, wt.path, exc)
    res.durations["total_s"] = round(time.monotonic() - t0, 3)
    res.peak_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    if store is None or lease is None:
        return
    try:
        if res.status == "completed":
            store.complete(lease, **res.store_fields())
        else:
            store.fail(lease, res.error or "failed", **res.store_fields())
    except LeaseLostError as exc:
        lg.error("shard %s: result not recorded, the lease was taken over: %s", res.shard_id, exc)
        if res.status == "completed":
            res.status, res.error = "failed", f"lease lost before completion was recorded: {exc}"
