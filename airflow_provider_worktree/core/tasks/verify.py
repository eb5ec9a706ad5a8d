"""The verify (and lint) command: run without a shell in the box, its outcome as a :class:`VerifyResult`."""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.sandbox.box import run_boxed

__all__ = ["VerifyResult", "run_verify", "DEFAULT_VERIFY_TIMEOUT"]

DEFAULT_VERIFY_TIMEOUT = 600.0
_OUTPUT_CAP = 10_000_000          # characters of command output read back (the lint metric counts lines)
_TAIL_CHARS = 4_000
_CAUSE_CHARS = 300
# What names the cause in a failing command's output, most telling first: an exception with its message (pytest's
# "E   ModuleNotFoundError: No module named 'x'", a traceback's last line), a test runner's summary line, the
# first FAILED/ERROR line. Hand-written because no library reads "why did this command fail" across tools.
_CAUSE_PATTERNS = (
    re.compile(r"^(?:E\s+)?(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit|Interrupt)(?::\s.*)?)$"),
    re.compile(r"^=+ (.*\b(?:failed|errors?|no tests ran)\b.*) =+$"),
    re.compile(r"^((?:FAILED|ERROR)\b.*)$"),
)


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a verify (or lint) command. ``returncode`` is None when the command did not run to an
    exit status (missing executable, timeout)."""

    ok: bool
    returncode: int | None
    output_tail: str
    duration_s: float
    timed_out: bool = False
    command: tuple[str, ...] = ()
    #: The box the command ran in: "bwrap", "fallback" or "none" (None: it did not run).
    isolation: str | None = None

    @property
    def cause(self) -> str:
        """One line saying why the command failed, taken from its output ("" when it passed): the exception it
        raised, else the test runner's summary, else the first FAILED/ERROR line, else the last line."""
        if self.ok:
            return ""
        lines = [ln.strip() for ln in self.output_tail.splitlines() if ln.strip()]
        for pattern in _CAUSE_PATTERNS:
            for line in lines:
                m = pattern.match(line)
                if m:
                    return m.group(1).strip()[:_CAUSE_CHARS]
        return (lines[-1] if lines else "no output")[:_CAUSE_CHARS]

    def failure(self) -> str:
        """The failure in one line for the report, the CLI, the UI and the task log (the output's tail is kept
        beside it in the shard's ``result_summary``)."""
        status = ("timed out" if self.timed_out else "did not start" if self.returncode is None
                  else f"exit {self.returncode}")
        return f"the verify command failed ({status}): {self.cause}"


def _argv(command: str | Sequence[str], what: str = "command") -> list[str]:
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigurationError(f"Cannot parse the {what} {command!r}: {exc}. Fix its quoting.") from exc
    else:
        argv = [str(a) for a in command]
    if not argv or not argv[0]:
        raise ConfigurationError(f"The {what} is empty. Pass an argv list such as ['pytest', '-q'].")
    return argv


def _run_command(argv: list[str], cwd: str | os.PathLike[str], timeout: float | None,
                 env: Mapping[str, str] | None = None, *, isolation: str = "auto",
                 pass_env: Sequence[str] = (), network: bool = False,
                 hide: Sequence[str | os.PathLike[str]] = ()) -> tuple[VerifyResult, str]:
    """Run ``argv`` (no shell) in the box (:func:`~airflow_provider_worktree.core.sandbox.box.run_boxed`) with ``cwd`` as
    its only writable path: stdout and stderr interleaved; on timeout everything it started is killed.
    Returns the result and the (last ``_OUTPUT_CAP`` characters of the) output."""
    start = time.monotonic()
    # The command is the DAG author's: files it names by absolute path (a lint script) are shown read-only.
    named = [a for a in argv if os.path.isabs(a) and os.path.exists(a)]
    try:
        done = run_boxed(argv, cwd, isolation=isolation, timeout=timeout, env=env, pass_env=pass_env,
                         network=network, hide=hide, ro_binds=named, merge_stderr=True, max_output_chars=_OUTPUT_CAP, keep="tail",
                         grace_s=2.0)
    except FileNotFoundError:
        msg = (f"executable not found: {argv[0]!r}. Install it, put it on PATH, or fix the command "
               f"{shlex.join(argv)!r}.")
        if not Path(cwd).is_dir():
            msg = f"working directory {cwd} does not exist. Check the worktree path."
        return VerifyResult(False, None, msg, time.monotonic() - start, False, tuple(argv)), msg
    except PermissionError as exc:
        msg = f"cannot execute {argv[0]!r}: {exc}. Make it executable or fix the command."
        return VerifyResult(False, None, msg, time.monotonic() - start, False, tuple(argv)), msg
    text = done.stdout
    if done.timed_out:
        text += f"\n[timed out after {timeout}s; the command's process group was killed]"
    tail = text[-_TAIL_CHARS:]
    ok = done.returncode == 0 and not done.timed_out
    return VerifyResult(ok, done.returncode, tail, done.duration_s, done.timed_out, tuple(argv),
                        isolation=done.isolation), text


def run_verify(command: str | Sequence[str], cwd: str | os.PathLike[str],
               timeout: float | None = DEFAULT_VERIFY_TIMEOUT, *,
               env: Mapping[str, str] | None = None, isolation: str = "auto", pass_env: Sequence[str] = (),
               network: bool = False, hide: Sequence[str | os.PathLike[str]] = ()) -> VerifyResult:
    """Run a verify command in ``cwd`` without a shell (a string is split with :func:`shlex.split`), in the box.

    ``ok`` is True only for exit status 0. On timeout everything the command started is killed. A missing
    executable is a result (``ok=False``, ``returncode=None``, the reason in ``output_tail``), not an exception.
    The command never sees the worker's environment: it gets the box's allowlist, the ``pass_env`` names and
    the ``env`` values. ``isolation`` (``"auto"``, ``"bwrap"``, ``"none"``), ``network`` and ``hide`` are the
    box's (:func:`~airflow_provider_worktree.core.sandbox.box.run_boxed`); the result's ``isolation`` says which one was
    in force. ``isolation="bwrap"`` where bubblewrap does not work raises
    :class:`~airflow_provider_worktree.core.sandbox.box.IsolationUnavailable`.
    """
    if timeout is not None and timeout <= 0:
        raise ConfigurationError(f"timeout must be positive, got {timeout}. Pass seconds, e.g. 600.")
    result, _ = _run_command(_argv(command, "verify command"), cwd, timeout, env, isolation=isolation,
                             pass_env=pass_env, network=network, hide=hide)
    return result
