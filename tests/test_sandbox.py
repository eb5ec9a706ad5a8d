"""The worktree sandbox: path resolution, the text editor and the allowlisted command tool, on real files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import uuid

from test_box import isolation, wait_no_marker  # noqa: F401 - the fixture is used by name

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.sandbox import (
    CommandTool,
    SandboxViolation,
    TextEditorTool,
    resolve_in_worktree,
)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "wt"
    outside = tmp_path / "outside"
    (root / "src").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    (root / "src" / "a.py").write_text("def f():\n    return 1\n")
    (root / ".git").write_text("gitdir: /somewhere/else\n")
    (root / ".hidden").write_text("x\n")
    (root / "link_out").symlink_to(outside)
    (root / "secret_link.txt").symlink_to(outside / "secret.txt")
    (root / "link_in").symlink_to(root / "src")
    return {"root": root, "outside": outside}


def _outside_unchanged(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "top secret\n"


# -- resolve_in_worktree --------------------------------------------------------------------------------------------
def test_resolve_accepts_relative_and_new_paths(tree):
    root = tree["root"]
    assert resolve_in_worktree(root, "src/a.py") == (root / "src" / "a.py").resolve()
    assert resolve_in_worktree(root, "./src//a.py") == (root / "src" / "a.py").resolve()
    assert resolve_in_worktree(root, ".") == root.resolve()
    assert resolve_in_worktree(root, "new/dir/b.py") == (root / "new" / "dir" / "b.py").resolve()
    assert resolve_in_worktree(root, "link_in/a.py") == (root / "src" / "a.py").resolve()


@pytest.mark.parametrize("bad, fragment", [
    ("../outside/secret.txt", "'..'"),
    ("src/../../outside/secret.txt", "'..'"),
    ("/etc/passwd", "absolute path"),
    ("~/x", "relative"),
    ("src/a\x00.py", "control character"),
    ("src/a\n.py", "control character"),
    (".git", "git internals"),
    ("sub/.git/config", "git internals"),
    ("link_out/secret.txt", "symlink leading outside"),
    ("secret_link.txt", "symlink leading outside"),
    ("link_out/new.txt", "symlink leading outside"),
    ("src\\a.py", "backslash"),
])
def test_resolve_refuses_escapes(tree, bad, fragment):
    with pytest.raises(SandboxViolation, match=fragment.replace("(", r"\(")):
        resolve_in_worktree(tree["root"], bad)


def test_resolve_refuses_absolute_path_even_inside_root(tree):
    with pytest.raises(SandboxViolation, match="repository root"):
        resolve_in_worktree(tree["root"], str(tree["root"] / "src" / "a.py"))


def test_resolve_refuses_non_string(tree):
    with pytest.raises(SandboxViolation, match="string"):
        resolve_in_worktree(tree["root"], ["src/a.py"])


# -- text editor ----------------------------------------------------------------------------------------------------
def test_definition_is_the_anthropic_text_editor(tree):
    d = TextEditorTool(tree["root"]).definition()
    assert d["type"] == "text_editor_20250728" and d["name"] == "str_replace_based_edit_tool"


def test_view_file_with_line_numbers_and_range(tree):
    ed = TextEditorTool(tree["root"])
    res = ed.execute({"command": "view", "path": "src/a.py"})
    assert not res.is_error
    assert res.content == "     1\tdef f():\n     2\t    return 1"
    res = ed.execute({"command": "view", "path": "src/a.py", "view_range": [2, -1]})
    assert res.content == "     2\t    return 1"
    bad = ed.execute({"command": "view", "path": "src/a.py", "view_range": [3, 9]})
    assert bad.is_error and "2 lines" in bad.content


def test_view_directory_skips_hidden_and_git(tree):
    res = TextEditorTool(tree["root"]).execute({"command": "view", "path": "."})
    assert not res.is_error
    assert "src/" in res.content and "src/a.py" in res.content
    assert ".git" not in res.content and ".hidden" not in res.content


def test_create_str_replace_insert_and_files_written(tree):
    root = tree["root"]
    ed = TextEditorTool(root)
    assert not ed.execute({"command": "create", "path": "pkg/new.py", "file_text": "x = 1\n"}).is_error
    assert (root / "pkg" / "new.py").read_text() == "x = 1\n"
    again = ed.execute({"command": "create", "path": "pkg/new.py", "file_text": "y\n"})
    assert again.is_error and "already exists" in again.content
    assert not ed.execute({"command": "str_replace", "path": "src/a.py", "old_str": "return 1",
                           "new_str": "return 2"}).is_error
    assert (root / "src" / "a.py").read_text() == "def f():\n    return 2\n"
    res = ed.execute({"command": "insert", "path": "src/a.py", "insert_line": 0, "insert_text": '"""Doc."""'})
    assert not res.is_error
    res = ed.execute({"command": "insert", "path": "src/a.py", "insert_line": 3, "insert_text": "# end"})
    assert not res.is_error
    assert (root / "src" / "a.py").read_text() == '"""Doc."""\ndef f():\n    return 2\n# end\n'
    assert ed.files_written == ["pkg/new.py", "src/a.py"]


def test_str_replace_needs_exactly_one_match(tree):
    root = tree["root"]
    (root / "dup.py").write_text("x = 1\nx = 1\n")
    ed = TextEditorTool(root)
    none = ed.execute({"command": "str_replace", "path": "dup.py", "old_str": "y = 2", "new_str": ""})
    assert none.is_error and "no match" in none.content
    many = ed.execute({"command": "str_replace", "path": "dup.py", "old_str": "x = 1", "new_str": "x = 2"})
    assert many.is_error and "2 times" in many.content and "[1, 2]" in many.content
    assert (root / "dup.py").read_text() == "x = 1\nx = 1\n"
    assert ed.files_written == []


def test_editor_errors_are_tool_errors_not_exceptions(tree):
    ed = TextEditorTool(tree["root"])
    cases = [
        "not a dict",
        {"command": "undo_edit", "path": "src/a.py"},
        {"command": "delete", "path": "src/a.py"},
        {"command": "view"},
        {"command": "view", "path": "missing.py"},
        {"command": "insert", "path": "src/a.py", "insert_line": 99, "insert_text": "x"},
        {"command": "insert", "path": "src/a.py", "insert_line": "1", "insert_text": "x"},
        {"command": "create", "path": "x.py"},
        {"command": "str_replace", "path": "src/a.py", "old_str": ""},
    ]
    for case in cases:
        res = ed.execute(case)
        assert res.is_error, case
        assert res.content.startswith("Error: ")
    assert ed.files_written == []


def test_escape_attempts_write_nothing_outside(tree):
    root, outside = tree["root"], tree["outside"]
    ed = TextEditorTool(root)
    attempts = [
        {"command": "create", "path": "../outside/evil.txt", "file_text": "x"},
        {"command": "create", "path": str(outside / "evil.txt"), "file_text": "x"},
        {"command": "create", "path": "link_out/evil.txt", "file_text": "x"},
        {"command": "str_replace", "path": "secret_link.txt", "old_str": "top", "new_str": "no"},
        {"command": "insert", "path": "link_out/secret.txt", "insert_line": 0, "insert_text": "x"},
        {"command": "view", "path": "link_out/secret.txt"},
        {"command": "view", "path": "/etc/passwd"},
        {"command": "create", "path": ".git/hooks/post-checkout", "file_text": "#!/bin/sh\n"},
    ]
    for attempt in attempts:
        res = ed.execute(attempt)
        assert res.is_error, attempt
        assert "top secret" not in res.content
    _outside_unchanged(outside)
    assert (root / ".git").read_text() == "gitdir: /somewhere/else\n"
    assert ed.files_written == []


def test_allowed_write_limits_the_scope(tree):
    ed = TextEditorTool(tree["root"], allowed_write=lambda rel: rel == "src/a.py")
    assert not ed.execute({"command": "insert", "path": "src/a.py", "insert_line": 0, "insert_text": "#"}).is_error
    res = ed.execute({"command": "create", "path": "src/b.py", "file_text": "x\n"})
    assert res.is_error and "scope" in res.content
    assert not (tree["root"] / "src" / "b.py").exists()
    # a symlink inside the root is checked by its target: link_in/a.py is src/a.py
    assert not ed.execute({"command": "insert", "path": "link_in/a.py", "insert_line": 0, "insert_text": "#"}).is_error


def test_size_limit_binary_and_mode_preserved(tree):
    root = tree["root"]
    (root / "big.txt").write_text("x" * 2000)
    (root / "bin.dat").write_bytes(b"\x00\x01\x02")
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    ed = TextEditorTool(root, max_file_bytes=1000)
    assert "limit" in ed.execute({"command": "view", "path": "big.txt"}).content
    assert "limit" in ed.execute({"command": "create", "path": "c.txt", "file_text": "y" * 1001}).content
    assert "binary" in ed.execute({"command": "view", "path": "bin.dat"}).content
    assert not ed.execute({"command": "str_replace", "path": "run.sh", "old_str": "hi", "new_str": "ho"}).is_error
    assert os.stat(script).st_mode & 0o777 == 0o755
    assert not any(p.name.startswith(".wt-edit-") for p in root.iterdir())


def test_editor_needs_an_existing_root(tmp_path):
    with pytest.raises(ConfigurationError, match="not a directory"):
        TextEditorTool(tmp_path / "nope")


# -- command tool -----------------------------------------------------------------------------------------------------
PY = sys.executable


def test_command_tool_runs_allowlisted_argv_without_shell(tree):
    tool = CommandTool(tree["root"], [[PY, "-c"]], timeout=30)
    d = tool.definition()
    assert d["name"] == "run_command" and d["input_schema"]["required"] == ["command"]
    res = tool.execute({"command": f"{PY} -c 'import os; print(os.getcwd()); print(\"a;b|c\")'"})
    assert not res.is_error
    assert res.content.startswith("exit code: 0")
    assert str(tree["root"]) in res.content and "a;b|c" in res.content
    fail = tool.execute({"command": f"{PY} -c 'raise SystemExit(3)'"})
    assert not fail.is_error and fail.content.startswith("exit code: 3")


@pytest.mark.parametrize("command", [
    "rm -rf /", "bash -c 'echo hi'", f"{PY} -m http.server", "sh", "", "pytest; rm -rf /",
    f"{PY} -c 'print(1)' /etc/passwd", f"{PY} -c x --rootdir=../..",
])
def test_command_tool_refuses_what_is_not_allowed(tree, command):
    tool = CommandTool(tree["root"], [[PY, "-c"], ["pytest", "-q"]], timeout=30)
    res = tool.execute({"command": command})
    assert res.is_error, command
    _outside_unchanged(tree["outside"])


def test_command_tool_refuses_bad_input(tree):
    tool = CommandTool(tree["root"], ["pytest"], timeout=30)
    for bad in ("pytest", {"command": 3}, {"command": "pytest 'unclosed"}, {}):
        assert tool.execute(bad).is_error
    with pytest.raises(ConfigurationError):
        CommandTool(tree["root"], [], timeout=1)


def test_command_tool_missing_program_is_a_tool_error(tree):
    res = CommandTool(tree["root"], [["no-such-program-xyz"]], timeout=5).execute({"command": "no-such-program-xyz"})
    assert res.is_error and "not installed" in res.content


def test_command_timeout_kills_everything_it_started(isolation, tree, tmp_path):
    marker = f"sandbox-timeout-{uuid.uuid4().hex}"
    code = ("import subprocess, sys, time; "
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}']); "
            f"subprocess.Popen(['setsid', sys.executable, '-c', 'import time; time.sleep(60)', '{marker}']); "
            "time.sleep(60)")
    tool = CommandTool(tmp_path, [[PY, "-c"]], timeout=1.5, isolation=isolation)
    res = tool.execute({"argv": [PY, "-c", code]})
    assert res.is_error and "timed out" in res.content
    assert wait_no_marker(marker) == [], "a child survived the timeout"
    assert tool.last_isolation == ("bwrap" if isolation == "bwrap" else "fallback")


def test_command_output_is_truncated_and_secrets_scrubbed(tree, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-should-not-leak")
    monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", "anthropic://:sk-ant-should-not-leak@")
    monkeypatch.setenv("HARMLESS_SETTING", "visible")
    tool = CommandTool(tree["root"], [[PY, "-c"]], timeout=30, max_output_chars=200)
    res = tool.execute({"command": f"{PY} -c 'import os; print(sorted(os.environ.items()))'"})
    assert "sk-ant-should-not-leak" not in res.content
    big = tool.execute({"command": f"{PY} -c 'print(\"x\" * 5000)'"})
    assert "characters cut" in big.content and len(big.content) < 400
    show = {"command": f"{PY} -c 'import os; print(os.environ.get(\"HARMLESS_SETTING\"))'"}
    assert "visible" not in CommandTool(tree["root"], [[PY, "-c"]], timeout=30).execute(show).content
    named = CommandTool(tree["root"], [[PY, "-c"]], timeout=30, pass_env=["HARMLESS_SETTING"], env={"EXTRA": "1"})
    assert "visible" in named.execute(show).content
