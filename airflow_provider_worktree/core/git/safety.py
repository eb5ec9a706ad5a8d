"""What git may run: nothing from the repository, and credentials only where a remote is contacted.

A repository being maintained is untrusted, and so is anything a model wrote into its worktree. git can be made to
execute commands by configuration (hooks, ``core.fsmonitor``, filter/diff/merge drivers named by
``.gitattributes``, ``core.sshCommand``, credential helpers, ...). :func:`harden` turns one git invocation into a
safe one:

* **Fixed overrides** on every command (``-c``, which beats every config file): hooks off
  (``core.hooksPath=/dev/null``: no ``pre-commit``, ``post-commit``, ``reference-transaction``,
  ``post-index-change``... whatever the repository's ``core.hooksPath`` says), ``core.fsmonitor=false``,
  ``protocol.ext.allow=never``, no signing or signature checks (``gpg.program`` never runs), no submodule
  recursion, quoted paths in human-readable output; editors and pagers are ``:`` and ``cat``.
* **Drivers neutralised**: for every ``filter.<d>``, ``diff.<d>``, ``merge.<d>`` and ``trailer.<t>`` driver that
  any config file defines, the command keys are overridden: filters become no-ops (empty ``clean``/``smudge``/
  ``process``, ``required=false``), diff commands and textconv are emptied (and ``diff``/``log``/``show`` always
  get ``--no-ext-diff --no-textconv``), a merge driver becomes git's own ``merge-file``. The configuration is
  read with ``git config --list`` right before each command that may touch file content, so a config file
  changed by code the model ran (in a fallback without a sandbox) is seen.
* **Untrusted scopes**: keys that run a command when a remote is contacted (``core.sshCommand``,
  ``core.askPass``, ``credential.helper``, ``remote.<r>.uploadpack``/``receivepack`` (overridden on the command
  line: git takes their first value), ``core.alternateRefsCommand``, ``core.gitProxy``) are honoured from the
  operator's system and global config and from the environment, never from the repository's own
  (``local``/``worktree``) config.
* **Environment**: git gets an allowlisted environment, not the worker's. Credentials (``GIT_CONFIG_COUNT``/
  ``KEY``/``VALUE`` entries such as the Authorization header, ``GIT_SSH_COMMAND``, ``GIT_ASKPASS``, the ssh agent,
  proxies) reach only ``clone``, ``fetch``, ``push`` and ``ls-remote``; ``add``, ``commit``, ``status``,
  ``diff`` and the rest never see them.

Limits: the operator's own system and global config are trusted (their ``safe.directory`` entries keep working);
a repository owned by another user is refused by git itself ("dubious ownership") and is not overridden here.
Git LFS and other content filters do not run, so LFS-tracked files are seen as their pointer files.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence

from airflow_provider_worktree.core.errors import GitError, summarize_error

#: Subcommands that talk to a remote: the only ones that get credentials and the transport environment.
REMOTE_COMMANDS = frozenset({"clone", "fetch", "push", "ls-remote"})
#: Subcommands that never read or write working-tree content, run no driver and contact no remote: no need to
#: read the configuration before running them.
CONTENT_FREE_COMMANDS = frozenset({
    "rev-parse", "update-ref", "for-each-ref", "symbolic-ref", "check-ref-format", "merge-base", "commit-tree",
    "ls-tree", "show-ref", "config", "version", "--version", "branch", "rev-list", "var",
})
#: Subcommands that produce diffs: always run with ``--no-ext-diff --no-textconv``.
DIFF_COMMANDS = frozenset({"diff", "log", "show", "whatchanged", "diff-tree", "diff-index", "diff-files"})
_NO_EXTERNAL = ("--no-ext-diff", "--no-textconv")

#: Overrides for every command (``-c key=value``; command-line config wins over every file).
FIXED_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.quotePath", "true"),
    ("protocol.ext.allow", "never"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("push.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("merge.verifySignatures", "false"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
)
#: Built-in three-way merge, for a merge driver the configuration names (``%A``/``%O``/``%B`` are git's
#: temporary files).
SAFE_MERGE_DRIVER = "git merge-file -L ours -L base -L theirs --marker-size=%L %A %O %B"

#: Variables of the worker's environment passed to every git (everything else of it is left out; the
#: caller's ``env``, e.g. ``GIT_DIR`` or the author, is added on top).
_ENV_ALWAYS = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TZ", "XDG_CONFIG_HOME", "GIT_EXEC_PATH",
    "GIT_CEILING_DIRECTORIES", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM",
    "LD_LIBRARY_PATH",
})
_ENV_ALWAYS_PREFIXES = ("GIT_TRACE",)
#: Passed to remote commands only: transport settings and credentials.
_ENV_REMOTE = frozenset({
    "SSH_AUTH_SOCK", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT", "GIT_ASKPASS", "SSH_ASKPASS",
    "GIT_SSL_NO_VERIFY", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "GIT_SSL_CERT", "GIT_SSL_KEY", "SSL_CERT_FILE",
    "SSL_CERT_DIR", "CURL_CA_BUNDLE", "GIT_CURL_VERBOSE", "GIT_PROXY_COMMAND", "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS", "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
    "NO_PROXY", "ALL_PROXY",
})
_ENV_REMOTE_PREFIXES = ("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_", "GIT_HTTP_")
#: Fixed values: git stays non-interactive and its output parseable.
BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "GIT_EDITOR": ":",
    "GIT_SEQUENCE_EDITOR": ":",
    "LC_ALL": "C",
    "LANG": "C",
    "GIT_OPTIONAL_LOCKS": "0",
}

_TRUSTED_SCOPES = frozenset({"system", "global", "command"})
_DRIVER_KEY = re.compile(r"(filter|diff|merge|trailer)\.(.+)\.([^.]+)\Z", re.DOTALL)
#: Keys honoured only from trusted scopes, with the value used when only the repository sets them.
_UNTRUSTED_SINGLE = {
    "core.sshcommand": "ssh",
    "core.askpass": "",
    "core.alternaterefscommand": "true",
    "http.savecookies": "false",
}
_REMOTE_EXEC = re.compile(r"remote\.(.+)\.(uploadpack|receivepack)\Z", re.DOTALL)
_CREDENTIAL_HELPER = re.compile(r"credential\.(.+\.)?helper\Z", re.DOTALL)


def subcommand(args: Sequence[str]) -> str:
    """The git subcommand of ``args`` (the first argument that is not a global option)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("-c", "-C", "--git-dir", "--work-tree", "--namespace"):
            skip = True
            continue
        if arg.startswith("-") and arg != "--version":
            continue
        return arg
    return ""


