"""scripts/harness/processes.py, the process-tree helpers the smoke run and the distributed run share: real
processes, each starting a grandchild in a session of its own (as Airflow's task processes do)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import wait_while

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from harness import processes  # noqa: E402

# A parent that starts a grandchild in a new session, writes the grandchild's pid, then waits; both ignore
# nothing, except where the test asks the parent to ignore SIGTERM.
TREE = r"""
import os, signal, subprocess, sys, time
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(300)
"""


def _start(tmp_path: Path, procs: processes.Processes, mode: str = "polite"):
    pid_file = tmp_path / f"child-{mode}.pid"
    proc = procs.start(f"tree-{mode}", [sys.executable, "-c", TREE, str(pid_file), mode], env={"PATH": "/usr/bin:/bin"},
                       log_path=tmp_path / f"{mode}.log")
    assert wait_while(lambda: not (pid_file.exists() and pid_file.read_text()), 30), \
        (tmp_path / f"{mode}.log").read_text()
    return proc, int(pid_file.read_text())


def _gone(pid: int, within: float = 10.0) -> bool:
    return wait_while(lambda: processes._alive(pid), within)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the harness reads the process table from /proc")
def test_descendants_and_kill_tree_reach_a_grandchild_in_another_session(tmp_path):
    procs = processes.Processes()
    proc, grandchild = _start(tmp_path, procs)
    try:
        assert grandchild in processes.descendants(proc.popen.pid)
        killed = procs.kill_tree(proc)
        assert proc.popen.pid in killed and grandchild in killed
        assert _gone(grandchild), "the grandchild outlived kill_tree"
        assert proc.stopped
    finally:
        procs.stop_all()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the harness reads the process table from /proc")
def test_group_only_spares_a_grandchild_in_its_own_group(tmp_path):
    procs = processes.Processes()
    proc, grandchild = _start(tmp_path, procs)
    try:
        killed = procs.kill_tree(proc, group_only=True)
        assert grandchild not in killed
        assert processes._alive(grandchild), "a process in its own group survives a worker crash"
    finally:
        processes._signal_tree([grandchild], 9)
        assert _gone(grandchild)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the harness reads the process table from /proc")
def test_stop_escalates_to_sigkill_and_check_alive_names_the_dead(tmp_path):
    procs = processes.Processes()
    stubborn, grandchild = _start(tmp_path, procs, "stubborn")
    procs.stop(stubborn, timeout=1.0)
    assert stubborn.popen.poll() is not None and _gone(grandchild)
    dead = procs.start("dies", [sys.executable, "-c", "print('bye'); raise SystemExit(3)"], env={},
                       log_path=tmp_path / "dies.log")
    dead.popen.wait(timeout=30)
    with pytest.raises(RuntimeError, match=r"(?s)dies exited with status 3.*bye"):
        procs.check_alive()
