"""Cross-process file locks (``fcntl.flock``) for serialising git admin operations between workers.

An :class:`InterProcessLock` guards one lock file. flock locks belong to the open file description, so the
kernel releases them when the holder exits or is killed: a crashed worker never leaves a stale lock behind.
The lock file itself is never deleted (deleting a lock file while others wait on it breaks mutual exclusion);
while held it contains one JSON line naming the holder (pid, host, purpose, time) for diagnostics, and it is
emptied again on release.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from airflow_provider_worktree.core.errors import WorktreeProviderError

DEFAULT_LOCK_TIMEOUT = 300.0


class LockTimeoutError(WorktreeProviderError, TimeoutError):
    """The lock could not be acquired within the timeout; the message names the lock file and its holder."""

    def __init__(self, message: str, *, path: str, holder: dict | None) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder


def read_holder(path: str | os.PathLike[str]) -> dict | None:
    """The holder information written into a lock file, or None when it is free, absent or unreadable."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        data = json.loads(text.splitlines()[0])
    except ValueError:
        return {"raw": text[:200]}
    return data if isinstance(data, dict) else {"raw": text[:200]}


class InterProcessLock:
    """An exclusive lock on ``path`` shared by every process on this host (and NFS-free shared disks).

    Use as a context manager::

        with InterProcessLock("/repo/.git/airflow-worktree.lock", timeout=60, purpose="worktree add"):
            ...

    ``timeout`` is in seconds (``None`` waits forever, ``0`` tries once). Re-entering the same lock object
    in the same process nests (a counter), so helper functions may take a lock their caller already holds.
    Different lock objects on the same file in one process do exclude each other, as flock does.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float | None = DEFAULT_LOCK_TIMEOUT, *,
                 purpose: str = "", poll_interval: float = 0.002, max_poll_interval: float = 0.05) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.purpose = purpose
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self._fd: int | None = None
        self._depth = 0
        self._owner_pid: int | None = None

    @property
    def locked(self) -> bool:
        """Whether this object currently holds the lock (in this process)."""
        return self._fd is not None and self._owner_pid == os.getpid()

    def acquire(self, timeout: float | None = ..., purpose: str | None = None) -> None:  # type: ignore[assignment]
        """Take the lock, waiting up to ``timeout`` seconds; raises :class:`LockTimeoutError`.

        Pair with :meth:`release`, or use ``with lock:`` / ``with lock.held(purpose):``.
        """
        if self.locked:
            self._depth += 1
            return
        timeout = self.timeout if timeout is ... else timeout
        purpose = self.purpose if purpose is None else purpose
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        delay = self.poll_interval
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                if deadline is not None and time.monotonic() >= deadline:
                    holder = read_holder(self.path)
                    raise LockTimeoutError(self._timeout_message(timeout, holder), path=self.path,
                                           holder=holder)
                time.sleep(delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, self.max_poll_interval)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._owner_pid = os.getpid()
        self._depth = 1
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": purpose,
            "acquired_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError:
            pass  # diagnostics only

    def _timeout_message(self, timeout: float | None, holder: dict | None) -> str:
        if holder and "pid" in holder:
            who = (f"held by pid {holder.get('pid')} on host {holder.get('host')!r}"
                   f" since {holder.get('acquired_at')} ({holder.get('purpose') or 'no purpose given'})")
        elif holder:
            who = f"holder unknown (lock file says {holder.get('raw')!r})"
        else:
            who = "holder unknown (it wrote nothing yet)"
        return (
            f"Timed out after {timeout}s waiting for the lock file {self.path}, {who}. "
            "If that process is stuck, stop it (the kernel releases the lock when it exits; do not delete "
            "the file); otherwise retry later or raise the lock timeout."
        )

    def release(self) -> None:
        """Release one level of the lock; the last release frees it."""
        if not self.locked:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd, self._owner_pid = self._fd, None, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def held(self, purpose: str | None = None, timeout: float | None = ...) -> Iterator[InterProcessLock]:  # type: ignore[assignment]
        """Context manager holding the lock with a purpose recorded for diagnostics."""
        self.acquire(timeout=timeout, purpose=purpose)
        try:
            yield self
        finally:
            self.release()

    def __enter__(self) -> InterProcessLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"InterProcessLock({self.path!r}, locked={self.locked})"
