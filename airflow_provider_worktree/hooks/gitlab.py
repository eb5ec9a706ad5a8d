"""``GitLabHook``: a python-gitlab client for gitlab.com or a self-managed GitLab, from a connection of type
``gitlab`` this package declares (host: the instance URL; password: an access token with the ``api`` scope)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

DEFAULT_URL = "https://gitlab.com"


class GitLabHook(BaseHook):
    """``get_conn()``: a ``gitlab.Gitlab`` for the connection's instance and token (never logged)."""

    conn_name_attr = "gitlab_conn_id"
    default_conn_name = "gitlab_default"
    conn_type = "gitlab"
    hook_name = "GitLab"

    def __init__(self, gitlab_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gitlab_conn_id = gitlab_conn_id
        self.client: Any = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login", "extra"],
            "relabeling": {"host": "GitLab URL", "password": "Access token (api scope)"},
            "placeholders": {"host": "https://gitlab.com or https://gitlab.example.com",
                             "password": "glpat-..."},
        }

    def get_conn(self) -> Any:
        if self.client is not None:
            return self.client
        try:
            import gitlab
        except ImportError:
            raise ImportError("GitLabHook needs python-gitlab: pip install 'airflow-provider-worktree[gitlab]'") from None
        conn = self.get_connection(self.gitlab_conn_id)
        if not conn.password:
            raise ValueError(f"the GitLab connection {self.gitlab_conn_id!r} has no token: put an access token with "
                             "the api scope in its password field")
        host = (conn.host or DEFAULT_URL).rstrip("/")
        if "://" not in host:
            host = f"https://{host}"
        self.client = gitlab.Gitlab(host, private_token=conn.password)
        return self.client

    def test_connection(self) -> tuple[bool, str]:
        try:
            client = self.get_conn()
            client.auth()
            return True, f"Connected to {client.url} as {client.user.username}"
        except Exception as exc:  # noqa: BLE001 - shown in the connection form
            return False, str(exc)
