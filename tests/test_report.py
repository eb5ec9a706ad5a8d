"""Run reports and the integration branch, on real git repositories and a real SQLite shard database."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from airflow_provider_worktree.core.health.report import build_report, merge_branches, render_markdown, write_report
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

RUN = "manual__2026-11-28T05:00:00+00:00"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _shard_branch(m: WorktreeManager, shard: str, rel: str, text: str) -> str:
    wt = m.create_worktree(RUN, shard)
    Path(wt.path, rel).write_text(text)
    m.commit(wt.path, f"edit {rel}", {"Shard-Id": shard})
    m.remove_worktree(wt.path)
    return wt.branch


def test_report_totals_markdown_and_files(tmp_path):
    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    store.register_shards(RUN, [{"shard_id": f"s{i}", "task": "todo", "files": [f"f{i}.py"]} for i in range(3)])
    for i, ok in enumerate([True, True, False]):
        lease = store.assign_shard(RUN, "w:1", shard_id=f"s{i}")
        fields = {"branch": f"worktree/x/s{i}", "input_tokens": 100, "output_tokens": 10, "cost_usd": 0.01}
        if ok:
            store.complete(lease, commit_sha=f"{i:040d}", diffstat=" 1 file changed", **fields)
        else:
            store.fail(lease, "verification failed: 2 markers left", **fields)
    report = build_report(store, RUN)
    t = report["totals"]
    assert t["shards"] == 3 and t["by_status"] == {"completed": 2, "failed": 1}
    assert t["input_tokens"] == 300 and abs(t["cost_usd"] - 0.03) < 1e-9
    assert report["failed"] == [{"shard_id": "s2", "error": "verification failed: 2 markers left"}]
    md = render_markdown(report)
    assert "| s0 | completed |" in md and "## Failed shards" in md and "2 markers left" in md
    paths = write_report(report, tmp_path)
    assert Path(paths["markdown"]).read_text() == md and Path(paths["json"]).exists()


def test_integration_branch_merges_and_lists_conflicts(git_repo, tmp_path):
    m = WorktreeManager(git_repo, worktree_root=tmp_path / "wt")
    a = _shard_branch(m, "a", "src/app.py", "def add(a, b):\n    return a + b\n")
    b = _shard_branch(m, "b", "src/util.py", "def double(x):\n    return x * 2\n")
    c = _shard_branch(m, "c", "src/app.py", "def add(a, b):\n    return b + a\n")  # conflicts with a
    head_before = _git(git_repo, "rev-parse", "HEAD")
    result = merge_branches(m, [a, b, c], "maintenance/integration", run_id=RUN)
    assert result["merged"] == [a, b]
    assert result["conflicts"] == [{"branch": c, "files": ["src/app.py"], "error": ""}]
    assert _git(git_repo, "show", "maintenance/integration:src/util.py").endswith("x * 2")
    assert _git(git_repo, "rev-parse", "HEAD") == head_before, "the user's checkout is untouched"
    assert len(m.list_worktrees()) == 1


def test_integration_branch_on_a_remote_is_replaced_by_the_next_run(git_repo, tmp_path):
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(git_repo), str(remote)], check=True)
    url = f"file://{remote}"
    m = WorktreeManager(url, worktree_root=tmp_path / "wt", cache_dir=tmp_path / "cache")
    first = _shard_branch(m, "a", "src/app.py", "def add(a, b):\n    return a + b\n")
    m.push(first)
    r1 = merge_branches(m, [first], "maintenance/integration", run_id=RUN)
    assert r1["pushed"] and _git(remote, "rev-parse", "maintenance/integration") == r1["head"]
    # a second run rebuilds the branch from the base: it replaces the remote one instead of failing
    m2 = WorktreeManager(url, worktree_root=tmp_path / "wt2", cache_dir=tmp_path / "cache2")
    second = _shard_branch(m2, "b", "src/util.py", "def double(x):\n    return x * 2\n")
    m2.push(second)
    r2 = merge_branches(m2, [second], "maintenance/integration", run_id="manual__second")
    assert r2["merged"] == [second] and _git(remote, "rev-parse", "maintenance/integration") == r2["head"]


def test_shards_not_done_are_listed_with_why(tmp_path):
    """Issue 23: a run is not done while a shard was never claimed, is still running or went back to pending;
    the report lists each with the reason (the example DAG's report task fails on them)."""
    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    store.register_shards(RUN, [{"shard_id": s, "task": "todo", "files": [f"{s}.py"]}
                                for s in ("done", "never", "running", "reset")])
    store.complete(store.assign_shard(RUN, "w:1", shard_id="done"), commit_sha="a" * 40)
    store.assign_shard(RUN, "w:2", shard_id="running")
    store.assign_shard(RUN, "w:3", shard_id="reset")
    time.sleep(1.1)                            # lease timestamps may have one-second resolution
    reset = store.reset_stale(0.5, run_id=RUN)   # both running leases are older than half a second now
    assert {s["shard_id"] for s in reset} == {"running", "reset"}
    store.assign_shard(RUN, "w:2", shard_id="running")
    report = build_report(store, RUN)
    why = {u["shard_id"]: (u["status"], u["error"]) for u in report["unfinished"]}
    assert set(why) == {"never", "running", "reset"} and report["failed"] == []
    assert why["never"][0] == "pending" and why["never"][1].startswith("never claimed")
    assert why["running"][0] == "running" and "w:2" in why["running"][1]
    assert why["reset"][0] == "pending" and why["reset"][1].startswith("back to pending after 1 attempt")
    md = render_markdown(report)
    assert "## Shards not done" in md and "`never` (pending): never claimed" in md


def test_a_failed_verify_shows_the_end_of_its_output_marked_when_cut(tmp_path):
    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    store.register_shards(RUN, [{"shard_id": s, "task": "todo", "files": [f"{s}.py"]} for s in ("short", "long")])
    outputs = {"short": "E   ModuleNotFoundError: No module named 'freezegun'\n",
               "long": "".join(f"collecting line {n}\n" for n in range(200))[-2000:] + "1 failed in 0.2s\n"}
    for shard, tail in outputs.items():
        lease = store.assign_shard(RUN, "w:1", shard_id=shard)
        store.fail(lease, "verification failed: the verify command failed (exit 1): ...",
                   result_summary={"verify": {"ok": False, "returncode": 1, "output_tail": tail}})
    report = build_report(store, RUN)
    by_id = {s["shard_id"]: s for s in report["shards"]}
    assert by_id["short"]["verify_output"] == outputs["short"]
    assert by_id["long"]["verify_output"].startswith("[... earlier output cut: the task log has all of it]")
    assert by_id["long"]["verify_output"].endswith("1 failed in 0.2s\n")
    md = render_markdown(report)
    assert md.count("<details><summary>verify output (its end)</summary>") == 2 and "No module named 'freezegun'" in md
