"""A pids cgroup per box: the process limit of a worker that runs as root.

The kernel does not apply ``RLIMIT_NPROC`` to root (real uid 0 outside every user namespace: bubblewrap run by
root maps the box's uid to 0 outside, whatever ``--uid`` says). A cgroup's ``pids.max`` applies to everyone, root
included, and is inherited by every descendant. :func:`open_pids_cgroup` makes one child cgroup per box under
the worker's own, in the first hierarchy that offers the ``pids`` controller and is writable: cgroup v2
(``cgroup.subtree_control`` enabling ``pids``) or a v1 ``pids`` hierarchy. The box's first process joins it
between fork and exec (:func:`~airflow_provider_worktree.core.sandbox.proc.run_process`'s ``cgroup_procs``), so
nothing it starts is outside; :meth:`PidsCgroup.remove` kills what is left and removes the directory.

Directories are named ``wt-box-<worker pid>-<random>``; those of a worker that is gone are removed when the next
box is made. Plain Python: no Airflow import.
"""

from __future__ import annotations

import os
import secrets
import signal
import time

__all__ = ["CgroupUnavailable", "PidsCgroup", "open_pids_cgroup"]

_PREFIX = "wt-box-"


class CgroupUnavailable(OSError):
    """No writable hierarchy with the ``pids`` controller here (the message says what was tried)."""


class PidsCgroup:
    """One box's cgroup: ``path`` (its directory), ``procs`` (the ``cgroup.procs`` file to join)."""

    def __init__(self, path: str, version: int) -> None:
        self.path = path
        self.version = version
        self.procs = os.path.join(path, "cgroup.procs")

    def __repr__(self) -> str:
        return f"PidsCgroup({self.path!r}, v{self.version})"

    def members(self) -> list[int]:
        try:
            with open(self.procs, "rb") as fh:
                return [int(x) for x in fh.read().split()]
        except (OSError, ValueError):
            return []

    def events_max(self) -> int:
        """How many forks ``pids.max`` refused so far."""
        try:
            with open(os.path.join(self.path, "pids.events"), "rb") as fh:
                for line in fh.read().decode().splitlines():
                    name, _, value = line.partition(" ")
                    if name == "max":
                        return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self, timeout: float = 5.0) -> bool:
        """SIGKILL whatever is still in the cgroup, then remove it; False if it could not be removed in time."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.members()
            for pid in pids:
                if pid != os.getpid():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            try:
                os.rmdir(self.path)
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)


#: Hierarchies (by directory) where a child process could join a box cgroup, probed once per process.
_joinable: dict[str, bool] = {}


def open_pids_cgroup(max_pids: int) -> PidsCgroup:
    """A new cgroup with ``pids.max = max_pids`` under this process's own; :class:`CgroupUnavailable` if none."""
    tried = []
    for version, parent in _candidates():
        try:
            cgroup = _make(version, parent, max_pids)
        except OSError as exc:
            tried.append(f"cgroup v{version} {parent}: {exc.strerror or exc}")
            continue
        if parent not in _joinable:
            _joinable[parent] = _can_join(cgroup)
        if _joinable[parent]:
            return cgroup
        cgroup.remove()
        tried.append(f"cgroup v{version} {parent}: a process cannot join a child cgroup there")
    raise CgroupUnavailable("no writable cgroup with the pids controller (" + ("; ".join(tried) or
                                                                         "no cgroup filesystem mounted") + ")")


def _can_join(cgroup: PidsCgroup) -> bool:
    """Whether a child process can move itself into ``cgroup`` (as the box's first process will)."""
    import subprocess
    import sys

    def join() -> None:
        fd = os.open(cgroup.procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], preexec_fn=join, timeout=30,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _make(version: int, parent: str, max_pids: int) -> PidsCgroup:
    _sweep(parent)
    path = os.path.join(parent, f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(path, 0o755)
    try:
        if not os.path.exists(os.path.join(path, "pids.max")) and version == 2:
            with open(os.path.join(parent, "cgroup.subtree_control"), "w") as fh:
                fh.write("+pids")
        if not os.path.exists(os.path.join(path, "pids.max")):
            raise OSError(0, "the pids controller is not enabled for child cgroups")
        with open(os.path.join(path, "pids.max"), "w") as fh:
            fh.write(str(int(max_pids)))
    except OSError:
        try:
            os.rmdir(path)
        except OSError:
            pass
        raise
    return PidsCgroup(path, version)


def _sweep(parent: str) -> None:
    """Remove the empty box cgroups of workers that are gone (a killed worker leaves its directory)."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(_PREFIX)]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name[len(_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        try:
            os.rmdir(os.path.join(parent, name))  # fails while processes are in it: then it stays
        except OSError:
            pass


def _candidates() -> list[tuple[int, str]]:
    """``(version, directory of this process's cgroup)`` for each mounted hierarchy that may hold ``pids``."""
    try:
        with open("/proc/self/cgroup") as fh:
            own = [line.rstrip("\n").split(":", 2) for line in fh if line.count(":") >= 2]
        with open("/proc/self/mountinfo") as fh:
            mounts = fh.read().splitlines()
    except OSError:
        return []
    v2_path = next((p for h, c, p in own if h == "0" and c == ""), None)
    v1_path = next((p for _h, c, p in own if "pids" in c.split(",")), None)
    out: list[tuple[int, str]] = []
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, point, fstype, options = fields[3], _unescape(fields[4]), tail[0], tail[2].split(",")
        if fstype == "cgroup2" and v2_path is not None:
            version, own_path = 2, v2_path
        elif fstype == "cgroup" and "pids" in options and v1_path is not None:
            version, own_path = 1, v1_path
        else:
            continue
        if own_path != root and not own_path.startswith(root.rstrip("/") + "/"):
            continue  # this mount does not show our cgroup
        directory = os.path.join(point, os.path.relpath(own_path, root))
        if os.path.isdir(directory) and (version, os.path.normpath(directory)) not in out:
            out.append((version, os.path.normpath(directory)))
    return sorted(out, key=lambda c: -c[0])  # v2 first


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
