"""The box (core/box.py): real bubblewrap and the real fallback, with real processes, files and sockets.

Every behaviour is checked on each isolation path it is promised for: ``bwrap`` (skipped where bubblewrap
cannot run), ``fallback`` (``isolation="auto"`` on a worker where the probe found no bubblewrap; the probe's
answer is the one thing set by the test, as this machine has bubblewrap) and, where it applies, ``none``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import nobody

from airflow_provider_worktree.core.sandbox import box
from airflow_provider_worktree.core.sandbox.box import BoxLimits, IsolationUnavailable, run_boxed
from airflow_provider_worktree.core.errors import ConfigurationError

PY = sys.executable
KEY = "sk-ant-box-test-key-never-leaks-0123456789"
BWRAP_WORKS = box.bwrap_status()[0]
needs_bwrap = pytest.mark.skipif(not BWRAP_WORKS, reason=f"bubblewrap does not work here: {box.bwrap_status()[1]}")


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def no_bwrap(monkeypatch):
    """A worker where the once-per-process probe found no bubblewrap (this machine has it)."""
    monkeypatch.setattr(box, "_probe", (False, "bwrap is not installed (test)"))
    monkeypatch.setattr(box, "_warned", False)


@pytest.fixture(params=["bwrap", "fallback"])
def isolation(request, monkeypatch):
    """The isolation setting that gives each real path: bubblewrap required, or the fallback of 'auto'."""
    if request.param == "bwrap":
        if not BWRAP_WORKS:
            pytest.skip(f"bubblewrap does not work here: {box.bwrap_status()[1]}")
        return "bwrap"
    monkeypatch.setattr(box, "_probe", (False, "bwrap is not installed (test)"))
    monkeypatch.setattr(box, "_warned", False)
    return "auto"


@pytest.fixture
def secrets_env(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", f"anthropic://:{KEY}@")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{KEY}@db/x")
    monkeypatch.setenv("GH_PAT", KEY)
    monkeypatch.setenv("HARMLESS_SETTING", "visible")


@pytest.fixture
def wt(tmp_path: Path) -> Path:
    root = tmp_path / "wt"
    root.mkdir()
    (root / "hello.txt").write_text("hello\n")
    return root


def py(worktree: Path, code: str, isolation: str, **kw) -> box.BoxResult:
    kw.setdefault("timeout", 60)
    return run_boxed([PY, "-c", textwrap.dedent(code)], worktree, isolation=isolation, merge_stderr=True, **kw)


def marker_pids(marker: str) -> list[int]:
    """Host PIDs of live (non-zombie) processes whose command line holds ``marker``: works across PID
    namespaces, so it finds what a box left behind wherever it runs."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def wait_no_marker(marker: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := marker_pids(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


# ---------------------------------------------------------------------------------------------------- environment
@pytest.mark.parametrize("mode", ["bwrap", "fallback", "none"])
def test_environment_is_the_allowlist_plus_named_variables(mode, wt, secrets_env, monkeypatch):
    if mode == "bwrap" and not BWRAP_WORKS:
        pytest.skip("bubblewrap does not work here")
    if mode == "fallback":
        monkeypatch.setattr(box, "_probe", (False, "test"))
    isolation = {"fallback": "auto"}.get(mode, mode)
    res = py(wt, "import os, json; print(json.dumps(dict(os.environ)))", isolation,
             pass_env=["HARMLESS_*"], env={"EXPLICIT": "yes"})
    assert res.returncode == 0 and res.isolation == mode, res.stdout
    env = __import__("json").loads(res.stdout)
    assert KEY not in res.stdout
    assert not {"ANTHROPIC_API_KEY", "AIRFLOW_CONN_ANTHROPIC_DEFAULT", "DATABASE_URL", "GH_PAT"} & set(env)
    assert env["HARMLESS_SETTING"] == "visible" and env["EXPLICIT"] == "yes"
    assert env["PATH"] == os.environ["PATH"]
    assert env["HOME"] != os.environ.get("HOME")
    assert env["TMPDIR"] == "/tmp" if mode == "bwrap" else env["TMPDIR"].startswith(tempfile.gettempdir() + "/wt-box-")
    without = py(wt, "import os; print(os.environ.get('HARMLESS_SETTING'))", isolation)
    assert without.stdout.strip() == "None"


