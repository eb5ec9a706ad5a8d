"""The offline RuleBasedModel (a test double, not Claude) on real code nobody here wrote.

The text-editor path runs the real ApiRunner through the real anthropic SDK over HTTP to the offline server, on
sources of pinned PyPI packages (tests/realrepos.py), files over 100 KB included. The Claude Code path is driven by
calling ``model.reply()`` with requests and tool results shaped like those of the real CLI (observed with
@anthropic-ai/claude-code 2.1.197 against a logging server: tools Read/Edit/Write/Glob/Grep, absolute paths, the
working directory in the system prompt, ``Read`` lines as ``N<TAB>text``, ``Edit`` inputs echoed back with
``replace_all: false``).
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import anthropic
import pytest

from realrepos import real_repo

from airflow_provider_worktree.core.runners import ApiRunner, Budget
from airflow_provider_worktree.core.tasks.metrics import _docstring_report, count_todo_markers
from airflow_provider_worktree.testing import OfflineMessagesServer, RuleBasedModel
from airflow_provider_worktree.testing.edits import MAX_CONTEXT_LINES
from airflow_provider_worktree.testing.model import MAX_EDITS_PER_TURN

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-test-key-0123456789"


# -- helpers -------------------------------------------------------------------------------------------------------
def _strip_docstrings(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value,
                                                                                                    str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def code_of(source: str) -> str:
    """The program without docstrings and comments: what a docstring or TODO edit must leave unchanged."""
    return _strip_docstrings(ast.parse(source))


def metric(task: str, text: str) -> int:
    return count_todo_markers(text) if task == "todo" else _docstring_report(text)[0]


def shard_prompt(task: str, files: list[str]) -> str:
    block = json.dumps({"shard_id": f"{task}-real", "task": task, "files": files})
    return f"Do the {task} task on these files.\n<shard>\n{block}\n</shard>\n"


def message_requests(srv: OfflineMessagesServer) -> list[dict]:
    return [r for r in srv.requests if r["path"].split("?", 1)[0] == "/v1/messages"]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """Module-wide real repositories (one sdist unpacked and committed per package)."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = real_repo(tmp_path_factory.mktemp("upstream") / name, name)
        return made[name]
    return get


@pytest.fixture
def worktree_of(upstream, tmp_path):
    """A fresh git worktree of a real repository for one test."""
    def make(name: str) -> Path:
        dest = tmp_path / f"wt-{name}"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(dest), "HEAD"], cwd=upstream(name),
                       check=True, capture_output=True)
        return dest
    return make


# -- the text editor, through the real runner and SDK over HTTP -----------------------------------------------------
REAL_CASES = [
    # (package, task, files): files over 100 KB, @overload, @abstractmethod/@property stacks, one-line "..." stubs,
    # async defs, nested classes, multi-line signatures, `from __future__` first.
    ("mypy", "todo", ["mypy/checker.py", "mypy/typeanal.py"]),
    ("attrs", "todo", ["src/attr/_make.py"]),
    ("requests", "todo", ["src/requests/auth.py", "src/requests/hooks.py"]),
    ("mypy", "docstrings", ["mypy/nodes.py", "mypy/semanal_shared.py", "mypy/expandtype.py"]),
    ("flask", "docstrings", ["src/flask/helpers.py", "src/flask/config.py", "tests/test_async.py"]),
    ("click", "docstrings", ["src/click/core.py", "src/click/decorators.py"]),
]


