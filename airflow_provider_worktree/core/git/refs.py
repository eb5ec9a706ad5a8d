"""Revision arguments handed to git: never taken for an option, never carrying a control character."""

from __future__ import annotations

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.sandbox.paths import CONTROL_RE


def check_ref_arg(value: object, what: str) -> str:
    """A revision argument that cannot be taken for an option."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{what} is empty. Give a branch, tag or commit such as 'HEAD' or 'main'.")
    if value.startswith("-") or CONTROL_RE.search(value):
        raise ConfigurationError(f"{what} {value!r} is not a valid git revision (leading '-' or control "
                                 f"characters). Give a branch, tag or commit such as 'main'.")
    return value
