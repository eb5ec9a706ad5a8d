"""Many worker processes on one repository; the inter-process lock; prune of dead owners' worktrees.

Every concurrent actor here is a real OS process (subprocess running the package), never a thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_provider_worktree.core.git.locks import InterProcessLock, LockTimeoutError, read_holder
from airflow_provider_worktree.core.git import LOCK_FILE_NAME
from airflow_provider_worktree.core.worktrees import WorktreeManager, pid_alive

ROOT = Path(__file__).resolve().parents[1]
RUN = "scheduled__2026-11-28T05:00:00+00:00"


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def run_py(code: str, *args: str, wait: bool = True, timeout: float = 300):
    cmd = [sys.executable, "-c", textwrap.dedent(code), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


WORKER = """
import json, os, sys, time
from pathlib import Path
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
repo, root, idx, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
m = WorktreeManager(repo, worktree_root=root, lock_timeout=240)
while not go.exists():
    time.sleep(0.005)
out = []
for rnd, sparse in ((1, None), (2, ["src/app.py", "README.md"])):
    shard = f"w{idx:02d}-r{rnd}"
    info = m.create_worktree("scheduled__2026-11-28T05:00:00+00:00", shard, sparse_paths=sparse)
    Path(info.path, f"out_{shard}.txt").write_text(f"worker {idx} round {rnd}\\n")
    res = m.commit(info.path, f"work of {shard}", {"Airflow-Run-Id": "scheduled__2026-11-28T05:00:00+00:00",
                                                   "Shard-Id": shard})
    rem = m.remove_worktree(info.path)
    out.append({"shard": shard, "branch": info.branch, "sha": res.sha, "removed": rem.removed})
