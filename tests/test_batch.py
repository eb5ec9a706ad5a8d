"""Batch mode (issue 13) on real code: submit a run's shards as one Message Batch through the real ``anthropic``
SDK to the offline server (a test double), collect, apply each reply with the shard's lease, verify, commit.

Real parts: sources of a PyPI package nobody here wrote (attrs) in a fresh git repository, real worktrees, a real
SQLite shard database, real HTTP; the killed-submitter test kills a real process.
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import wait_while

from airflow_provider_worktree.core.runners.batch import (
    BatchCoordinator,
    BatchEntryRunner,
    BatchNotReady,
    batch_runner,
    build_request,
    custom_id_for,
)
from airflow_provider_worktree.core.lifecycle import ShardConfig, ShardFailed, run_shard
from airflow_provider_worktree.core.runners import ApiRunner, Budget, PriceTable
from airflow_provider_worktree.core.sandbox.editor import TextEditorTool
from airflow_provider_worktree.core.store import ShardStore
from airflow_provider_worktree.core.planning import plan_repository
from airflow_provider_worktree.core.tasks import get_task, parse_shard_block
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
from airflow_provider_worktree.testing import OfflineMessagesServer
from airflow_provider_worktree.testing.model import ScriptedModel, tool_use_reply

MODEL = "claude-sonnet-4-5"
RUN = "manual__batch"


def _client(server):
    import anthropic

    return anthropic.Anthropic(api_key="sk-offline-test", base_url=server.base_url, max_retries=0)


def _plan(repo: Path, n: int = 5, glob: str = "src/attr/_[cfv]*.py", max_files: int = 1) -> list[dict]:
    plan = plan_repository(repo, "docstrings", globs=[glob], include=[glob], max_files=max_files)
    assert len(plan.shards) >= min(n, 2), plan
    return plan.shards[:n]


def _apply(store, manager, server, shard, *, fallback="interactive", verify=None):
    task = get_task("docstrings")
    plan = batch_runner(store, RUN, shard["shard_id"], fallback=fallback,
                        interactive=lambda: ApiRunner(_client(server), MODEL, max_turns=10),
                        allowed_write=task.allowed_paths(shard))
    return run_shard(shard, RUN, task=task, manager=manager, runner=plan.runner, store=store,
                     config=ShardConfig(base_ref=plan.base_ref or "HEAD", verify_command=verify,
                                        heartbeat_interval=5))


def _store_and_manager(repo: Path, tmp_path: Path) -> tuple[ShardStore, WorktreeManager]:
    return ShardStore.open(str(tmp_path / "shards.db")), WorktreeManager(repo, tmp_path / "wt")


@pytest.fixture
def attrs_repo(real_repo_factory):
    return real_repo_factory("attrs")


def test_batch_run_on_real_code_costs_half_and_commits_per_shard(attrs_repo, tmp_path):
    store, manager = _store_and_manager(attrs_repo, tmp_path)
    # _make.py (91 kB): its shard's request is over max_prompt_bytes, so it runs interactively
    shards = _plan(attrs_repo, glob="src/attr/_[cfmv]*.py", max_files=2)
    with OfflineMessagesServer(batch_delay=3600) as server:
        coord = BatchCoordinator(store, _client(server), RUN, model=MODEL, max_tokens=8192,
                                 max_prompt_bytes=100_000)
        state = coord.submit(shards, manager=manager)
        interactive = set(state["interactive"])  # a file larger than one view is read chunk by chunk
        assert interactive and all("over max_prompt_bytes=100000" in store.batch_entry(RUN, i)["reason"]
                                   for i in interactive)
        queued = len(shards) - len(interactive)
        assert len(state["batch_ids"]) == 1 and state["entries"].get("queued") == queued >= 2, state
        assert not coord.collect()["collected"], "the batch is still running"
        with pytest.raises(BatchNotReady):
            batch_runner(store, RUN, shards[0]["shard_id"], interactive=lambda: None)
        assert coord.submit(shards, manager=manager)["batch_ids"] == state["batch_ids"], "submitting again resumes"
        server.finish_batches()
        state = coord.collect()
        assert state["collected"] and state["entries"].get("succeeded") == queued
        assert coord.collect()["cost_usd"] == state["cost_usd"], "collecting again records nothing twice"
        results = [_apply(store, manager, server, s) for s in shards]
        talked = {parse_shard_block(r["body"]["messages"][0]["content"][0]["text"])["shard_id"]
                  for r in server.message_requests()}
        assert talked == interactive, "only the shards left out of the batch called the API interactively"
    assert server.batch_creates == 1 and set(server.batch_bills.values()) == {1}
    assert len(server.batch_bills) == queued
    for res in results:
        assert res.status == "completed" and res.commit_sha, res
        if res.shard_id not in interactive:
            assert res.cost_usd == 0.0 and res.totals["cost_usd"] > 0, "the spend is the entry's, recorded once"
        show = subprocess.run(["git", "-C", str(attrs_repo), "show", "--stat", "--format=%B", res.commit_sha],
                              capture_output=True, text=True, check=True).stdout
        assert "Shard-Id: " + res.shard_id in show
    # the module docstrings and definitions gained docstrings, and every file still parses
    for res in results:
        for f in res.files_changed:
            text = subprocess.run(["git", "-C", str(attrs_repo), "show", f"{res.commit_sha}:{f}"],
                                  capture_output=True, text=True, check=True).stdout
            assert ast.get_docstring(ast.parse(text)) is not None
    # half price: the batch rows' cost is the list price of their tokens times 0.5
    batch_rows = [a for a in store.list_attempts(RUN) if a["status"] == "batch"]
    assert len(batch_rows) == queued and all(a["attempt"] == 0 for a in batch_rows)
    prices = PriceTable()
    from airflow_provider_worktree.core.runners import Usage

    for a in batch_rows:
        usage = Usage(a["input_tokens"], a["output_tokens"], a["cache_read_tokens"], a["cache_write_tokens"])
        assert a["cost_usd"] == pytest.approx(prices.cost(usage, MODEL) * 0.5, rel=1e-4)
    assert not [w for w in manager.list_worktrees() if w.managed], "no worktree left, the prompts' one included"


def test_requests_show_the_files_as_the_editor_does_and_respect_size_and_budget(attrs_repo, tmp_path):
    shard = _plan(attrs_repo, 1)[0]
    task = get_task("docstrings")
    req = build_request(shard, task, str(attrs_repo), model=MODEL, max_tokens=8192)
    assert req.status == "queued" and req.custom_id == custom_id_for(shard["shard_id"])
    views = req.params["messages"][2]["content"]
    editor = TextEditorTool(attrs_repo)
    for f, block in zip(shard["files"], views):
        assert block["content"] == editor.execute({"command": "view", "path": f}).content
    # a file larger than one view is shown whole, in consecutive views (as the agent loop reads it)
    big = {"shard_id": "big", "task": "docstrings", "files": ["src/attr/_make.py"]}
    whole = build_request(big, task, str(attrs_repo), model=MODEL, max_tokens=8192)
    calls = whole.params["messages"][1]["content"]
    assert whole.status == "queued" and len(calls) >= 2 and calls[1]["input"]["view_range"][1] == -1
    seen: dict[int, str] = {}
    for block in whole.params["messages"][2]["content"][:-1]:
        body = block["content"].rsplit("\n<response clipped", 1)
        rows = body[0].split("\n")[: -1 if len(body) == 2 else None]  # a clipped view's last line may be cut
        seen.update((int(r.split("\t", 1)[0]), r.split("\t", 1)[1]) for r in rows)
    text = (attrs_repo / "src/attr/_make.py").read_text()
    assert [seen[i] for i in sorted(seen)] == text.splitlines() and sorted(seen) == list(range(1, len(seen) + 1))
    # a range shard's file is shown from its first line at least to the end of the range (views stop there),
    # and the reply is told to edit only its range
    lines = len(text.splitlines())
    ranged = build_request({**big, "lines": [200, 900]}, task, str(attrs_repo), model=MODEL, max_tokens=8192)
    assert ranged.status == "queued" and len(ranged.params["messages"][1]["content"]) == 1, "one view covers 1-900"
    tail = build_request({**big, "lines": [lines - 50, lines]}, task, str(attrs_repo), model=MODEL, max_tokens=8192)
    assert len(tail.params["messages"][1]["content"]) == len(calls), "the last range needs the whole file"
    assert "edit only lines 200-900" in ranged.params["messages"][2]["content"][-1]["text"]
    small = build_request(shard, task, str(attrs_repo), model=MODEL, max_tokens=8192, max_prompt_bytes=1000)
    assert small.status == "interactive" and "max_prompt_bytes=1000" in small.reason and small.params is None
    poor = build_request(shard, task, str(attrs_repo), model=MODEL, max_tokens=8192,
                         budget=Budget(max_cost_usd=0.0001, prices=PriceTable().for_batch()))
    assert poor.status == "over_budget" and "budget" in poor.reason
    # a cap that fits only a smaller reply shrinks max_tokens (not below the floor)
    fits = build_request(shard, task, str(attrs_repo), model=MODEL, max_tokens=8192, max_tokens_floor=256,
                         budget=Budget(max_total_tokens=req.size_bytes // 2 + 1000 + 2000))
    assert fits.status == "queued" and 256 <= fits.max_tokens < 8192


def _submit_and_wait(db: str, repo: str, wt: str, base_url: str, shards: list[dict]) -> None:
    import anthropic

    store = ShardStore.open(db)
    client = anthropic.Anthropic(api_key="sk-offline-test", base_url=base_url, max_retries=0)
    coord = BatchCoordinator(store, client, RUN, model=MODEL)
    coord.submit(shards, manager=WorktreeManager(repo, wt))
    coord.wait(poll_interval=0.2, max_poll_interval=0.5)


@pytest.mark.timeout(300)
def test_a_killed_submitter_is_resumed_without_paying_twice(attrs_repo, tmp_path):
    db = str(tmp_path / "shards.db")
    manager = WorktreeManager(attrs_repo, tmp_path / "wt")
    shards = _plan(attrs_repo, 3)
    store = ShardStore.open(db)
    with OfflineMessagesServer(batch_delay=3600) as server:
        ctx = multiprocessing.get_context("spawn")
        worker = ctx.Process(target=_submit_and_wait, args=(db, str(attrs_repo), str(tmp_path / "wt"),
                                                            server.base_url, shards))
        worker.start()
        try:
            assert wait_while(lambda: not store.batch_parts(RUN) or not store.batch_parts(RUN)[0]["batch_id"],
                              timeout=120), "the submitter recorded its batch id"
            assert wait_while(lambda: sum(1 for r in server.requests if r["method"] == "GET") < 2, timeout=60), \
                "the submitter is polling"
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.join(30)
        assert worker.exitcode == -signal.SIGKILL
        # the retry (another process in real life; here the test) resumes the recorded batch
        coord = BatchCoordinator(store, _client(server), RUN, model=MODEL)
        first = store.batch_parts(RUN)[0]["batch_id"]
        assert coord.submit(shards, manager=manager)["batch_ids"] == [first]
        server.finish_batches()
        coord.wait(poll_interval=0.05, max_poll_interval=0.1)
        coord.collect()
        for s in shards:
            assert _apply(store, manager, server, s).status == "completed"
        # a retry of a shard's task after it completed skips it, and applies nothing again
        assert _apply(store, manager, server, shards[0]).status == "skipped"
    assert server.batch_creates == 1, "one batch for the run"
    assert sorted(server.batch_bills) == sorted(custom_id_for(s["shard_id"]) for s in shards)
    assert set(server.batch_bills.values()) == {1}, "no entry billed twice"
    assert len([a for a in store.list_attempts(RUN) if a["status"] == "batch"]) == len(shards)


def test_a_batch_created_but_not_recorded_is_adopted(attrs_repo, tmp_path):
    """The worker died between the API's answer and the write of the id: the retry finds the batch in the list."""
    store, manager = _store_and_manager(attrs_repo, tmp_path)
    shards = _plan(attrs_repo, 2)
    with OfflineMessagesServer(batch_delay=3600) as server:
        coord = BatchCoordinator(store, _client(server), RUN, model=MODEL)
        real_set = store.set_batch_id
        store.set_batch_id = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed"))  # dies right there
        with pytest.raises(KeyboardInterrupt):
            coord.submit(shards, manager=manager)
        store.set_batch_id = real_set
        assert server.batch_creates == 1 and store.batch_parts(RUN)[0]["batch_id"] is None
        state = coord.submit(shards, manager=manager)
        assert server.batch_creates == 1 and len(state["batch_ids"]) == 1
        assert state["batch_ids"][0].startswith("msgbatch_")


