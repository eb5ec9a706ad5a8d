"""The shard database's errors and the lease a claim hands out (:class:`Lease`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_worktree.core.errors import (
    ConfigurationError,
    WorktreeProviderError,
)


class StoreError(WorktreeProviderError):
    """The shard status database could not do what was asked (locked for too long, unreachable, ...)."""


class ShardNotFound(StoreError, LookupError):
    """No such (run_id, shard_id) in the database."""


class ShardAlreadyCompleted(StoreError):
    """A claim of a given shard found it completed; its result stands."""


class ShardBusy(StoreError):
    """A claim of a given shard found it running under a lease whose heartbeat is still fresh."""


class NoSlotAvailable(StoreError):
    """A claim found the run's ``max_active`` shards already running under live leases; try again later."""


class LeaseLostError(StoreError):
    """A lease holder wrote with a fencing token that is no longer current (or the shard is not running).

    Attributes ``current_status``, ``current_worker_id`` and ``current_token`` describe the row now.
    """

    def __init__(self, message: str, *, current_status: str | None = None, current_worker_id: str | None = None,
                 current_token: int | None = None) -> None:
        super().__init__(message)
        self.current_status = current_status
        self.current_worker_id = current_worker_id
        self.current_token = current_token


# ---------------------------------------------------------------------------------------------- lease
@dataclass(frozen=True)
class Lease:
    """A claim on one shard: whoever holds the current ``token`` may write the shard's result."""

    run_id: str
    shard_id: str
    worker_id: str
    token: int
    attempt: int
    task: str | None = None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for XCom); :meth:`from_dict` reads it back."""
        d = asdict(self)
        d["files"] = list(self.files)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Lease":
        """Rebuild a lease from :meth:`to_dict` output; unknown keys are ignored."""
        try:
            return cls(run_id=str(data["run_id"]), shard_id=str(data["shard_id"]), worker_id=str(data["worker_id"]),
                       token=int(data["token"]), attempt=int(data["attempt"]), task=data.get("task"),
                       files=list(data.get("files") or []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"not a lease dict ({exc!r}): expected keys run_id, shard_id, worker_id, token, attempt "
                "as produced by Lease.to_dict()") from exc

