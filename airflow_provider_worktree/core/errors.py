"""The package's exception hierarchy. Every message names the problem and the fix."""

from __future__ import annotations


class WorktreeProviderError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(WorktreeProviderError, ValueError):
    """Bad input from a DAG author or operator: a parameter, a path, a connection."""


class GitError(WorktreeProviderError):
    """A git command failed, timed out, or git itself is missing or too old."""

    def __init__(self, message: str, *, args: list[str] | None = None, returncode: int | None = None,
                 stderr: str = "") -> None:
        super().__init__(message)
        self.git_args = args or []
        self.returncode = returncode
        self.stderr = stderr
