"""Remote URLs and the credentials git gets for them.

Credentials reach git only through environment variables (:func:`credential_env`), never through a command
line, a file, a remote URL stored in ``.git/config``, or a log line; and only for the commands that talk to
the remote (see :mod:`~airflow_provider_worktree.core.git.safety`).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from urllib.parse import unquote

from airflow_provider_worktree.core.errors import ConfigurationError, GitError
from airflow_provider_worktree.core.git.command import git_version

_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_RE = re.compile(r"[^/@:\s]+@[^/:\s]+:")


def is_remote_url(repo: str) -> bool:
    """Whether ``repo`` names a remote (``scheme://...`` or scp-like ``user@host:path``) rather than a path."""
    return bool(_URL_RE.match(repo) or _SCP_RE.match(repo))


def strip_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """Split ``https://user:token@host/x`` into (``https://host/x``, user, token); other URLs pass unchanged."""
    m = re.match(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/]*)@(?P<rest>.*)\Z", url)
    if not m or m.group("scheme").lower() not in ("http://", "https://"):
        return url, None, None
    user, sep, password = m.group("userinfo").partition(":")
    if not sep:
        return url, None, None  # bare user@ carries no secret
    return m.group("scheme") + m.group("rest"), unquote(user) or None, unquote(password)


def redact_url(url: str) -> str:
    """``url`` with any embedded password replaced by ``***`` (for messages)."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def credential_env(username: str | None, password: str, url: str | None = None,
                   base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment that makes git send HTTP Basic credentials, without a file or a command-line argument.

    Uses git's ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_<n>``/``GIT_CONFIG_VALUE_<n>`` (git >= 2.31) to set
    ``http.<url>.extraHeader = Authorization: Basic <base64(user:password)>``, scoped to the URL's
    ``scheme://host/`` when ``url`` is given (so redirects to other hosts do not receive it). Entries already
    exported in ``base_env`` (default: ``os.environ``) are kept and appended to. Environment variables are
    not visible in ``ps`` output (only to the same user through ``/proc/<pid>/environ``); :func:`run_git`
    passes them to remote commands only.
    """
    if not password:
        raise ConfigurationError("credential_env needs a password or token. Set the connection's password.")
    if git_version()[:2] < (2, 31):
        raise GitError("Passing credentials through GIT_CONFIG_COUNT needs git >= 2.31. Upgrade git.")
    src = os.environ if base_env is None else base_env
    try:
        index = int(src.get("GIT_CONFIG_COUNT") or os.environ.get("GIT_CONFIG_COUNT") or "0")
    except ValueError:
        index = 0
    env = {k: v for k, v in src.items() if k.startswith("GIT_CONFIG_")} if base_env is not None else {}
    key = "http.extraHeader"
    if url:
        clean, _, _ = strip_url_credentials(url)
        m = re.match(r"(https?://[^/]+)", clean, re.IGNORECASE)
        if m:
            key = f"http.{m.group(1)}/.extraHeader"
    token = base64.b64encode(f"{username or 'x-access-token'}:{password}".encode()).decode()
    env.update({
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": key,
        f"GIT_CONFIG_VALUE_{index}": f"Authorization: Basic {token}",
        "GIT_TERMINAL_PROMPT": "0",
    })
    return env
