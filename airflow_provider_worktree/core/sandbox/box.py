"""The box: the one way the package runs code that the model or the repository controls.

Verify and lint commands, test discovery, the model's ``run_command`` tool and the Claude Code CLI all run
through :func:`run_boxed`. The model and the repository are untrusted; the worker, its secrets and every other
repository are the assets (see ``docs/security.md``).

Isolation levels (the ``isolation`` setting):

``"bwrap"`` (required)
    `bubblewrap <https://github.com/containers/bubblewrap>`_: a read-only view of ``/``; the worktree is the
    only writable path, plus a private ``/tmp`` and ``$HOME`` (tmpfs, gone afterwards); new user, PID, IPC,
    UTS and (unless ``network=True``) network namespaces; a fresh ``/proc`` that shows only the box's own
    processes, a minimal ``/dev``; every capability dropped; ``--die-with-parent`` and a new session. Hidden
    behind empty tmpfs: the worker's home directory (``~/.ssh``, ``~/.aws``, ``~/.config``, ``~/.netrc``,
    ``~/.git-credentials``, ``~/.cache`` clone caches...), ``$AIRFLOW_HOME`` (default worktree root and clone
    cache included), ``[worktree] worktree_root`` / ``cache_dir`` (``AIRFLOW__WORKTREE__*``), container
    secret mounts, and whatever the caller adds in ``hide``. The interpreter the worker runs on, the
    directories on ``PATH`` and the worktree's own git metadata are bound back read-only when they lie in a
    hidden place. When the box's first process ends, the kernel kills everything left in its PID namespace.
    Unavailable: :class:`IsolationUnavailable` names the fix.
``"auto"`` (default)
    bubblewrap when it works on this machine (probed once per process with a trivial command, then cached),
    otherwise the *fallback*, with a WARNING log line: the same allowlisted environment, a private ``$HOME`` and
    ``$TMPDIR``, resource limits, and a subreaper first process that kills every descendant (``setsid``
    daemons included) when the command ends. The fallback does not hide files the worker's user can read,
    nor the worker's ``/proc``; ``docs/security.md`` lists what it does and does not stop.
``"none"`` (explicit)
    The command runs directly (process group, timeout), with no namespaces and no limits -- for a worker that
    is itself the box (a Kubernetes pod per task). The environment is still built from the allowlist: a
    secret the command needs must be named.

The environment is never the worker's: it is built from :data:`ENV_ALLOWLIST` (``PATH``, locale, terminal,
the Python variables a virtualenv needs...), plus the names the DAG author passes in ``pass_env``, plus
explicit values in ``env``. The allowlist holds exact names only (no prefix; ``pass_env`` may name a
``PREFIX*``), so a variable nobody listed never gets in, whatever it is called. ``HOME`` and ``TMPDIR`` point
into the box.

Process limits: :class:`BoxLimits` are rlimits; as the kernel exempts root from ``RLIMIT_NPROC``, a root
worker's box (bubblewrap or fallback) is also put in a pids cgroup of its own (``pids.max``), or a WARNING says
the process limit is not enforced there.

The result (:class:`BoxResult`) is a :class:`~airflow_provider_worktree.core.sandbox.proc.ProcessResult` that also says
which isolation was in force (``"bwrap"``, ``"fallback"`` or ``"none"``), for the lifecycle to record.

Plain Python: no Airflow import.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import site
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.sandbox._cgroup import CgroupUnavailable, PidsCgroup, open_pids_cgroup
from airflow_provider_worktree.core.sandbox.paths import SandboxViolation, is_within, read_repo_bytes
from airflow_provider_worktree.core.sandbox.proc import (
    DEFAULT_GRACE_S,
    ProcessHandle,
    ProcessResult,
    count_user_processes,
    run_process,
)

__all__ = [
    "BOX_HOME",
    "ENV_ALLOWLIST",
    "ISOLATION_MODES",
    "BoxLimits",
    "BoxResult",
    "IsolationUnavailable",
    "box_env",
    "bwrap_status",
    "is_within",  # defined in core.sandbox.paths; kept for the deprecated core.box path
    "resolve_isolation",
    "run_boxed",
]

log = logging.getLogger(__name__)

ISOLATION_MODES = ("auto", "bwrap", "none")

#: The locale categories (exact names: a prefix such as ``LC_*`` would let ``LC_SECRET_TOKEN`` in).
_LOCALE_VARS = ("LC_ALL", "LC_CTYPE", "LC_COLLATE", "LC_MESSAGES", "LC_MONETARY", "LC_NUMERIC", "LC_TIME",
                "LC_ADDRESS", "LC_IDENTIFICATION", "LC_MEASUREMENT", "LC_NAME", "LC_PAPER", "LC_TELEPHONE")
#: Variables copied from the worker's environment into every box: exact names only, no prefix, so a variable
#: is in the box only if it is listed here or the DAG author names it (``pass_env``). ``HOME`` and ``TMPDIR`` are
#: set to the box's own.
ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH", "LANG", "LANGUAGE", *_LOCALE_VARS, "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TZ", "USER", "LOGNAME",
    "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "PYTHONUTF8",
    "PYTHONWARNINGS", "PYTHONUNBUFFERED", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PYTHONFAULTHANDLER",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
)
#: ``$HOME`` inside the bubblewrap box (in the private ``/tmp``; the CLI's ``~/.claude`` lands there too).
BOX_HOME = "/tmp/home"
_BOX_TMP = "/tmp"
#: Where container runtimes mount secrets (Docker, Kubernetes service-account tokens).
_SECRET_MOUNTS = ("/run/secrets", "/var/run/secrets")
#: What the worker's home keeps that a box must never see (hidden with the whole home in bubblewrap; listed
#: for the documentation and the fallback's warning).
HOME_CREDENTIALS = (".ssh", ".aws", ".config", ".netrc", ".git-credentials", ".docker", ".kube", ".gnupg",
                    ".pypirc", ".npmrc", ".claude", ".anthropic")
_BWRAP_FIX = ("install bubblewrap (`apt-get install bubblewrap`) and allow unprivileged user namespaces "
              "(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0; in a container, a "
              "seccomp/AppArmor profile that permits them); see docs/security.md")
_BWRAP_HINT = (_BWRAP_FIX + ", or set isolation='auto' to accept the weaker fallback, or isolation='none' when "
               "the worker is itself the box (a pod per task)")
_REAPER = str(Path(__file__).with_name("_reaper.py"))


class IsolationUnavailable(ConfigurationError):
    """``isolation='bwrap'`` was required and bubblewrap does not work on this worker."""


@dataclass(frozen=True)
class BoxLimits:
    """Resource limits of a box (``None``: no limit). Applied with ``setrlimit`` to the box's first process and
    inherited by everything it starts.

    :param processes: processes (threads included) at once (``RLIMIT_NPROC``). In bubblewrap this counts the
        box's own processes (its user namespace); in the fallback the worker user's current count is added, as
        the kernel counts per user. The kernel never applies ``RLIMIT_NPROC`` to root (bubblewrap run by root
        maps the box to uid 0 outside), so for a root worker the box also gets a pids cgroup
        (``pids.max``, cgroup v2 or a v1 ``pids`` hierarchy) when one is writable, else a WARNING says the limit
        is not enforced.
    :param memory_bytes: data segment and private writable mappings per process (``RLIMIT_DATA``): large
        reservations that are never written (V8, the JVM) are not charged.
    :param file_bytes: largest file a process may write (``RLIMIT_FSIZE``; beyond it, SIGXFSZ / ``EFBIG``).
    :param cpu_seconds: CPU time per process (``RLIMIT_CPU``).
    :param open_files: open file descriptors per process (``RLIMIT_NOFILE``).
    """

    processes: int | None = 512
    memory_bytes: int | None = 8 * 1024 ** 3
    file_bytes: int | None = 1024 ** 3
    cpu_seconds: int | None = 3600
    open_files: int | None = 4096

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigurationError(f"box limit {f.name} must be a positive integer or None, got {value!r}.")

    def rlimits(self, *, extra_processes: int = 0) -> dict[str, int]:
        """``{"RLIMIT_...": value}`` for the limits that are set."""
        out = {"RLIMIT_NPROC": None if self.processes is None else self.processes + extra_processes,
               "RLIMIT_DATA": self.memory_bytes, "RLIMIT_FSIZE": self.file_bytes, "RLIMIT_CPU": self.cpu_seconds,
               "RLIMIT_NOFILE": self.open_files}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class BoxResult(ProcessResult):
    """A :class:`ProcessResult` plus the isolation that was in force: ``"bwrap"``, ``"fallback"`` or ``"none"``."""

    isolation: str = "none"


# ------------------------------------------------------------------------------------------------ the probe
_probe_lock = threading.Lock()
_probe: tuple[bool, str] | None = None
_warned = False


def _bwrap_path() -> str | None:
    return shutil.which("bwrap") or (shutil.which("bwrap", path="/usr/bin:/usr/local/bin:/bin"))


def bwrap_status(*, refresh: bool = False) -> tuple[bool, str]:
    """``(works, detail)``: whether bubblewrap runs a trivial command here with the namespaces the box uses.

    Probed once per process and cached (``refresh=True`` probes again). ``detail`` is the reason when it
    does not work (not installed, or its error such as "No permissions to creating new namespace")."""
    global _probe
    with _probe_lock:
        if _probe is not None and not refresh:
            return _probe
        exe = _bwrap_path()
        if exe is None:
            _probe = (False, "bwrap is not installed")
            return _probe
        true = shutil.which("true", path="/usr/bin:/bin") or "true"
        argv = [exe, *_namespace_args(network=False), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                "--", true]
        try:
            done = run_process(argv, "/", timeout=20, env={"PATH": "/usr/bin:/bin"}, merge_stderr=True,
                               max_output_chars=500, grace_s=0)
        except OSError as exc:
            _probe = (False, f"bwrap cannot start: {exc.strerror or exc}")
            return _probe
        if done.returncode == 0:
            _probe = (True, exe)
        else:
            reason = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else f"exit code {done.returncode}"
            _probe = (False, f"bwrap fails here: {reason}")
        return _probe


def validate_isolation(value: object) -> str:
    """``value`` if it is an isolation mode (``auto``, ``bwrap``, ``none``); else a one-line ConfigurationError."""
    mode = str(value).strip().lower() if isinstance(value, str) else value
    if mode not in ISOLATION_MODES:
        raise ConfigurationError(f"isolation={value!r} is not one of {', '.join(ISOLATION_MODES)}: use 'auto' "
                                 "(bubblewrap when it works here, else a reported fallback), 'bwrap' or 'none'.")
    return mode  # type: ignore[return-value]


def resolve_isolation(isolation: str) -> str:
    """The isolation a box gets on this worker for the setting ``isolation``: ``"bwrap"``, ``"fallback"`` or
    ``"none"``. Raises :class:`IsolationUnavailable` for ``"bwrap"`` when bubblewrap does not work, and
    :class:`ConfigurationError` for an unknown setting. ``"auto"`` without bubblewrap logs a WARNING (once per
    process)."""
    global _warned
    isolation = validate_isolation(isolation)
    if isolation == "none":
        return "none"
    works, detail = bwrap_status()
    if works:
        return "bwrap"
    if isolation == "bwrap":
        raise IsolationUnavailable(f"isolation='bwrap' is required but {detail}: {_BWRAP_HINT}.")
    if not _warned:
        _warned = True
        log.warning("isolation=auto: bubblewrap is not usable here (%s); untrusted commands run in the fallback "
                    "box (allowlisted environment, resource limits, descendants killed) which does NOT hide the "
                    "worker's files or /proc. Fix: %s.", detail, _BWRAP_FIX)
    return "fallback"


# ------------------------------------------------------------------------------------- root's process limit
#: Processes of the box's own plumbing (bubblewrap's monitor and init, the fallback's reaper) under ``pids.max``.
_PLUMBING_PIDS = 4
_cgroup_warned = False


def _root_pids_cgroup(limits: BoxLimits | None, mode: str) -> PidsCgroup | None:
    """For a root worker, the box's pids cgroup (``RLIMIT_NPROC`` does not bind root); None otherwise, or with
    a WARNING (once per process) when no cgroup is writable here."""
    global _cgroup_warned
    if limits is None or limits.processes is None or mode == "none" or os.geteuid() != 0:
        return None
    try:
        return open_pids_cgroup(limits.processes + _PLUMBING_PIDS)
    except CgroupUnavailable as exc:
        if not _cgroup_warned:
            _cgroup_warned = True
            log.warning("the worker runs as root, which the kernel exempts from the box's process limit "
                        "(RLIMIT_NPROC), and %s: boxed commands are NOT bounded to processes=%d. Fix: run the worker "
                        "as an unprivileged user, or give it a writable cgroup with the pids controller (cgroup v2 "
                        "delegation, or a cgroup v1 pids hierarchy).", exc, limits.processes)
        return None


# ---------------------------------------------------------------------------------------------- environment
def box_env(pass_env: Iterable[str] = (), env: Mapping[str, str] | None = None, *, home: str, tmp: str,
            base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The box's whole environment: :data:`ENV_ALLOWLIST` and the ``pass_env`` names (``NAME`` or ``PREFIX*``)
    copied from ``base`` (default ``os.environ``), then ``HOME``/``TMPDIR``, then the explicit ``env`` values."""
    base = os.environ if base is None else base
    patterns = [*ENV_ALLOWLIST, *pass_env]
    exact = {p for p in patterns if not p.endswith("*")}
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*") and len(p) > 1)
    out = {k: v for k, v in base.items() if k in exact or (prefixes and k.startswith(prefixes))}
    out.setdefault("PATH", os.defpath)
    out["HOME"] = home
    out["TMPDIR"] = tmp
    out.update({str(k): str(v) for k, v in (env or {}).items()})
    return out


