"""The changeset vocabulary, shared by the forges, the store and the operators."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_worktree.core.errors import WorktreeProviderError

PUBLICATION = ("unpublished", "draft", "published")
EXTERNAL_STATES = ("open", "merged", "closed")
REVIEW_STATES = ("pending", "approved", "changes_requested")
CHECK_STATES = ("pending", "passing", "failing", "unknown")


class ForgeError(WorktreeProviderError):
    """A forge refused or failed a request; ``status`` (HTTP), ``retryable`` (a 5xx, a rate limit, the network)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class ChangesetSpec:
    """What to publish: one pull request of ``head`` into ``base`` on ``repository`` (``owner/name``). A changeset
    is identified by (repository, head): the head branch is named from the task or campaign, stable across runs."""

    repository: str
    head: str
    base: str
    title: str
    body: str
    draft: bool = True
    labels: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()


@dataclass
class Changeset:
    """A changeset as the forge holds it, in orthogonal states (the way Sourcegraph keeps them)."""

    forge: str
    repository: str
    head: str
    base: str
    number: int | None = None
    url: str | None = None
    title: str = ""
    publication: str = "unpublished"
    external_state: str = "open"
    review: str = "pending"
    checks: str = "unknown"
    head_sha: str | None = None
    action: str = ""  # what the last publish did: created, updated, unchanged, closed
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
