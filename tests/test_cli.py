"""``airflow-worktree`` run as a subprocess on real shard databases (SQLite files made through ShardStore)."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_worktree.cli import parse_duration
from airflow_provider_worktree.core.store import ShardStore

ANSI = "\x1b["
SCRIPT = Path(sys.executable).with_name("airflow-worktree")


def _utc(delta_s: float = 0.0):
    return lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=delta_s)


def _shards(n: int, prefix: str = "s") -> list[dict]:
    return [{"shard_id": f"{prefix}-{i:03d}", "task": "todo", "files": [f"src/f{i}.py"]} for i in range(n)]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow-home"), PYTHONWARNINGS="ignore", **extra)
    return env


def run_cli(tmp_path: Path, *args: str, env: dict | None = None, script: bool = False):
    cmd = [str(SCRIPT)] if script else [sys.executable, "-m", "airflow_provider_worktree.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120,
                          env=env or _env(tmp_path), cwd=tmp_path)


def run_json(tmp_path: Path, *args: str, expect: int = 0):
    out = run_cli(tmp_path, *args, "--json")
    assert out.returncode == expect, (out.returncode, out.stdout, out.stderr)
    return json.loads(out.stdout)


@pytest.fixture
def healthy_db(tmp_path: Path) -> str:
    """run-ok: 20 shards, 18 completed (with branches, tokens, cost), 1 running (fresh), 1 pending."""
    path = str(tmp_path / "healthy.db")
    store = ShardStore.open(path)
    store.register_shards("run-ok", _shards(20))
    for i in range(18):
        lease = store.assign_shard("run-ok", f"worker-{i % 3}", shard_id=f"s-{i:03d}")
        store.complete(lease, branch=f"worktree/run-ok/s-{i:03d}", commit_sha=f"{i:02d}" + "a" * 38,
                       input_tokens=1000 + i, output_tokens=200, cost_usd=0.01, files_changed=[f"src/f{i}.py"])
    store.assign_shard("run-ok", "worker-live", shard_id="s-018")
    store.close()
    return path


@pytest.fixture
def sick_db(tmp_path: Path) -> str:
    """run-bad: 10 shards; one running shard whose worker died 2 h ago (a stale lock, and a 2 h task
    duration: critical), 2 failed (20%: critical), 7 completed."""
    path = str(tmp_path / "sick.db")
    old = ShardStore.open(path, clock=_utc(-7200))
    old.register_shards("run-bad", _shards(10))
    old.assign_shard("run-bad", "dead-worker", shard_id="s-000")
    old.close()
    store = ShardStore.open(path)
    for i in range(1, 10):
        lease = store.assign_shard("run-bad", "w1", shard_id=f"s-{i:03d}")
        if i <= 2:
            store.fail(lease, f"verify failed: pytest exited 1 in shard {i}\ntraceback line")
        else:
            store.complete(lease, branch=f"worktree/run-bad/s-{i:03d}", commit_sha="b" * 40)
    store.close()
    return path


# ------------------------------------------------------------------------------------------- status


def test_status_healthy(tmp_path, healthy_db):
    out = run_cli(tmp_path, "status", "--db", healthy_db)
    assert out.returncode == 0, out.stderr
    assert ANSI not in out.stdout  # piped: plain text
    lines = out.stdout.splitlines()
    assert any(line.split()[:2] == ["completed", "18"] for line in lines)
    assert any(line.split()[:2] == ["running", "1"] for line in lines)
    assert any(line.split()[:2] == ["total", "20"] for line in lines)
    assert "Running shards (1)" in out.stdout and "worker-live" in out.stdout
    assert "Recent failures" not in out.stdout and "Alerts" not in out.stdout


def test_status_sick_exits_2_and_lists_failures(tmp_path, sick_db):
    out = run_cli(tmp_path, "status", "--db", sick_db)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Recent failures (2 of 2)" in out.stdout
    assert "verify failed: pytest exited 1 in shard 1 traceback line" in out.stdout
    assert "dead-worker" in out.stdout and "2.0h" in out.stdout
    assert "CRITICAL Failed Tasks critical: 20.0% > 10.0%; action: Review error logs" in out.stdout
    assert "CRITICAL Task Duration critical" in out.stdout


def test_status_json(tmp_path, sick_db):
    data = run_json(tmp_path, "status", "--db", sick_db, expect=2)
    assert data["counts"] == {"pending": 0, "running": 1, "completed": 7, "failed": 2}
    assert data["total"] == 10 and data["level"] == "critical"
    (running,) = data["running"]
    assert running["shard_id"] == "s-000" and running["worker_id"] == "dead-worker"
    assert 7100 < running["age_s"] < 7400 and 7100 < running["heartbeat_age_s"] < 7400
    assert {f["shard_id"] for f in data["recent_failures"]} == {"s-001", "s-002"}
    crit = {a["metric"] for a in data["alerts"] if a["level"] == "critical"}
    assert crit == {"failed_ratio", "task_duration_s"}
    # --run-id filters
    other = run_json(tmp_path, "status", "--db", sick_db, "--run-id", "nope")
    assert other["total"] == 0 and other["level"] == "ok"


def test_options_before_or_after_the_subcommand(tmp_path, healthy_db):
    a = run_json(tmp_path, "status", "--db", healthy_db)
    out = run_cli(tmp_path, "--db", healthy_db, "--json", "status")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"] == a["counts"]


# -------------------------------------------------------------------------------------- stale, reset


def test_stale_lists_the_planted_lease(tmp_path, sick_db):
    out = run_cli(tmp_path, "stale", "--db", sick_db)
    assert out.returncode == 0, out.stderr
    assert "1 stale lock(s)" in out.stdout and "s-000" in out.stdout and "dead-worker" in out.stdout
    assert "airflow-worktree reset-stale --older-than 60m" in out.stdout
    data = run_json(tmp_path, "stale", "--db", sick_db, "--older-than", "30m")
    assert data["older_than_s"] == 1800 and [s["shard_id"] for s in data["stale"]] == ["s-000"]
    assert run_json(tmp_path, "stale", "--db", sick_db, "--older-than", "3h")["stale"] == []
    assert run_json(tmp_path, "stale", "--db", sick_db, "--run-id", "other")["count"] == 0


def test_stale_exits_2_past_the_critical_stale_lock_count(tmp_path):
    path = str(tmp_path / "many.db")
    old = ShardStore.open(path, clock=_utc(-7200))
    old.register_shards("r", _shards(12))
    for _ in range(11):
        old.assign_shard("r", "dead")
    old.close()
    out = run_cli(tmp_path, "stale", "--db", path)
    assert out.returncode == 2
    assert "Stale Locks critical: 11 > 10; action: Manual intervention" in out.stdout
    out = run_cli(tmp_path, "stale", "--db", path, "--threshold", "stale_locks_critical=20",
                  "--threshold", "stale_locks_warning=15")
    assert out.returncode == 0, out.stdout


def test_reset_stale_dry_run_then_for_real(tmp_path, sick_db):
    dry = run_json(tmp_path, "reset-stale", "--db", sick_db, "--dry-run")
    assert dry["dry_run"] is True and [s["shard_id"] for s in dry["reset"]] == ["s-000"]
    assert ShardStore.open(sick_db).get_shard("run-bad", "s-000")["status"] == "running"

    out = run_cli(tmp_path, "reset-stale", "--db", sick_db, "--older-than", "1h", "--run-id", "run-bad")
    assert out.returncode == 0, out.stderr
    assert "Reset 1 stale shard(s) to pending" in out.stdout and "s-000" in out.stdout
    row = ShardStore.open(sick_db).get_shard("run-bad", "s-000")
    assert row["status"] == "pending" and "reclaimed stale lease of worker dead-worker" in row["error_message"]

    again = run_cli(tmp_path, "reset-stale", "--db", sick_db)
    assert again.returncode == 0 and "nothing to reset" in again.stdout


def test_reset_stale_respects_older_than(tmp_path, sick_db):
    data = run_json(tmp_path, "reset-stale", "--db", sick_db, "--older-than", "3h")
    assert data["reset"] == []
    assert ShardStore.open(sick_db).get_shard("run-bad", "s-000")["status"] == "running"


# ------------------------------------------------------------------------------------------- report


def test_report_text_and_json(tmp_path, healthy_db, sick_db):
    out = run_cli(tmp_path, "report", "--db", healthy_db)
    assert out.returncode == 0, out.stderr
    assert "Run run-ok" in out.stdout
    assert "shards: 20 (18 completed, 1 pending, 1 running)" in out.stdout
    assert "cost $0.1800" in out.stdout
    assert "worktree/run-ok/s-004" in out.stdout and "04aaaaaaaa" in out.stdout

    data = run_json(tmp_path, "report", "--db", healthy_db, "--run-id", "run-ok")
    (rep,) = data["runs"]
    assert rep["totals"]["input_tokens"] == sum(1000 + i for i in range(18))
    assert rep["totals"]["output_tokens"] == 18 * 200
    assert rep["totals"]["cost_usd"] == pytest.approx(0.18)
    branches = {s["shard_id"]: s["branch"] for s in rep["shards"]}
    assert branches["s-017"] == "worktree/run-ok/s-017" and branches["s-019"] is None

    bad = run_json(tmp_path, "report", "--db", sick_db)
    assert [r["run_id"] for r in bad["runs"]] == ["run-bad"]
    assert {f["shard_id"] for f in bad["runs"][0]["failed"]} == {"s-001", "s-002"}


def test_report_lists_every_run(tmp_path, healthy_db):
    store = ShardStore.open(healthy_db)
    store.register_shards("run-two", _shards(2, "t"))
    store.close()
    data = run_json(tmp_path, "report", "--db", healthy_db)
    assert sorted(r["run_id"] for r in data["runs"]) == ["run-ok", "run-two"]


# -------------------------------------------------------------------------------------- check, thresholds


def test_check_exit_codes(tmp_path, healthy_db, sick_db):
    ok = run_cli(tmp_path, "check", "--db", healthy_db)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Overall: OK" in ok.stdout and "Not measured: Active Worktrees, Disk Space" in ok.stdout

    warn = run_cli(tmp_path, "check", "--db", healthy_db, "--threshold", "db_size_bytes_warning=1")
    assert warn.returncode == 1, warn.stdout
    assert "Overall: WARNING" in warn.stdout and "Archive old records" in warn.stdout

    crit = run_cli(tmp_path, "check", "--db", sick_db)
    assert crit.returncode == 2
    assert "Overall: CRITICAL" in crit.stdout

    data = run_json(tmp_path, "check", "--db", sick_db, expect=2)
    assert data["level"] == "critical"
    assert data["metrics"]["stale_locks"] == 1 and data["metrics"]["failed_ratio"] == pytest.approx(0.2)


def test_check_with_worktree_root_measures_disk_and_worktrees(tmp_path, healthy_db):
    root = tmp_path / "wt"
    for i in range(3):
        (root / "run" / f"s{i}").mkdir(parents=True)
        (root / "run" / f"s{i}" / ".git").write_text("gitdir: x\n")
    data = run_json(tmp_path, "check", "--db", healthy_db, "--worktree-root", str(root))
    assert data["metrics"]["active_worktrees"] == 3
    assert 0 < data["metrics"]["disk_free_pct"] <= 100
    crit = run_cli(tmp_path, "check", "--db", healthy_db, "--worktree-root", str(root),
                   "--threshold", "active_worktrees_warning=1", "--threshold", "active_worktrees_critical=2")
    assert crit.returncode == 2 and "Investigate stuck tasks" in crit.stdout


def test_thresholds_command(tmp_path):
    out = run_cli(tmp_path, "thresholds")
    assert out.returncode == 0
    assert "Stale Locks" in out.stdout and "> 5" in out.stdout and "> 10" in out.stdout
    data = run_json(tmp_path, "thresholds", "--threshold", "stale_locks_warning=2")
    assert data["thresholds"]["stale_locks_warning"] == 2
    bad = run_cli(tmp_path, "thresholds", "--threshold", "stale_lock_warning=2")
    assert bad.returncode == 3 and "unknown threshold(s) stale_lock_warning" in bad.stderr


# -------------------------------------------------------------------------------------------- prune


def _worktree_made_by_a_dead_process(repo: Path, root: Path, shard_id: str) -> str:
    code = (
        "import sys; from airflow_provider_worktree.core.worktrees.manager import WorktreeManager\n"
        "m = WorktreeManager(sys.argv[1], worktree_root=sys.argv[2])\n"
        "print(m.create_worktree('run-1', sys.argv[3]).path)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(repo), str(root), shard_id], capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_prune(tmp_path, git_repo, healthy_db):
    root = tmp_path / "worktrees"
    path = _worktree_made_by_a_dead_process(git_repo, root, "shard-a")
    assert os.path.isdir(path)
    base = ["--repo", str(git_repo), "--worktree-root", str(root)]
    before = run_json(tmp_path, "check", "--db", healthy_db, *base)
    assert before["metrics"]["active_worktrees"] == 1

    young = run_json(tmp_path, "prune", *base)  # default --older-than 24h: too young
    assert young["removed"] == [] and [s["path"] for s in young["skipped"]] == [path]

    dry = run_cli(tmp_path, "prune", *base, "--older-than", "0s", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and f"would remove {path}" in dry.stdout
    assert os.path.isdir(path)

    real = run_json(tmp_path, "prune", *base, "--older-than", "0s")
    assert real["removed"] == [path] and real["dry_run"] is False
    assert not os.path.exists(path)
    listed = subprocess.run(["git", "worktree", "list"], cwd=git_repo, capture_output=True, text=True).stdout
    assert path not in listed
    assert run_json(tmp_path, "check", "--db", healthy_db, *base)["metrics"]["active_worktrees"] == 0


def test_prune_bad_repo(tmp_path):
    out = run_cli(tmp_path, "prune", "--repo", str(tmp_path / "nope"))
    assert out.returncode == 3 and "no repository at" in out.stderr


# ------------------------------------------------------------------------------------- bad databases


def test_missing_database(tmp_path):
    missing = tmp_path / "nope.db"
    for cmd in ("status", "stale", "reset-stale", "report", "check"):
        out = run_cli(tmp_path, cmd, "--db", str(missing))
        assert out.returncode == 3, (cmd, out.stdout, out.stderr)
        assert f"no shard database at {missing}: run the DAG first or pass --db" in out.stderr
        assert "Traceback" not in out.stderr
    assert not missing.exists()  # never created by a read


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n" * 10)
    out = run_cli(tmp_path, "status", "--db", str(text))
    assert out.returncode == 3 and "is not an SQLite database" in out.stderr

    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    out = run_cli(tmp_path, "status", "--db", str(other))
    assert out.returncode == 3 and "without a shard_status table" in out.stderr
    tables = {r[0] for r in sqlite3.connect(other).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"users"}  # left untouched

    out = run_cli(tmp_path, "status", "--db", str(tmp_path))
    assert out.returncode == 3 and "is a directory" in out.stderr


def test_usage_errors_exit_3(tmp_path, healthy_db):
    out = run_cli(tmp_path, "stale", "--db", healthy_db, "--older-than", "soon")
    assert out.returncode == 3 and "invalid duration 'soon'" in out.stderr
    out = run_cli(tmp_path, "status", "--db", healthy_db, "--conn-id", "x")
    assert out.returncode == 3 and "not allowed with argument" in out.stderr
    out = run_cli(tmp_path)
    assert out.returncode == 3


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800),
                                           ("1h30m", 5400), ("45", 45), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 2", "-5m", "1hh"])
def test_parse_duration_rejects(text):
    with pytest.raises(Exception, match="invalid duration"):
        parse_duration(text)


# -------------------------------------------------------------------------------------------- colour


def _run_on_tty(tmp_path: Path, *args: str, **env: str) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "airflow_provider_worktree.cli", *args], stdout=slave,
                            stderr=subprocess.PIPE, env=_env(tmp_path, **env), cwd=tmp_path)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode()


def test_colour_on_a_tty_only(tmp_path, sick_db):
    on_tty = _run_on_tty(tmp_path, "status", "--db", sick_db)
    assert ANSI in on_tty and "\x1b[31m" in on_tty  # failed shards in red
    assert ANSI not in _run_on_tty(tmp_path, "status", "--db", sick_db, NO_COLOR="1")
    assert ANSI not in _run_on_tty(tmp_path, "status", "--db", sick_db, "--color", "never")
    forced = run_cli(tmp_path, "status", "--db", sick_db, "--color", "always")
    assert ANSI in forced.stdout
    # aligned columns survive colour: same plain layout
    plain = run_cli(tmp_path, "status", "--db", sick_db).stdout
    import re
    assert re.sub(r"\x1b\[[0-9;]*m", "", forced.stdout).splitlines()[:8] == plain.splitlines()[:8]


# --------------------------------------------------------------------------------- without Airflow


def test_db_path_works_without_airflow(tmp_path, healthy_db):
    code = (
        "import sys; sys.modules['airflow'] = None\n"  # `import airflow` raises ImportError from here on
        "from airflow_provider_worktree.cli import main\n"
        "rc = main(['status', '--db', sys.argv[1], '--json'])\n"
        "assert not any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules if sys.modules[m]), "
        "'airflow imported'\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, healthy_db], capture_output=True, text=True, timeout=60,
                         env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["total"] == 20


def test_console_script(tmp_path, healthy_db):
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT} (pip install -e .)")
    out = run_cli(tmp_path, "status", "--db", healthy_db, "--json", script=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"]["completed"] == 18


# ------------------------------------------------------------------------------ connections, default


def _sqlite_conn(path: str) -> str:
    return json.dumps({"conn_type": "sqlite", "host": path})


def test_conn_id(tmp_path, healthy_db):
    env = _env(tmp_path, AIRFLOW_CONN_MY_SHARDS=_sqlite_conn(healthy_db))
    out = run_cli(tmp_path, "status", "--conn-id", "my_shards", "--json", env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["database"] == healthy_db and data["counts"]["completed"] == 18

    out = run_cli(tmp_path, "status", "--conn-id", "no_such_conn", env=env)
    assert out.returncode == 3
    assert "connection 'no_such_conn'" in out.stderr and "does not exist" in out.stderr


def test_default_is_the_default_connection_then_airflow_home(tmp_path, healthy_db, sick_db):
    # The connection shard_status_default wins when it exists...
    env = _env(tmp_path, AIRFLOW_CONN_SHARD_STATUS_DEFAULT=_sqlite_conn(sick_db))
    out = run_cli(tmp_path, "stale", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["database"] == sick_db

    # ...else $AIRFLOW_HOME/shard_status.db, which is never created by the command.
    home = tmp_path / "airflow-home"
    out = run_cli(tmp_path, "status")
    assert out.returncode == 3
    assert f"no shard database at {home / 'shard_status.db'}: run the DAG first or pass --db" in out.stderr
    assert not (home / "shard_status.db").exists()
    home.mkdir(exist_ok=True)
    Path(healthy_db).rename(home / "shard_status.db")
    out = run_cli(tmp_path, "status", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"]["completed"] == 18


@pytest.mark.postgres
def test_postgres_connection(tmp_path, pg_url):
    from urllib.parse import urlsplit

    store = ShardStore.open(pg_url, clock=_utc(-7200))
    store.register_shards("pg-run", _shards(4))
    store.assign_shard("pg-run", "dead-on-pg")
    store.close()
    u = urlsplit(pg_url)
    conn = {"conn_type": "postgres", "host": u.hostname, "port": u.port, "login": u.username,
            "password": u.password or "", "schema": u.path.lstrip("/")}
    env = _env(tmp_path, AIRFLOW_CONN_PG_SHARDS=json.dumps(conn))
    out = run_cli(tmp_path, "stale", "--conn-id", "pg_shards", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert [s["worker_id"] for s in json.loads(out.stdout)["stale"]] == ["dead-on-pg"]
    out = run_cli(tmp_path, "reset-stale", "--conn-id", "pg_shards", env=env)
    assert out.returncode == 0 and "Reset 1 stale shard(s)" in out.stdout
    assert ShardStore.open(pg_url).list_shards("pg-run", status="running") == []
    bad = {**conn, "port": 1}
    out = run_cli(tmp_path, "status", "--conn-id", "pg_bad", env=_env(tmp_path, AIRFLOW_CONN_PG_BAD=json.dumps(bad)))
    assert out.returncode == 3 and "cannot connect to the shard status database" in out.stderr
    assert "Traceback" not in out.stderr


# ------------------------------------------------------------------------------------ width, --quiet


def test_tables_fit_the_terminal_width_and_json_keeps_full_values(tmp_path):
    path = str(tmp_path / "long.db")
    store = ShardStore.open(path)
    long_branch = "worktree/" + "scheduled__2026-11-30T00:00:00+00:00-" + "x" * 40 + "/s-000"
    store.register_shards("run-long", _shards(2))
    lease = store.assign_shard("run-long", "worker-with-a-rather-long-host-name.example.internal:4242",
                               shard_id="s-000")
    store.complete(lease, branch=long_branch, commit_sha="a" * 40, input_tokens=1234567, output_tokens=7654321)
    store.assign_shard("run-long", "worker-with-a-rather-long-host-name.example.internal:4243", shard_id="s-001")
    store.close()
    for cmd in ("report", "status", "stale", "thresholds", "check"):
        out = run_cli(tmp_path, cmd, "--db", path, "--older-than" if cmd == "stale" else "--color",
                      "0s" if cmd == "stale" else "never", env=_env(tmp_path, COLUMNS="80"))
        assert out.returncode in (0, 1, 2), out.stderr
        table_lines = [line for line in out.stdout.splitlines() if "  " in line.strip()]
        assert table_lines and all(len(line) <= 80 for line in table_lines), (cmd, out.stdout)
    out = run_cli(tmp_path, "report", "--db", path, env=_env(tmp_path, COLUMNS="80"))
    assert "…" in out.stdout and long_branch not in out.stdout
    assert "workt…" in out.stdout and "…-000" in out.stdout  # head and tail kept (figures whole: 1,234,567)
    wide = run_cli(tmp_path, "report", "--db", path)  # piped without COLUMNS: no narrowing
    assert long_branch in wide.stdout
    (rep,) = run_json(tmp_path, "report", "--db", path)["runs"]
    assert long_branch in {s["branch"] for s in rep["shards"]}


def test_check_quiet_prints_nothing_when_all_is_ok(tmp_path, healthy_db, sick_db):
    ok = run_cli(tmp_path, "check", "--quiet", "--db", healthy_db)
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""
    bad = run_cli(tmp_path, "check", "-q", "--db", sick_db)
    assert bad.returncode == 2 and "Overall: CRITICAL" in bad.stdout
    assert run_json(tmp_path, "check", "--quiet", "--db", healthy_db)["level"] == "ok"  # --json still prints


def test_batches_lists_each_runs_batches_and_entries_read_only(tmp_path: Path, healthy_db: str):
    assert "No batch-mode run" in run_cli(tmp_path, "batches", "--db", healthy_db).stdout
    store = ShardStore.open(healthy_db)
    store.register_shards("run-batch", _shards(3, "b"))
    store.put_batch_entries("run-batch", [
        {"shard_id": "b-000", "custom_id": "b0", "status": "queued", "part": 0},
        {"shard_id": "b-001", "custom_id": "b1", "status": "queued", "part": 0},
        {"shard_id": "b-002", "status": "interactive", "reason": "its request is over max_prompt_bytes"}])
    store.begin_batch_part("run-batch", 0, 2, "claude-sonnet-4-5")
    store.set_batch_id("run-batch", 0, "msgbatch_0123")
    store.record_batch_result("run-batch", "b0", "succeeded", usage={"input_tokens": 10}, cost_usd=0.5)
    store.close()
    before = Path(healthy_db).read_bytes()
    out = run_cli(tmp_path, "batches", "--db", healthy_db)
    assert out.returncode == 0, out.stderr
    assert "Run run-batch (waiting for the batch)" in out.stdout and "msgbatch_0123" in out.stdout
    assert "entries: 1 interactive, 1 queued, 1 succeeded; batch cost $0.5000" in out.stdout
    assert "run interactively: b-002" in out.stdout and "run-ok" not in out.stdout
    data = run_json(tmp_path, "batches", "--run-id", "run-batch", "--db", healthy_db)
    (run,) = data["runs"]
    assert run["batch_ids"] == ["msgbatch_0123"] and not run["collected"] and run["interactive"] == ["b-002"]
    assert Path(healthy_db).read_bytes() == before, "a reading command writes nothing"