@pytest.mark.parametrize("package,task,files", REAL_CASES, ids=[f"{c[0]}-{c[1]}" for c in REAL_CASES])
def test_real_files_through_the_runner(worktree_of, package, task, files):
    repo = worktree_of(package)
    before = {f: (repo / f).read_text() for f in files}
    assert any(len(t.encode()) > 100_000 for t in before.values()) or package in ("attrs", "requests", "flask")
    max_tokens = 2048
    with OfflineMessagesServer() as srv:
        client = anthropic.Anthropic(api_key=KEY, base_url=srv.base_url, max_retries=0)
        result = ApiRunner(client, MODEL, max_tokens=max_tokens, max_turns=40).run(repo, shard_prompt(task, files))
        history = message_requests(srv)[-1]["body"]["messages"]

    assert result.stop_reason == "end_turn", result.error
    assert "test double" in result.final_text
    for f in files:
        after = (repo / f).read_text()
        assert metric(task, after) < metric(task, before[f]), f
        assert code_of(after) == code_of(before[f]), f"{f}: code changed, not only comments/docstrings"
    # Every turn but the last called tools (a reply cut at max_tokens would be text only), and no call was refused:
    # bottom-up edits stay valid after the earlier ones.
    assistant = [m for m in history if m["role"] == "assistant"]
    assert all(any(b["type"] == "tool_use" for b in m["content"]) for m in assistant)
    refused = [b for m in history if m["role"] == "user" and isinstance(m["content"], list) for b in m["content"]
               if b.get("type") == "tool_result" and b.get("is_error")]
    assert refused == []
    # Large files were read in view_range chunks; every edit is small, and each reply fits max_tokens.
    calls = [b for m in assistant for b in m["content"] if b["type"] == "tool_use"]
    views = [c["input"] for c in calls if c["input"]["command"] == "view"]
    big = [f for f in files if len(before[f]) > 100_000]
    for f in big:
        assert any(v["path"] == f and v.get("view_range") for v in views), f"{f} was not read in chunks"
    edits = [c["input"] for c in calls if c["input"]["command"] != "view"]
    assert edits
    for e in edits:
        assert len(json.dumps(e)) < 2_000
        if e["command"] == "str_replace":
            assert e["old_str"].count("\n") <= MAX_CONTEXT_LINES + 2  # + the margin of a partly read file
    for m in assistant:
        assert len(json.dumps(m["content"])) / 4 < max_tokens
        assert sum(b["type"] == "tool_use" for b in m["content"]) <= MAX_EDITS_PER_TURN


@pytest.mark.parametrize("task", ["todo", "docstrings"])
def test_a_file_too_big_for_the_budget_still_makes_progress(worktree_of, task):
    """mypy/checker.py (390 KB) does not fit the example DAG's input budget read whole and then edited: the model
    edits each chunk as soon as it is read, so the metric goes down before the budget stops the run."""
    repo = worktree_of("mypy")
    path = "mypy/checker.py"
    before = (repo / path).read_text()
    with OfflineMessagesServer() as srv:
        client = anthropic.Anthropic(api_key=KEY, base_url=srv.base_url, max_retries=0)
        result = ApiRunner(client, MODEL, budget=Budget(max_input_tokens=200_000, max_output_tokens=20_000)).run(
            repo, shard_prompt(task, [path]))
        history = message_requests(srv)[-1]["body"]["messages"]
    assert result.stop_reason in ("budget", "end_turn"), result.error
    after = (repo / path).read_text()
    assert metric(task, after) < metric(task, before)
    assert code_of(after) == code_of(before)
    views = [b["input"] for m in history if m["role"] == "assistant" for b in m["content"]
             if b["type"] == "tool_use" and b["input"]["command"] == "view"]
    assert len(views) > 1 and all(v.get("view_range", [1])[0] > 1 for v in views[1:])


# -- edge cases of Python syntax (a file written for the purpose, through the runner) ------------------------------
TRICKY = '''\
#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Licensed under the Apache License.
from __future__ import annotations

import functools
from typing import Protocol, overload


class Shape(Protocol):
    def area(self) -> float: ...
    @property
    def name(self) -> str: ...


class Empty: pass


@functools.total_ordering
class Box:
    class Inner:
        def method(self): return 1

    @overload
    def get(self, key: int) -> int: ...
    @overload
    def get(self, key: str) -> str: ...
    def get(self, key):
        # TODO: validate key
        return key

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def cached(
        a: int,
        b: dict[str, int] = {"x": 1},
        *,
        c=lambda: 0,
    ) -> int:
        return a

    async def fetch(self, url: str) -> str:
        async def inner():  # nested in a function: not counted by the metric
            return url
        return await inner()

    def _private(self):
        return 0


@overload
def only_stubs(x: int) -> int: ...
@overload
def only_stubs(x: str) -> str: ...


def tabbed(x):
\tif x:
\t\treturn 1  # FIXME: and otherwise?
\treturn 0

TODO_IN_STRING = "# TODO: not a comment"
'''


