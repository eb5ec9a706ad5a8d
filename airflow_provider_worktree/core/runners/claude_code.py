"""The Claude Code runner: ``claude -p`` (headless) in a shard's worktree, restricted and budgeted.

The CLI (``npm install -g @anthropic-ai/claude-code``) runs with the worktree as its working directory, the
prompt on stdin and ``--output-format json``. :meth:`ClaudeCodeRunner.build_command` is the one place that decides
what it may do (the flags are those of ``claude --help``, checked against the installed version):

- ``--tools`` restricts the tool SET the model is offered to what the task needs (``Read, Edit, Write, Glob,
  Grep``), plus ``Bash`` only when the DAG allows commands; ``--allowedTools`` then pre-approves ``Bash(<prefix> *)``
  for each allowed command prefix and nothing else. The file tools are deliberately NOT pre-approved: with
  ``--permission-mode acceptEdits`` the CLI reads and edits inside the working directory and refuses paths outside
  it (a blanket ``--allowedTools Read,Edit`` would let it read and write anywhere the worker can).
- ``--max-budget-usd`` is the shard's dollar cap, ``--max-turns`` its turn cap.
- ``--setting-sources ""`` loads no settings file (not the repository's ``.claude/settings*.json`` with its hooks,
  permissions and key helpers), ``--strict-mcp-config`` with an empty ``--mcp-config`` starts no MCP server (not
  the repository's ``.mcp.json``), ``--settings`` turns hooks off, ``--no-session-persistence`` writes no session.
- The environment is built from an ALLOWLIST (:data:`ENV_ALLOWLIST`, plus names the caller adds with
  ``pass_env``), never the worker's whole environment: the CLI does not see Airflow connections, cloud keys or
  database URLs. It gets a private ``HOME``/``CLAUDE_CONFIG_DIR`` (a fresh temporary directory removed after the
  run), and the switches for non-essential traffic, the auto-updater, telemetry,
  error reporting and ``CLAUDE.md`` discovery (a repository's ``CLAUDE.md`` may import files from anywhere;
  the task's conventions reach the model through the appended system prompt instead).
- The CLI never holds the API key: for each run a :class:`~airflow_provider_worktree.core.runners.keyproxy.KeyProxy`
  listens on ``127.0.0.1`` in the worker (outside the box); the CLI gets its address as ``ANTHROPIC_BASE_URL`` and a
  random per-run token as ``ANTHROPIC_API_KEY``, and the proxy swaps the token for the real key on the way to the
  real base URL (streamed replies pass through as they arrive). A command the CLI runs, or anything reading its
  ``/proc/<pid>/environ``, sees the token, which is refused once the run is over. The key is taken from
  ``api_key``, else from ``env`` or a ``pass_env`` name ``ANTHROPIC_API_KEY``; the base URL likewise.

The process runs in the box (:func:`~airflow_provider_worktree.core.sandbox.box.run_boxed`, ``isolation`` as for verify):
with bubblewrap the worktree is its only writable path besides a private home and ``/tmp``, the worker's
``AIRFLOW_HOME``, credentials, clone caches and ``/proc`` are out of sight, and the network is shared (it needs
the API). Timeout and cancel kill everything it started. API errors the CLI hit (``api_error_status`` in its result) are raised as
:class:`~airflow_provider_worktree.core.runners.types.ModelRequestError` with the HTTP status and the API's message.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.git import STATUS_ARGS, parse_status, run_git
from airflow_provider_worktree.core.runners.keyproxy import KeyProxy
from airflow_provider_worktree.core.runners.prices import PriceTable
from airflow_provider_worktree.core.runners.types import (
    ModelRequestError,
    RunResult,
    Usage,
)
from airflow_provider_worktree.core.sandbox.box import resolve_isolation, run_boxed
from airflow_provider_worktree.core.sandbox.proc import (
    ProcessHandle,
    run_process,
    truncate_middle,
)

__all__ = [
    "ClaudeCodeNotFoundError",
    "ClaudeCodeRunner",
    "DEFAULT_TOOLS",
    "ENV_ALLOWLIST",
    "INSTALL_HINT",
    "cli_flags",
]

INSTALL_HINT = ("install Claude Code with `npm install -g @anthropic-ai/claude-code`, or pass "
                "executable='/path/to/claude'")

#: The tools a maintenance task needs: read and edit files, find them. Bash is added only with ``allow_commands``.
DEFAULT_TOOLS = ("Read", "Edit", "Write", "Glob", "Grep")

#: Variables passed from the worker's environment to the CLI when set there; everything else stays behind.
#: Proxy variables are here because a worker behind a proxy cannot reach the API without them.
ENV_ALLOWLIST = (
    "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "TMPDIR",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
)

#: Set for every run: no auto-update, telemetry, error reports or other traffic beyond the Messages API calls;
#: no CLAUDE.md discovery, auto-memory or IDE hook-up.
FIXED_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_CLAUDE_MDS": "1",
    "CLAUDE_CODE_DISABLE_AUTO_MEMORY": "1",
    "CLAUDE_CODE_IDE_SKIP_AUTO_INSTALL": "1",
}

#: Flags the runner cannot do without: without them the CLI would offer every tool or load repository settings.
REQUIRED_FLAGS = ("--tools", "--setting-sources", "--strict-mcp-config", "--mcp-config", "--permission-mode")

_API_ERROR = re.compile(r"API Error:\s*(\d{3})\s*(.*)", re.S)


class ClaudeCodeNotFoundError(ConfigurationError):
    """The ``claude`` executable is not installed or not on PATH."""


_FLAG_CACHE: dict[tuple[str, float], frozenset[str]] = {}


def cli_flags(executable: str, timeout: float = 60) -> frozenset[str]:
    """The long options ``executable --help`` lists (cached per executable and modification time)."""
    try:
        key = (executable, os.stat(executable).st_mtime)
    except OSError:
        raise ClaudeCodeNotFoundError(f"could not start {executable!r}: {INSTALL_HINT}.") from None
    if key not in _FLAG_CACHE:
        with tempfile.TemporaryDirectory(prefix="claude-code-help-") as home:
            env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": home, **FIXED_ENV}
            try:
                done = run_process([executable, "--help"], home, timeout=timeout, env=env, input="")
            except OSError as exc:
                raise ClaudeCodeNotFoundError(f"could not run {executable!r} --help ({exc}): {INSTALL_HINT}.") from None
        if done.returncode != 0:
            raise ClaudeCodeNotFoundError(f"{executable!r} --help failed (exit code {done.returncode}): "
                                          f"{truncate_middle(done.stderr.strip(), 500)}; {INSTALL_HINT}.")
        _FLAG_CACHE[key] = frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", done.stdout + done.stderr))
    return _FLAG_CACHE[key]


class ClaudeCodeRunner:
    """Claude Code in headless mode (``claude -p --output-format json``) in the worktree; see the module docstring.

    :param model: model id or alias for ``--model`` (default: the CLI's own).
    :param permission_mode: ``acceptEdits`` (edits inside the working directory only, the default) or another
        mode of the installed CLI.
    :param allowed_tools: the tool set offered to the model (``--tools``).
    :param max_turns: ``--max-turns``.
    :param max_budget_usd: the dollar cap (``--max-budget-usd``); ``None`` for none.
    :param allow_commands: argv prefixes the model may run (e.g. ``[["pytest"]]``); adds ``Bash`` to the tool set,
        pre-approved only for these prefixes (``Bash(pytest *)``). ``None``: no shell at all.
    :param timeout: seconds before the process group is killed.
    :param executable: the ``claude`` executable (a name on PATH or a path).
    :param extra_args: appended to the command line as they are.
    :param env: variables added to the CLI's environment (set by the DAG author, so trusted).
    :param pass_env: names of further worker variables to pass through when set.
    :param api_key: the Anthropic API key; it stays in the worker (the run's key proxy adds it), never in the
        CLI's environment or command line.
    :param base_url: the API base URL the key proxy forwards to (default: ``https://api.anthropic.com``).
    """

    def __init__(self, model: str | None = None, permission_mode: str = "acceptEdits",
                 allowed_tools: Sequence[str] = DEFAULT_TOOLS, max_turns: int = 20, timeout: float = 1800,
                 executable: str = "claude", extra_args: Sequence[str] = (), *,
                 max_budget_usd: float | None = None, allow_commands: Sequence[Sequence[str]] | None = None,
                 env: Mapping[str, str] | None = None, pass_env: Sequence[str] = (), api_key: str | None = None,
                 base_url: str | None = None, prices: PriceTable | None = None, isolation: str = "auto",
                 hide: Sequence[str] = (), logger: logging.Logger | None = None) -> None:
        if max_budget_usd is not None and (not isinstance(max_budget_usd, (int, float)) or max_budget_usd <= 0):
            raise ConfigurationError(f"max_budget_usd={max_budget_usd!r} must be a positive number of dollars or None.")
        self.model = model
        self.permission_mode = permission_mode
        self.allowed_tools = tuple(allowed_tools)
        self.max_turns = int(max_turns)
        self.max_budget_usd = max_budget_usd
        self.allow_commands = [list(p) for p in allow_commands] if allow_commands else []
        for prefix in self.allow_commands:
            if not prefix or not all(isinstance(a, str) and a and "\n" not in a for a in prefix):
                raise ConfigurationError(f"allow_commands entry {prefix!r} must be a non-empty argv prefix such as "
                                         "['pytest'].")
        self.timeout = float(timeout)
        self.executable = executable
        self.extra_args = tuple(extra_args)
        self._env = dict(env or {})
        self.pass_env = tuple(pass_env)
        self._api_key = api_key
        self._base_url = base_url
        self.isolation = isolation
        self.hide = tuple(hide)
        #: The isolation the last run had ("bwrap", "fallback" or "none"), for the shard's record.
        self.last_isolation: str | None = None
        self.prices = prices or PriceTable()
        self.log = logger or logging.getLogger(__name__)
        # SIGTERM first: claude gets 5 s to stop its tools before the SIGKILL.
        self._handle = ProcessHandle(grace_s=5.0)

    def __repr__(self) -> str:  # never shows the key
        return (f"ClaudeCodeRunner(model={self.model!r}, executable={self.executable!r}, max_turns={self.max_turns}, "
                f"max_budget_usd={self.max_budget_usd!r})")

    # -- the command --------------------------------------------------------------------------------------------------
    def tool_set(self) -> list[str]:
        """The ``--tools`` list: the allowed tools, plus ``Bash`` when commands are allowed."""
        tools = list(self.allowed_tools)
        if self.allow_commands and "Bash" not in tools:
            tools.append("Bash")
        return tools

    def _bash_rules(self) -> list[str]:
        return [f"Bash({' '.join(prefix)} *)" for prefix in self.allow_commands]

    def build_command(self, worktree: str | os.PathLike[str], *, home: str | os.PathLike[str] | None = None,
                      system_prompt: str | None = None,
                      proxy: KeyProxy | None = None) -> tuple[list[str], dict[str, str]]:
        """``(argv, env)`` for one run in ``worktree`` (the prompt goes on stdin). The one place that decides the
        CLI's tools, limits and environment. ``home``: the CLI's private home; None leaves ``HOME`` to the box,
        which gives every run a fresh private one. ``proxy``: the run's started key proxy, whose address and token
        the CLI gets; without one the environment holds no API key at all (never the real one)."""
        exe = self._resolve_executable()
        flags = cli_flags(exe)
        missing = [f for f in REQUIRED_FLAGS if f not in flags]
        if self.max_budget_usd is not None and "--max-budget-usd" not in flags:
            missing.append("--max-budget-usd")
        if missing:
            raise ConfigurationError(f"the Claude Code CLI at {exe} lacks {', '.join(missing)}, which the runner needs "
                                     "to restrict it: upgrade with `npm install -g @anthropic-ai/claude-code@latest`.")
        argv = [exe, "-p", "--output-format", "json", "--permission-mode", self.permission_mode,
                "--max-turns", str(self.max_turns), "--tools", ",".join(self.tool_set())]
        if self.allow_commands:
            argv += ["--allowedTools", ",".join(self._bash_rules())]
        if self.max_budget_usd is not None:
            argv += ["--max-budget-usd", f"{self.max_budget_usd:g}"]
        argv += ["--setting-sources", "", "--strict-mcp-config", "--mcp-config", '{"mcpServers":{}}',
                 "--settings", '{"disableAllHooks":true}']
        for optional in ("--no-session-persistence", "--disable-slash-commands"):
            if optional in flags:
                argv.append(optional)
        if self.model:
            argv += ["--model", self.model]
        if system_prompt:
            argv += ["--append-system-prompt", system_prompt]
        argv += list(self.extra_args)

        env = {name: os.environ[name] for name in (*ENV_ALLOWLIST, *self.pass_env) if name in os.environ}
        env.setdefault("PATH", os.defpath)
        env.setdefault("LANG", "C.UTF-8")
        env.update(FIXED_ENV)
        if home is not None:
            home = os.fspath(home)
            env.update(HOME=home, CLAUDE_CONFIG_DIR=os.path.join(home, ".claude"), PWD=os.fspath(worktree),
                       XDG_CONFIG_HOME=os.path.join(home, ".config"), XDG_CACHE_HOME=os.path.join(home, ".cache"))
        if self.allow_commands:
            if resolve_isolation(self.isolation) == "bwrap":
                # The CLI's own sandbox cannot nest inside ours: its commands run in our box, which shows them no
                # worker secret and no file outside the worktree; of the API they see the run's proxy token only.
                self.log.info("allow_commands with runner='claude_code': the commands Claude Code runs share its box; "
                              "they see the run's key-proxy token (usable only while the run lasts), never the key.")
            elif shutil.which("bwrap", path=env["PATH"]):
                # The CLI then runs its shell commands without even the proxy token in their environment.
                env["CLAUDE_CODE_SUBPROCESS_ENV_SCRUB"] = "1"
        env.update(self._env)
        # The real key never enters the CLI's environment, however it was given (api_key, env, pass_env).
        env.pop("ANTHROPIC_API_KEY", None)
        _key, upstream = self.credentials()
        if proxy is not None and proxy.base_url:
            env["ANTHROPIC_API_KEY"] = proxy.token
            env["ANTHROPIC_BASE_URL"] = proxy.base_url
            for name in ("NO_PROXY", "no_proxy"):  # the CLI reaches the proxy directly, never via an HTTP proxy
                env[name] = ",".join(p for p in (env.get(name), "127.0.0.1", "localhost") if p)
        elif upstream:
            env["ANTHROPIC_BASE_URL"] = upstream
        return argv, env

    def credentials(self) -> tuple[str | None, str | None]:
        """``(key, base URL)`` the run's key proxy uses: ``api_key``/``base_url``, else ``env``'s, else the worker's
        ``ANTHROPIC_API_KEY``/``ANTHROPIC_BASE_URL`` when ``pass_env`` names them."""
        def pick(explicit: str | None, name: str) -> str | None:
            if explicit:
                return explicit
            if self._env.get(name):
                return self._env[name]
            return os.environ.get(name) or None if name in self.pass_env else None

        return pick(self._api_key, "ANTHROPIC_API_KEY"), pick(self._base_url, "ANTHROPIC_BASE_URL")

    def _resolve_executable(self) -> str:
        path_env = self._env.get("PATH", os.environ.get("PATH"))
        found = shutil.which(self.executable, path=path_env)
        if not found:
            raise ClaudeCodeNotFoundError(f"the Claude Code executable {self.executable!r} was not found on PATH: "
                                          f"{INSTALL_HINT}.")
        return found

    def cancel(self) -> None:
        """Kill the running ``claude`` process group. Thread-safe."""
        self._handle.cancel()

    # -- running --------------------------------------------------------------------------------------------------
    def run(self, worktree_path: str | os.PathLike[str], shard_prompt: str,
            system_prompt: str | None = None) -> RunResult:
        started = time.monotonic()
        if not Path(worktree_path).is_dir():
            raise ConfigurationError(f"worktree {os.fspath(worktree_path)!r} is not a directory.")
        key, upstream = self.credentials()
        # The key stays here: the CLI talks to a loopback proxy in this process with a per-run token.
        proxy = KeyProxy(upstream, key, timeout=min(self.timeout, 600), logger=self.log) if key else None
        try:
            if proxy is not None:
                proxy.start()
            argv, env = self.build_command(worktree_path, system_prompt=system_prompt, proxy=proxy)
            # Run the link's target: npm's bin/claude is a link into the install root, and the box shows that root
            # (below), not necessarily the link's own directory (an npm prefix under /tmp or a hidden $HOME).
            argv = [os.path.realpath(argv[0]), *argv[1:]]
            self.log.info("running Claude Code: tools=%s budget=%s max_turns=%d", ",".join(self.tool_set()),
                          f"${self.max_budget_usd:g}" if self.max_budget_usd is not None else "none", self.max_turns)
            # env is the complete allowlisted environment (set last in the box); the CLI's install (often under a
            # hidden $HOME, e.g. an npm prefix) is shown read-only.
            done = run_boxed(argv, worktree_path, isolation=self.isolation, timeout=self.timeout, network=True,
                             env=env, hide=self.hide, ro_binds=[_install_root(argv[0])], input=shard_prompt,
                             grace_s=self._handle.grace_s, handle=self._handle)
        except FileNotFoundError:
            raise ClaudeCodeNotFoundError(f"could not start {self.executable!r}: {INSTALL_HINT}.") from None
        finally:
            if proxy is not None:
                proxy.close()
        self.last_isolation = done.isolation
        return self._result(done, worktree_path, started)

    def _result(self, done: Any, worktree_path: str | os.PathLike[str], started: float) -> RunResult:
        def result(stop: str, **kw: Any) -> RunResult:
            kw.setdefault("model", self.model)
            return RunResult(stop_reason=stop, duration_s=round(time.monotonic() - started, 3), **kw)

        if not done.started:
            return result("cancelled", error="the run was cancelled")
        stderr_tail = truncate_middle(done.stderr.strip(), 2000)
        files = _git_changed_files(worktree_path)
        if done.timed_out:
            return result("error", error=f"claude did not finish within timeout={self.timeout:g}s and was killed",
                          files_written=files)
        if done.cancelled:
            return result("cancelled", error="the run was cancelled", files_written=files)
        data = _parse_json_result(done.stdout)
        if data is None:
            return result("error", files_written=files, error=(
                f"claude exited with code {done.returncode} without a JSON result"
                + (f": {stderr_tail}" if stderr_tail else "")))
        usage = _usage_of(data)
        subtype = str(data.get("subtype") or "")
        text = str(data.get("result") or "")
        cost = data.get("total_cost_usd", data.get("cost_usd"))
        cost_usd = float(cost) if isinstance(cost, (int, float)) else self.prices.cost(usage, self.model)
        common = dict(turns=int(data.get("num_turns") or 0), usage=usage, cost_usd=round(max(0.0, cost_usd), 6),
                      files_written=files, final_text=text, session_id=data.get("session_id"))
        status, api_message = _api_error(data)
        if status is not None:
            message = f"API error {status}: {api_message or 'no message'}"
            partial = result("error", error=message, **common)
            transient = status in (408, 409, 429) or status >= 500
            raise ModelRequestError(f"Claude Code stopped on an {message}", status_code=status,
                                    api_message=api_message, retryable=transient, result=partial)
        is_error = bool(data.get("is_error")) or done.returncode != 0
        if subtype == "error_max_turns":
            stop = "max_turns"
        elif "budget" in subtype:
            stop = "budget"
        elif is_error or (subtype and subtype != "success"):
            stop = "error"
        else:
            stop = "end_turn"
        error = None
        if stop != "end_turn":
            error = f"claude ended with subtype={subtype or '?'} (exit code {done.returncode})"
            if stop == "error" and text:
                error += f": {text[:500]}"
        return result(stop, error=error, **common)


def _install_root(executable: str) -> str:
    """The directory holding the CLI's installation: the npm prefix above ``node_modules`` when there is one (the
    ``claude`` on PATH is a link into it), else the executable's directory."""
    real = os.path.realpath(executable)
    parts = Path(real).parts
    if "node_modules" in parts:
        return str(Path(*parts[: parts.index("node_modules")]))
    return os.path.dirname(real)


def _usage_of(data: Mapping[str, Any]) -> Usage:
    """Tokens of every model the CLI called (``modelUsage``; its ``usage`` can be empty, e.g. on a budget stop)."""
    per_model = data.get("modelUsage")
    if isinstance(per_model, Mapping) and per_model:
        total = Usage()
        for u in per_model.values():
            if isinstance(u, Mapping):
                total.add(Usage(*(max(0, int(u.get(k) or 0)) for k in
                                  ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheCreationInputTokens"))))
        return total
    usage = Usage.from_api(data.get("usage") or {})
    return Usage(*(max(0, v) for v in usage.to_dict().values()))


def _api_error(data: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """(HTTP status, API message) when the CLI's result says an API call failed, else (None, None)."""
    status = data.get("api_error_status")
    text = str(data.get("result") or "")
    match = _API_ERROR.search(text) if data.get("is_error") else None
    if isinstance(status, int) and not isinstance(status, bool):
        message = match.group(2).strip() if match else text.strip()
        return status, truncate_middle(message, 1000) or None
    if match:
        return int(match.group(1)), truncate_middle(match.group(2).strip(), 1000) or None
    return None, None


def _parse_json_result(stdout: str) -> dict[str, Any] | None:
    text = stdout.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
        if isinstance(data, list):  # some versions print the whole message list; the result is last
            data = next((d for d in reversed(data) if isinstance(d, dict) and d.get("type") == "result"), None)
        return data if isinstance(data, dict) else None
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return data
    return None


def _git_changed_files(worktree: str | os.PathLike[str]) -> list[str]:
    """Best effort: files git sees as modified or untracked in the worktree (Claude Code does not report them)."""
    try:
        out = run_git(list(STATUS_ARGS), cwd=worktree, timeout=60).stdout
    except Exception:  # noqa: BLE001 - not a git worktree, or git missing: nothing to report
        return []
    return sorted(set(parse_status(out).paths))
