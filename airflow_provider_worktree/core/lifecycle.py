"""One shard's whole lifecycle: claim, worktree, Claude, verify, commit, record, clean up.

The top floor of ``core``: it may import every core package and nothing above it; plain Python, no Airflow.
``ClaudeMaintenanceOperator`` is a thin face over :func:`run_shard`, and the same function runs from a script or a
test. A git verb passes two layers: the lifecycle calls the :class:`WorktreeManager`, which calls its
committer or pusher.

The whole lifecycle runs inside one call (try/finally), because a worktree is local to the worker that
made it: it is never split across tasks that another worker might run.
"""

from __future__ import annotations

import logging
import os
import random
import re
import resource
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_worktree.core.errors import (
    ConfigurationError,
    ShardFailed,
    summarize_error,
)
from airflow_provider_worktree.core.runners import Budget, Usage
from airflow_provider_worktree.core.sandbox.box import (
    resolve_isolation,
    validate_isolation,
)
from airflow_provider_worktree.core.sandbox.proc import truncate_middle
from airflow_provider_worktree.core.store import (
    MAX_ERROR_CHARS,
    Lease,
    LeaseLostError,
    NoSlotAvailable,
    ShardAlreadyCompleted,
    ShardBusy,
    ShardStore,
    bound_error,
)
from airflow_provider_worktree.core.tasks import (
    MaintenanceTask,
    check_scope,
    read_conventions,
    render_shard_prompt,
    run_verify,
    system_prompt_for,
)
from airflow_provider_worktree.core.worktrees import WorktreeManager, pid_alive

log = logging.getLogger(__name__)

#: HTTP statuses a retry may cure (timeout, conflict, rate limit); any other 4xx is the request's own fault.
RETRYABLE_4XX = (408, 409, 429)


def is_permanent(exc: BaseException) -> bool:
    """Whether a retry of the shard cannot cure ``exc`` (see :class:`ShardFailed`)."""
    if isinstance(exc, ShardFailed):
        return exc.permanent
    if isinstance(exc, ConfigurationError):
        return True
    status = getattr(exc, "status_code", None)
    if status == 429 and getattr(exc, "retryable", None) is False:  # the spend limit: no wait helps
        return True
    if isinstance(status, int) and 400 <= status < 500 and status not in RETRYABLE_4XX:
        return not getattr(exc, "retryable", False)
    return False


_KEY_RE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}")