def _tricky_run(tmp_path, task: str) -> tuple[str, str]:
    repo = tmp_path / "tricky"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg/shapes.py").write_text(TRICKY)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    with OfflineMessagesServer() as srv:
        client = anthropic.Anthropic(api_key=KEY, base_url=srv.base_url, max_retries=0)
        result = ApiRunner(client, MODEL).run(repo, shard_prompt(task, ["pkg/shapes.py"]))
    assert result.stop_reason == "end_turn"
    return TRICKY, (repo / "pkg/shapes.py").read_text()


def test_docstrings_on_tricky_python(tmp_path):
    before, after = _tricky_run(tmp_path, "docstrings")
    tree = ast.parse(after)
    assert code_of(after) == code_of(before)
    assert after.startswith("#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n# Licensed under the Apache License.\n"
                            '"""Module shapes."""\nfrom __future__ import annotations\n')
    defs = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs.setdefault(node.name, []).append(ast.get_docstring(node))
    assert defs["Shape"] == ["Class Shape."] and defs["area"] == ["Function area."] and defs["name"] == ["Function name."]
    assert defs["Empty"] == ["Class Empty."] and defs["Inner"] == ["Class Inner."] and defs["method"] == ["Function method."]
    assert defs["get"] == [None, None, "Function get."]          # the implementation, not the @overload stubs
    assert defs["only_stubs"] == ["Function only_stubs.", None]  # no implementation: the first stub
    assert defs["cached"] == ["Function cached."] and defs["fetch"] == ["Function fetch."]
    assert defs["inner"] == [None] and defs["_private"] == [None] and defs["tabbed"] == ["Function tabbed."]
    assert "    def area(self) -> float:\n        \"\"\"Function area.\"\"\"\n        ...\n" in after
    assert "    @property\n    def name(self) -> str:\n        \"\"\"Function name.\"\"\"\n" in after
    assert '    ) -> int:\n        """Function cached."""\n        return a\n' in after
    assert 'def tabbed(x):\n\t"""Function tabbed."""\n\tif x:' in after
    assert _docstring_report(after)[1] == ["Box.get", "Box.get", "only_stubs"]


def test_todo_on_tricky_python(tmp_path):
    before, after = _tricky_run(tmp_path, "todo")
    assert code_of(after) == code_of(before)
    assert count_todo_markers(before) == 3 and count_todo_markers(after) == 1  # the one inside a string stays
    assert "        # NOTE(resolved): validate key\n" in after
    assert "\t\treturn 1  # NOTE(resolved): and otherwise?\n" in after
    assert 'TODO_IN_STRING = "# TODO: not a comment"' in after


def test_todo_identical_marker_lines_get_unique_context(repo_factory):
    lines = []
    for i in range(6):
        lines += [f"def f{i}(x):", "    # TODO: check x", "    return x", ""]
    repo = repo_factory("dupes", {"m.py": "\n".join(lines), "notes.md": "<!-- TODO: docs -->\n* XXX list\n"})
    with OfflineMessagesServer() as srv:
        client = anthropic.Anthropic(api_key=KEY, base_url=srv.base_url, max_retries=0)
        result = ApiRunner(client, MODEL).run(repo, shard_prompt("todo", ["m.py", "notes.md"]))
        calls = [b["input"] for m in message_requests(srv)[-1]["body"]["messages"] if m["role"] == "assistant"
                 for b in m["content"] if b["type"] == "tool_use" and b["input"]["command"] == "str_replace"]
    assert result.stop_reason == "end_turn"
    assert count_todo_markers((repo / "m.py").read_text()) == 0
    assert (repo / "notes.md").read_text() == "<!-- NOTE(resolved): docs -->\n* NOTE(resolved): list\n"
    assert len(calls) == 8 and all(c["old_str"].count("\n") <= 2 for c in calls)


