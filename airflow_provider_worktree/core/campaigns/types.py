"""The campaign vocabulary, shared by selection, planning, pacing, the store and the faces."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError

#: What became of a repository in a campaign's last run.
OUTCOMES = ("no-diff", "pr-opened", "pr-updated", "pr-closed", "committed", "merged", "failed", "rate-limited",
            "skipped", "paced")
#: The outcome of a publish, from the changeset's ``action``.
OUTCOME_OF_ACTION = {"created": "pr-opened", "updated": "pr-updated", "unchanged": "pr-updated",
                     "readied": "pr-updated", "closed": "pr-closed"}
#: Outcomes that ``retry-failed`` runs again.
RETRY_OUTCOMES = ("failed", "rate-limited")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Pacing:
    """At most ``max_new_prs`` new pull requests per ``window_s`` seconds; none while more than
    ``max_pending_checks`` of the campaign's open pull requests have checks pending (``None``: no such rule)."""

    max_new_prs: int | None = 10
    window_s: float = 3600.0
    max_pending_checks: int | None = 20

    def __post_init__(self) -> None:
        for name in ("max_new_prs", "max_pending_checks"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigurationError(f"pacing {name}={value!r}: give a whole number >= 0, or None for no limit")
        if not self.window_s > 0:
            raise ConfigurationError(f"pacing window_s={self.window_s!r}: give a positive number of seconds")


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign: ``task`` (the catalog's name) over the repositories ``repositories`` lists (paths or URLs) or
    ``query`` selects on ``forge`` (a GitHub search: ``{"org": ..., "topics": [...], "language": ..., "name": ...}``).
    The head branch is named from the campaign (``campaign/<name>``), stable across runs."""

    name: str
    task: str
    repositories: tuple[str, ...] = ()
    query: dict[str, Any] = field(default_factory=dict)
    forge: str = "github"
    base: str | None = None
    include_forks: bool = False
    pacing: Pacing = field(default_factory=Pacing)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name or ""):
            raise ConfigurationError(f"campaign name {self.name!r}: use 1-63 lowercase letters, digits, '.', '_' or "
                                     "'-', starting with a letter or digit (it names the branch campaign/<name>)")
        if not self.task:
            raise ConfigurationError(f"campaign {self.name!r} has no task: give one of the catalog's tasks")
        if "group" in self.query and self.forge != "gitlab":
            raise ConfigurationError(f"campaign {self.name!r}: a group selects GitLab projects: pass forge='gitlab' "
                                     "(or org/user for GitHub)")
        if bool(self.repositories) == bool(self.query):
            raise ConfigurationError(f"campaign {self.name!r}: give either repositories (paths or URLs) or a query "
                                     "(e.g. {\"org\": \"my-org\", \"topics\": [\"python\"]}), not both and not neither")

    @property
    def head(self) -> str:
        return f"campaign/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["repositories"] = list(self.repositories)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CampaignSpec:
        d = dict(d)
        d["repositories"] = tuple(d.get("repositories") or ())
        d["pacing"] = Pacing(**(d.get("pacing") or {}))
        return cls(**d)


@dataclass(frozen=True)
class Target:
    """A selected repository: ``repository`` (``owner/name`` on a forge, or the local name), ``location`` (a path
    or clone URL), the forge it lives on (None for a plain path or URL) and its default branch when known."""

    repository: str
    location: str
    forge: str | None = None
    default_branch: str | None = None


@dataclass(frozen=True)
class Skipped:
    repository: str
    reason: str


@dataclass
class Selection:
    targets: list[Target] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"targets": [asdict(t) for t in self.targets], "skipped": [asdict(s) for s in self.skipped]}