def redact_secrets(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with API keys (``sk-ant-...`` and the given ``secrets``) replaced by ``***``."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 8:
            out = out.replace(secret, "***")
    return _KEY_RE.sub("sk-ant-***", out)


def bounded_error(text: str, secrets: tuple[str, ...] = ()) -> str:
    """An error message fit for the shard row, XCom and the task log: API keys removed, the cause first
    (``core.errors.summarize_error``), at most about
    :data:`~airflow_provider_worktree.core.store.shards.MAX_ERROR_CHARS` characters."""
    clean = redact_secrets(text, secrets)
    if len(clean) > MAX_ERROR_CHARS:
        clean = summarize_error(clean, limit=MAX_ERROR_CHARS, max_lines=8)
    return bound_error(clean)


OFFLINE_MODEL_ID = "claude-offline-test-double"  # the offline test double's own model id (testing.server)


def is_offline_double(model: str | None, base_url: str | None, api_key: str | None = None) -> bool:
    """Whether a run talked to the package's offline Messages API test double rather than Claude: its model
    id, the smoke run's placeholder key, or a loopback base URL (where the double serves; a proxy on loopback
    gets the same label, which only changes how the report shows cost)."""
    if model == OFFLINE_MODEL_ID or (api_key or "").startswith("sk-offline-"):
        return True
    host = (urlsplit(str(base_url)).hostname or "") if base_url and "://" in str(base_url) else ""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _runner_endpoint(runner: Any) -> tuple[str | None, str | None]:
    """(model, base URL) the runner talks to, as far as it tells."""
    base = getattr(runner, "_base_url", None) or getattr(getattr(runner, "client", None), "base_url", None)
    return getattr(runner, "model", None), (str(base) if base else None)


def _runner_secrets(runner: Any) -> tuple[str, ...]:
    found = [os.environ.get("ANTHROPIC_API_KEY"), getattr(runner, "_api_key", None),
             getattr(getattr(runner, "client", None), "api_key", None)]
    return tuple(s for s in found if isinstance(s, str) and s)


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
    retryable: bool = True
    isolation: str | None = None
    excluded_files: list[str] = field(default_factory=list)
    model: str | None = None
    offline: bool = False  # talked to the offline test double: its cost is not a real bill
    totals: dict = field(default_factory=dict)  # every attempt of the shard so far: tokens and cost summed
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
            "isolation": self.isolation,
            "summary": {
                "stop_reason": self.stop_reason,
                "turns": self.turns,
                "metric_before": self.metric_before,
                "metric_after": self.metric_after,
                "verify": self.verify,
                "salvage_branch": self.salvage_branch,
                "excluded_files": self.excluded_files,
                "model": self.model,
                "offline": self.offline,
                "retryable": self.retryable,
                "worktree_path": self.worktree_path,
                "peak_rss_mib": self.peak_rss_mib,
                "durations": self.durations,
            },
        }


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Heartbeat:
    """Renews the lease in the background; on a lost lease it cancels the runner (fencing). A worker that cannot
    reach the database for ``max_misses`` heartbeats in a row stops too: it can no longer prove it holds the
    lease, and another worker may take the shard over once the heartbeat is stale."""

    def __init__(self, store: ShardStore, lease: Any, interval: float, on_lost: Callable[[str], None],
                 max_misses: int = 3) -> None:
        self._store, self._lease, self._interval, self._on_lost = store, lease, interval, on_lost
        self._max_misses = max(1, int(max_misses))
        self._stop = threading.Event()
        self.lost: str | None = None
        self.unreachable = False
        self._thread = threading.Thread(target=self._loop, name="shard-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def _loop(self) -> None:
        misses = 0
        while not self._stop.wait(self._interval):
            try:
                self._store.heartbeat(self._lease)
                misses = 0
            except LeaseLostError as exc:
                self.lost = str(exc)
                self._on_lost(self.lost)
                return
            except Exception as exc:  # noqa: BLE001 - a database blip must not kill the shard at once
                misses += 1
                log.warning("heartbeat for shard %s failed (%d of %d allowed): %s", self._lease.shard_id, misses,
                            self._max_misses, exc)
                if misses >= self._max_misses:
                    self.unreachable = True
                    self.lost = (f"the shard database was unreachable for {misses} heartbeats in a row "
                                 f"({truncate_middle(str(exc), 300)}); the worker stops, as it can no longer "
                                 "prove it holds the lease")
                    self._on_lost(self.lost)
                    return


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
    isolation: str = "auto"  # auto | bwrap | none: how verify and commands run (see docs/security.md)
    max_active_shards: int | None = None  # the run's slot limit in the shard database; None: no limit
    slot_poll_s: float = 2.0  # first wait between slot claims (doubles, jittered, up to 15 s)
    heartbeat_max_misses: int = 3  # missed heartbeats (database unreachable) before the worker stops

    def __post_init__(self) -> None:
        self.isolation = validate_isolation(self.isolation)
        if self.max_active_shards is not None and (isinstance(self.max_active_shards, bool) or
                                                   not isinstance(self.max_active_shards, int) or
                                                   self.max_active_shards < 1):
            raise ConfigurationError(f"max_active_shards={self.max_active_shards!r} must be a positive integer "
                                     "or None (no limit).")


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
    succeed; its ``permanent`` flag says whether a retry could change that. A shard already completed in the
    store is skipped. The shard's token budget covers all its attempts: this attempt gets what earlier ones
    left. The lease is confirmed right before the commit and right before the push, and the push replaces the
    remote branch only if it still holds what it held when the shard was claimed.
    """
    cfg = config or ShardConfig()
    lg = logger or log
    worker = worker_id or default_worker_id()
    shard_id, files = shard["shard_id"], list(shard.get("files") or [])
    res = ShardResult(run_id=run_id, shard_id=shard_id, task=task.name, status="running", worker_id=worker,
                      isolation=cfg.isolation)
    secrets = _runner_secrets(runner)
    res.model, base_url = _runner_endpoint(runner)
    res.offline = is_offline_double(res.model, base_url, next((k for k in secrets if k.startswith("sk-offline-")), None))
    t0 = time.monotonic()

    lease = None
    if store is not None:
        store.register_shards(run_id, [shard])
        try:
            lease = _claim(store, run_id, worker, shard_id, lg, cfg)
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
            heartbeat = _Heartbeat(store, lease, cfg.heartbeat_interval, lambda _msg: runner.cancel(),
                                   cfg.heartbeat_max_misses)
            heartbeat.__enter__()
            _budget_after_earlier_attempts(store, lease, runner, lg)
        res.isolation = resolve_isolation(cfg.isolation)  # before any spend: 'bwrap' unavailable fails here
        expect = _remote_sha_at_claim(manager, run_id, shard_id, cfg, lg)
        if store is not None and lease is not None:
            store.update_attempt(lease, isolation=res.isolation, remote_sha=expect)
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
            raise ShardFailed(f"lease lost while working, another worker may own the shard now: {heartbeat.lost}")
        if run.stop_reason in ("error", "cancelled"):
            raise ShardFailed(f"Claude run ended with {run.stop_reason}: {run.error or 'no detail'}")

        changed = manager.changed_files(wt.path, wt.base_sha)
        violations = check_scope(changed, shard, task)
        if violations:
            raise ShardFailed(
                f"the change left the shard's files: {', '.join(violations[:10])}; "
                "the shard is rejected and its work saved on a salvage branch", permanent=True,
            )

        if cfg.verify_command:
            t = time.monotonic()
            verify = _run_verify(cfg, wt.path, manager)
            res.isolation = getattr(verify, "isolation", None) or res.isolation
            res.verify = {"ok": verify.ok, "returncode": verify.returncode,
                          "output_tail": redact_secrets(verify.output_tail[-2000:], secrets)}
            res.durations["verify_s"] = round(time.monotonic() - t, 3)
            verify_ok: bool | None = verify.ok
        else:
            verify_ok = None
        res.metric_after = task.measure(wt.path, files)
        ok, reason = task.evaluate(res.metric_before, res.metric_after, verify_ok)
        if not ok and verify_ok is False:  # say why, not only that: the first line of the cause
            reason = verify.failure()
        if not ok:
            spent = " (the token budget ran out first)" if run.stop_reason == "budget" else ""
            raise ShardFailed(f"verification failed: {reason}{spent}", permanent=True)

        if cfg.commit:
            t = time.monotonic()
            _confirm_lease(store, lease, "commit")
            message = cfg.commit_message or f"{task.name}: {task.description} ({shard_id})"
            # only the shard's allowed paths: what else appeared (e.g. written by verify) stays out, in `excluded`
            commit = manager.commit(wt.path, message, {"Airflow-Run-Id": run_id, "Shard-Id": shard_id},
                                    allowed=task.allowed_paths(shard))
            res.commit_sha, res.diffstat, res.files_changed = commit.sha, commit.diffstat, list(commit.files)
            res.excluded_files = sorted(getattr(commit, "excluded", None) or [])
            if res.excluded_files:
                lg.warning("shard %s: %d file(s) written outside the shard were not committed: %s", shard_id,
                           len(res.excluded_files), ", ".join(res.excluded_files[:20]))
            if cfg.push and commit.sha:
                _confirm_lease(store, lease, "push")
                # compare-and-swap: the remote branch must still hold `expect` (None: must not exist), so a
                # fenced-out attempt never replaces what a newer attempt pushed
                manager.push(wt.branch, path=wt.path, expect=expect)
            res.durations["commit_s"] = round(time.monotonic() - t, 3)
        res.status = "completed"
    except BaseException as exc:
        res.status = "failed"
        res.error = bounded_error(str(exc) or type(exc).__name__, secrets)
        res.retryable = not is_permanent(exc)
        partial = getattr(exc, "result", None)  # a runner error carries the spend so far
        if partial is not None and hasattr(partial, "usage"):
            _copy_usage(res, partial)
        # The raised message is the bounded, key-free one too (it reaches the task log and Airflow's UI).
        raise_as: BaseException = exc if isinstance(exc, ShardFailed) and str(exc) == res.error else ShardFailed(
            res.error, res, permanent=not res.retryable)
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


def _budget_after_earlier_attempts(store: ShardStore, lease: Lease, runner: Any, lg: logging.Logger) -> None:
    """Give this attempt the shard's budget minus what its earlier attempts spent (read from the database).

    Raises a permanent :class:`ShardFailed` when nothing is left."""
    if lease.attempt <= 1:
        return
    prior = store.prior_spend(lease.run_id, lease.shard_id, lease.attempt)
    if not prior["attempts"]:
        return
    budget = getattr(runner, "budget", None)
    exhausted = None
    if isinstance(budget, Budget) and not budget.unlimited:
        spent = Usage(prior["input_tokens"], prior["output_tokens"], prior["cache_read_tokens"],
                      prior["cache_write_tokens"])
        left = budget.less(spent, prior["cost_usd"])
        runner.budget = left
        caps = (left.max_input_tokens, left.max_output_tokens, left.max_total_tokens, left.max_cost_usd)
        if any(c is not None and c <= 0 for c in caps):
            exhausted = left
        lg.info("shard %s attempt %d: earlier attempts spent %d tokens and $%.4f; budget left: %s",
                lease.shard_id, lease.attempt, spent.total_tokens, prior["cost_usd"], left.to_dict())
    cap_usd = getattr(runner, "max_budget_usd", None)  # the Claude Code runner's dollar cap, where it has one
    if isinstance(cap_usd, (int, float)) and not isinstance(cap_usd, bool):
        runner.max_budget_usd = max(0.0, float(cap_usd) - prior["cost_usd"])
        if runner.max_budget_usd <= 0:
            exhausted = exhausted or runner.max_budget_usd
    if exhausted is not None:
        raise ShardFailed(
            f"the shard's budget is spent: its {prior['attempts']} earlier attempt(s) used "
            f"{prior['input_tokens'] + prior['cache_read_tokens'] + prior['cache_write_tokens']} input and "
            f"{prior['output_tokens']} output tokens (${prior['cost_usd']:.4f}); raise the budget to try again",
            permanent=True,
        )


def _remote_sha_at_claim(manager: Any, run_id: str, shard_id: str, cfg: ShardConfig,
                         lg: logging.Logger) -> str | None:
    """What the remote branch holds now (None: absent): the push later replaces only exactly that."""
    if not (cfg.commit and cfg.push):
        return None
    return manager.remote_branch_sha(manager.default_branch(run_id, shard_id))


def _confirm_lease(store: ShardStore | None, lease: Lease | None, step: str) -> None:
    """Prove the lease is still ours right before a step that cannot be undone (a heartbeat is a fenced write)."""
    if store is None or lease is None:
        return
    try:
        store.heartbeat(lease)
    except LeaseLostError as exc:
        raise ShardFailed(f"lease lost before the {step}, nothing was {step}ed by this attempt: {exc}") from exc


def _run_verify(cfg: ShardConfig, path: str, manager: Any) -> Any:
    """The verify command in the box; the worker's worktree root and clone cache are hidden from it."""
    hide = [p for p in (getattr(manager, "worktree_root", None), getattr(manager, "cache_dir", None)) if p]
    return run_verify(cfg.verify_command, path, cfg.verify_timeout, isolation=cfg.isolation, hide=hide)


def _owner_dead_here(worker_id: str | None) -> bool:
    """True when ``worker_id`` (``host:pid``) names a process of this host that no longer exists."""
    host, _, pid = (worker_id or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def _claim(store: ShardStore, run_id: str, worker: str, shard_id: str, lg: logging.Logger,
           cfg: ShardConfig | None = None) -> Lease:
    """Claim the shard, waiting for a slot when the run has a ``max_active_shards`` limit.

    While it waits the shard stays pending (no lease, nothing to go stale); a slot held by a dead worker
    frees itself when that worker's heartbeat goes stale. A lease still held by a dead process of this host
    (the previous try of this task, killed) is released with its own fencing token and claimed again at once,
    instead of waiting for the heartbeat to go stale; a live holder, or one on another host, is left alone."""
    cfg = cfg or ShardConfig()
    wait, waited_since = cfg.slot_poll_s, None
    while True:
        try:
            return _claim_once(store, run_id, worker, shard_id, lg, cfg.max_active_shards)
        except NoSlotAvailable as full:
            if waited_since is None:
                waited_since = time.monotonic()
                lg.info("shard %s: waiting for a slot: %s", shard_id, full)
            time.sleep(wait * (0.5 + random.random()))
            wait = min(wait * 2, 15.0)


def _claim_once(store: ShardStore, run_id: str, worker: str, shard_id: str, lg: logging.Logger,
                max_active: int | None) -> Lease:
    try:
        return store.assign_shard(run_id, worker, shard_id=shard_id, max_active=max_active)
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
        return store.assign_shard(run_id, worker, shard_id=shard_id, max_active=max_active)


def _copy_usage(res: ShardResult, run: Any) -> None:
    usage = run.usage
    res.stop_reason, res.turns = run.stop_reason, run.turns
    res.input_tokens, res.output_tokens = usage.input_tokens, usage.output_tokens
    res.cache_read_tokens, res.cache_write_tokens = usage.cache_read_tokens, usage.cache_write_tokens
    res.cost_usd = round(float(run.cost_usd or 0.0), 6)
    res.model = getattr(run, "model", None) or res.model
    res.offline = res.offline or res.model == OFFLINE_MODEL_ID


def _finish(res: ShardResult, store, lease, manager, wt, heartbeat, t0: float, lg: logging.Logger) -> None:
    """Stop the heartbeat, remove the worktree (saving any uncommitted work), record the outcome."""
    if heartbeat is not None:
        heartbeat.__exit__(None, None, None)
    if wt is not None:
        try:
            # a shard branch with no commit beyond its base (a failed shard) is deleted: no empty branches left
            removed = manager.remove_worktree(wt.path, force=True)
            if removed.branch_deleted:
                res.branch = None
            res.salvage_branch = removed.salvage_branch
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
            row = store.complete(lease, **res.store_fields())
        else:
            row = store.fail(lease, res.error or "failed", **res.store_fields())
    except LeaseLostError as exc:
        lg.error("shard %s: result not recorded, the lease was taken over: %s", res.shard_id, exc)
        if res.status == "completed":
            res.status, res.error = "failed", bounded_error(f"lease lost before completion was recorded: {exc}")
        row = _record_lost_attempt(store, lease, res, lg)
    except Exception as exc:  # noqa: BLE001 - the database is down: the outcome stands, the retry will see
        lg.error("shard %s: outcome not recorded, the shard database failed: %s", res.shard_id, exc)
        if res.status == "completed":
            res.status, res.error = "failed", bounded_error(f"could not record completion: {exc}")
            res.retryable = True
        return
    if row:
        res.totals = {k: row.get(k) for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                              "cache_write_tokens", "cost_usd", "attempt")}


def _record_lost_attempt(store: ShardStore, lease: Lease, res: ShardResult, lg: logging.Logger) -> dict | None:
    """A fenced-out attempt still spent tokens: keep them on its attempt row and in the shard's totals."""
    try:
        return store.record_attempt(lease, "lost", res.error, input_tokens=res.input_tokens,
                                    output_tokens=res.output_tokens, cache_read_tokens=res.cache_read_tokens,
                                    cache_write_tokens=res.cache_write_tokens, cost_usd=res.cost_usd,
                                    isolation=res.isolation)
    except Exception as exc:  # noqa: BLE001 - accounting must not hide the shard's own outcome
        lg.error("shard %s: could not record the spend of the lost attempt: %s", res.shard_id, exc)
        return None