# -- Claude Code's tools, as the CLI sends and answers them --------------------------------------------------------
CC_TOOLS = [
    {"name": name, "description": f"{name} (Claude Code)", "input_schema": {"type": "object", "properties": props,
                                                                             "required": req}}
    for name, props, req in (
        ("Edit", {"file_path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"},
                  "replace_all": {"type": "boolean", "default": False}}, ["file_path", "old_string", "new_string"]),
        ("Glob", {"pattern": {"type": "string"}, "path": {"type": "string"}}, ["pattern"]),
        ("Grep", {"pattern": {"type": "string"}, "path": {"type": "string"}}, ["pattern"]),
        ("Read", {"file_path": {"type": "string"}, "offset": {"type": "integer"}, "limit": {"type": "integer"}},
         ["file_path"]),
        ("Write", {"file_path": {"type": "string"}, "content": {"type": "string"}}, ["file_path", "content"]),
    )
]


class ClaudeCodeTools:
    """Read/Edit/Write with the observable behaviour of the CLI (2.1.197): what the model under test sees."""

    MAX_BYTES = 256 * 1024
    MAX_OUTPUT_CHARS = 100_000   # the CLI refuses a Read whose output is over its token cap

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.seen: set[str] = set()
        self.log: list[tuple[str, dict, bool]] = []

    def run(self, name: str, inp: dict) -> tuple[str, bool]:
        out, err = getattr(self, name.lower())(**inp)
        self.log.append((name, inp, err))
        return out, err

    def _path(self, file_path: str) -> Path:
        assert file_path.startswith("/"), f"Claude Code needs absolute paths, got {file_path!r}"
        return Path(file_path)

    def read(self, file_path: str, offset: int | None = None, limit: int | None = None) -> tuple[str, bool]:
        path = self._path(file_path)
        if not path.is_file():
            return f"<tool_use_error>File does not exist. Note: your current working directory is {self.cwd}.</tool_use_error>", True
        text = path.read_text()
        if offset is None and limit is None and len(text.encode()) > self.MAX_BYTES:
            return (f"File content ({len(text.encode()) / 1024:.1f}KB) exceeds maximum allowed size (256KB). Use offset "
                    "and limit parameters to read specific portions of the file, or search for specific content "
                    "instead of reading the whole file."), True
        lines = text.replace("\r\n", "\n").split("\n")
        start = offset or 1
        if start > len(lines):
            return (f"<system-reminder>Warning: the file exists but is shorter than the provided offset ({start}). "
                    f"The file has {len(lines)} lines.</system-reminder>"), False
        chunk = lines[start - 1:start - 1 + (limit or 2000)]
        out = "\n".join(f"{n}\t{line}" for n, line in enumerate(chunk, start))
        if len(out) > self.MAX_OUTPUT_CHARS:
            return (f"File content ({len(out) // 4} tokens) exceeds maximum allowed tokens (25000). Please use offset "
                    "and limit parameters to read specific portions of the file, or use the GrepTool to search for "
                    "specific content."), True
        self.seen.add(file_path)
        return out, False

    def edit(self, file_path: str, old_string: str, new_string: str, replace_all: bool = False) -> tuple[str, bool]:
        if file_path not in self.seen:
            return "<tool_use_error>File has not been read yet. Read it first before writing to it.</tool_use_error>", True
        path = self._path(file_path)
        text = path.read_text()
        n = text.count(old_string)
        if n == 0:
            return f"<tool_use_error>String to replace not found in file.\nString: {old_string}</tool_use_error>", True
        if n > 1 and not replace_all:
            return (f"<tool_use_error>Found {n} matches of the string to replace, but replace_all is false. To replace "
                    "all occurrences, set replace_all to true. To replace only one occurrence, please provide more "
                    f"context to uniquely identify the instance.\nString: {old_string}</tool_use_error>"), True
        path.write_text(text.replace(old_string, new_string) if replace_all else text.replace(old_string, new_string, 1))
        return (f"The file {file_path} has been updated successfully. (file state is current in your context — no "
                "need to Read it back)"), False

    def write(self, file_path: str, content: str) -> tuple[str, bool]:
        path = self._path(file_path)
        if path.exists() and file_path not in self.seen:
            return "<tool_use_error>File has not been read yet. Read it first before writing to it.</tool_use_error>", True
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return f"File created successfully at: {file_path}", False

    def glob(self, **_):  # pragma: no cover - the model does not need it
        return "", True

    grep = glob