# ---------------------------------------------------------------------------------------------- the box
def run_boxed(
    argv: Sequence[str],
    worktree: str | os.PathLike[str],
    *,
    isolation: str = "auto",
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None,
    network: bool = False,
    env: Mapping[str, str] | None = None,
    pass_env: Iterable[str] = (),
    hide: Iterable[str | os.PathLike[str]] = (),
    ro_binds: Iterable[str | os.PathLike[str]] = (),
    limits: BoxLimits | None = BoxLimits(),
    input: str | bytes | None = None,  # noqa: A002 - same name as run_process
    merge_stderr: bool = False,
    max_output_chars: int | None = None,
    keep: str = "both",
    grace_s: float = DEFAULT_GRACE_S,
    handle: ProcessHandle | None = None,
) -> BoxResult:
    """Run ``argv`` (no shell) in a box whose only writable path is ``worktree``; see the module docstring.

    :param isolation: ``"auto"``, ``"bwrap"`` or ``"none"`` (:func:`resolve_isolation`).
    :param cwd: working directory, inside ``worktree`` (default: the worktree).
    :param network: share the worker's network (loopback included); default: no network at all.
    :param env: explicit variables (the Claude Code CLI's key and base URL...), set last.
    :param pass_env: names (or ``PREFIX*``) of worker variables the DAG author lets in.
    :param hide: more paths to hide (other worktrees, clone caches).
    :param ro_binds: paths to show read-only even inside a hidden place (a tool installed under ``$HOME``).
    :param limits: resource limits (``None``: none). Not applied with ``isolation="none"``.
    The other parameters are :func:`~airflow_provider_worktree.core.sandbox.proc.run_process`'s.
    :raises FileNotFoundError: ``argv[0]`` is not found on the box's ``PATH`` (nothing was started).
    :raises IsolationUnavailable: ``isolation="bwrap"`` and bubblewrap does not work here.
    """
    argv = [os.fspath(a) for a in argv]
    if not argv:
        raise ConfigurationError("the command to run is empty; pass an argv such as ['pytest', '-q'].")
    mode = resolve_isolation(isolation)
    root = os.path.realpath(os.fspath(worktree))
    if not os.path.isdir(root):
        raise FileNotFoundError(2, "worktree is not a directory", root)
    work = os.path.realpath(os.fspath(cwd)) if cwd is not None else root
    if not is_within(work, root):
        raise ConfigurationError(f"the box's working directory {work} is outside its worktree {root}; run inside it.")
    # bubblewrap's HOME and /tmp are tmpfs inside the box; the others get a private directory removed afterwards.
    private = None if mode == "bwrap" else tempfile.mkdtemp(prefix="wt-box-")
    cgroup: PidsCgroup | None = None
    try:
        if private is None:
            home, tmp = BOX_HOME, _BOX_TMP
        else:
            home, tmp = os.path.join(private, "home"), os.path.join(private, "tmp")
            os.mkdir(home, 0o700)
            os.mkdir(tmp, 0o700)
        child_env = box_env(pass_env, env, home=home, tmp=tmp)
        exe = _which(argv[0], child_env["PATH"], work)
        if exe is None:
            raise FileNotFoundError(2, f"executable not found: {argv[0]!r}", argv[0])
        rlimits = limits.rlimits() if limits is not None else {}
        if mode == "bwrap":
            # bwrap itself gets the box's environment: it is what /proc/1/environ shows inside.
            full = [_bwrap_path() or "bwrap", *_namespace_args(network=network),
                    *_mount_args(root, hide, ro_binds, exe), "--chdir", work, "--", *argv]
        elif mode == "fallback":
            if "RLIMIT_NPROC" in rlimits:  # the kernel counts every process of the user: add what is running
                rlimits["RLIMIT_NPROC"] += count_user_processes()
            full = [sys.executable, "-I", "-S", _REAPER, json.dumps(rlimits), "--", *argv]
            rlimits = {}  # the reaper sets them, after it has started
            grace_s = max(grace_s, 1.0)  # the reaper cleans up on SIGTERM: give it a moment before any SIGKILL
        else:
            full, rlimits = argv, {}
        cgroup = _root_pids_cgroup(limits, mode)
        done = run_process(full, work, timeout=timeout, env=child_env, input=input, merge_stderr=merge_stderr,
                           max_output_chars=max_output_chars, keep=keep, grace_s=grace_s, handle=handle,
                           rlimits=rlimits, cgroup_procs=cgroup.procs if cgroup is not None else None)
    finally:
        if cgroup is not None and not cgroup.remove():
            log.warning("the box's cgroup %s could not be removed (processes still in it)", cgroup.path)
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
    values = {f.name: getattr(done, f.name) for f in fields(ProcessResult)}
    values["argv"] = tuple(argv)
    return BoxResult(**values, isolation=mode)


