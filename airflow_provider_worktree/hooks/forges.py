"""The forge of a changeset from its Airflow connection: GitHub through the official provider's ``GithubHook``,
GitLab through this package's :class:`~.gitlab.GitLabHook`. One place for the operator, the trigger and the CLI."""

from __future__ import annotations

from typing import Any

FORGES = ("github", "gitlab")
DEFAULT_CONN = {"github": "github_default", "gitlab": "gitlab_default"}


def forge_host(forge: str, conn_id: str) -> str:
    """The host a forge's connection points at (the shared limiter's scope is per host)."""
    from airflow.sdk import BaseHook

    host = BaseHook.get_connection(conn_id).host or ("api.github.com" if forge == "github" else "gitlab.com")
    return host.split("//")[-1].split("/")[0]


def forge_for(forge: str, conn_id: str | None = None, *, limiter: Any = None, logger: Any = None) -> Any:
    """A :class:`~airflow_provider_worktree.core.forge.GitHubForge` or ``GitLabForge`` on ``conn_id``."""
    if forge not in FORGES:
        raise ValueError(f"forge={forge!r} is not one of {FORGES}")
    conn_id = conn_id or DEFAULT_CONN[forge]
    if forge == "github":
        try:
            from airflow.providers.github.hooks.github import GithubHook
        except ImportError:
            raise ImportError("publishing to GitHub needs the GitHub provider: pip install "
                              "'airflow-provider-worktree[github]'") from None
        from airflow_provider_worktree.core.forge import GitHubForge

        return GitHubForge(GithubHook(github_conn_id=conn_id).get_conn(), limiter=limiter, logger=logger)
    from airflow_provider_worktree.core.forge import GitLabForge
    from airflow_provider_worktree.hooks.gitlab import GitLabHook

    return GitLabForge(GitLabHook(gitlab_conn_id=conn_id).get_conn(), limiter=limiter, logger=logger)


def forge_resolver(store: Any = None, conns: dict[str, str] | None = None, *, run_id: str | None = None,
                   logger: Any = None) -> Any:
    """``name -> forge``: each forge made once, on its connection (``conns``: name -> connection id; the default
    ones otherwise), its writes paced by the shared limiter when ``store`` is given."""
    forges: dict[str, Any] = {}

    def forge_of(name: str) -> Any:
        if name not in forges:
            conn_id = (conns or {}).get(name)
            limiter = shared_limiter(store, name, conn_id, run_id=run_id, logger=logger) if store is not None else None
            forges[name] = forge_for(name, conn_id, limiter=limiter, logger=logger)
        return forges[name]

    return forge_of


def shared_limiter(store: Any, forge: str, conn_id: str | None = None, *, run_id: str | None = None,
                   logger: Any = None) -> Any:
    """The forge's write limiter shared through the shard database by every worker and CLI call on the same host:
    GitHub documents its content limits; GitLab's are per instance, so the same per-minute pace is used."""
    from airflow_provider_worktree.core.ratelimit import SharedLimiter
    from airflow_provider_worktree.core.ratelimit.state import GITHUB_CONTENT_LIMITS, GITHUB_MAX_CONCURRENCY

    return SharedLimiter(store, f"{forge}:{forge_host(forge, conn_id or DEFAULT_CONN[forge])}",
                         limits=GITHUB_CONTENT_LIMITS, run_id=run_id, max_concurrency=GITHUB_MAX_CONCURRENCY,
                         logger=logger)


def campaign_selection(spec: Any, *, github_conn_id: str | None = None, gitlab_conn_id: str | None = None) -> Any:
    """The repositories of a :class:`~airflow_provider_worktree.core.campaigns.CampaignSpec`: its list, a GitHub
    search through the official provider's ``GithubHook``, or a GitLab group through :class:`~.gitlab.GitLabHook`."""
    from airflow_provider_worktree.core.campaigns import select

    if spec.repositories:
        return select.select_from_list(spec.repositories)
    if spec.forge == "gitlab":
        from airflow_provider_worktree.hooks.gitlab import GitLabHook

        client = GitLabHook(gitlab_conn_id=gitlab_conn_id or DEFAULT_CONN["gitlab"]).get_conn()
        return select.select_from_gitlab(client, include_forks=spec.include_forks, **spec.query)
    try:
        from airflow.providers.github.hooks.github import GithubHook
    except ImportError:
        raise ImportError("a GitHub selection needs the GitHub provider: pip install "
                          "'airflow-provider-worktree[github]'") from None
    client = GithubHook(github_conn_id=github_conn_id or DEFAULT_CONN["github"]).get_conn()
    return select.select_from_github(client, include_forks=spec.include_forks, **spec.query)


def push_head(forge: Any, forge_name: str, conn_id: str, repository: str, head: str, *, repo: str | None = None,
              git_worktree_conn_id: str = "git_worktree_default", source: str | None = None,
              logger: Any = None) -> str | None:
    """Push the local branch ``head`` (or the commit ``source``) to ``head`` on the forge's clone URL as a
    compare-and-swap (``--force-with-lease`` at the sha the forge has), the token only in git's environment.
    Returns the sha pushed; None when the forge's head already has the same files (nothing is pushed, the
    pull request keeps its head and its checks, and the local branch goes back to the forge's commit)."""
    from airflow.sdk import BaseHook

    from airflow_provider_worktree.core.git.command import run_git
    from airflow_provider_worktree.core.git.urls import credential_env
    from airflow_provider_worktree.hooks.git_worktree import GitWorktreeHook

    url = forge.clone_url(repository)
    manager = GitWorktreeHook(git_worktree_conn_id=git_worktree_conn_id, repo=repo).get_manager()
    token = BaseHook.get_connection(conn_id or DEFAULT_CONN[forge_name]).password
    if token:
        user = "x-access-token" if forge_name == "github" else "oauth2"
        manager.git_env.update(credential_env(user, token, url, base_env=manager.git_env))
    if source:
        run_git(["update-ref", f"refs/heads/{head}", source], cwd=manager.repo_path)
    expect = manager.remote_branch_sha(head, url)
    if expect and _same_tree(manager.repo_path, head, expect):
        run_git(["update-ref", f"refs/heads/{head}", expect], cwd=manager.repo_path)
        if logger is not None:
            logger.info("%s has the same content as the forge's %s: not pushed", head, expect[:12])
        return None
    manager.push(head, remote=url, expect=expect)
    return run_git(["rev-parse", f"refs/heads/{head}"], cwd=manager.repo_path).stdout.strip()


def _same_tree(repo_path: str, branch: str, sha: str) -> bool:
    """``branch`` and the commit ``sha`` hold the same files (False when ``sha`` is not in this repository)."""
    from airflow_provider_worktree.core.git.command import run_git

    trees = [run_git(["rev-parse", "--verify", "--quiet", f"{ref}^{{tree}}"], cwd=repo_path, check=False)
             for ref in (f"refs/heads/{branch}", sha)]
    return all(t.returncode == 0 for t in trees) and trees[0].stdout.strip() == trees[1].stdout.strip()