def test_failed_entries_run_interactively_or_fail_with_their_reason(attrs_repo, tmp_path):
    from airflow_provider_worktree.testing.faults import overloaded

    store, manager = _store_and_manager(attrs_repo, tmp_path)
    shards = _plan(attrs_repo, 3)
    ids = [custom_id_for(s["shard_id"]) for s in shards]
    with OfflineMessagesServer(batch_delay=3600) as server:
        server.batch_entry_faults = {ids[0]: overloaded(), ids[1]: "expired"}
        coord = BatchCoordinator(store, _client(server), RUN, model=MODEL)
        coord.submit(shards, manager=manager)
        server.finish_batches()
        state = coord.collect()
        assert state["entries"] == {"errored": 1, "expired": 1, "succeeded": 1}
        entry = store.batch_entry(RUN, shards[0]["shard_id"])
        assert "overloaded_error" in entry["reason"]
        with pytest.raises(ShardFailed) as failed:
            _apply(store, manager, server, shards[1], fallback="fail")
        assert failed.value.permanent and "expired" in str(failed.value)
        done = _apply(store, manager, server, shards[0])  # errored: the agent loop does the shard instead
        assert done.status == "completed" and done.cost_usd > 0 and server.message_requests()
        assert _apply(store, manager, server, shards[2]).status == "completed"


