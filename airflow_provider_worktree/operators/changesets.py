"""ChangesetPublishOperator: a run's result published as one pull request on GitHub or merge request on GitLab,
tracked in the shard database.

A thin face over :class:`airflow_provider_worktree.core.forge.GitHubForge` (the official GitHub provider's
``GithubHook``, ``github_default``) and ``GitLabForge`` (this package's ``GitLabHook``, ``gitlab_default``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.hooks.forges import push_head
from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook
from airflow_provider_worktree.hooks.shard_status import ShardStatusHook
from airflow_provider_worktree.version_compat import AirflowFailException, AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context

PUBLISH_MODES = ("none", "draft", "ready")
GRANULARITIES = ("repository", "shard")
CLOSE_COMMENT = ("The maintenance run {run_id} found nothing left to change on `{head}`, so this pull request is "
                 "closed. Its commits stay on the branch.")


class ChangesetPublishOperator(BaseOperator):
    """Publish the run's integration branch as one pull request of ``head`` into ``base``, or update the one open.

    Idempotent: a changeset is identified by (repository, head), and ``head`` should be named from the task or
    campaign (stable across DAG runs), never from the run id. A re-run finds the open pull request and updates it
    in place. The head is pushed with a compare-and-swap (``--force-with-lease`` at the sha the forge has), so a
    concurrent run's push is never overwritten. When the run accepted no change, the open pull request is closed
    with a comment (``close_when_empty``). The body is a Jinja template over the run's report (sandboxed;
    model-written text neutralised). The result is recorded in the shard database's ``changesets`` table.

    :param repository: ``owner/name`` on GitHub.
    :param head: the branch to publish (the example DAG's ``integration_branch``); it must exist in the local
        repository (``repo``/``git_worktree_conn_id``) and is pushed to the forge's clone URL.
    :param base: the branch the pull request goes into.
    :param publish: ``draft`` (default), ``ready`` (a pull request ready for review) or ``none`` (skip). Templated.
    :param title_template: Jinja; default ``"{{ task }}: automated maintenance (...)"``. Templated names:
        ``report``, ``totals``, ``shards``, ``task``, ``repository``, ``run_id``, ``run_url``.
    :param body_template: Jinja; default: the run's totals (shards, files, tokens, cost) and each shard's outcome.
    :param labels: labels to add. :param reviewers: logins to request reviews from. :param assignees: logins to
        assign (GitLab: usernames; one GitLab does not know is left out with a warning).
    :param task_name: the maintenance task's name, for the templates.
    :param forge: ``github`` (default) or ``gitlab``.
    :param github_conn_id: the official GitHub provider's connection (token; Enterprise: host ``https://host/api/v3``).
    :param gitlab_conn_id: the ``gitlab`` connection (host: the instance URL; password: a token with ``api``).
    :param rate_limit: ``"shared"`` (default: every write paced by GitHub's content limits, shared by all workers
        through the shard database) or ``"off"``.
    :param campaign: the campaign this publish belongs to (``airflow-worktree campaign``): a new pull request is
        opened only within the campaign's pacing (otherwise the task skips with the reason, outcome ``paced``), and
        the repository's outcome (``pr-opened``, ``pr-updated``, ``pr-closed``, ``no-diff``, ``failed``,
        ``rate-limited``) is recorded on the campaign. Templated.
    :param shard_prefix: only the run's shards whose id starts with it (one repository of a campaign run). Templated.
    :param granularity: ``repository`` (default: one pull request of ``head``) or ``shard``: one pull request per
        accepted shard, its head ``<head>--<shard_id>`` (stable: shard ids are named from their files) at the shard's
        commit, its body that shard's report; a shard's pull request whose shard is no longer accepted is closed
        with a comment. Templated.
    """

    template_fields: Sequence[str] = ("repository", "head", "base", "publish", "title_template", "body_template",
                                      "labels", "reviewers", "assignees", "task_name", "repo", "forge", "campaign",
                                      "shard_prefix", "granularity")
    ui_color = "#d5f5e3"

    def __init__(self, *, repository: str, head: str, base: str = "main", publish: str = "draft",
                 title_template: str | None = None, body_template: str | None = None, labels: Sequence[str] = (),
                 reviewers: Sequence[str] = (), assignees: Sequence[str] = (), task_name: str | None = None,
                 repo: str | None = None,
                 git_worktree_conn_id: str = GitWorktreeHook.default_conn_name,
                 forge: str = "github", github_conn_id: str = "github_default",
                 gitlab_conn_id: str = "gitlab_default",
                 shard_status_conn_id: str = ShardStatusHook.default_conn_name, close_when_empty: bool = True,
                 rate_limit: str = "shared", campaign: str | None = None, shard_prefix: str | None = None,
                 granularity: str = "repository", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.repository, self.head, self.base, self.publish = repository, head, base, publish
        self.title_template, self.body_template = title_template, body_template
        self.labels, self.reviewers, self.task_name, self.repo = labels, reviewers, task_name, repo
        self.assignees = assignees
        self.git_worktree_conn_id, self.github_conn_id = git_worktree_conn_id, github_conn_id
        self.forge, self.gitlab_conn_id = forge, gitlab_conn_id
        self.shard_status_conn_id, self.close_when_empty, self.rate_limit = (shard_status_conn_id, close_when_empty,
                                                                              rate_limit)
        self.campaign, self.shard_prefix, self.granularity = campaign, shard_prefix, granularity

    def _check(self) -> None:
        if self.forge not in ("github", "gitlab"):
            raise AirflowFailException(f"forge={self.forge!r} is not one of ('github', 'gitlab')")
        if self.publish not in PUBLISH_MODES:
            raise AirflowFailException(f"publish={self.publish!r} is not one of {PUBLISH_MODES}: 'draft' opens a "
                                       "draft pull request, 'ready' one ready for review, 'none' publishes nothing")
        if not isinstance(self.repository, str) or self.repository.count("/") != 1 or " " in self.repository:
            raise AirflowFailException(f"repository={self.repository!r}: give the repository as owner/name (GitLab: "
                                       "group/name; subgroups are not supported yet; the example DAG's "
                                       "forge_repository Param). The branch stays as it is: clear this task to "
                                       "publish it")
        if not self.head or not isinstance(self.head, str):
            raise AirflowFailException("head is empty: give the branch to publish (e.g. the integration branch)")
        if self.granularity not in GRANULARITIES:
            raise AirflowFailException(f"granularity={self.granularity!r} is not one of {GRANULARITIES}: "
                                       "'repository' opens one pull request, 'shard' one per accepted shard")

    def execute(self, context: Context) -> dict | None:
        if self.publish == "none":
            raise AirflowSkipException("publish='none': nothing is published")
        self._check()
        from airflow_provider_worktree.core.forge import ForgeError
        from airflow_provider_worktree.core.health.report import build_report
        from airflow_provider_worktree.hooks.forges import forge_for, shared_limiter

        run_id = context["run_id"]
        store = ShardStatusHook(shard_status_conn_id=self.shard_status_conn_id).get_store()
        report = build_report(store, run_id, shard_prefix=self.shard_prefix or None)
        conn_id = self.github_conn_id if self.forge == "github" else self.gitlab_conn_id
        limiter = shared_limiter(store, self.forge, conn_id, run_id=run_id, logger=self.log) \
            if self.rate_limit == "shared" else None
        try:
            forge = forge_for(self.forge, conn_id, limiter=limiter, logger=self.log)
        except (ImportError, ValueError) as exc:
            raise AirflowFailException(f"not published: {exc}") from exc
        names = {"report": report, "totals": report["totals"], "shards": report["shards"], "run_id": run_id,
                 "task": self.task_name or "maintenance", "repository": self.repository, "run_url": _run_url(context)}
        if self.granularity == "shard":
            return self._per_shard(forge, store, conn_id, report, names)
        outcome = self._outcome(store, run_id)
        try:
            if report["totals"].get("accepted", 0) == 0:
                closed = forge.close(self.repository, self.head, CLOSE_COMMENT.format(run_id=run_id, head=self.head)) \
                    if self.close_when_empty else None
                if closed is not None:
                    store.record_changeset(closed.to_dict(), run_id=run_id)
                    outcome("pr-closed", "the run found no diff: its pull request was closed", closed.url)
                    return closed.to_dict()
                outcome("no-diff", "the run accepted no change")
                raise AirflowSkipException("the run accepted no change: there is nothing to publish")
            self._pace(store, outcome)
            self._push_head(forge, conn_id)
            changeset = forge.publish(self._spec(self.head, names))
        except ForgeError as exc:
            store.record_changeset_failure(self.forge, self.repository, self.head, str(exc))
            outcome("rate-limited" if exc.retryable and "rate limit" in str(exc).lower() else "failed", str(exc))
            if exc.retryable:
                raise
            raise AirflowFailException(f"not published: {exc}") from exc
        except ConfigurationError as exc:
            outcome("failed", str(exc))
            raise AirflowFailException(f"not published: {exc}") from exc
        store.record_changeset(changeset.to_dict(), run_id=run_id)
        from airflow_provider_worktree.core.campaigns.types import OUTCOME_OF_ACTION

        outcome(OUTCOME_OF_ACTION.get(changeset.action, "pr-updated"), f"#{changeset.number} {changeset.action}",
                changeset.url)
        self.log.info("changeset %s %s: %s (%s)", self.repository, self.head, changeset.url, changeset.action)
        return changeset.to_dict()

    def _spec(self, head: str, names: dict) -> Any:
        from airflow_provider_worktree.core.forge import ChangesetSpec
        from airflow_provider_worktree.core.forge.body import changeset_marker, render_body, render_title

        return ChangesetSpec(
            repository=self.repository, head=head, base=self.base, draft=self.publish == "draft",
            title=render_title(self.title_template, names), labels=tuple(self.labels),
            reviewers=tuple(self.reviewers), assignees=tuple(self.assignees),
            body=render_body(self.body_template, names, marker=changeset_marker(self.repository, head)))

    def _per_shard(self, forge: Any, store: Any, conn_id: str, report: dict, names: dict) -> list[dict]:
        """granularity="shard": one pull request per accepted shard; each failure stops none of the others."""
        from airflow_provider_worktree.core.forge import ForgeError
        from airflow_provider_worktree.core.health.report import build_report

        run_id = names["run_id"]
        heads = {f"{self.head}--{s['shard_id']}": s for s in report["shards"]
                 if s["status"] == "completed" and s["commit_sha"]}
        done, failed = [], []
        for head, shard in heads.items():
            one = build_report(store, run_id, shard_prefix=shard["shard_id"])
            try:
                push_head(forge, self.forge, conn_id, self.repository, head, repo=self.repo,
                          git_worktree_conn_id=self.git_worktree_conn_id, source=shard["commit_sha"], logger=self.log)
                changeset = forge.publish(self._spec(head, {**names, "report": one, "totals": one["totals"],
                                                            "shards": one["shards"]}))
            except (ForgeError, ConfigurationError) as exc:
                store.record_changeset_failure(self.forge, self.repository, head, str(exc))
                failed.append((head, exc))
                continue
            done.append(store.record_changeset(changeset.to_dict(), run_id=run_id))
        gone = [r["head"] for r in store.changesets(repository=self.repository) if r["forge"] == self.forge
                and r["head"].startswith(self.head + "--") and r["head"] not in heads and r["external_state"] == "open"]
        for head in gone if self.close_when_empty else []:  # the shard's diff disappeared
            closed = forge.close(self.repository, head, CLOSE_COMMENT.format(run_id=run_id, head=head))
            if closed is not None:
                done.append(store.record_changeset(closed.to_dict(), run_id=run_id))
        if failed:
            text = "; ".join(f"{h}: {e}" for h, e in failed)
            if all(getattr(e, "retryable", False) for _, e in failed):
                raise ForgeError(f"{len(failed)} of {len(heads)} shard pull request(s) not published: {text}",
                                 retryable=True)
            raise AirflowFailException(f"{len(failed)} of {len(heads)} shard pull request(s) not published: {text}")
        if not done:
            raise AirflowSkipException("the run accepted no change: there is nothing to publish")
        return done

    def _outcome(self, store: Any, run_id: str) -> Any:
        """A recorder of this repository's outcome on the campaign (a no-op without ``campaign``)."""
        def record(outcome: str, reason: str, url: str | None = None) -> None:
            if self.campaign:
                store.record_campaign_outcome(self.campaign, self.repository, outcome, reason=reason, run_id=run_id,
                                              url=url)
        return record

    def _pace(self, store: Any, outcome: Any) -> None:
        """A campaign opens a new pull request only within its pacing; an update always goes ahead."""
        if not self.campaign:
            return
        import time

        from airflow_provider_worktree.core.campaigns.pacing import gate

        allowed, reason = gate(store, self.campaign, self.forge, self.repository, self.head, time.time())
        if not allowed:
            outcome("paced", reason)
            raise AirflowSkipException(f"campaign {self.campaign}: not opened now: {reason}; the next run opens it")

    def _push_head(self, forge: Any, conn_id: str) -> None:
        push_head(forge, self.forge, conn_id, self.repository, self.head, repo=self.repo,
                  git_worktree_conn_id=self.git_worktree_conn_id, logger=self.log)


def _run_url(context: Any) -> str | None:
    try:
        from airflow.configuration import conf

        base = conf.get("api", "base_url", fallback="").rstrip("/")
        dag_run = context.get("dag_run")
        return f"{base}/dags/{dag_run.dag_id}/runs/{dag_run.run_id}" if base and dag_run else None
    except Exception:  # noqa: BLE001 - a link is a nicety
        return None
