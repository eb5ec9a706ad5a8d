"""Child processes confined to their own process group, with a timeout that kills the whole group.

The one place the package runs a non-git child process (``claude -p``, the sandbox's ``run_command``, verify
and lint commands); git goes through :func:`~airflow_provider_worktree.core.git.command.run_git`.

:func:`run_process` starts ``argv`` (no shell) with ``start_new_session=True``, so the child leads a new
process group that holds everything it spawns (unless a descendant starts its own session on purpose).
Output goes to anonymous temporary files, not pipes: a grandchild that keeps stdout open (a daemon, ``cmd &``)
cannot make us wait for it, and a chatty child cannot fill a pipe buffer and stall. Only the group leader is
waited for.

Killing (:func:`kill_process_group`) is SIGTERM to the group, up to ``grace_s`` seconds for it to go away, then
SIGKILL to whatever is left; ``grace_s=0`` is SIGKILL at once. It tolerates a group that is already gone. PID 1
in some containers does not reap orphans, so a killed grandchild can stay a zombie for ever: zombies count as
gone (they run no code), and every wait here is bounded, so nothing waits on a grandchild indefinitely.

After the leader exits, whatever it left running in its group gets the same treatment with a short grace
(:data:`LEFTOVER_GRACE_S`): a command's background children do not outlive the command.

:class:`ProcessHandle` lets another thread cancel the running process (``handle.cancel()``): the group is
killed, and once cancelled the handle refuses to start anything more.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from airflow_provider_worktree.core.sandbox._procfs import proc_stats

__all__ = [
    "DEFAULT_GRACE_S",
    "LEFTOVER_GRACE_S",
    "ProcessHandle",
    "ProcessResult",
    "count_user_processes",
    "kill_process_group",
    "run_process",
    "truncate_middle",
]

#: Seconds between SIGTERM and SIGKILL when a timeout or a cancel kills a group.
DEFAULT_GRACE_S = 2.0
#: Grace for the leftovers of a leader that exited on its own (background children).
LEFTOVER_GRACE_S = 0.5
#: Upper bound on waiting for a SIGKILLed leader to be reaped (it is our child; this only guards odd states).
_REAP_TIMEOUT_S = 5.0
_POLL_S = 0.05


@dataclass(frozen=True)
class ProcessResult:
    """What :func:`run_process` saw.

    ``returncode`` is the leader's exit status (negative: killed by that signal), ``None`` when it timed out
    or never started. ``stdout``/``stderr`` are decoded as UTF-8 (invalid bytes replaced) and cut to
    ``max_output_chars`` as asked; with ``merge_stderr`` everything is in ``stdout`` and ``stderr`` is "".
    ``cancelled``: the :class:`ProcessHandle` was cancelled (before or during the run); ``pid`` is None
    when the process was never started because of that.
    """

    argv: tuple[str, ...]
    pid: int | None
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    cancelled: bool = False

    @property
    def started(self) -> bool:
        return self.pid is not None


class ProcessHandle:
    """A cancel switch for :func:`run_process`, safe to use from another thread.

    Pass it as ``run_process(..., handle=h)``; ``h.cancel()`` kills the running process group (SIGTERM, then
    SIGKILL after ``grace_s``) and makes later ``run_process`` calls with this handle return at once, unstarted,
    with ``cancelled=True``. Cancelling is final; use a new handle for a new run.
    """

    def __init__(self, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.grace_s = float(grace_s)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._cancelled = False
        self._min_grace = 0.0  # set per run: a first process that cleans up on SIGTERM (the box's reaper)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def cancel(self) -> None:
        """Kill the running process group, if any, and refuse further starts. Returns after the kill."""
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            kill_process_group(proc, max(self.grace_s, self._min_grace))

    def _start(self, start: Callable[[], subprocess.Popen], min_grace: float = 0.0) -> subprocess.Popen | None:
        # Under the lock, so a cancel() either sees the process or prevents its start: never neither.
        with self._lock:
            if self._cancelled:
                return None
            self._min_grace = min_grace
            self._proc = start()
            return self._proc

    def _finish(self, proc: subprocess.Popen) -> None:
        with self._lock:
            if self._proc is proc:
                self._proc = None


def run_process(
    argv: Sequence[str],
    cwd: str | os.PathLike[str],
    *,
    timeout: float | None,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,  # noqa: A002 - same name as subprocess.run
    merge_stderr: bool = False,
    max_output_chars: int | None = None,
    keep: str = "both",
    grace_s: float = DEFAULT_GRACE_S,
    handle: ProcessHandle | None = None,
    rlimits: Mapping[str, int] | None = None,
    cgroup_procs: str | None = None,
) -> ProcessResult:
    """Run ``argv`` (no shell) in ``cwd`` in a new process group; on timeout kill the whole group.

    :param timeout: seconds for the leader to exit (``None``: no limit). When it passes the group gets
        SIGTERM, then SIGKILL after ``grace_s``; the result has ``timed_out=True`` and ``returncode=None``.
    :param env: the child's *whole* environment (``None``: inherit this process's).
    :param input: text (UTF-8) or bytes for stdin, fed from a temporary file, so the child reads it to EOF
        at its own pace and its size never meets a pipe or argv limit. ``None``: stdin is ``/dev/null``.
    :param merge_stderr: send stderr into stdout, interleaved as written.
    :param max_output_chars: cap on each of stdout and stderr. ``keep="both"`` keeps the head and the tail
        around a ``<... N characters cut ...>`` line; ``keep="tail"`` keeps the last characters only
        (and reads only the end of the output).
    :param handle: a :class:`ProcessHandle` through which another thread may cancel the run (its kill uses at
        least this run's ``grace_s``, so a first process that cleans up on SIGTERM gets its moment).
    :param rlimits: resource limits set in the child before it executes, ``{"RLIMIT_NPROC": 256, ...}`` (names
        of :mod:`resource` constants; soft and hard limit alike), inherited by everything it starts.
    :param cgroup_procs: a cgroup's ``cgroup.procs`` file the child joins before it executes (so everything it
        starts is in that cgroup); if it cannot join, nothing runs and ``OSError`` is raised.
    :raises OSError: when the process cannot be started, as :class:`subprocess.Popen` raises it
        (``FileNotFoundError`` for a missing executable or ``cwd``, ``PermissionError``...). Callers turn it
        into their own message.
    """
    if keep not in ("both", "tail"):
        raise ValueError(f"keep must be 'both' or 'tail', got {keep!r}")
    argv = tuple(str(a) for a in argv)
    preexec = _preexec(rlimits, cgroup_procs)
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, _stderr_file(merge_stderr) as err, _stdin_file(input) as stdin:
        def start() -> subprocess.Popen:
            try:
                return subprocess.Popen(argv, cwd=cwd, env=None if env is None else dict(env), stdin=stdin,
                                        stdout=out, stderr=subprocess.STDOUT if merge_stderr else err,
                                        start_new_session=True, preexec_fn=preexec)
            except subprocess.SubprocessError as exc:  # the limits or the cgroup could not be applied
                raise OSError(errno.EPERM, f"the process limits could not be applied ({exc})") from None

        proc = handle._start(start, grace_s) if handle is not None else start()
        if proc is None:  # the handle was cancelled before we could start
            return ProcessResult(argv, None, None, "", "", False, time.monotonic() - started, cancelled=True)
        timed_out = False
        try:
            try:
                returncode: int | None = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_process_group(proc, grace_s)
                returncode = None
            # Background children the leader left behind (or survivors of a cancel) go too.
            kill_process_group(proc, LEFTOVER_GRACE_S)
        except BaseException:
            # KeyboardInterrupt / SystemExit while waiting: do not leave the group running.
            kill_process_group(proc, 0)
            raise
        finally:
            if handle is not None:
                handle._finish(proc)
        duration = time.monotonic() - started
        stdout = _read(out, max_output_chars, keep)
        stderr = "" if err is None else _read(err, max_output_chars, keep)
    return ProcessResult(argv, proc.pid, returncode, stdout, stderr, timed_out, duration,
                         cancelled=handle is not None and handle.cancelled)


def kill_process_group(proc: subprocess.Popen | int, grace_s: float = DEFAULT_GRACE_S) -> None:
    """SIGTERM the process group led by ``proc`` (a :class:`~subprocess.Popen` or a pgid), wait up to
    ``grace_s`` seconds for it to go, then SIGKILL what is left (``grace_s <= 0``: SIGKILL at once).

    Tolerates a group that is already gone (or partly gone). With a ``Popen`` the leader is reaped, waiting
    at most a few seconds after the SIGKILL; zombies left by a non-reaping PID 1 count as gone.
    """
    popen = None if isinstance(proc, int) else proc
    pgid = proc if isinstance(proc, int) else proc.pid
    if grace_s > 0:
        if not _signal_group(pgid, signal.SIGTERM, popen):
            _reap(popen)
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if popen is not None:
                popen.poll()  # reap the leader as soon as it exits, so it is not counted
            if not _group_alive(pgid):
                _reap(popen)
                return
            time.sleep(_POLL_S)
    _signal_group(pgid, signal.SIGKILL, popen)
    _reap(popen)


def count_user_processes(uid: int | None = None) -> int:
    """How many processes (threads not counted) the user ``uid`` (default: ours) has now, as ``RLIMIT_NPROC``
    counts them; 0 without procfs."""
    uid = os.getuid() if uid is None else uid
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    total += 1
            except OSError:
                continue
    return total


def truncate_middle(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and tail around a
    ``<... N characters cut ...>`` line."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 2], text[-limit // 2:]
    return f"{head}\n<... {len(text) - len(head) - len(tail)} characters cut ...>\n{tail}"


# ---------------------------------------------------------------------------------------------------- helpers


def _signal_group(pgid: int, sig: int, popen: subprocess.Popen | None) -> bool:
    """Send ``sig`` to the group; False when there is no such group (or it is not ours to signal)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        pass
    # No group (e.g. the leader was started without a session of its own): signal the leader alone.
    if popen is not None and popen.poll() is None:
        try:
            popen.send_signal(sig)
            return True
        except ProcessLookupError:
            pass
    return False


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies do not count)."""
    try:
        return any(pgrp == pgid and state not in (b"Z", b"X") for _pid, state, _ppid, pgrp in proc_stats())
    except OSError:  # no procfs: ask the kernel (zombies count as alive; the grace bounds the wait)
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False


def _reap(popen: subprocess.Popen | None) -> None:
    if popen is None:
        return
    try:
        popen.wait(timeout=_REAP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass


def _preexec(rlimits: Mapping[str, int] | None, cgroup_procs: str | None) -> Callable[[], None] | None:
    if not rlimits and not cgroup_procs:
        return None
    import resource

    pairs = [(getattr(resource, name), int(value)) for name, value in (rlimits or {}).items()]

    def apply() -> None:  # runs in the child between fork and exec: C calls only, no locks
        if cgroup_procs:
            fd = os.open(cgroup_procs, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # "0": the writing process itself, before it starts anything
            finally:
                os.close(fd)
        for which, value in pairs:
            hard = resource.getrlimit(which)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)  # never above the hard limit
            resource.setrlimit(which, (value, value))

    return apply


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _stderr_file(merge_stderr: bool):
    return _NullContext() if merge_stderr else tempfile.TemporaryFile()


def _stdin_file(data: str | bytes | None):
    if data is None:
        return open(os.devnull, "rb")  # noqa: SIM115 - closed by the caller's with
    f = tempfile.TemporaryFile()
    f.write(data.encode("utf-8") if isinstance(data, str) else data)
    f.seek(0)
    return f


def _read(f: IO[bytes], limit: int | None, keep: str) -> str:
    if limit is not None and keep == "tail":
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 4 * limit))  # a UTF-8 character is at most 4 bytes
        return f.read().decode("utf-8", errors="replace")[-limit:] if limit > 0 else ""
    f.seek(0)
    text = f.read().decode("utf-8", errors="replace")
    return text if limit is None else truncate_middle(text, limit)