def cc_request(cwd: Path, prompt: str, max_tokens: int = 64000) -> dict:
    return {
        "model": "claude-sonnet-4-6", "max_tokens": max_tokens, "stream": True, "tools": CC_TOOLS,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197;"},
                   {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK."},
                   {"type": "text", "text": "# Environment\nYou have been invoked in the following environment: \n"
                                            f" - Primary working directory: {cwd}\n - Is a git repository: true\n"}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nAs you answer the user's questions, you can use the following "
                                     "context:\n# currentDate\nToday's date is 2026-11-30.\n</system-reminder>\n"},
            {"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}]}],
    }


def drive_claude_code(cwd: Path, task: str, files: list[str], max_tokens: int = 64000,
                      max_turns: int = 60) -> tuple[ClaudeCodeTools, list[dict], str]:
    """The CLI's agent loop around ``model.reply()``: execute the tool calls, echo them back as the CLI does."""
    model, tools = RuleBasedModel(), ClaudeCodeTools(cwd)
    request = cc_request(cwd, shard_prompt(task, files), max_tokens)
    replies = []
    for _ in range(max_turns):
        reply = model.reply(json.loads(json.dumps(request)))
        replies.append(reply)
        uses = [b for b in reply["content"] if b["type"] == "tool_use"]
        echoed = [({**b, "input": {"replace_all": False, **b["input"]}} if b["type"] == "tool_use" and b["name"] == "Edit"
                   else b) for b in reply["content"]]
        request["messages"].append({"role": "assistant", "content": echoed})
        if not uses:
            assert reply["stop_reason"] == "end_turn"
            return tools, replies, reply["content"][0]["text"]
        assert reply["stop_reason"] == "tool_use"
        results = []
        for b in uses:
            out, err = tools.run(b["name"], b["input"])
            results.append({"type": "tool_result", "tool_use_id": b["id"], "content": out, **({"is_error": True}
                                                                                              if err else {})})
        request["messages"].append({"role": "user", "content": results})
    raise AssertionError("the model did not finish")


def _reply_tokens(reply: dict) -> int:
    return len(json.dumps(reply["content"])) // 4


def test_claude_code_todo_on_a_large_real_file(worktree_of):
    repo = worktree_of("mypy")
    files = ["mypy/checker.py", "mypy/semanal.py"]
    before = {f: (repo / f).read_text() for f in files}
    assert len(before["mypy/checker.py"].encode()) > 256 * 1024   # over the CLI's whole-file Read limit
    tools, replies, summary = drive_claude_code(repo, "todo", files, max_tokens=4096)
    for f in files:
        after = (repo / f).read_text()
        assert count_todo_markers(after) < count_todo_markers(before[f])
        assert code_of(after) == code_of(before[f])
    assert [err for _, _, err in tools.log].count(True) == 0
    reads = [inp for name, inp, _ in tools.log if name == "Read"]
    assert all(inp["file_path"].startswith(str(repo) + "/") and inp.get("limit") for inp in reads)
    assert len([r for r in reads if r["file_path"].endswith("checker.py")]) > 1
    edits = [inp for name, inp, _ in tools.log if name == "Edit"]
    assert edits and all(len(json.dumps(e)) < 2_000 for e in edits)
    assert all(_reply_tokens(r) < 4096 * 0.7 for r in replies)
    assert "test double" in summary and f"{len(edits)} edit(s) applied" in summary


def test_claude_code_docstrings_on_real_files(worktree_of):
    repo = worktree_of("flask")
    files = ["tests/test_async.py", "src/flask/helpers.py", "src/flask/config.py"]
    before = {f: (repo / f).read_text() for f in files}
    tools, replies, summary = drive_claude_code(repo, "docstrings", files)
    for f in files:
        after = (repo / f).read_text()
        assert _docstring_report(after)[0] < _docstring_report(before[f])[0]
        assert code_of(after) == code_of(before[f])
    assert not any(err for _, _, err in tools.log)
    assert all(sum(b["type"] == "tool_use" for b in r["content"]) <= MAX_EDITS_PER_TURN for r in replies)


def test_claude_code_docstrings_on_a_file_over_the_read_limit(worktree_of):
    repo = worktree_of("mypy")
    path = "mypy/checker.py"
    before = (repo / path).read_text()
    tools, replies, _ = drive_claude_code(repo, "docstrings", [path], max_tokens=8192)
    after = (repo / path).read_text()
    assert _docstring_report(after)[0] < _docstring_report(before)[0]
    assert code_of(after) == code_of(before)
    assert not any(err for _, _, err in tools.log)
    offsets = [inp["offset"] for name, inp, _ in tools.log if name == "Read"]
    assert len(offsets) > 2 and offsets == sorted(offsets)


def test_claude_code_read_too_large_halves_the_chunk(tmp_path):
    (tmp_path / "wide.py").write_text("".join(f"V{i} = {'x' * 400!r}  # TODO: shorten\n" for i in range(600)))
    tools, _, _ = drive_claude_code(tmp_path, "todo", ["wide.py"])
    reads = [(inp["offset"], inp["limit"], err) for name, inp, err in tools.log if name == "Read"]
    refused = [r for r in reads if r[2]]
    assert refused and reads[:len(refused)] == refused                     # refused first, then
    assert [r[1] for r in reads[:len(refused) + 1]] == [refused[0][1] >> i for i in range(len(refused) + 1)]
    assert not any(r[2] for r in reads[len(refused):])                     # halved until it fits
    assert count_todo_markers((tmp_path / "wide.py").read_text()) == 0


def test_claude_code_tests_task_writes_absolute_paths(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/calc.py").write_text("def add(a, b):\n    return a + b\n")
    tools, _, _ = drive_claude_code(tmp_path, "tests", ["pkg/calc.py"])
    writes = [inp["file_path"] for name, inp, _ in tools.log if name == "Write"]
    assert writes == [f"{tmp_path}/tests/test_calc.py"]
    assert "def test_calc_imports" in (tmp_path / "tests/test_calc.py").read_text()


def test_claude_code_missing_file_is_reported_not_retried(tmp_path):
    (tmp_path / "a.py").write_text("x = 1  # TODO: y\n")
    tools, _, summary = drive_claude_code(tmp_path, "todo", ["a.py", "gone.py"])
    assert [inp["file_path"].rsplit("/", 1)[-1] for name, inp, _ in tools.log if name == "Read"] == ["a.py", "gone.py"]
    assert "gone.py" in summary and (tmp_path / "a.py").read_text() == "x = 1  # NOTE(resolved): y\n"


def test_request_without_tools_gets_text_only(tmp_path):
    request = cc_request(tmp_path, shard_prompt("todo", ["a.py"]))
    request["tools"] = []
    reply = RuleBasedModel().reply(request)
    assert [b["type"] for b in reply["content"]] == ["text"] and "test double" in reply["content"][0]["text"]


def test_range_shards_of_one_big_file_stay_in_their_lines(upstream, worktree_of):
    """The planner splits mypy's checker.py (over 100 KB) into line-range shards; the model edits only its range."""
    from airflow_provider_worktree.core.planning import plan_shards

    shards = [s for s in plan_shards(upstream("mypy"), "todo", include=["mypy/checker.py"], max_files=1)
              if s["files"] == ["mypy/checker.py"] and s.get("lines")]
    assert len(shards) >= 2, "checker.py is split into ranges"
    shard = next(s for s in shards if s["lines"][0] > 1)  # a range that does not start the file
    repo = worktree_of("mypy")
    before = (repo / "mypy/checker.py").read_text()
    block = json.dumps({k: shard[k] for k in ("shard_id", "task", "files", "lines")})
    with OfflineMessagesServer() as srv:
        client = anthropic.Anthropic(api_key=KEY, base_url=srv.base_url, max_retries=0)
        result = ApiRunner(client, MODEL, max_tokens=2048, max_turns=40).run(
            repo, f"Do the todo task on these lines.\n<shard>\n{block}\n</shard>\n")
    assert result.stop_reason == "end_turn", result.error
    after = (repo / "mypy/checker.py").read_text()
    assert count_todo_markers(after) < count_todo_markers(before)
    first, last = shard["lines"]
    changed = [i + 1 for i, (a, b) in enumerate(zip(before.splitlines(), after.splitlines())) if a != b]
    assert changed and all(first <= n <= last for n in changed), (shard["lines"], changed[:5])
