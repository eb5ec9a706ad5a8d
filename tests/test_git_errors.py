"""Failures of git and of the system: summarised cause-first and bounded; nothing left behind.

A real full disk (a 1 MiB tmpfs), real SIGKILLed and timed-out git commands, real repositories.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from airflow_provider_worktree.core.errors import GitError, summarize_error
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

RUN = "manual__2026-11-29T01:00:00+00:00"


def git(cwd, *args, check=True) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True).stdout


def branches(repo: Path, pattern: str = "refs/heads/worktree") -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", pattern).split()


@pytest.fixture
def mgr(git_repo, tmp_path) -> WorktreeManager:
    return WorktreeManager(git_repo, worktree_root=tmp_path / "wt")


# ------------------------------------------------------------------------------------------ summaries
def test_summary_puts_the_cause_first_and_is_bounded():
    lines = [f"error: unable to write file pkg/mod_{i:04d}.py" for i in range(1600)]
    lines.insert(800, "fatal: sha1 file '.git/objects/ab/cdef' write error: No space left on device")
    text = "\n".join(lines)
    out = summarize_error(text, limit=600)
    first = out.splitlines()[0]
    assert first.startswith("No space left on device: fatal: sha1 file")
    assert len(out) <= 600 and len(out.splitlines()) <= 6
    assert "more lines" in out.splitlines()[-1]


@pytest.mark.parametrize("text,cause", [
    ("fatal: Unable to create '/r/.git/index.lock': File exists.\n\nAnother git process seems to be running",
     "could not lock"),
    ("fatal: not a git repository (or any of the parent directories): .git", "not a git repository"),
    ("error: open(\"x\"): Permission denied\nfatal: unable to index file 'x'", "Permission denied"),
    ("warning: something\nfatal: detected dubious ownership in repository at '/r'", "Repository owned by"),
])
def test_summary_names_known_causes(text, cause):
    assert summarize_error(text).splitlines()[0].startswith(cause)


def test_summary_of_repeated_and_undecodable_output():
    text = "error: x\n" * 500 + "caf\udce9 broken\n"
    out = summarize_error(text)
    assert out.count("error: x") == 1 and "caf\\xe9" in out
    out.encode("utf-8")  # storable
    assert summarize_error("") == ""


def test_git_error_message_is_summarised(mgr, tmp_path):
    with pytest.raises(GitError) as err:
        mgr.git(["rev-parse", "--verify", "no-such-ref^{commit}"])
    assert "failed (exit 128)" in str(err.value).splitlines()[0]


# ------------------------------------------------------------------------------------------ full disk
@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here ({proc.stderr.strip() or 'not root'}); the full-disk "
                    "test needs root or CAP_SYS_ADMIN")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_error_says_so_first_and_leaves_nothing(repo_factory, tiny_fs):
    files = {f"pkg/blob_{i:03d}.txt": (f"{i} " * 4000) for i in range(150)}  # ~1.6 MB in the worktree
    repo = repo_factory("big", files)
    m = WorktreeManager(repo, worktree_root=tiny_fs / "wt")
    before_refs = git(repo, "for-each-ref")
    with pytest.raises(GitError) as err:
        m.create_worktree(RUN, "full")
    message = str(err.value)
    assert "No space left on device" in message.splitlines()[0], message
    assert len(message) < 2500 and len(message.splitlines()) <= 8
    # Nothing left: no branch, no registered worktree, no directory.
    assert git(repo, "for-each-ref") == before_refs
    assert branches(repo) == []
    assert [w.path for w in m.list_worktrees()] == [str(repo)]
    assert not any((tiny_fs / "wt").rglob("*")) if (tiny_fs / "wt").exists() else True


# ------------------------------------------------------------------------------------------ no leftovers
def test_failed_shard_leaves_no_empty_branch(mgr, git_repo):
    empty = mgr.create_worktree(RUN, "failed-empty")
    dirty = mgr.create_worktree(RUN, "failed-dirty")
    Path(dirty.path, "half.txt").write_text("half done\n")
    kept = mgr.create_worktree(RUN, "kept")
    done = mgr.create_worktree(RUN, "done")
    Path(done.path, "README.md").write_text("done\n")
    mgr.commit(done.path, "done", {})

    r1 = mgr.remove_worktree(empty.path, force=True)
    r2 = mgr.remove_worktree(dirty.path, force=True)
    r3 = mgr.remove_worktree(kept.path, keep_branch=True)
    r4 = mgr.remove_worktree(done.path)
    assert r1.branch_deleted and r2.branch_deleted and not r3.branch_deleted and not r4.branch_deleted
    assert sorted(branches(git_repo)) == sorted([kept.branch, done.branch])
    assert git(git_repo, "show", f"{r2.salvage_branch}:half.txt") == "half done\n"  # the work is kept


def _admin_dir(git_repo: Path, wt_path: str) -> Path:
    text = Path(wt_path, ".git").read_text()
    return Path(text.split(":", 1)[1].strip())


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.005)
    return path.exists()


def test_own_sigkilled_git_leaves_index_lock_and_removal_still_works(mgr, git_repo):
    info = mgr.create_worktree(RUN, "killed")
    big = Path(info.path, "big.bin")
    with open(big, "wb") as fh:
        fh.truncate(16 << 30)  # sparse: hashing it takes seconds, it takes no disk
    lock = _admin_dir(git_repo, info.path) / "index.lock"
    proc = subprocess.Popen(["git", "add", "big.bin"], cwd=info.path, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lock, proc), "git add finished before it could be killed"
    finally:
        proc.kill()
        proc.wait()
    assert lock.exists(), "precondition: SIGKILL leaves index.lock"
    big.unlink()
    Path(info.path, "note.txt").write_text("after the kill\n")
    res = mgr.remove_worktree(info.path, force=True)
    assert res.removed and not lock.exists() and not Path(info.path).exists()
    assert git(git_repo, "show", f"{res.salvage_branch}:note.txt") == "after the kill\n"


def test_timed_out_git_is_stopped_and_the_worktree_can_be_removed(mgr, git_repo):
    info = mgr.create_worktree(RUN, "slow")
    admin = _admin_dir(git_repo, info.path)
    big = Path(info.path, "big.bin")
    with open(big, "wb") as fh:
        fh.truncate(16 << 30)
    mgr.git_timeout = 0.5
    try:
        with pytest.raises(GitError) as err:
            mgr.commit(info.path, "too big", {})
    finally:
        mgr.git_timeout = 120
    assert err.value.timed_out and "timed out" in str(err.value).splitlines()[0]
    big.unlink()
    res = mgr.remove_worktree(info.path, force=True)
    assert res.removed and not Path(info.path).exists() and not admin.exists()


def test_a_live_lock_holder_is_not_robbed(mgr, git_repo):
    """A lock file some live process holds open is left alone (the removal then reports git's error)."""
    info = mgr.create_worktree(RUN, "held")
    lock = _admin_dir(git_repo, info.path) / "index.lock"
    holder = subprocess.Popen(["sh", "-c", f"exec 3>'{lock}'; sleep 60"])
    try:
        deadline = time.monotonic() + 10
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        Path(info.path, "x.txt").write_text("x\n")
        with pytest.raises(GitError, match="could not lock|index.lock"):
            mgr.remove_worktree(info.path, force=True)
        assert lock.exists() and Path(info.path, "x.txt").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_git_failure_is_one_line_with_the_cause_and_the_fix_and_changes_nothing(git_repo, tmp_path):
    """Issue 23: a stale ref lock left by a dead git process; the error is one line naming the cause and the fix
    (git's own output stays in ``.stderr``), and the repository is as it was."""
    from airflow_provider_worktree.core.errors import GitError
    from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

    manager = WorktreeManager(git_repo, worktree_root=tmp_path / "wt")
    branch = manager.default_branch("run-lock", "s1")
    lock = git_repo / ".git" / "refs" / "heads" / (branch + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    before = [subprocess.run(["git", "-C", str(git_repo), *a], capture_output=True, text=True).stdout
              for a in (["for-each-ref"], ["worktree", "list", "--porcelain"], ["status", "--porcelain"])]
    with pytest.raises(GitError) as info:
        manager.create_worktree("run-lock", "s1")
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    assert "could not lock" in message and "remove it once no git runs there" in message
    assert info.value.stderr, "git's own output is kept"
    after = [subprocess.run(["git", "-C", str(git_repo), *a], capture_output=True, text=True).stdout
             for a in (["for-each-ref"], ["worktree", "list", "--porcelain"], ["status", "--porcelain"])]
    assert after == before, "nothing half-made is left"


def test_a_read_only_worktree_root_leaves_the_repository_as_it_was(git_repo, tmp_path):
    """Issue 23: the worktree root on a read-only file system (a read-only bind mount made with bubblewrap, so it
    holds for root too): one line naming the cause and the fix, and no branch or worktree entry left behind."""
    import shutil
    import sys

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap makes the read-only mount here; it is not installed")
    root = tmp_path / "ro-root"
    root.mkdir()
    code = ("import sys, subprocess\n"
            "from airflow_provider_worktree.core.worktrees.manager import WorktreeManager\n"
            "try:\n"
            "    WorktreeManager(sys.argv[1], worktree_root=sys.argv[2]).create_worktree('run-ro', 's1')\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n")
    state = [subprocess.run(["git", "-C", str(git_repo), *a], capture_output=True, text=True).stdout
             for a in (["for-each-ref"], ["worktree", "list", "--porcelain"])]
    done = subprocess.run(["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(root), str(root), sys.executable, "-c",
                           code, str(git_repo), str(root)], capture_output=True, text=True, timeout=120)
    if "Read-only file system" not in done.stdout and "setting up uid map" in done.stderr + done.stdout:
        pytest.skip(f"bubblewrap cannot make mounts here: {done.stderr.strip()[-200:]}")
    line = done.stdout.strip()
    assert line.startswith("GitError") and "\n" not in line, done.stdout + done.stderr
    assert "Read-only file system" in line and "point [worktree] worktree_root at a writable one" in line
    assert [subprocess.run(["git", "-C", str(git_repo), *a], capture_output=True, text=True).stdout
            for a in (["for-each-ref"], ["worktree", "list", "--porcelain"])] == state
