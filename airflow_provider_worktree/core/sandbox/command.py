"""The allowlisted command runner (``run_command``), confined to one worktree.

It runs argv (no shell) only when its prefix is on an allowlist, in the box
(:mod:`airflow_provider_worktree.core.sandbox.box`: the worktree the only writable path, an allowlisted environment,
limits, everything it started killed at the end). Every argument, and every value after ``=`` in it, that names
a path landing outside the worktree (symlinks followed) is refused before anything runs. Refusals come back to
the model as tool errors. Plain Python: no Airflow import.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.sandbox.box import BoxLimits, run_boxed
from airflow_provider_worktree.core.sandbox.paths import CONTROL_RE, SandboxViolation, clean_text, is_within
from airflow_provider_worktree.core.sandbox.proc import ProcessHandle
from airflow_provider_worktree.core.sandbox.tool_result import ToolResult

COMMAND_TOOL_NAME = "run_command"
#: Largest command output returned to the model (characters): head and tail are kept.
DEFAULT_MAX_OUTPUT_CHARS = 20_000


class CommandTool:
    """A custom tool ``run_command``: runs allowlisted commands in the worktree, without a shell, in the box.

    :param root: the worktree (the command's working directory and its only writable path).
    :param allowlist: argv prefixes that may run, e.g. ``[["pytest"], ["python", "-m", "pytest"]]``; a string
        entry is split with :func:`shlex.split`. A command runs only if its argv starts with one of them.
    :param timeout: seconds before everything the command started is killed.
    :param max_output_chars: output (stdout and stderr interleaved) longer than this keeps its head and tail.
    :param env: explicit variables for the command, on top of the box's allowlisted environment (the worker's
        own environment is never passed: see :data:`~airflow_provider_worktree.core.sandbox.box.ENV_ALLOWLIST`).
    :param pass_env: names (or ``PREFIX*``) of worker variables the DAG author lets the command see.
    :param isolation: the box: ``"auto"``, ``"bwrap"`` or ``"none"``
        (:func:`~airflow_provider_worktree.core.sandbox.box.run_boxed`); :attr:`last_isolation` tells which was in force.
    :param network: let the command use the network (default: none in bubblewrap).
    :param hide: more paths to hide from the command (other worktrees, clone caches).
    :param limits: the box's resource limits.
    :param confine_args: refuse arguments (and values after ``=``) naming a path that lands outside the
        worktree, symlinks followed, so an allowed program is not pointed outside it.

    The allowlist trusts the programs it names: ``python -m pytest`` runs the repository's own test code. The
    box decides what that code can reach; with the fallback box that is everything the worker's user can read.
    """

    name = COMMAND_TOOL_NAME

    def __init__(self, root: str | os.PathLike[str], allowlist: Iterable[Sequence[str] | str], timeout: float = 300,
                 *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS, env: Mapping[str, str] | None = None,
                 pass_env: Sequence[str] = (), isolation: str = "auto", network: bool = False,
                 hide: Sequence[str | os.PathLike[str]] = (), limits: BoxLimits | None = BoxLimits(),
                 confine_args: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigurationError(f"worktree {os.fspath(root)!r} is not a directory; create the worktree first.")
        self._root_real = os.path.realpath(self.root)
        prefixes: list[tuple[str, ...]] = []
        for entry in allowlist:
            argv = shlex.split(entry) if isinstance(entry, str) else [str(a) for a in entry]
            if not argv:
                raise ConfigurationError("allow_commands has an empty entry; give argv prefixes such as ['pytest'].")
            prefixes.append(tuple(argv))
        if not prefixes:
            raise ConfigurationError("allow_commands is empty; give at least one argv prefix such as ['pytest'], or "
                                     "leave commands disabled.")
        self.allowlist = prefixes
        self.timeout = float(timeout)
        self.max_output_chars = max_output_chars
        self.env = dict(env or {})
        self.pass_env = tuple(pass_env)
        self.isolation = isolation
        self.network = network
        self.hide = tuple(hide)
        self.limits = limits
        self.confine_args = confine_args
        #: The isolation the last command ran with ("bwrap", "fallback", "none"); None before the first.
        self.last_isolation: str | None = None
        # Timeout and cancel kill at once; the fallback box's reaper still gets its moment (see run_boxed).
        self._handle = ProcessHandle(grace_s=0)

    def definition(self) -> dict[str, Any]:
        """The custom tool definition to send in ``tools``."""
        allowed = "; ".join(shlex.join(p) for p in self.allowlist)
        return {
            "name": COMMAND_TOOL_NAME,
            "description": (
                "Run a command in the repository root (no shell: no pipes, redirections or variables). "
                f"Only commands starting with one of these are allowed: {allowed}. "
                f"The command is killed after {int(self.timeout)} seconds. Returns the exit code and output."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The command line, e.g. 'pytest -q tests'."},
                },
                "required": ["command"],
            },
        }

    def cancel(self) -> None:
        """Kill the running command's process group, if any, and refuse further commands."""
        self._handle.cancel()

    def parse(self, tool_input: object) -> list[str]:
        """The argv of a tool call, or :class:`SandboxViolation` saying why it may not run."""
        if not isinstance(tool_input, Mapping):
            raise SandboxViolation("tool input must be a JSON object such as {\"command\": \"pytest -q\"}.")
        command = tool_input.get("command", tool_input.get("argv"))
        if isinstance(command, str):
            if CONTROL_RE.search(command.replace("\t", " ")):
                raise SandboxViolation("command contains a NUL or control character.")
            try:
                argv = shlex.split(command)
            except ValueError as exc:
                raise SandboxViolation(f"command could not be parsed ({exc}); quote arguments properly.") from None
        elif isinstance(command, list) and all(isinstance(a, str) for a in command):
            argv = list(command)
            if any("\x00" in a for a in argv):
                raise SandboxViolation("command contains a NUL character.")
        else:
            raise SandboxViolation("parameter 'command' is required and must be a string.")
        if not argv:
            raise SandboxViolation("command is empty.")
        if not any(tuple(argv[: len(p)]) == p for p in self.allowlist):
            allowed = "; ".join(shlex.join(p) for p in self.allowlist)
            raise SandboxViolation(f"command {shlex.join(argv)!r} is not allowed; allowed commands start with: "
                                   f"{allowed}.")
        if self.confine_args:
            prefix = next(len(p) for p in self.allowlist if tuple(argv[: len(p)]) == p)
            for arg in argv[prefix:]:
                for value in _path_candidates(arg):
                    if not self._lands_inside(value):
                        raise SandboxViolation(f"argument {clean_text(arg)!r} names a path outside the repository "
                                               f"({clean_text(value)!r}, symlinks followed); use repository-relative "
                                               "paths that stay inside it.")
        return argv

    def _lands_inside(self, value: str) -> bool:
        path = value if os.path.isabs(value) else os.path.join(self._root_real, value)
        return is_within(os.path.realpath(path), self._root_real)

    def execute(self, tool_input: object) -> ToolResult:
        """Run one tool call; refusals, timeouts and missing programs come back as tool errors."""
        try:
            argv = self.parse(tool_input)
        except SandboxViolation as exc:
            return ToolResult(f"Error: {exc}", is_error=True)
        try:
            done = run_boxed(argv, self.root, isolation=self.isolation, timeout=self.timeout, env=self.env,
                             pass_env=self.pass_env, network=self.network, hide=self.hide, limits=self.limits,
                             merge_stderr=True, max_output_chars=self.max_output_chars, grace_s=0,
                             handle=self._handle)
            self.last_isolation = done.isolation
        except FileNotFoundError:
            return ToolResult(f"Error: program {argv[0]!r} is not installed on this worker.", is_error=True)
        except OSError as exc:
            return ToolResult(f"Error: could not start {argv[0]!r}: {exc.strerror}", is_error=True)
        except ConfigurationError as exc:  # isolation='bwrap' unavailable, bad setting: the DAG's to fix
            return ToolResult(f"Error: {exc}", is_error=True)
        if not done.started:
            return ToolResult("Error: the run was cancelled; no more commands.", is_error=True)
        text = done.stdout
        if done.timed_out:
            return ToolResult(f"Error: command timed out after {self.timeout:g}s and was killed.\n{text}",
                              is_error=True)
        if done.cancelled:
            return ToolResult(f"Error: command killed because the run was cancelled.\n{text}", is_error=True)
        return ToolResult(f"exit code: {done.returncode}\n{text}")


def _path_candidates(arg: str) -> list[str]:
    """The parts of a command argument that may name a path: the argument itself, every value after an ``=``
    (``-o cache_dir=/abs``, ``--junitxml=link/x``), the value glued to a short option (``-o/abs``), each split
    at ``,`` and ``:`` (lists, ``PATH``-like values). ``~`` counts as absolute (a home directory)."""
    raw = [arg]
    raw += [arg[i + 1:] for i, ch in enumerate(arg) if ch == "="]
    if len(arg) > 2 and arg[0] == "-" and arg[1] != "-":
        raw.append(arg[2:])
    out: list[str] = []
    for item in raw:
        for piece in re.split(r"[,:]", item):
            if piece and piece not in out:
                out.append("/" if piece.startswith("~") else piece)
    return out
