"""Issue 22, item 7: the three security gaps left open, each attacked through the package's real paths.

1. The box's environment is an allowlist of exact names: secrets whose names no denylist would know
   (``GIT_ASKPASS_PASS``, ``DATABASE_URL``, ``SOME_DSN``, ``X_PASS``, ``X_PWD``, ``GH_PAT``, ``GIT_CONFIG_VALUE_0``,
   and ``LC_SECRET_TOKEN``, which the old ``LC_*`` prefix let in) never reach a command run by the real command
   tool, nor the model through the real ApiRunner.
2. The Claude Code CLI never holds the real API key: the real CLI runs a command that prints the environment of
   every process it can find, and a watcher on the host reads ``/proc/<pid>/environ`` of the CLI; the key is in
   none of them, the run's proxy token is, and the run succeeds against an upstream that demands the real key.
   The proxy itself is driven with the real ``anthropic`` SDK (streaming unbuffered, wrong tokens refused).
3. A root worker's box is bounded: 500 sleeping children as root are stopped at the limit (a pids cgroup).
"""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import ClassVar

import anthropic
import pytest
from conftest import make_repo
from test_box import BWRAP_WORKS, wait_no_marker
from test_claude_code import claude_cli, result_text, tool_results  # noqa: F401 - the CLI fixture, used by name

from airflow_provider_worktree.core.runners import ApiRunner
from airflow_provider_worktree.core.runners.claude_code import ClaudeCodeRunner
from airflow_provider_worktree.core.runners.keyproxy import KeyProxy
from airflow_provider_worktree.core.sandbox import CommandTool, _cgroup, box
from airflow_provider_worktree.core.sandbox.box import BoxLimits, run_boxed
from airflow_provider_worktree.testing import OfflineMessagesServer, ScriptedModel, text_reply, tool_use_reply

PY = sys.executable
MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-api03-REAL-KEY-must-never-reach-the-box-7f3a"

#: Secrets under names a denylist of "*_KEY, *_TOKEN, *_SECRET, *PASSWORD*" would let through.
UNLISTED_SECRETS = {
    "GIT_ASKPASS_PASS": "askpass-secret-11",
    "DATABASE_URL": "postgresql://app:db-secret-22@db/prod",
    "SOME_DSN": "https://dsn-secret-33@sentry.invalid/1",
    "X_PASS": "pass-secret-44",
    "X_PWD": "pwd-secret-55",
    "GH_PAT": "ghp_pat-secret-66",
    "GIT_CONFIG_VALUE_0": "Authorization: Bearer gitcfg-secret-77",
    "LC_SECRET_TOKEN": "lc-prefix-secret-88",
}

#: Prints the environment of this process and of every ancestor it can read (the CLI's included), then, in a
#: PID namespace, of every process in it.
DUMP_ENVIRON = """
import os
seen, pid = set(), os.getpid()
while pid > 0 and pid not in seen:
    seen.add(pid)
    try:
        print("ENVIRON", pid, open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError as exc:
        print("UNREADABLE", pid, exc)
        break
print("ENV", dict(os.environ))
"""


@pytest.fixture
def unlisted_secrets(monkeypatch):
    for name, value in UNLISTED_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "http.extraHeader")
    return UNLISTED_SECRETS


@pytest.fixture(params=["bwrap", "fallback", "none"])
def any_isolation(request, monkeypatch):
    """Every isolation the box has: the environment is the allowlist on each of them."""
    if request.param == "bwrap" and not BWRAP_WORKS:
        pytest.skip(f"bubblewrap does not work here: {box.bwrap_status()[1]}")
    if request.param == "fallback":
        monkeypatch.setattr(box, "_probe", (False, "bwrap is not installed (test)"))
        monkeypatch.setattr(box, "_warned", False)
        return "auto"
    return request.param


def leaked(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text or f"{name}=" in text or f"'{name}'" in text]


