"""Process trees the scripts start and stop: descendants, signals to whole trees, free ports, logs.

Standard library only: the smoke run imports it before any venv exists."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path



# ------------------------------------------------------------------------------------------- processes
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (by parent pid), whatever process group it moved to."""
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal_tree(pids: list[int], sig: int) -> None:
    groups = set()
    for p in pids:
        try:
            groups.add(os.getpgid(p))
        except OSError:
            pass
    for g in groups:
        if g > 1 and g != os.getpgrp():
            try:
                os.killpg(g, sig)
            except OSError:
                pass
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    stopped: bool = False


class Processes:
    """Long-lived processes, each in its own session (so it and what it forks share a process group)."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict, log_path: Path, cwd: Path | None = None) -> Proc:
        fh = open(log_path, "ab")
        popen = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=cwd, start_new_session=True)
        fh.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        log(f"started {name} (pid {popen.pid}), log {log_path}")
        return proc

    def kill_tree(self, proc: Proc, group_only: bool = False) -> list[int]:
        """SIGKILL the process, its group and every descendant (in whatever group), like a host dying.

        ``group_only``: only the process's own group; Airflow's task processes, which move to groups of
        their own, survive as orphans (a worker crash that is not a host crash)."""
        pids = [proc.popen.pid] + descendants(proc.popen.pid)
        if group_only:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            pids = [p for p in pids if _pgid(p) == proc.popen.pid]
        else:
            _signal_tree(pids, signal.SIGKILL)
        proc.popen.wait(timeout=30)
        proc.stopped = True
        return pids

    def stop(self, proc: Proc, timeout: float = 25.0) -> None:
        if proc.stopped:
            return
        pids = [proc.popen.pid] + descendants(proc.popen.pid)
        _signal_tree(pids, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            try:
                proc.popen.wait(timeout=0.3)
            except subprocess.TimeoutExpired:
                pass
        left = [p for p in pids if _alive(p)]
        if left:
            log(f"{proc.name}: {len(left)} process(es) ignored SIGTERM for {timeout:.0f}s; SIGKILL")
            _signal_tree(left, signal.SIGKILL)
        try:
            proc.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        proc.stopped = True

    def stop_all(self) -> None:
        live = [p for p in reversed(self.procs) if not p.stopped]
        # workers first (warm shutdown), then the rest; each one's whole tree
        for proc in sorted(live, key=lambda p: 0 if p.name.startswith("worker") else 1):
            self.stop(proc)
        if live:
            log("stopped: " + ", ".join(p.name for p in live))

    def check_alive(self, names: list[str] | None = None) -> None:
        for p in self.procs:
            if not p.stopped and (names is None or p.name in names) and p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with status {p.popen.returncode}; see {p.log_path}:\n"
                                   + tail(p.log_path))


def tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv: list[str], env: dict | None = None, cwd: Path | None = None, timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc


class Background:
    """Long-lived processes, each in its own session: it and everything it forks share a process group that
    stop_all signals as a whole; descendants that made groups of their own are found by parentage."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, log: Path, argv: list[str], env: dict) -> subprocess.Popen:
        with open(log, "wb") as fh:
            popen = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.procs.append((name, popen))
        return popen

    def stop_all(self) -> list[str]:
        """TERM every started process group and its stray descendants at once, wait up to 20 s for them
        all (3 s once every started process has exited, for orphans such as LocalExecutor workers waiting
        on a queue), then KILL what is left and reap. Returns the names of the processes stopped."""
        leaders = [p for _, p in self.procs if p.poll() is None]
        pids = [pid for p in leaders for pid in (p.pid, *descendants(p.pid))]
        _signal_tree(pids, signal.SIGTERM)
        deadline = time.monotonic() + 20
        leaders_gone = False
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            if not leaders_gone and all(p.poll() is not None for p in leaders):
                leaders_gone = True
                deadline = min(deadline, time.monotonic() + 3)
            time.sleep(0.3)
        left = [p for p in pids if _alive(p)]
        if left:
            _signal_tree(left, signal.SIGKILL)
        for _, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        names = [n for n, _ in self.procs]
        self.procs = []
        return names
