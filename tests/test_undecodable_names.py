"""File names and arguments that are not valid UTF-8 (issue 23): real repositories have them and git prints them as
raw bytes. A verify command that writes such a file leaves a completed shard with its usage recorded, the file
listed as not committed and no worktree behind; such an argument to the command tool or the editor is a tool error
or a plain result, never an exception that ends the run."""

from __future__ import annotations

import os
import sys

import anthropic

from airflow_provider_worktree.core.lifecycle import ShardConfig, run_shard
from airflow_provider_worktree.core.planning import plan_shards
from airflow_provider_worktree.core.runners import ApiRunner
from airflow_provider_worktree.core.sandbox import CommandTool, TextEditorTool
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.tasks import get_task
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

RUN = "manual__2026-12-07T00:00:00+00:00"


def test_a_verify_that_writes_an_undecodable_name_loses_nothing(git_repo, tmp_path, server):
    store = ShardStore.open(str(tmp_path / "shard_status.db"))
    manager = WorktreeManager(git_repo, worktree_root=tmp_path / "worktrees")
    shard = plan_shards(str(git_repo), "todo", max_files=5)[0]
    verify = [sys.executable, "-c", "open(b'caf\\xe9.txt', 'wb').write(b'x')"]
    runner = ApiRunner(anthropic.Anthropic(api_key="sk-ant-test", base_url=server.base_url), "claude-sonnet-4-6")
    result = run_shard(shard, RUN, task=get_task("todo"), manager=manager, runner=runner, store=store,
                       config=ShardConfig(verify_command=verify, isolation="none"))
    assert result.status == "completed" and result.commit_sha
    assert result.excluded_files == ["caf\udce9.txt"], "listed, not committed"
    row = store.get_shard(RUN, shard["shard_id"])
    assert row["status"] == "completed" and row["output_tokens"] > 0, "the usage record is kept"
    assert not any((tmp_path / "worktrees").rglob("*.py")), "no worktree left"
    assert len(manager.list_worktrees()) == 1


def test_undecodable_arguments_are_tool_results_not_exceptions(git_repo):
    tool = CommandTool(git_repo, [["cat"]], 30, isolation="none")
    for command in ("cat caf\udce9.txt", ["cat", "caf\udce9.txt"]):
        res = tool.execute({"command": command})
        assert "No such file" in res.content and "exit code: 1" in res.content
    editor = TextEditorTool(git_repo)
    for call in ({"command": "view", "path": "caf\udce9.txt"},
                 {"command": "create", "path": "b\udce9.py", "file_text": "x = 1\n"}):
        res = editor.execute(call)
        assert res.is_error and "lone surrogate" in res.content
    assert not os.path.exists(os.path.join(os.fsencode(git_repo), b"b\xed\xb3\xa9.py"))
