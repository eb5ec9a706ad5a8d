"""core/proc.py with real processes: group kills on timeout and cancel, output capture and truncation."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import pid_alive as _alive

from airflow_provider_worktree.core.sandbox import proc as P
from airflow_provider_worktree.core.sandbox.proc import ProcessHandle, kill_process_group, run_process

PY = sys.executable


def _wait_dead(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _spawner(pid_file: Path, then: str = "time.sleep(60)") -> list[str]:
    """A child that starts a sleeping grandchild, writes its pid, then runs ``then``."""
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); {then}")
    return [PY, "-c", code]


def _read_pid(pid_file: Path, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = pid_file.read_text() if pid_file.exists() else ""
        if text.strip():
            return int(text)
        time.sleep(0.05)
    raise AssertionError(f"{pid_file} was not written")


def test_timeout_kills_the_child_and_its_grandchild(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    res = run_process(_spawner(pid_file), tmp_path, timeout=1.5, grace_s=0.5)
    assert res.timed_out and res.returncode is None and res.started and not res.cancelled
    assert res.duration_s >= 1.5
    assert not _alive(res.pid)
    assert _wait_dead(_read_pid(pid_file)), "the grandchild survived the timeout"


def test_sigterm_first_then_sigkill_after_the_grace(tmp_path):
    polite = [PY, "-c", "import time; print('up', flush=True); time.sleep(60)"]
    res = run_process(polite, tmp_path, timeout=0.5, grace_s=5)
    assert res.timed_out and res.stdout == "up\n"

    stubborn = [PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ignoring', flush=True); time.sleep(60)"]
    t0 = time.monotonic()
    res = run_process(stubborn, tmp_path, timeout=0.5, grace_s=1.0)
    elapsed = time.monotonic() - t0
    assert res.timed_out and 1.4 <= elapsed and not _alive(res.pid)  # it waited the grace, then SIGKILL


def test_a_grandchild_holding_stdout_does_not_block_and_is_cleaned_up(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    res = run_process(_spawner(pid_file, then="print('leader done')"), tmp_path, timeout=30)
    assert res.returncode == 0 and not res.timed_out and "leader done" in res.stdout
    assert _wait_dead(_read_pid(pid_file)), "the leader's background child outlived the command"


def test_cancel_from_another_thread_kills_the_group_and_sticks(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    handle = ProcessHandle(grace_s=0.5)
    assert not handle.running and not handle.cancelled
    threading.Timer(1.0, handle.cancel).start()
    res = run_process(_spawner(pid_file), tmp_path, timeout=60, handle=handle)
    assert res.cancelled and res.started and not res.timed_out and res.returncode is not None
    assert handle.cancelled and not handle.running
    assert _wait_dead(_read_pid(pid_file)), "the grandchild survived the cancel"
    # cancelling is final: the next run does not start
    again = run_process([PY, "-c", "print('never')"], tmp_path, timeout=5, handle=handle)
    assert again.cancelled and not again.started and again.pid is None and again.stdout == ""


def test_missing_executable_and_missing_cwd_raise_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_process(["definitely-not-a-command-xyz"], tmp_path, timeout=5)
    with pytest.raises(FileNotFoundError):
        run_process([PY, "-c", "pass"], tmp_path / "nope", timeout=5)
    handle = ProcessHandle()
    with pytest.raises(FileNotFoundError):
        run_process(["definitely-not-a-command-xyz"], tmp_path, timeout=5, handle=handle)
    assert not handle.running and not handle.cancelled


def test_output_capture_input_env_and_stderr(tmp_path):
    code = ("import os, sys; data = sys.stdin.read(); print(len(data), os.environ.get('PROC_TEST')); "
            "sys.stderr.write('to stderr\\n'); sys.exit(3)")
    big_input = "é" * 200_000  # more than a pipe buffer, and not ASCII
    res = run_process([PY, "-c", code], tmp_path, timeout=30, input=big_input,
                      env={**os.environ, "PROC_TEST": "yes"})
    assert res.returncode == 3 and res.stdout == "200000 yes\n" and res.stderr == "to stderr\n"
    merged = run_process([PY, "-c", code], tmp_path, timeout=30, merge_stderr=True)
    assert "0 None" in merged.stdout and "to stderr" in merged.stdout and merged.stderr == ""
    assert merged.argv == (PY, "-c", code)


def test_output_truncation_keeps_head_and_tail_or_only_the_tail(tmp_path):
    code = "print('A' * 50 + 'x' * 5000 + 'Z' * 50)"
    both = run_process([PY, "-c", code], tmp_path, timeout=30, max_output_chars=200)
    assert both.stdout.startswith("A" * 50) and both.stdout.endswith("Z" * 50 + "\n")
    assert "characters cut" in both.stdout and len(both.stdout) < 260
    tail = run_process([PY, "-c", code], tmp_path, timeout=30, max_output_chars=100, keep="tail")
    assert tail.stdout == "x" * 49 + "Z" * 50 + "\n"
    assert P.truncate_middle("short", 10) == "short"
    with pytest.raises(ValueError):
        run_process([PY, "-c", "pass"], tmp_path, timeout=5, keep="middle")


def test_kill_process_group_tolerates_a_dead_group(tmp_path):
    proc = subprocess.Popen([PY, "-c", "pass"], cwd=tmp_path, start_new_session=True)
    proc.wait()
    kill_process_group(proc, grace_s=1)   # already gone: no error, no wait
    kill_process_group(proc, grace_s=0)
    kill_process_group(proc.pid, grace_s=1)


def test_core_proc_imports_no_airflow():
    tree = ast.parse(Path(P.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] == "airflow"]


def test_rlimits_are_set_in_the_child_and_never_above_the_hard_limit(tmp_path):
    import resource

    code = ("import resource; print(resource.getrlimit(resource.RLIMIT_FSIZE), "
            "resource.getrlimit(resource.RLIMIT_NOFILE))")
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    asked = hard_nofile + 1000 if hard_nofile != resource.RLIM_INFINITY else 4096
    res = run_process([sys.executable, "-c", code], tmp_path, timeout=30,
                      rlimits={"RLIMIT_FSIZE": 12345, "RLIMIT_NOFILE": asked})
    fsize, nofile = res.stdout.strip().split(") (")
    assert fsize == "(12345, 12345"
    expected = min(asked, hard_nofile) if hard_nofile != resource.RLIM_INFINITY else asked
    assert nofile == f"{expected}, {expected})"
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] != 12345  # the parent is untouched


def test_count_user_processes_counts_ours(tmp_path):
    before = P.count_user_processes()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert P.count_user_processes() >= 1 and before >= 1
        assert P.count_user_processes(uid=2 ** 31 - 7) == 0
    finally:
        child.kill()
        child.wait()


def test_cancel_uses_at_least_the_runs_grace(tmp_path):
    """A handle with no grace still lets a first process that cleans up on SIGTERM do so (the box's reaper)."""
    flag = tmp_path / "cleaned"
    code = ("import signal, sys, time\n"
            f"def bye(*a):\n    open({str(flag)!r}, 'w').write('1'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    handle = ProcessHandle(grace_s=0)
    threading.Timer(1.5, handle.cancel).start()
    res = run_process([sys.executable, "-c", code], tmp_path, timeout=30, grace_s=3, handle=handle)
    assert res.cancelled and flag.exists()