# ------------------------------------------------------------------------------------------------ helpers
def _which(program: str, path: str, cwd: str) -> str | None:
    if os.sep in program:
        candidate = program if os.path.isabs(program) else os.path.join(cwd, program)
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    return shutil.which(program, path=path)


def _namespace_args(*, network: bool) -> list[str]:
    args = ["--die-with-parent", "--new-session", "--unshare-user", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "box", "--cap-drop", "ALL"]
    if not network:
        args.append("--unshare-net")
    return args


def _hidden_places(extra: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Real paths hidden in the bubblewrap box (existing ones only), deepest last."""
    places = [_account_home(), os.path.expanduser("~"), os.environ.get("HOME", ""), os.environ.get("AIRFLOW_HOME", "")
              or os.path.expanduser("~/airflow"),
              os.environ.get("AIRFLOW__WORKTREE__WORKTREE_ROOT", ""), os.environ.get("AIRFLOW__WORKTREE__CACHE_DIR", ""),
              os.environ.get("AIRFLOW_CONFIG", ""), *_SECRET_MOUNTS, *(os.fspath(p) for p in extra)]
    out: list[str] = []
    for p in places:
        if not p:
            continue
        real = os.path.realpath(os.path.expanduser(p))
        if real == "/" or is_within(real, _BOX_TMP) or not os.path.lexists(real) or real in out:
            continue
        out.append(real)
    return sorted(out, key=lambda p: p.count(os.sep))


def _account_home() -> str:
    """The worker user's home from the password database (``$HOME`` may have been changed)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError):
        return ""


def _needed_paths(root: str, exe: str) -> list[str]:
    """What a command needs even when it lies in a hidden place: the interpreter this worker runs on (and its
    user site), the directories on ``PATH``, the executable's real directory, the worktree's git metadata."""
    needed = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(exe))]
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site:
        needed.append(user_site)
    needed += [p for p in os.environ.get("PATH", "").split(os.pathsep) if os.path.isabs(p)]
    needed += _git_dirs(root)
    return [os.path.realpath(p) for p in needed if p and os.path.exists(p)]


