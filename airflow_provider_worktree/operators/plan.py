"""ShardPlanOperator: a repository and a maintenance task in, the shards for ``.expand(shard=...)`` out.

A thin face over :func:`airflow_provider_worktree.core.planning.plan_repository`: this module turns the
operator's parameters and the ``git_worktree`` connection into the planner's arguments, and the plan into XCom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.planning import plan_repository
from airflow_provider_worktree.core.tasks import MaintenanceTask, get_task
from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
from airflow_provider_worktree.hooks.shard_status import ShardStatusHook
from airflow_provider_worktree.operators.options import InvalidMaintenanceConfig, templated_number

if TYPE_CHECKING:
    from airflow.sdk import Context

SPLIT_BY = ("size", "directory")
#: The shard limits' defaults (the planner's own).
MAX_FILES, MAX_BYTES = 10, 200_000
#: Skipped files listed in the plan's XCom summary (all are counted in ``skipped_by_reason``).
MAX_SKIPPED_LISTED = 20


def _globs(name: str, value: Any) -> list[str]:
    """A rendered glob list: None, "" and [] are no globs; one string is one glob."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(g, str) for g in value):
        raise ConfigurationError(f"{name} must be a list of glob strings such as ['src/**/*.py'], got {value!r:.200}.")
    return list(value)