# ------------------------------------------------------------------------------------ 1. the environment allowlist
def test_unlisted_secret_names_never_reach_the_command_tool(any_isolation, unlisted_secrets, tmp_path):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "dump.py").write_text(DUMP_ENVIRON)
    tool = CommandTool(wt, [["env"], [PY, "dump.py"]], timeout=60, isolation=any_isolation)
    env_out = tool.execute({"command": "env"})
    assert not env_out.is_error and "PATH=" in env_out.content, env_out.content
    dumped = tool.execute({"command": f"{PY} dump.py"})
    assert not dumped.is_error and "ENVIRON" in dumped.content, dumped.content
    assert leaked(env_out.content, unlisted_secrets) == []
    if tool.last_isolation == "bwrap":  # elsewhere the worker's own /proc/<pid>/environ is readable (documented)
        assert leaked(dumped.content, unlisted_secrets) == []
    else:
        env_line = next(line for line in dumped.content.splitlines() if line.startswith("ENV "))
        assert leaked(env_line, unlisted_secrets) == []
    # the locale still gets in (exact names), and a name the DAG author passes explicitly does
    os.environ["LC_MESSAGES"] = "C.UTF-8"
    try:
        named = CommandTool(wt, [["env"]], timeout=60, isolation=any_isolation, pass_env=["X_PWD"])
        out = named.execute({"command": "env"}).content
    finally:
        del os.environ["LC_MESSAGES"]
    assert "X_PWD=pwd-secret-55" in out and "LC_MESSAGES=C.UTF-8" in out
    assert leaked(out, {k: v for k, v in unlisted_secrets.items() if k != "X_PWD"}) == []


def test_unlisted_secret_names_never_reach_the_model(unlisted_secrets, tmp_path):
    """The real ApiRunner: the scripted model runs ``env`` through ``run_command``; what comes back to the model
    (the tool result the offline server received) holds none of the worker's secrets."""
    repo = make_repo(tmp_path / "repo", {"src/app.py": "x = 1\n"})
    model = ScriptedModel([tool_use_reply("run_command", {"command": "env"}), text_reply("done")])
    with OfflineMessagesServer(model) as srv:
        client = anthropic.Anthropic(api_key="sk-ant-offline", base_url=srv.base_url, max_retries=0)
        result = ApiRunner(client, MODEL, allow_commands=[["env"]]).run(repo, "look at the environment")
        requests = srv.message_requests()
    assert result.stop_reason == "end_turn", result
    (block,) = tool_results(requests[-1])
    seen = result_text(block)
    assert "exit code: 0" in seen and "PATH=" in seen
    assert leaked(json.dumps([r["body"] for r in requests]), unlisted_secrets) == []


# ---------------------------------------------------------------------------------------------- 2. the key proxy
def _environ_watcher(needle: str, stop: threading.Event, found: dict[int, bytes]) -> None:
    """Host side: read /proc/<pid>/environ of every process whose command line holds ``needle``."""
    while not stop.is_set():
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                if needle.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found[int(entry)] = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
        time.sleep(0.05)


@pytest.mark.parametrize("isolation", ["bwrap", "fallback"])
def test_claude_code_cli_and_its_commands_never_see_the_real_key(claude_cli, isolation, git_repo,  # noqa: F811
                                                                 monkeypatch):
    if isolation == "bwrap" and not BWRAP_WORKS:
        pytest.skip("bubblewrap does not work here")
    if isolation == "fallback":
        monkeypatch.setattr(box, "_probe", (False, "bwrap is not installed (test)"))
    (git_repo / ".git" / "info" / "exclude").write_text("dump.py\n")
    (git_repo / "dump.py").write_text(DUMP_ENVIRON)
    model = ScriptedModel([tool_use_reply("Bash", {"command": f"{PY} dump.py", "description": "environment"}),
                           text_reply("Looked.")])
    found: dict[int, bytes] = {}
    stop = threading.Event()
    # the upstream demands the REAL key: the run can only succeed if the proxy added it
    with OfflineMessagesServer(model, api_key=KEY) as srv:
        cc = ClaudeCodeRunner(model=MODEL, executable=claude_cli, api_key=KEY, base_url=srv.base_url,
                              max_budget_usd=5.0, max_turns=6, timeout=300, allow_commands=[[PY, "dump.py"]],
                              isolation="auto")
        watcher = threading.Thread(target=_environ_watcher, args=(os.path.realpath(claude_cli), stop, found))
        watcher.start()
        try:
            result = cc.run(git_repo, "Print the environment.")
        finally:
            stop.set()
            watcher.join()
        requests = srv.message_requests()
    assert result.stop_reason == "end_turn" and result.error is None, result
    assert cc.last_isolation == isolation
    assert requests and all(r["status"] == 200 for r in requests), [r["status"] for r in requests]
    (block,) = tool_results(requests[-1])
    output = result_text(block)
    assert "ENVIRON" in output, output
    # the CLI's environment, as its command and the host saw it: the run's token, never the key
    assert found, "the watcher never saw the CLI process"
    cli_environ = b"\n".join(found.values()).decode(errors="replace")
    assert KEY not in output, "a command the CLI ran read the real key"
    assert KEY not in cli_environ, "the CLI process holds the real key in its environment"
    assert KEY not in json.dumps([r["body"] for r in requests])
    assert "ANTHROPIC_API_KEY=wt-proxy-" in cli_environ and "ANTHROPIC_BASE_URL=http://127.0.0.1:" in cli_environ
    if isolation == "bwrap":
        assert "ANTHROPIC_API_KEY=wt-proxy-" in output, "the command read the CLI's environment"