def is_remote_command(args: Sequence[str]) -> bool:
    """Whether ``git *args`` contacts a remote (and so may receive credentials)."""
    return subcommand(args) in REMOTE_COMMANDS


def git_environment(env: Mapping[str, str] | None, *, remote: bool,
                    base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for one git command: allowlisted from ``base`` (default ``os.environ``), then ``env``
    (the caller's additions, e.g. ``WorktreeManager.git_env``), with credentials and transport settings only
    when ``remote``."""
    def wanted(key: str) -> bool:
        if key in _ENV_ALWAYS or key.startswith(_ENV_ALWAYS_PREFIXES):
            return True
        return remote and (key in _ENV_REMOTE or key.startswith(_ENV_REMOTE_PREFIXES))

    src = os.environ if base is None else base
    out = {k: v for k, v in src.items() if wanted(k)}
    for key, value in (env or {}).items():
        credential_like = key in _ENV_REMOTE or key.startswith(_ENV_REMOTE_PREFIXES)
        if remote or not credential_like:
            out[key] = value
    out.update(BASE_ENV)
    return out


def read_config(git: str, cwd: str | os.PathLike[str] | None, env: Mapping[str, str],
                timeout: float | None) -> list[tuple[str, str, str]]:
    """Every config entry git sees in ``cwd`` as (scope, key, value).

    Fails closed: when the configuration cannot be read, the command is not run (:class:`GitError`).
    """
    argv = [git, "--no-pager", "config", "--list", "--show-scope", "-z"]
    try:
        proc = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GitError(f"Reading git's configuration in {cwd} timed out after {timeout}s (an include.path "
                       "naming a FIFO?); the git command was not run. Check the repository's config.",
                       args=argv[1:], timed_out=True) from None
    except OSError as exc:
        raise GitError(f"Could not read git's configuration in {cwd}: {exc}; the git command was not run.",
                       args=argv[1:], stderr=str(exc)) from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "surrogateescape")
        raise GitError(f"git config failed in {cwd}: {summarize_error(stderr)}. The git command was not run; "
                       "fix the repository's configuration.", args=argv[1:], returncode=proc.returncode,
                       stderr=summarize_error(stderr))
    entries = []
    fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    for i in range(0, len(fields) - 1, 2):
        key, _, value = fields[i + 1].partition("\n")
        entries.append((fields[i], key, value))
    return entries


def config_overrides(entries: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """The ``-c`` overrides that stop the configuration ``entries`` from running anything (see the module doc)."""
    out: list[tuple[str, str]] = []
    done: set[str] = set()
    trusted_single = {key: value for scope, key, value in entries
                      if scope in _TRUSTED_SCOPES and key in _UNTRUSTED_SINGLE}
    reset_helpers = False
    for scope, key, _value in entries:
        m = _DRIVER_KEY.match(key)
        if m:
            kind, name, _var = m.groups()
            ident = f"{kind}.{name}"
            if ident in done:
                continue
            done.add(ident)
            if kind == "filter":
                out += [(f"{ident}.clean", ""), (f"{ident}.smudge", ""), (f"{ident}.process", ""),
                        (f"{ident}.required", "false")]
            elif kind == "diff":
                out += [(f"{ident}.command", ""), (f"{ident}.textconv", "")]
            elif kind == "merge":
                out += [(f"{ident}.driver", SAFE_MERGE_DRIVER)]
            else:
                out += [(f"{ident}.command", ""), (f"{ident}.cmd", "")]
            continue
        if scope in _TRUSTED_SCOPES or key in done:
            continue
        if key in _UNTRUSTED_SINGLE:
            done.add(key)
            out.append((key, trusted_single.get(key, _UNTRUSTED_SINGLE[key])))
        elif _CREDENTIAL_HELPER.match(key):
            reset_helpers = True
        elif key == "core.gitproxy":
            done.add(key)
            out.append(("protocol.git.allow", "never"))
    if reset_helpers:
        out.append(("credential.helper", ""))
    return out


def transport_options(args: Sequence[str], entries: Sequence[tuple[str, str, str]]) -> list[str]:
    """Command-line options for a remote command when the repository's config names the program to run on the
    other side (``remote.<r>.uploadpack``/``receivepack``; for a local or ``file://`` remote that program runs
    here). git takes the *first* such config value, so only a command-line option overrides it."""
    sub = subcommand(args)
    kinds = {m.group(2) for scope, key, _v in entries if scope not in _TRUSTED_SCOPES
             for m in [_REMOTE_EXEC.match(key)] if m}
    if sub == "push" and "receivepack" in kinds:
        return ["--receive-pack=git-receive-pack"]
    if sub in ("fetch", "ls-remote", "clone") and "uploadpack" in kinds:
        return ["--upload-pack=git-upload-pack"]
    return []


def needs_config_scan(args: Sequence[str]) -> bool:
    """Whether the configuration must be read before ``git *args`` (it may touch content or a remote)."""
    sub = subcommand(args)
    if sub == "worktree":
        rest = list(args[list(args).index("worktree") + 1:])
        if not rest or rest[0] in ("list", "lock", "unlock", "prune"):
            return False
        # `add --no-checkout` writes no file; a forced `remove` reads none (no cleanliness check).
        return not ((rest[0] == "add" and "--no-checkout" in rest) or (rest[0] == "remove" and "--force" in rest))
    if sub == "cat-file":
        return any(a.startswith(("--textconv", "--filters", "--path")) for a in args)
    return sub not in CONTENT_FREE_COMMANDS


def harden(git: str, args: Sequence[str], cwd: str | os.PathLike[str] | None, env: Mapping[str, str] | None,
           timeout: float | None) -> tuple[list[str], dict[str, str]]:
    """The argv (``git`` included) and environment that run ``git *args`` safely (see the module doc)."""
    args = list(args)
    remote = is_remote_command(args)
    full_env = git_environment(env, remote=remote)
    overrides = list(FIXED_OVERRIDES)
    sub = subcommand(args)
    if needs_config_scan(args):  # read without credentials: `git config` is not a remote command
        scan_env = full_env if not remote else git_environment(env, remote=False)
        entries = read_config(git, cwd, scan_env, timeout)
        overrides += config_overrides(entries)
        if remote:
            at = args.index(sub) + 1
            args[at:at] = transport_options(args, entries)
    if sub in DIFF_COMMANDS:
        at = args.index(sub) + 1
        args[at:at] = [flag for flag in _NO_EXTERNAL if flag not in args]
    argv = [git, "--no-pager"]
    for key, value in overrides:
        argv += ["-c", f"{key}={value}"]
    return argv + args, full_env
