"""The maintenance task catalog on real git repositories: discovery, planning, metrics, scope, prompt, verify."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import pid_alive as _alive

from airflow_provider_worktree.core import files as F
from airflow_provider_worktree.core import planning as P
from airflow_provider_worktree.core import tasks as T
from airflow_provider_worktree.core.tasks import catalog
from airflow_provider_worktree.core.errors import ConfigurationError, WorktreeProviderError


def _commit(repo: Path, message: str = "change") -> None:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo, check=True)


DOC_FILES = {
    "pkg/__init__.py": "",
    "pkg/documented.py": '"""Module."""\n\n\ndef f():\n    """F."""\n',
    "pkg/bare.py": "def f():\n    pass\n\n\nclass C:\n    def m(self):\n        pass\n\n    def _private(self):\n        pass\n",
    "pkg/broken.py": "def f(:\n",
    "notes.txt": "def f():\n",
}

# ----------------------------------------------------------------------------------------- discovery


def test_todo_discovery_finds_comment_markers_only(repo_factory):
    repo = repo_factory("r", {
        "a.py": "x = 1  # TODO: fix\n",
        "b.js": "// FIXME later\nlet y = 2;\n",
        "c.py": "TODOS = ['TODO']\nname = 'XXX'\n",          # not in a comment
        "d.md": "<!-- HACK: rewrite -->\n",
        "e.py": "# TODOLIST is a word, not a marker\n",
        "bin.dat": "\0# TODO binary\n",
    })
    # d.md is documentation, not source: the planner skips it unless a glob includes it explicitly.
    assert T.get_task("todo").discover(repo) == ["a.py", "b.js"]
    assert T.get_task("todo").discover(repo, include=["*.md"]) == ["a.py", "b.js", "d.md"]
    assert T.get_task("todo").discover(repo, globs=["**/*.py"]) == ["a.py"]
    assert T.get_task("todo").discover(repo, globs=["**/*", "!*.js"]) == ["a.py"]


def test_todo_discovery_reads_the_ref_not_the_working_tree(git_repo):
    (git_repo / "src/app.py").write_text("def add(a, b):\n    return a + b\n")
    _commit(git_repo)
    (git_repo / "src/new.py").write_text("# TODO: uncommitted\n")   # not committed: not at any ref
    assert T.get_task("todo").discover(git_repo) == ["src/util.py"]
    assert T.get_task("todo").discover(git_repo, ref="HEAD~1") == ["src/app.py", "src/util.py"]
    with pytest.raises(ConfigurationError, match="Cannot resolve ref 'nope'"):
        T.get_task("todo").discover(git_repo, ref="nope")


def test_docstrings_discovery_uses_ast(repo_factory):
    repo = repo_factory("r", DOC_FILES)
    # bare.py lacks module, f, C, C.m; broken.py does not parse; empty __init__ and documented are fine.
    assert T.get_task("docstrings").discover(repo) == ["pkg/bare.py"]
    shards = P.plan_shards(repo, "docstrings")
    assert shards[0]["priority"] == 4


def test_tests_discovery_skips_tests_and_packaging(repo_factory):
    repo = repo_factory("r", {
        "src/app.py": "x = 1\n", "src/__init__.py": "", "setup.py": "", "tests/test_app.py": "",
        "tests/helpers.py": "", "src/test_inline.py": "", "src/thing_test.py": "", "conftest.py": "",
        "README.md": "",
    })
    assert T.get_task("tests").discover(repo) == ["src/app.py"]


def test_custom_task_needs_a_prompt_and_uses_its_globs(git_repo):
    with pytest.raises(ConfigurationError, match="needs a prompt"):
        P.plan_shards(git_repo, "custom")
    task = T.get_task("custom", prompt="Use f-strings.", globs=["src/**"])
    assert task.discover(git_repo) == ["src/app.py", "src/util.py"]
    assert T.CustomTask("x", "*.md").discover(git_repo) == ["README.md", "docs/guide.md"]
    assert "Use f-strings." in T.system_prompt_for(task)
    # The registered default is not modified by configuring a copy.
    assert T.get_task("custom").prompt is None


def test_unknown_task_and_bad_options_are_clear():
    with pytest.raises(ConfigurationError) as exc:
        T.get_task("nope")
    for name in ("custom", "docstrings", "lint", "tests", "todo"):
        assert name in str(exc.value)
    with pytest.raises(ConfigurationError, match="does not accept"):
        T.get_task("todo", bogus=1)


def test_match_glob_semantics():
    assert F.match_glob("a/b/c.py", "**/*.py")
    assert F.match_glob("c.py", "**/*.py")
    assert F.match_glob("a/b/c.py", "*.py")             # no slash: basename at any depth
    assert not F.match_glob("a/b/c.py", "a/*.py")       # '*' stays in one segment
    assert F.match_glob("a/b/c.py", "a/**")
    assert F.match_glob("tests/test_x.py", "tests/test_*.py")
    assert not F.match_glob("src/tests/test_x.py", "tests/test_*.py")


# ----------------------------------------------------------------------------------------- planning


def test_plan_ids_are_stable_and_order_independent(repo_factory):
    repo = repo_factory("r", n_files=25)
    a = P.plan_shards(repo, "todo", max_files=4)
    b = P.plan_shards(repo, "todo", max_files=4)
    assert a == b
    assert all(s["shard_id"].startswith("todo-") and len(s["shard_id"]) == len("todo-") + 10 for s in a)
    assert len({s["shard_id"] for s in a}) == len(a)
    files = a[0]["files"]
    assert P.shard_id_for("todo", list(reversed(files))) == a[0]["shard_id"]
    assert P.shard_id_for("docstrings", files) != a[0]["shard_id"]
    # Same files under another repository: same ids.
    other = repo_factory("r_copy", n_files=25)
    assert [s["shard_id"] for s in P.plan_shards(other, "todo", max_files=4)] == [s["shard_id"] for s in a]


def test_plan_size_bounds_and_exact_cover(repo_factory):
    files = {f"d{i % 3}/f{i:02d}.py": "# TODO x\n" + "y = 1\n" * (i * 10) for i in range(30)}
    files["big/huge.py"] = "# TODO big\n" + "z = 2\n" * 5000
    repo = repo_factory("r", files)
    discovered = T.get_task("todo").discover(repo)
    assert len(discovered) == 31
    shards = P.plan_shards(repo, "todo", max_files=5, max_bytes=1000)
    covered = [f for s in shards for f in s["files"]]
    assert sorted(covered) == discovered and len(covered) == len(set(covered))
    sizes = {f: (repo / f).stat().st_size for f in discovered}
    for s in shards:
        assert s["files"] == sorted(s["files"])
        assert s["bytes"] == sum(sizes[f] for f in s["files"])
        assert len(s["files"]) <= 5
        assert s["bytes"] <= 1000 or len(s["files"]) == 1
        assert set(s) == {"shard_id", "task", "files", "priority", "bytes"}
    assert {"files": ["big/huge.py"]}.items() <= next(s for s in shards if "big/huge.py" in s["files"]).items()
    # Path order packing: concatenating shards gives the sorted file list.
    assert covered == discovered


def test_plan_by_directory_groups_and_splits(repo_factory):
    files = {f"a/f{i}.py": "# TODO\n" for i in range(7)}
    files.update({f"b/g{i}.py": "# TODO\n" for i in range(2)})
    files["top.py"] = "# TODO\n"
    repo = repo_factory("r", files)
    shards = P.plan_shards(repo, "todo", by="directory", max_files=3)
    parents = [{str(Path(f).parent) for f in s["files"]} for s in shards]
    assert all(len(p) == 1 for p in parents)
    assert [p.pop() for p in parents] == [".", "a", "a", "a", "b"]
    assert sorted(f for s in shards for f in s["files"]) == sorted(files)
    by_size = P.plan_shards(repo, "todo", by="size", max_files=3)
    assert any(len({str(Path(f).parent) for f in s["files"]}) > 1 for s in by_size)


def test_plan_priority_and_max_shards(repo_factory):
    repo = repo_factory("r", {"a.py": "# TODO\n", "b.py": "# TODO 1\n# FIXME 2\n# XXX 3\n", "c.py": "# HACK\n"})
    shards = P.plan_shards(repo, "todo", max_files=1)
    assert [s["priority"] for s in shards] == [1, 3, 1]
    top = P.plan_shards(repo, "todo", max_files=1, top=1)
    assert [s["files"] for s in top] == [["b.py"]]
    fitted = P.plan_shards(repo, "todo", max_files=1, max_shards=1)    # grouped to fit, nothing dropped
    assert [s["files"] for s in fitted] == [["a.py", "b.py", "c.py"]]
    with pytest.raises(ConfigurationError, match="by="):
        P.plan_shards(repo, "todo", by="random")
    with pytest.raises(ConfigurationError, match="max_files"):
        P.plan_shards(repo, "todo", max_files=0)


# ------------------------------------------------------------------------------------------ metrics


def test_todo_metric_drops_when_a_marker_is_resolved(git_repo):
    task = T.get_task("todo")
    files = ["src/app.py", "src/util.py"]
    before = task.measure(git_repo, files)
    assert before["markers"] == 2 and before["per_file"] == {"src/app.py": 1, "src/util.py": 1}
    assert task.evaluate(before, task.measure(git_repo, files), None)[0] is False
    (git_repo / "src/app.py").write_text("def add(a, b):\n    return int(a) + int(b)\n")
    after = task.measure(git_repo, files)
    assert after["markers"] == 1
    assert task.evaluate(before, after, None) == (True, "TODO markers 2 -> 1 (no verify command)")
    assert task.evaluate(before, after, True)[0] is True
    ok, reason = task.evaluate(before, after, False)
    assert not ok and "verify" in reason
    (git_repo / "src/util.py").unlink()                 # deleting a file is not resolving its markers
    ok, reason = task.evaluate(before, task.measure(git_repo, files), True)
    assert not ok and "src/util.py" in reason


def test_count_todo_markers():
    assert T.count_todo_markers("# TODO a FIXME b\nx = 'TODO'\n/* XXX */\n * HACK\n-- TODO sql\n") == 5
    assert T.count_todo_markers("TODO = 1\n# TODOS\n") == 0


def test_docstrings_metric_and_syntax_errors(repo_factory):
    repo = repo_factory("r", DOC_FILES)
    task = T.get_task("docstrings")
    files = ["pkg/bare.py", "pkg/documented.py"]
    before = task.measure(repo, files)
    assert before["missing"] == 4 and before["syntax_errors"] == {}
    (repo / "pkg/bare.py").write_text('"""Bare."""\n\n\ndef f():\n    """F."""\n    pass\n\n\nclass C:\n'
                                      '    def m(self):\n        pass\n')
    after = task.measure(repo, files)
    assert after["missing"] == 2
    assert task.evaluate(before, after, None)[0] is True
    (repo / "pkg/bare.py").write_text('"""Bare."""\ndef f(:\n')
    broken = task.measure(repo, files)                   # reported, not raised
    assert "pkg/bare.py" in broken["syntax_errors"] and broken["missing"] == 0
    ok, reason = task.evaluate(before, broken, None)
    assert not ok and "syntax" in reason


LINT_SCRIPT = textwrap.dedent("""\
    import sys
    for path in sys.argv[1:]:
        for n, line in enumerate(open(path), 1):
            if "bad" in line:
                print(f"{path}:{n}: uses bad")
    """)


def test_lint_metric_with_a_real_lint_script(repo_factory, tmp_path):
    script = tmp_path / "lint.py"
    script.write_text(LINT_SCRIPT)
    repo = repo_factory("r", {"a.py": "bad = 1\nok = bad\n", "b.py": "fine = 1\n", "c.py": "bad()\n"})
    task = T.get_task("lint", lint_command=[sys.executable, str(script)])
    assert task.discover(repo) == ["a.py", "c.py"]
    shards = P.plan_shards(repo, "lint", task_options={"lint_command": [sys.executable, str(script)]})
    assert [s["priority"] for s in shards] == [3]
    before = task.measure(repo, ["a.py", "c.py"])
    assert before["findings"] == 3 and before["per_file"] == {"a.py": 2, "c.py": 1}
    (repo / "a.py").write_text("good = 1\nok = good\n")
    after = task.measure(repo, ["a.py", "c.py"])
    assert after["findings"] == 1
    assert task.evaluate(before, after, None)[0] is True
    assert task.evaluate(after, after, None)[0] is False
    # {files} placeholder and a finding pattern
    task2 = T.get_task("lint", lint_command=f"{sys.executable} {script} {{files}}", finding_pattern=r"^c\.py:")
    assert task2.measure(repo, ["a.py", "c.py"])["findings"] == 1


def test_lint_needs_a_command_and_a_runnable_one(git_repo):
    with pytest.raises(ConfigurationError, match="lint_command"):
        T.get_task("lint").measure(git_repo, ["src/app.py"])
    with pytest.raises(ConfigurationError, match="executable not found"):
        T.get_task("lint", lint_command=["no-such-linter-xyz"]).measure(git_repo, ["src/app.py"])


TEST_MODULE = textwrap.dedent("""\
    import pytest

    def test_one():
        assert True

    class TestThing:
        def test_two(self):
            assert True
    """)


def test_tests_metric_detects_deleted_and_skipped_tests(repo_factory):
    repo = repo_factory("r", {"src/app.py": "def f():\n    return 1\n", "tests/test_other.py": TEST_MODULE})
    task = T.get_task("tests")
    before = task.measure(repo, ["src/app.py"])
    assert before["tests"] == 2 and before["skips"] == 0

    (repo / "tests/test_app.py").write_text("from src.app import f\n\ndef test_f():\n    assert f() == 1\n")
    added = task.measure(repo, ["src/app.py"])          # untracked new file counted
    assert added["tests"] == 3
    ok, reason = task.evaluate(before, added, True)
    assert ok and "1 test(s) added" in reason
    assert task.evaluate(before, added, False)[0] is False

    (repo / "tests/test_other.py").write_text(TEST_MODULE.split("class TestThing")[0])
    deleted = task.measure(repo, ["src/app.py"])
    assert deleted["tests"] == 2                        # count unchanged, but a test is gone
    ok, reason = task.evaluate(before, deleted, True)
    assert not ok and "test_other.py::TestThing::test_two" in reason

    (repo / "tests/test_other.py").write_text(TEST_MODULE.replace("def test_one", "@pytest.mark.skip\ndef test_one"))
    skipped = task.measure(repo, ["src/app.py"])
    assert skipped["skips"] == 1
    ok, reason = task.evaluate(before, skipped, True)
    assert not ok and "skip" in reason


# -------------------------------------------------------------------------------------------- scope


def test_check_scope(git_repo):
    shard = {"shard_id": "todo-x", "task": "todo", "files": ["src/app.py"]}
    assert T.check_scope(["src/app.py", "./src/app.py"], shard, "todo") == []
    assert T.check_scope(["src/app.py", "src/util.py", "../evil.py", "/etc/passwd"], shard, "todo") == \
        ["../evil.py", "/etc/passwd", "src/util.py"]
    tshard = {"shard_id": "tests-x", "task": "tests", "files": ["src/app.py"]}
    assert T.check_scope(["tests/test_app.py", "tests/__init__.py", "tests/conftest.py"], tshard, "tests") == []
    assert T.check_scope(["tests/test_util.py", "src/util.py"], tshard, "tests") == ["src/util.py",
                                                                                    "tests/test_util.py"]
    assert T.check_scope(["tests/test_app.py"], shard, "todo") == ["tests/test_app.py"]
    err = T.ScopeViolation(["b.py", "a.py"], "todo-x")
    assert isinstance(err, WorktreeProviderError) and "a.py, b.py" in str(err) and "todo-x" in str(err)


# ------------------------------------------------------------------------------------------- prompts


def test_prompt_block_round_trip(git_repo):
    shard = P.plan_shards(git_repo, "todo")[0]
    text = T.render_shard_prompt("todo", shard, custom_prompt="Prefer ValueError.")
    assert text.endswith("</shard>")
    assert "- src/app.py" in text and "Prefer ValueError." in text
    block = text.split("<shard>\n", 1)[1].split("\n</shard>")[0]
    assert block == json.dumps({"files": shard["files"], "shard_id": shard["shard_id"], "task": "todo"},
                               sort_keys=True, separators=(",", ":"))
    parsed = T.parse_shard_block("system stuff\n" + text)
    assert parsed == {"shard_id": shard["shard_id"], "task": "todo", "files": shard["files"]}
    # The spaced form of docs/architecture.md parses too; garbage does not.
    assert T.parse_shard_block('<shard>\n{"shard_id": "s", "task": "todo", "files": ["a"]}\n</shard>')["files"] == ["a"]
    assert T.parse_shard_block("no block") is None
    assert T.parse_shard_block("<shard>\n{not json}\n</shard>") is None
    assert T.parse_shard_block('<shard>\n{"shard_id": "s"}\n</shard>') is None
    with pytest.raises(ConfigurationError, match="belongs to task"):
        T.render_shard_prompt("docstrings", shard)


def test_system_prompt_and_conventions(git_repo):
    (git_repo / "CLAUDE.md").write_text("Use tabs.\n")
    (git_repo / "CONTRIBUTING.md").write_text("x" * 20_000)
    conventions = T.read_conventions(git_repo, cap=2_000)
    assert conventions.startswith("### CLAUDE.md\nUse tabs.")
    assert "### CONTRIBUTING.md" in conventions and "[... truncated]" in conventions
    assert len(conventions) <= 2_000
    prompt = T.system_prompt_for("todo", conventions)
    assert prompt == T.system_prompt_for(T.get_task("todo"), conventions)      # stable
    for needle in ("str_replace_based_edit_tool", "repository-relative", "one-paragraph summary",
                   "## Task: todo", "Use tabs."):
        assert needle in prompt
    assert T.read_conventions(git_repo / "src") == ""


def test_conventions_ignore_symlinks_leaving_the_repo(git_repo, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOKEN=abc")
    (git_repo / "AGENTS.md").symlink_to(secret)
    assert "TOKEN" not in T.read_conventions(git_repo)


def test_register_a_custom_task_subclass(repo_factory):
    class LicenseHeader(T.MaintenanceTask):
        name = "license-header"
        description = "add the license header"
        instructions = "Add '# SPDX-License-Identifier: Apache-2.0' as the first line."
        default_globs = ("**/*.py",)
        needs_content = True

        def _file_weight(self, path, size, text):
            return 0 if text.startswith("# SPDX") else 1

    try:
        T.register_task(LicenseHeader())
        repo = repo_factory("r", {"a.py": "# SPDX-License-Identifier: MIT\n", "b.py": "x = 1\n"})
        assert [s["files"] for s in P.plan_shards(repo, "license-header")] == [["b.py"]]
        assert P.plan_shards(repo, "license-header")[0]["shard_id"].startswith("license-header-")
    finally:
        T.TASKS.pop("license-header", None)
    with pytest.raises(ConfigurationError, match="invalid"):
        T.register_task(type("Bad", (T.MaintenanceTask,), {"name": "Bad Name"}))


# -------------------------------------------------------------------------------------------- verify


def test_run_verify_success_failure_and_tail(tmp_path):
    ok = T.run_verify([sys.executable, "-c", "print('hello')"], tmp_path, timeout=30)
    assert ok.ok and ok.returncode == 0 and "hello" in ok.output_tail and ok.duration_s >= 0
    bad = T.run_verify(f"{sys.executable} -c \"import sys; print('x' * 10000); sys.exit(3)\"", tmp_path, 30)
    assert not bad.ok and bad.returncode == 3 and len(bad.output_tail) <= 4_000
    with pytest.raises(ConfigurationError, match="empty"):
        T.run_verify([], tmp_path)


def test_run_verify_timeout_kills_the_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    # Host PIDs, so no PID namespace here; the box's own teardown is tested in tests/test_box.py.
    res = T.run_verify(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], tmp_path, timeout=1, isolation="none")
    assert res.timed_out and not res.ok and res.returncode is None and "timed out" in res.output_tail
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_run_verify_missing_executable(tmp_path):
    res = T.run_verify(["definitely-not-a-command-xyz", "--flag"], tmp_path, timeout=5)
    assert not res.ok and res.returncode is None
    assert "executable not found" in res.output_tail and "definitely-not-a-command-xyz" in res.output_tail


def test_core_tasks_imports_no_airflow():
    # Static: the package __init__ imports airflow for its version check, so sys.modules cannot tell.
    import ast

    tree = ast.parse(Path(catalog.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [m for m in names if m == "airflow" or m.startswith("airflow.")]


# ---------------------------------------------------------------------------------------- old paths


@pytest.mark.parametrize("name, new", [("plan_shards", "core.planning"), ("plan_repository", "core.planning"),
                                       ("Plan", "core.planning"), ("shard_id_for", "core.planning"),
                                       ("match_glob", "core.files")])
def test_names_that_moved_out_of_core_tasks_still_resolve_with_a_warning(name, new):
    with pytest.warns(DeprecationWarning, match=rf"core\.tasks\.{name} is deprecated.*airflow_provider_worktree\.{new}"):
        old = getattr(T, name)
    assert old is getattr(importlib.import_module(f"airflow_provider_worktree.{new}"), name)
    assert name not in T.__all__
    with pytest.raises(AttributeError, match="no attribute 'plan_everything'"):
        T.plan_everything


def test_the_old_import_line_of_the_docs_warns_at_the_importing_line():
    code = ("import warnings; warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    from airflow_provider_worktree.core.tasks import plan_shards, plan_repository, MaintenanceTask\n"
            "print(sorted({(w.category.__name__, w.filename) for w in caught}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[('DeprecationWarning', '<string>')]"