def test_parent_environ_and_process_list_show_no_secret(isolation, wt, secrets_env):
    code = """
        import os
        print(open(f"/proc/{os.getppid()}/environ", "rb").read().decode(errors="replace"))
        print(open("/proc/self/environ", "rb").read().decode(errors="replace"))
    """
    res = py(wt, code, isolation)
    assert res.returncode == 0, res.stdout
    assert KEY not in res.stdout and "ANTHROPIC_API_KEY" not in res.stdout


def test_home_and_tmp_are_private_and_writable(isolation, wt):
    res = py(wt, """
        import os, tempfile
        home = os.path.expanduser("~")
        open(os.path.join(home, "x"), "w").write("1")
        with tempfile.NamedTemporaryFile(dir=None) as fh:
            print(home, fh.name, os.listdir(home))
    """, isolation)
    assert res.returncode == 0, res.stdout
    home, tmpname, listing = res.stdout.split(" ", 2)
    assert listing.strip() == "['x']"
    assert not os.path.exists(os.path.join(home, "x"))  # gone with the box


# ---------------------------------------------------------------------------------------------------- filesystem
@needs_bwrap
def test_bwrap_root_is_read_only_and_worktree_writable(wt, tmp_path):
    outside = Path(f"/var/tmp/box-escape-{uuid.uuid4().hex}")
    in_tmp = tmp_path / "outside.txt"  # the box's /tmp is its own: a write there lands in the box's tmpfs
    res = py(wt, f"""
        import os
        open("inside.txt", "w").write("ok")
        open({str(in_tmp)!r}, "w").write("private")
        for target in [{str(outside)!r}, "/usr/escape.txt", {str(Path(PY).parent / "escape")!r}]:
            try:
                open(target, "w").write("escaped")
                print("WROTE", target)
            except OSError as exc:
                print("refused", exc.errno)
    """, "bwrap")
    assert res.returncode == 0, res.stdout
    assert "WROTE" not in res.stdout
    assert (wt / "inside.txt").read_text() == "ok"
    assert not outside.exists() and not (Path(PY).parent / "escape").exists() and not in_tmp.exists()


@needs_bwrap
def test_bwrap_hides_home_credentials_airflow_home_caches_and_other_worktrees(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    (home / ".netrc").write_text("machine x password hunter2\n")
    airflow_home = tmp_path / "airflow"
    airflow_home.mkdir()
    (airflow_home / "airflow.cfg").write_text("[database]\nsql_alchemy_conn = postgresql://u:pw@db/x\n")
    cache = tmp_path / "cache"
    (cache / "other-repo").mkdir(parents=True)
    (cache / "other-repo" / "secret.py").write_text("TOKEN = 1\n")
    worktrees = tmp_path / "worktrees"
    mine, other = worktrees / "mine", worktrees / "other"
    mine.mkdir(parents=True)
    other.mkdir()
    (other / "work.py").write_text("someone else's work\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_home))
    monkeypatch.setenv("AIRFLOW__WORKTREE__CACHE_DIR", str(cache))
    # tmp_path lives in /tmp, which the box replaces anyway: move the tree elsewhere to test each rule.
    real_base = Path(f"/var/tmp/box-test-{uuid.uuid4().hex[:8]}")
    subprocess.run(["cp", "-a", str(tmp_path), str(real_base)], check=True)
    try:
        for var, sub in (("HOME", "home"), ("AIRFLOW_HOME", "airflow"), ("AIRFLOW__WORKTREE__CACHE_DIR", "cache")):
            monkeypatch.setenv(var, str(real_base / sub))
        targets = [real_base / "home/.ssh/id_ed25519", real_base / "home/.netrc", real_base / "airflow/airflow.cfg",
                   real_base / "cache/other-repo/secret.py", real_base / "worktrees/other/work.py",
                   Path(os.path.expanduser("~")) / ".ssh"]
        code = "import os\n" + "".join(f"print({str(t)!r}, os.path.exists({str(t)!r}) and os.path.getsize("
                                       f"{str(t)!r}))\n" for t in targets)
        res = py(real_base / "worktrees/mine", code, "bwrap", hide=[real_base / "worktrees"])
        assert res.returncode == 0, res.stdout
        assert all(line.endswith(("False", " 0")) for line in res.stdout.strip().splitlines()), res.stdout
        assert "PRIVATE" not in res.stdout and "hunter2" not in res.stdout
        with pytest.raises(AssertionError):  # the same code outside the box sees them: the test can fail
            assert all(not t.exists() for t in targets[:5])
    finally:
        subprocess.run(["rm", "-rf", str(real_base)], check=True)


@needs_bwrap
def test_bwrap_keeps_the_worktrees_own_git_usable(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(repo), "add", "a.py"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i"],
                   check=True)
    wt = tmp_path / "wts" / "shard"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "-b", "s", str(wt)], check=True)
    res = run_boxed(["git", "log", "--oneline", "-1"], wt, isolation="bwrap", timeout=60, merge_stderr=True,
                    hide=[tmp_path / "wts"])
    assert res.returncode == 0 and res.stdout.strip().endswith(" i"), res.stdout