print(json.dumps(out))
"""


@pytest.mark.timeout(600)
def test_32_processes_add_commit_remove_on_one_repo(git_repo, tmp_path):
    root = tmp_path / "wt"
    go = tmp_path / "go"
    procs = [run_py(WORKER, str(git_repo), str(root), str(i), str(go), wait=False) for i in range(32)]
    time.sleep(0.5)
    go.write_text("")
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=540)
        assert p.returncode == 0, stderr[-3000:]
        results += json.loads(stdout.strip().splitlines()[-1])
    assert len(results) == 64
    assert all(r["sha"] and r["removed"] for r in results)
    for r in results:
        assert git(git_repo, "rev-parse", r["branch"]).strip() == r["sha"]
        assert git(git_repo, "show", f"{r['sha']}:out_{r['shard']}.txt").startswith("worker ")
        trailers = git(git_repo, "log", "-1", "--format=%(trailers:key=Shard-Id,valueonly)", r["sha"]).strip()
        assert trailers == r["shard"]
    porcelain = git(git_repo, "worktree", "list", "--porcelain")
    assert porcelain.count("worktree ") == 1, porcelain
    assert git(git_repo, "worktree", "prune", "-n", "-v") == ""
    assert not root.exists() or not any(root.iterdir())
    assert git(git_repo, "status", "--porcelain") == ""
    git(git_repo, "fsck", "--no-progress")
    assert read_holder(Path(git_repo, ".git", LOCK_FILE_NAME)) is None  # released, nobody holds it


# ------------------------------------------------------------------------------------------ the lock
LOCK_HOLDER = """
import sys, time
from airflow_provider_worktree.core.git.locks import InterProcessLock
with InterProcessLock(sys.argv[1], purpose="holding for the test"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_lock_timeout_names_file_and_holder(tmp_path):
    path = tmp_path / "x.lock"
    holder = run_py(LOCK_HOLDER, str(path), "30", wait=False)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(LockTimeoutError) as err:
            InterProcessLock(path, timeout=0.3).acquire()
        assert 0.25 <= time.monotonic() - t0  # it waited for the holder before giving up
        msg = str(err.value)
        assert str(path) in msg and f"pid {holder.pid}" in msg and "holding for the test" in msg
        assert err.value.holder["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the dead holder's lock: no stale lock, no need to delete the file.
    with InterProcessLock(path, timeout=5) as lock:
        assert lock.locked and read_holder(path)["pid"] == os.getpid()
    assert read_holder(path) is None


COUNTER = """
import sys, time
from pathlib import Path
from airflow_provider_worktree.core.git.locks import InterProcessLock
lock, counter = InterProcessLock(sys.argv[1], timeout=120), Path(sys.argv[2])
for _ in range(20):
    with lock:
        with lock:  # re-entrant for the same object
            n = int(counter.read_text())
            time.sleep(0.001)
            counter.write_text(str(n + 1))
"""


def test_lock_excludes_processes(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [run_py(COUNTER, str(tmp_path / "c.lock"), str(counter), wait=False) for _ in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert counter.read_text() == "160"


# ------------------------------------------------------------------------------------------ dead owners
CREATOR = """
import json, sys
from pathlib import Path
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
m = WorktreeManager(sys.argv[1], worktree_root=sys.argv[2])
info = m.create_worktree(sys.argv[3], sys.argv[4], attempt=int(sys.argv[5]))
if sys.argv[6] == "dirty":
    Path(info.path, "unsaved.txt").write_text("work of a worker that died\\n")
print(json.dumps(info.to_dict()))
"""


def create_in_dead_process(repo: Path, root: Path, shard: str, dirty: bool = False, attempt: int = 1,
                           run_id: str = RUN) -> tuple[dict, int]:
    proc = run_py(CREATOR, str(repo), str(root), run_id, shard, str(attempt), "dirty" if dirty else "clean")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["owner"]["pid"] != os.getpid()
    return info, info["owner"]["pid"]


def test_prune_spares_live_owner_and_removes_dead_owner(git_repo, tmp_path):
    root = tmp_path / "wt"
    m = WorktreeManager(git_repo, worktree_root=root)
    dead, dead_pid = create_in_dead_process(git_repo, root, "dead-dirty", dirty=True)
    dead_clean, _ = create_in_dead_process(git_repo, root, "dead-clean")
    assert not pid_alive(dead_pid)
    live = m.create_worktree(RUN, "live")
    Path(live.path, "in-progress.txt").write_text("the live worker is still editing\n")
    foreign = tmp_path / "foreign"
    git(git_repo, "worktree", "add", "-q", "-b", "human", str(foreign))  # outside the root: never touched

    def snapshot():
        return (git(git_repo, "worktree", "list", "--porcelain"), git(git_repo, "for-each-ref"),
                sorted(str(p) for p in root.rglob("*")))

    before = snapshot()
    dry = m.prune(dry_run=True)
    assert snapshot() == before
    assert any(dead["path"] in a and "salvag" in a for a in dry.actions)
    assert any(dead_clean["path"] in a for a in dry.actions)
    assert not any(live.path in a for a in dry.actions)

    report = m.prune()
    assert sorted(report.removed) == sorted([dead["path"], dead_clean["path"]])
    assert not Path(dead["path"]).exists() and not Path(dead_clean["path"]).exists()
    assert Path(live.path, "in-progress.txt").exists()
    assert any(s["path"] == live.path and "alive" in s["reason"] for s in report.skipped)
    salvage = [s for s in report.salvaged if s["path"] == dead["path"]]
    assert len(salvage) == 1
    assert git(git_repo, "show", f"{salvage[0]['branch']}:unsaved.txt") == "work of a worker that died\n"
    paths = {w.path for w in m.list_worktrees()}
    assert paths == {str(git_repo), live.path, str(foreign)}
    # The dead workers' shard branches held no commit beyond their base: gone with their worktrees.
    assert sorted(report.branches_deleted) == sorted([dead["branch"], dead_clean["branch"]])
    assert git(git_repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/worktree").split() == [live.branch]

    # older_than: a dead owner's fresh worktree is left until it is old enough.
    young, _ = create_in_dead_process(git_repo, root, "young")
    assert young["path"] not in m.prune(older_than=3600).removed
    assert young["path"] in m.prune(older_than=0).removed


def test_prune_handles_deleted_directories_and_orphans(git_repo, tmp_path):
    root = tmp_path / "wt"
    m = WorktreeManager(git_repo, worktree_root=root)
    gone, _ = create_in_dead_process(git_repo, root, "gone")
    import shutil
    shutil.rmtree(gone["path"])  # directory deleted by hand, entry (locked) left in git
    orphan = root / "some-run" / "orphan-a1"
    orphan.mkdir(parents=True)
    (orphan / "left.txt").write_text("left behind\n")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    fresh = root / "some-run" / "fresh-a1"
    fresh.mkdir()

    dry = m.prune(dry_run=True)
    assert orphan.exists() and any(str(orphan) in a for a in dry.actions)
    report = m.prune()
    assert gone["path"] in report.removed
    assert str(orphan) in report.orphans_removed and not orphan.exists()
    snap = [s for s in report.salvaged if s["path"] == str(orphan)]
    assert git(git_repo, "show", f"{snap[0]['branch']}:left.txt") == "left behind\n"
    assert fresh.exists()  # too young to be judged an orphan
    assert {w.path for w in m.list_worktrees()} == {str(git_repo)}


def test_cleanup_all_skips_live_unless_forced(git_repo, tmp_path):
    root = tmp_path / "wt"
    m = WorktreeManager(git_repo, worktree_root=root)
    dead, _ = create_in_dead_process(git_repo, root, "dead", dirty=True)
    live = m.create_worktree(RUN, "live")
    Path(live.path, "wip.txt").write_text("wip\n")
    dry = m.cleanup_all(dry_run=True)
    assert Path(dead["path"]).exists() and len(dry.actions) == 1
    report = m.cleanup_all()
    assert report.removed == [dead["path"]] and len(report.salvaged) == 1
    assert Path(live.path).exists()
    forced = m.cleanup_all(force=True)
    assert forced.removed == [live.path]
    assert git(git_repo, "show", f"{forced.salvaged[0]['branch']}:wip.txt") == "wip\n"
    assert {w.path for w in m.list_worktrees()} == {str(git_repo)}


def test_retry_takes_over_from_a_dead_attempt(git_repo, tmp_path):
    """Attempt 1's worker died with uncommitted work; attempt 2 salvages it and starts from the base."""
    root = tmp_path / "wt"
    first, _ = create_in_dead_process(git_repo, root, "s1", dirty=True)
    m = WorktreeManager(git_repo, worktree_root=root)
    retry = m.create_worktree(RUN, "s1", attempt=2)
    assert retry.path != first["path"] and retry.branch == first["branch"]
    assert not Path(first["path"]).exists()
    salvage = [b for b in git(git_repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/worktree-salvage")
               .split()]
    assert len(salvage) == 1
    assert git(git_repo, "show", f"{salvage[0]}:unsaved.txt") == "work of a worker that died\n"


LIVE_CREATOR = """
import json, sys
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
m = WorktreeManager(sys.argv[1], worktree_root=sys.argv[2])
info = m.create_worktree(sys.argv[3], sys.argv[4])
print(json.dumps(info.to_dict()), flush=True)
sys.stdin.readline()  # stay alive until the test closes stdin
"""


def test_worktree_of_another_live_process_is_protected(git_repo, tmp_path):
    root = tmp_path / "wt"
    cmd = [sys.executable, "-c", textwrap.dedent(LIVE_CREATOR), str(git_repo), str(root), RUN, "busy"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        info = json.loads(proc.stdout.readline())
        m = WorktreeManager(git_repo, worktree_root=root)
        with pytest.raises(Exception, match=f"live process {proc.pid}.*force=True"):
            m.remove_worktree(info["path"])
        assert Path(info["path"]).exists()
        assert m.prune().removed == [] and m.cleanup_all().removed == []
        assert Path(info["path"]).exists()
        with pytest.raises(Exception, match=r"checked out in worktree .*busy-a1.*locked by pid"):
            m.create_worktree(RUN, "busy", attempt=2)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert m.prune().removed == [info["path"]]


def test_prune_clears_index_lock_left_by_a_killed_owner(git_repo, tmp_path):
    """A git command killed with its worker leaves index.lock in the worktree's admin dir; prune must still
    salvage the dirty work and remove the worktree (nobody alive can hold that lock)."""
    root = tmp_path / "wt"
    m = WorktreeManager(git_repo, worktree_root=root)
    dead, dead_pid = create_in_dead_process(git_repo, root, "killed-mid-git", dirty=True)
    assert not pid_alive(dead_pid)
    admin = Path(git(git_repo, "rev-parse", "--git-common-dir").strip())
    if not admin.is_absolute():
        admin = git_repo / admin
    lock = next(p for p in (admin / "worktrees").iterdir() if p.is_dir()) / "index.lock"  # the only one
    lock.write_text("")
    report = m.prune()
    assert dead["path"] in report.removed, report.errors
    assert not lock.exists()
    salvage = [s for s in report.salvaged if s["path"] == dead["path"]]
    assert git(git_repo, "show", f"{salvage[0]['branch']}:unsaved.txt") == "work of a worker that died\n"