class _HoldingUpstream(http.server.BaseHTTPRequestHandler):
    """An upstream that streams one SSE event, then holds the stream open until told to go on."""

    protocol_version = "HTTP/1.1"
    go_on = threading.Event()
    seen_keys: ClassVar[list[str]] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).seen_keys.append(self.headers.get("x-api-key") or "")
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def chunk(data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        chunk(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
        type(self).go_on.wait(20)
        chunk(b"event: done\ndata: {}\n\n")
        self.wfile.write(b"0\r\n\r\n")


def test_the_proxy_streams_unbuffered_and_swaps_the_key(tmp_path):
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HoldingUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    _HoldingUpstream.go_on.clear()
    try:
        with KeyProxy(f"http://127.0.0.1:{upstream.server_address[1]}", KEY) as proxy:
            conn = http.client.HTTPConnection("127.0.0.1", int(proxy.base_url.rsplit(":", 1)[1]), timeout=30)
            started = time.monotonic()
            conn.request("POST", "/v1/messages", body=b"{}", headers={"x-api-key": proxy.token,
                                                                      "content-type": "application/json"})
            resp = conn.getresponse()
            first = resp.read1(4096)
            waited = time.monotonic() - started
            _HoldingUpstream.go_on.set()
            rest = resp.read()
            assert b"event: ping" in first and waited < 10, "the first event came only with the end of the stream"
            assert b"event: done" in rest and resp.status == 200
            assert resp.getheader("content-type") == "text/event-stream"
        assert _HoldingUpstream.seen_keys == [KEY], "the upstream got the real key, not the token"
        assert proxy.token not in KEY and KEY not in repr(proxy) and proxy.token not in repr(proxy)
    finally:
        _HoldingUpstream.go_on.set()
        upstream.shutdown()
        upstream.server_close()


def test_the_proxy_with_the_sdk_refuses_other_keys_and_dies_with_the_run():
    with OfflineMessagesServer(ScriptedModel([text_reply("one " * 50), text_reply("two " * 50)]), api_key=KEY) as srv:
        with KeyProxy(srv.base_url, KEY) as proxy:
            client = anthropic.Anthropic(api_key=proxy.token, base_url=proxy.base_url, max_retries=0)
            reply = client.messages.create(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "hi"}])
            assert reply.content[0].text.startswith("one")
            with client.messages.stream(model=MODEL, max_tokens=200,
                                        messages=[{"role": "user", "content": "hi"}]) as stream:
                assert "".join(stream.text_stream).startswith("two")
            forwarded = len(srv.requests)
            for wrong in ("sk-ant-guess", KEY, proxy.token + "x", ""):
                bad = anthropic.Anthropic(api_key=wrong or "none", base_url=proxy.base_url, max_retries=0)
                with pytest.raises(anthropic.AuthenticationError) as caught:
                    bad.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
                assert KEY not in str(caught.value) and proxy.token not in str(caught.value)
            assert len(srv.requests) == forwarded, "a request without the run's token was forwarded"
            base = proxy.base_url
        after = anthropic.Anthropic(api_key=proxy.token, base_url=base, max_retries=0)
        with pytest.raises(anthropic.APIConnectionError):
            after.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    # an unreachable upstream: a 502 that names the cause, never the key
    with KeyProxy("http://127.0.0.1:9", KEY) as proxy:
        client = anthropic.Anthropic(api_key=proxy.token, base_url=proxy.base_url, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 502 and "could not reach" in str(caught.value)
        assert KEY not in str(caught.value)


# ------------------------------------------------------------------------------------ 3. a root worker's fork bomb
BOMB = """
import subprocess, sys
procs, error = [], None
for _ in range(500):
    try:
        procs.append(subprocess.Popen(["sh", "-c", "sleep 60; : " + sys.argv[1]]))
    except OSError as exc:
        error = exc
        break
print("STARTED", len(procs), "ERROR", type(error).__name__, getattr(error, "errno", None), flush=True)
for p in procs:
    p.kill()
"""
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the gap is a root worker's (RLIMIT_NPROC binds others)")


def _box_cgroups() -> list[str]:
    return [f"{parent}/{name}" for _v, parent in _cgroup._candidates() if os.path.isdir(parent)
            for name in os.listdir(parent) if name.startswith(f"wt-box-{os.getpid()}-")]


@needs_root
@pytest.mark.parametrize("mode", ["bwrap", "fallback"])
def test_a_fork_bomb_as_root_is_stopped_by_the_box(mode, tmp_path, monkeypatch):
    if mode == "bwrap" and not BWRAP_WORKS:
        pytest.skip("bubblewrap does not work here")
    if mode == "fallback":
        monkeypatch.setattr(box, "_probe", (False, "bwrap is not installed (test)"))
    try:
        _cgroup.open_pids_cgroup(10).remove()
    except _cgroup.CgroupUnavailable as exc:
        pytest.skip(f"no writable pids cgroup on this machine: {exc}")
    wt = tmp_path / "wt"
    wt.mkdir()
    marker = f"root-bomb-{uuid.uuid4().hex}"
    res = run_boxed([PY, "-c", BOMB, marker], wt, isolation="auto" if mode == "fallback" else "bwrap", timeout=60,
                    merge_stderr=True, limits=BoxLimits(processes=50))
    assert res.isolation == mode and res.returncode == 0, res.stdout
    started = int(res.stdout.split("STARTED", 1)[1].split()[0])
    assert started < 50, res.stdout  # each child is a shell and its sleep: two of the limit's 50 (+ the plumbing)
    assert "BlockingIOError 11" in res.stdout, res.stdout  # fork refused with EAGAIN, as RLIMIT_NPROC would
    assert wait_no_marker(marker) == []
    assert _box_cgroups() == [], "the box's cgroup is removed after the run"


@needs_root
def test_the_box_cannot_lift_its_own_limit(tmp_path):
    if not BWRAP_WORKS:
        pytest.skip("bubblewrap does not work here")
    try:
        _cgroup.open_pids_cgroup(10).remove()
    except _cgroup.CgroupUnavailable as exc:
        pytest.skip(f"no writable pids cgroup on this machine: {exc}")
    wt = tmp_path / "wt"
    wt.mkdir()
    code = """
import glob, os
for f in glob.glob("/sys/fs/cgroup/**/pids.max", recursive=True) + glob.glob("/sys/fs/cgroup/**/cgroup.procs",
                                                                             recursive=True):
    try:
        open(f, "w").write("max" if f.endswith("pids.max") else "0")
        print("WROTE", f)
    except OSError as exc:
        pass
print("DONE")
"""
    res = run_boxed([PY, "-c", code], wt, isolation="bwrap", timeout=60, merge_stderr=True,
                    limits=BoxLimits(processes=50))
    assert "DONE" in res.stdout and "WROTE" not in res.stdout, res.stdout


@needs_root
def test_no_writable_cgroup_is_a_warning_and_the_command_still_runs(tmp_path, monkeypatch, caplog):
    def unavailable(_max):
        raise _cgroup.CgroupUnavailable("no writable cgroup with the pids controller (test)")

    monkeypatch.setattr(box, "open_pids_cgroup", unavailable)
    monkeypatch.setattr(box, "_cgroup_warned", False)
    wt = tmp_path / "wt"
    wt.mkdir()
    with caplog.at_level(logging.WARNING, logger=box.__name__):
        res = run_boxed([PY, "-c", "print('ran')"], wt, timeout=60, merge_stderr=True)
        again = run_boxed([PY, "-c", "print('ran')"], wt, timeout=60, merge_stderr=True)
    assert res.stdout.strip() == "ran" and again.stdout.strip() == "ran"
    warnings = [r for r in caplog.records if "NOT bounded" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