class ShardPlanOperator(BaseOperator):
    """Plan a maintenance task on a repository: the files with work, split into disjoint shards.

    Returns the shards (XCom) for ``ClaudeMaintenanceOperator.partial(...).expand(shard=plan.output)``, registers
    them for the run in the shard status database (so the sensor and the report count them before any starts)
    and pushes a summary under the XCom key ``plan`` (repository, ref, files, skipped files by reason, notes) for
    a report. git runs in the task, never at parse time. Bad input fails the task at once, without retry, in
    one line naming the problem and the fix; where the DAG has a Param of the setting's name (``repo``, a task
    option such as ``lint_command``), the line names that Param, to set when triggering.

    :param task: the maintenance task (``todo``, ``docstrings``, ``lint``, ``tests``, ``custom`` or a registered one).
    :param repo: repository path or URL; overrides the ``git_worktree`` connection's host (a URL is cloned into
        the worker's cache).
    :param ref: the commit planned (a branch, tag or sha).
    :param task_options: the task's options (``{"lint_command": "ruff check"}``, ``{"prompt": "..."}``); an empty
        value (None, "") counts as not given.
    :param include: only files matching one of these globs, planned even where the default skip rules (vendored,
        generated, fixtures) would leave them out.
    :param exclude: leave out files matching these globs.
    :param max_files: most files in one shard.
    :param max_bytes: most bytes in one shard.
    :param split_by: ``size`` (files packed in path order) or ``directory`` (each directory packed on its own).
    :param top: keep only the ``top`` highest-priority shards (a sample run); ``None``: all of them.
    :param max_shards: at most this many shards, consecutive ones merged to fit (the plan says so); default:
        Airflow's ``[core] max_map_length``, so the plan of any repository maps.
    :param shard_kwargs: keyword arguments every mapped task gets beside its shard: the items are then
        ``{"shard": shard, **shard_kwargs}``, for ``.expand_kwargs(plan.output)``.
    :param git_worktree_conn_id: connection of type ``git_worktree`` (optional when ``repo`` is given).
    :param worktree_root: as for ``ClaudeMaintenanceOperator`` (checked against the repository, nothing created).
    :param shard_status_conn_id: the shard status database the shards are registered in; ``None``: not registered.
    """

    template_fields: Sequence[str] = (
        "task", "repo", "ref", "task_options", "include", "exclude", "max_files", "max_bytes", "split_by", "top",
        "max_shards", "shard_kwargs", "worktree_root",
    )
    template_fields_renderers = {"task_options": "json", "shard_kwargs": "json"}
    ui_color = "#d5e8f5"

    def __init__(self, *, task: str, repo: str | None = None, ref: str = "HEAD", task_options: dict | None = None,
                 include: list[str] | None = None, exclude: list[str] | None = None, max_files: int = MAX_FILES,
                 max_bytes: int = MAX_BYTES, split_by: str = "size", top: int | None = None,
                 max_shards: int | None = None, shard_kwargs: dict | None = None,
                 git_worktree_conn_id: str = GitWorktreeHook.default_conn_name, worktree_root: str | None = None,
                 shard_status_conn_id: str | None = ShardStatusHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task, self.repo, self.ref, self.task_options = task, repo, ref, task_options
        self.include, self.exclude, self.split_by = include, exclude, split_by
        self.max_files, self.max_bytes, self.top, self.max_shards = max_files, max_bytes, top, max_shards
        self.shard_kwargs = shard_kwargs
        self.git_worktree_conn_id, self.worktree_root = git_worktree_conn_id, worktree_root
        self.shard_status_conn_id = shard_status_conn_id

    def execute(self, context: Context) -> list[dict]:
        try:
            return self._plan(context)
        except ConfigurationError as exc:
            raise InvalidMaintenanceConfig(f"configuration error, not retried: {exc}") from exc

    def _plan(self, context: Context) -> list[dict]:
        from airflow_provider_worktree.version_compat import conf

        params = context.get("params") or {}
        task = self._configured_task(params)
        include, exclude = _globs("include", self.include), _globs("exclude", self.exclude)
        if self.split_by not in SPLIT_BY:
            raise ConfigurationError(f"split_by={self.split_by!r} is not one of {SPLIT_BY}.")
        if self.shard_kwargs is not None and not isinstance(self.shard_kwargs, Mapping):
            raise ConfigurationError(f"shard_kwargs must be a mapping of keyword arguments, got "
                                     f"{self.shard_kwargs!r:.200}.")
        max_shards = templated_number("max_shards", self.max_shards) or conf.getint(
            "core", "max_map_length", fallback=1024)
        repo_path = self._repo_path(params)
        plan = plan_repository(
            repo_path, task, ref=self.ref or "HEAD", globs=include or None, include=include or None,
            exclude=exclude or None, max_files=templated_number("max_files", self.max_files) or MAX_FILES,
            max_bytes=templated_number("max_bytes", self.max_bytes) or MAX_BYTES, by=self.split_by,
            top=templated_number("top", self.top), max_shards=max_shards,
        )
        shards = plan.shards
        if self.shard_status_conn_id is not None:
            ShardStatusHook(shard_status_conn_id=self.shard_status_conn_id).register_shards(context["run_id"], shards)
        listed = plan.to_dict(max_skipped=MAX_SKIPPED_LISTED)
        files = sum(len(s["files"]) for s in shards)
        context["ti"].xcom_push(key="plan", value={
            "task": plan.task, "repo": repo_path, "base_ref": self.ref, "globs": include, "exclude": exclude,
            "shards": len(shards), "files": files, "skipped": listed["skipped"],
            "skipped_by_reason": listed["skipped_by_reason"], "notes": listed["notes"], "summary": plan.summary(),
        })
        self.log.info("%s", plan.summary())
        if shards:
            self.log.info("%d shards (%d files) planned for run %s", len(shards), files, context["run_id"])
        else:
            self.log.info("Nothing to do: no file of %s at %s needs the %r task%s", repo_path, self.ref, plan.task,
                          f" (include {include})" if include else "")
        if self.shard_kwargs is None:
            return shards
        return [{"shard": shard, **self.shard_kwargs} for shard in shards]

    def _configured_task(self, params: Mapping[str, Any]) -> MaintenanceTask:
        """The task with its given options; a required option left empty is named (as the DAG's Param, if any)."""
        if self.task_options is not None and not isinstance(self.task_options, Mapping):
            raise ConfigurationError(f"task_options must be a mapping such as {{'lint_command': 'ruff check'}}, "
                                     f"got {self.task_options!r:.200}.")
        given = dict(self.task_options or {})
        options = {k: v for k, v in given.items() if v not in (None, "")}
        task = get_task(self.task, **options)
        try:
            task.validate()
        except ConfigurationError as exc:
            empty = [k for k in given if k not in options]
            if not empty:
                raise
            if empty[0] in params:
                raise ConfigurationError(f"task {self.task!r} needs the {empty[0]} Param: trigger the run with it "
                                         f"set{self._described(empty[0])}") from None
            raise ConfigurationError(f"task {self.task!r} needs task_options[{empty[0]!r}]: {exc}") from None
        return task

    def _repo_path(self, params: Mapping[str, Any]) -> str:
        """The repository's path on this worker (a remote is cloned or fetched into the cache)."""
        hook = GitWorktreeHook(git_worktree_conn_id=self.git_worktree_conn_id, repo=self.repo or None,
                               worktree_root=self.worktree_root or None)
        try:
            return hook.get_manager().repo_path
        except ConfigurationError as exc:
            if self.repo:
                raise
            given = ("give the repo Param (a local path or URL) when triggering" if "repo" in params
                     else "pass repo= (a local path or URL)")
            raise ConfigurationError(f"No repository for this run: {given}, or create the {self.git_worktree_conn_id} "
                                     f"connection ({exc})") from None

    def _described(self, name: str) -> str:
        """`` (<the DAG Param's description>)``, or "" when it has none."""
        try:
            description = self.dag.params.get_param(name).description
        except (AttributeError, KeyError, RuntimeError):
            description = None
        return f" ({description})" if description else ""