# ---------------------------------------------------------------------------------------------------- processes
def test_setsid_daemon_does_not_outlive_the_box(isolation, wt):
    marker = f"box-daemon-{uuid.uuid4().hex}"
    code = f"""
        import os, subprocess, sys
        # A double-forked daemon in its own session: out of the process group's reach.
        subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(120)", "{marker}"],
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("started")
    """
    res = py(wt, code, isolation)
    assert res.returncode == 0 and "started" in res.stdout, res.stdout
    assert wait_no_marker(marker) == []


def test_timeout_kills_everything_it_started(isolation, wt):
    marker = f"box-timeout-{uuid.uuid4().hex}"
    code = f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
        subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
        time.sleep(120)
    """
    res = py(wt, code, isolation, timeout=3)
    assert res.timed_out and res.returncode is None
    assert wait_no_marker(marker) == []


def test_cancel_kills_everything_it_started(isolation, wt):
    import threading

    from airflow_provider_worktree.core.sandbox.proc import ProcessHandle

    marker = f"box-cancel-{uuid.uuid4().hex}"
    handle = ProcessHandle(grace_s=0)
    timer = threading.Timer(2.0, handle.cancel)
    timer.start()
    try:
        res = py(wt, f"""
            import subprocess, sys, time
            subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
            time.sleep(120)
        """, isolation, handle=handle)
    finally:
        timer.cancel()
    assert res.cancelled
    assert wait_no_marker(marker) == []


BOMB = """
import os, sys, time
forks = 0
for _ in range(2000):  # 'without bound' for the box; bounded here so a broken limit cannot hurt the host
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    forks += 1
print("forks", forks, flush=True)
time.sleep(120)
"""
#: Runs the box as an unprivileged user: the kernel exempts root (and a user namespace mapped onto root) from
#: RLIMIT_NPROC, so process limits protect a non-root worker (the Airflow image's default) only.
DRIVER = """
import json, sys
from airflow_provider_worktree.core.sandbox import box
from airflow_provider_worktree.core.sandbox.box import BoxLimits
mode, worktree, marker = sys.argv[1:4]
if mode == "fallback":
    box._probe = (False, "test")
res = box.run_boxed([sys.executable, "-S", "-c", sys.argv[4], marker], worktree, isolation="bwrap" if mode == "bwrap"
                    else "auto", timeout=10, merge_stderr=True, limits=BoxLimits(processes=40))