def _git_dirs(root: str) -> list[str]:
    """A linked worktree's ``.git`` file names its admin directory, whose ``commondir`` is the repository."""
    try:  # the worktree is writable by the box: its .git may have become a FIFO or a link to /dev/zero
        head = read_repo_bytes(root, ".git", max_bytes=4096).decode("utf-8", "replace")
    except (OSError, SandboxViolation):
        return []
    if not head.startswith("gitdir:"):
        return []
    admin = os.path.normpath(os.path.join(root, head[len("gitdir:"):].strip()))
    out = [admin]
    try:
        with open(os.path.join(admin, "commondir"), "rb") as fh:
            out.append(os.path.normpath(os.path.join(admin, fh.read(4096).decode("utf-8", "replace").strip())))
    except OSError:
        pass
    return out


def _mount_args(root: str, hide: Iterable[str | os.PathLike[str]], ro_binds: Iterable[str | os.PathLike[str]],
                exe: str) -> list[str]:
    args = ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", _BOX_TMP, "--dir", BOX_HOME]
    hidden = _hidden_places(hide)
    for place in hidden:
        if os.path.isdir(place):
            args += ["--tmpfs", place]
        else:
            args += ["--ro-bind", "/dev/null", place]
    back = []
    for p in [*_needed_paths(root, exe), *(os.path.realpath(os.fspath(p)) for p in ro_binds)]:
        # Only what a hidden place covers, never a hidden place itself (or one of its parents).
        covered = any(is_within(p, h) and p != h for h in hidden) or is_within(p, _BOX_TMP)
        if covered and not any(is_within(h, p) for h in hidden) and p not in back and not is_within(p, root):
            back.append(p)
    for p in sorted(back, key=lambda p: p.count(os.sep)):
        args += ["--ro-bind", p, p]
    return args + ["--bind", root, root]