def test_a_reply_is_applied_with_the_shards_confinement_and_scope(attrs_repo, tmp_path):
    """The model is untrusted in batch mode too: a reply's writes outside the worktree are refused and one
    outside the shard's files rejects the shard (its work saved on a salvage branch)."""
    store, manager = _store_and_manager(attrs_repo, tmp_path)
    shard = _plan(attrs_repo, 1)[0]
    outside = tmp_path / "escaped.txt"
    evil = ScriptedModel([lambda req: {"content": [
        {"type": "tool_use", "id": "toolu_1", "name": "str_replace_based_edit_tool",
         "input": {"command": "create", "path": str(outside), "file_text": "x"}},
        {"type": "tool_use", "id": "toolu_2", "name": "str_replace_based_edit_tool",
         "input": {"command": "create", "path": "../escaped2.txt", "file_text": "x"}},
        {"type": "tool_use", "id": "toolu_3", "name": "str_replace_based_edit_tool",
         "input": {"command": "create", "path": "setup.py.new", "file_text": "x"}},
    ], "stop_reason": "tool_use"}])
    with OfflineMessagesServer(model=evil, batch_delay=0) as server:
        coord = BatchCoordinator(store, _client(server), RUN, model=MODEL)
        coord.submit([shard], manager=manager)
        server.finish_batches()
        coord.collect()
        with pytest.raises(ShardFailed):
            _apply(store, manager, server, shard)
    assert not outside.exists() and not (tmp_path / "wt" / "escaped2.txt").exists()
    row = store.get_shard(RUN, shard["shard_id"])
    assert row["status"] == "failed" and row["commit_sha"] is None