print(json.dumps({"stdout": res.stdout, "isolation": res.isolation}))
"""


@pytest.mark.parametrize("mode", ["bwrap", "fallback"])
def test_fork_bomb_is_bounded_for_an_unprivileged_worker(mode, tmp_path):
    if mode == "bwrap" and not BWRAP_WORKS:
        pytest.skip("bubblewrap does not work here")
    system_python = "/usr/bin/python3"
    if not os.path.exists(system_python):
        pytest.skip("needs a system python3 an unprivileged user can run")
    base = Path(f"/var/tmp/box-bomb-{uuid.uuid4().hex[:8]}")
    base.mkdir(mode=0o777)
    os.chmod(base, 0o777)
    marker = f"box-bomb-{uuid.uuid4().hex}"
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.getuid() == 0 else []
    # nobody reads the package from a copy: the checkout may be in a private (0700) directory
    package_root = nobody.readable_copy() if as_user else Path(box.__file__).parents[3]
    try:
        done = subprocess.run([*as_user, "env", "-i", "PATH=/usr/bin:/bin",
                               f"PYTHONPATH={package_root}", system_python, "-S", "-c", DRIVER,
                               mode, str(base), marker, BOMB], cwd=base, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        out = __import__("json").loads(done.stdout.strip().splitlines()[-1])
        assert out["isolation"] == mode
        forks = int(out["stdout"].split("forks", 1)[1].split()[0])
        assert 0 < forks < 40, out
        assert wait_no_marker(marker) == []
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_file_size_and_memory_limits(isolation, wt):
    limits = BoxLimits(file_bytes=1_000_000, memory_bytes=300 * 1024 ** 2)
    res = py(wt, """
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            with open("big.bin", "wb") as fh:
                fh.write(b"x" * 5_000_000)
            print("WROTE BIG")
        except OSError as exc:
            print("fsize refused", exc.errno)
        try:
            blob = bytearray(1024 ** 3)
            print("ALLOCATED")
        except MemoryError:
            print("memory refused")
    """, isolation, limits=limits)
    assert "fsize refused" in res.stdout and "memory refused" in res.stdout, res.stdout
    assert (wt / "big.bin").stat().st_size <= 1_000_000


# ---------------------------------------------------------------------------------------------------- network
@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    yield srv.getsockname()[1]
    srv.close()


@needs_bwrap
def test_bwrap_has_no_network_unless_allowed(wt, listener):
    code = f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {listener}), timeout=3).close()
            print("CONNECTED")
        except OSError as exc:
            print("refused", exc)
    """
    assert "refused" in py(wt, code, "bwrap").stdout
    assert "CONNECTED" in py(wt, code, "bwrap", network=True).stdout


# ---------------------------------------------------------------------------------------------------- settings
def test_required_bwrap_fails_with_the_fix_when_unavailable(no_bwrap, wt):
    with pytest.raises(IsolationUnavailable) as err:
        run_boxed(["true"], wt, isolation="bwrap", timeout=5)
    message = str(err.value)
    assert "apt-get install bubblewrap" in message and "user namespaces" in message and "\n" not in message


def test_auto_falls_back_with_one_warning(no_bwrap, wt, caplog):
    with caplog.at_level(logging.WARNING, logger="airflow_provider_worktree.core.sandbox.box"):
        first = run_boxed(["true"], wt, isolation="auto", timeout=30)
        second = run_boxed(["true"], wt, isolation="auto", timeout=30)
    assert first.isolation == second.isolation == "fallback" and first.returncode == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "fallback" in warnings[0].getMessage()


@needs_bwrap
def test_auto_uses_bwrap_where_it_works(wt):
    assert run_boxed(["true"], wt, isolation="auto", timeout=30).isolation == "bwrap"
    assert box.bwrap_status() is box.bwrap_status()  # probed once, cached


def test_bad_settings_and_inputs(wt, tmp_path):
    with pytest.raises(ConfigurationError, match="is not one of auto, bwrap, none"):
        run_boxed(["true"], wt, isolation="docker", timeout=5)
    with pytest.raises(FileNotFoundError):
        run_boxed(["no-such-program-xyz"], wt, isolation="none", timeout=5)
    with pytest.raises(ConfigurationError, match="outside its worktree"):
        run_boxed(["true"], wt, cwd=tmp_path, isolation="none", timeout=5)
    with pytest.raises(ConfigurationError, match="positive integer"):
        BoxLimits(processes=0)


def test_exit_status_and_signals_pass_through(isolation, wt):
    assert py(wt, "raise SystemExit(7)", isolation).returncode == 7
    killed = py(wt, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", isolation)
    # bubblewrap reports a signalled child as 128+N; the fallback re-raises the signal.
    assert killed.returncode in (-9, 137)


def test_stdin_reaches_the_command(isolation, wt):
    res = run_boxed([PY, "-c", "import sys; print(sys.stdin.read().upper())"], wt, isolation=isolation,
                    timeout=30, input="prompt on stdin")
    assert res.stdout.strip() == "PROMPT ON STDIN"


def test_core_box_and_its_reaper_import_no_airflow():
    import ast

    for module in ("box.py", "_reaper.py", "_procfs.py"):
        tree = ast.parse((Path(box.__file__).parent / module).read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "airflow"], module