def test_entry_runner_reports_no_spend_and_counts_refusals(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n")
    entry = {"shard_id": "s1", "model": MODEL, "response": {"model": MODEL, "content": [
        {"type": "text", "text": "Editing."},
        tool_use_reply("str_replace_based_edit_tool", {"command": "str_replace", "path": "m.py", "old_str": "x = 1",
                                                       "new_str": '"""M."""\nx = 1'})["content"][0],
        {"type": "tool_use", "id": "toolu_b", "name": "str_replace_based_edit_tool",
         "input": {"command": "str_replace", "path": "m.py", "old_str": "nope", "new_str": ""}},
    ]}}
    run = BatchEntryRunner(entry).run(str(tmp_path), "prompt")
    assert run.stop_reason == "end_turn" and run.files_written == ["m.py"] and run.cost_usd == 0.0
    assert "1 of 2 tool call(s) refused" in run.final_text
    assert (tmp_path / "m.py").read_text().startswith('"""M."""')


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_batch_records_are_written_once_on_both_databases(backend, tmp_path, request):
    target = str(tmp_path / "s.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = ShardStore.open(target)
    store.register_shards(RUN, [{"shard_id": s, "task": "todo", "files": ["x.py"]} for s in ("a", "b")])
    assert store.put_batch_entries(RUN, [{"shard_id": "a", "custom_id": "a-1", "status": "queued", "part": 0},
                                         {"shard_id": "b", "status": "interactive", "reason": "too large"}]) == 2
    assert store.put_batch_entries(RUN, [{"shard_id": "a", "custom_id": "other", "status": "queued"}]) == 0
    row = store.begin_batch_part(RUN, 0, 1, MODEL)
    assert row["batch_id"] is None and row["status"] == "submitting"
    store.set_batch_id(RUN, 0, "msgbatch_1")
    store.set_batch_id(RUN, 0, "msgbatch_2")  # a recorded id is never replaced
    assert [p["batch_id"] for p in store.batch_parts(RUN)] == ["msgbatch_1"]
    usage = {"input_tokens": 100, "output_tokens": 10}
    assert store.record_batch_result(RUN, "a-1", "succeeded", response={"content": [{"type": "text", "text": "ok"}]},
                                     usage=usage, cost_usd=0.25)
    assert not store.record_batch_result(RUN, "a-1", "succeeded", usage=usage, cost_usd=0.25), "collected once"
    entry = store.batch_entry(RUN, "a")
    assert entry["status"] == "succeeded" and entry["response"]["content"][0]["text"] == "ok"
    shard = store.get_shard(RUN, "a")
    assert shard["cost_usd"] == pytest.approx(0.25) and shard["input_tokens"] == 100
    assert [(a["attempt"], a["status"]) for a in store.list_attempts(RUN)] == [(0, "batch")]
    lease = store.assign_shard(RUN, "w:1", "a")
    assert lease.attempt == 1 and store.prior_spend(RUN, "a", 1)["cost_usd"] == pytest.approx(0.25)
    assert store.complete(lease, input_tokens=5, cost_usd=0.01)["cost_usd"] == pytest.approx(0.26)
    store.update_batch(RUN, 0, status="collected", request_counts={"succeeded": 1}, ended=True, collected=True)
    part = store.batch_parts(RUN)[0]
    assert part["status"] == "collected" and part["request_counts"] == {"succeeded": 1} and part["collected_at"]


def test_a_cancelled_batch_leaves_its_shards_to_the_interactive_runner(attrs_repo, tmp_path):
    store, manager = _store_and_manager(attrs_repo, tmp_path)
    shards = _plan(attrs_repo, 2)
    with OfflineMessagesServer(batch_delay=3600) as server:
        coord = BatchCoordinator(store, _client(server), RUN, model=MODEL)
        coord.submit(shards, manager=manager)
        state = coord.cancel()
        assert state["parts"][0]["status"] in ("canceling", "ended")
        state = coord.collect()
        assert state["collected"] and state["entries"] == {"canceled": len(shards)} and state["cost_usd"] == 0
        done = _apply(store, manager, server, shards[0])
        assert done.status == "completed" and server.message_requests(), "the agent loop did the shard"
    assert server.batch_bills == {}, "nothing of a cancelled batch is billed"
