"""The smoke run, for real: ./scripts/smoke_run.sh (a launcher for scripts/smoke_run.py) in a temporary --home.

The unit tests check smoke_run.py's parts (options, overlap, task-log errors, output) in-process. The full run starts an api-server, a scheduler and a dag-processor with the LocalExecutor, runs the example
DAG on a generated demo repository against the offline Messages API server, and checks everything the
runbook's smoke run promises (about 1-2 minutes on 2 cores). The other tests cover the script's
argument handling, its refusal to wipe a directory it did not make, the demo repository generator, and
that an interrupted run stops every process it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SCRIPT = PROJECT / "scripts" / "smoke_run.sh"
DEMO = PROJECT / "scripts" / "demo_repo.py"
sys.path.insert(0, str(PROJECT / "scripts"))
from smokerun import checks, constants, options, output  # noqa: E402
from smokerun.run import SmokeRun  # noqa: E402
from conftest import make_repo  # noqa: E402


def _missing_tools() -> str | None:
    for tool in ("bash", "git"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; smoke_run.sh needs it"
    return None


pytestmark = pytest.mark.skipif(_missing_tools() is not None, reason=_missing_tools() or "")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    env.pop("ANTHROPIC_API_KEY", None)
    return env


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, session id, state) of every process, from /proc/PID/stat."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        table[int(entry)] = (int(fields[1]), int(fields[3]), fields[0])
    return table


class SessionWatch:
    """Collect the sessions of a process tree while it runs (smoke_run.sh starts each service with setsid),
    so leftovers are found afterwards even when a process rewrote its title and environment."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.own_session = os.getsid(0)
        self.sessions: set[int] = set()

    def sample(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _sid, _state) in table.items():
            children.setdefault(ppid, []).append(pid)
        stack = [self.root]
        while stack:
            pid = stack.pop()
            if pid in table and table[pid][1] != self.own_session:
                self.sessions.add(table[pid][1])
            stack.extend(children.get(pid, []))

    def leftovers(self) -> list[str]:
        found = []
        for pid, (_ppid, sid, state) in _proc_table().items():
            if sid in self.sessions and state != "Z":
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                found.append(f"{pid}: {cmd[:200]}")
        return found


def _run_watched(args: list[str], logfile: Path, timeout: float) -> tuple[int, SessionWatch]:
    """Run smoke_run.sh with output to logfile, sampling its process sessions every second."""
    with open(logfile, "w") as fh:
        proc = subprocess.Popen([str(SCRIPT), *args], cwd=PROJECT, env=_env(), stdout=fh, stderr=subprocess.STDOUT)
    watch = SessionWatch(proc.pid)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            watch.sample()
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                raise AssertionError(f"smoke_run.sh took over {timeout}s:\n{logfile.read_text()[-4000:]}")
            time.sleep(1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, watch


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], cwd=PROJECT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------------ smoke_run.py parts
def test_options_defaults_param_flags_and_conf():
    o = options.parse_args([])
    assert (o.mode, o.parallel, o.max_shards, o.min_completed, o.timeout) == ("scheduler", 10, 20, 100.0, 900)
    assert o.conf("/r") == {"repo": "/r", "task": "todo", "max_files_per_shard": 2, "max_shards": 20,
                            "parallel_limit": 10}
    o = options.parse_args(["--task", "docstrings", "--include", "src/**", "--include", "lib/**", "--exclude",
                              "tests/**", "--isolation", "none", "--max-files", "3", "--parallel", "4",
                              "--verify-command", "python -m pytest -q", "--runner", "claude_code",
                              "--model", "m", "--max-cost-usd", "0.5", "--sequential", "--min-completed", "90",
                              "--conf", '{"max_turns": 7, "task": "todo"}'])
    conf = o.conf("/r")
    assert conf == {"repo": "/r", "task": "todo", "max_files_per_shard": 3, "max_shards": 20, "parallel_limit": 4,
                    "include": ["src/**", "lib/**"], "exclude": ["tests/**"], "isolation": "none",
                    "verify_command": "python -m pytest -q", "runner": "claude_code", "model": "m",
                    "max_cost_usd": 0.5, "max_turns": 7}  # --conf wins
    assert o.mode == "sequential" and o.min_completed == 90.0
    o = options.parse_args(["--task", "lint", "--lint-command", "ruff check"])
    assert o.conf("/r")["lint_command"] == "ruff check"
    assert options.parse_args(["--modules", "5", "--help"]) is None
    o = options.parse_args(["--batch", "--batch-delay", "2"])
    assert o.batch and o.batch_delay == 2.0 and o.conf("/r")["mode"] == "batch"
    assert options.parse_args([]).publish == "" and options.parse_args(["--publish", "gitlab"]).publish == "gitlab"
    # --repos N (issue 20): a campaign over N demo repositories, 8 modules in the first by default; 1 is today's run
    o = options.parse_args(["--repos", "3"])
    assert (o.repos, o.modules, o.publish) == (3, 8, "")
    assert options.parse_args(["--repos", "3", "--modules", "2", "--publish", "gitlab"]).modules == 2
    assert (options.parse_args(["--repos", "1"]).repos, options.parse_args(["--repos", "1"]).modules) == (1, 30)
    assert options.parse_args([]).repos == 1
    run = SmokeRun(options.parse_args(["--repos", "2", "--task", "docstrings", "--parallel", "4", "--conf",
                                       '{"max_input_tokens": 9}']), output.Out(color=False))
    run.forge_info = {"web_url": "http://127.0.0.1:1", "repositories": ["octo-org/demo-1", "octo-org/demo-2"]}
    run.publish_conf = {"publish": "draft", "forge": "github"}
    assert run.campaign and run.dag_id == "campaign_maintenance" and run.campaign_head == "campaign/smoke-docstrings"
    assert run.run_conf() == {"campaign": "smoke-docstrings", "task": "docstrings", "max_files_per_shard": 2,
                              "repositories": ["http://127.0.0.1:1/octo-org/demo-1.git",
                                               "http://127.0.0.1:1/octo-org/demo-2.git"],
                              "parallel_limit": 4, "publish": "draft", "forge": "github", "max_input_tokens": 9}
    assert not SmokeRun(options.parse_args(["--repos", "1"]), output.Out(color=False)).campaign


@pytest.mark.parametrize(("argv", "message"), [
    (["--mode", "bogus"], "--mode must be scheduler, executor or sequential"),
    (["--parallel", "0"], "--parallel must be a positive integer"),
    (["--latency", "fast"], "--latency must be a number of seconds"),
    (["--min-completed", "120"], "--min-completed is a percentage"),
    (["--task", "refactor"], "--task must be one of"),
    (["--task", "lint"], "--task lint needs --lint-command"),
    (["--task", "custom"], "--task custom needs --prompt"),
    (["--isolation", "docker"], "--isolation must be auto, bwrap or none"),
    (["--conf", "{nope"], "--conf is not valid JSON"),
    (["--conf", "[1]"], "--conf must be a JSON object"),
    (["--publish", "bitbucket"], "--publish must be github, gitlab or none"),
    (["--repo"], "--repo needs a value"),
    (["--no-such-flag"], "unknown option --no-such-flag"),
    (["--batch-delay", "soon"], "--batch-delay must be a number of seconds"),
    (["--repos", "0"], "--repos must be a positive integer"),
    (["--repos", "3", "--repo", "/tmp"], "--repos 3 and --repo /tmp cannot go together"),
    (["--repo", "/tmp", "--repos", "1"], "--repos 1 and --repo /tmp cannot go together"),
    (["--repos", "3", "--publish", "none"], "--repos 3 publishes one pull request per repository"),
    (["--repos", "3", "--batch"], "the campaign DAG has no batch mode"),
    (["--repos", "3", "--max-shards", "4"], "--max-shards does not apply to the campaign DAG"),
    (["--repos", "3", "--min-completed=90"], "--min-completed does not apply to the campaign DAG"),
    (["--repos", "3", "--include", "src/**"], "the campaign DAG has no Param for --include"),
    (["--repos", "3", "--task", "lint"], "the campaign DAG has no lint_command Param"),
])
def test_bad_options_are_usage_errors(argv, message):
    with pytest.raises(constants.UsageError, match=re.escape(message)):
        options.parse_args(argv)


def test_max_overlap_counts_shards_running_at_one_instant():
    assert checks.max_overlap([]) == 0
    assert checks.max_overlap([(0, 1), (1, 2), (2, 3)]) == 1  # back to back: never two at once
    assert checks.max_overlap([(0, 10), (1, 2), (1.5, 3), (5, 6)]) == 3
    assert checks._epoch("2026-01-01T00:00:01+00:00") - checks._epoch("2026-01-01 00:00:00") == 1.0


def test_last_error_of_reads_the_last_attempt_of_a_json_task_log(tmp_path: Path):
    assert checks.last_error_of(tmp_path) == ("no log", None)
    (tmp_path / "attempt=1.log").write_text(json.dumps({"error_detail": [{"exc_type": "A", "exc_value": "one"}]}))
    (tmp_path / "attempt=2.log").write_text("not json\n" + json.dumps(
        {"event": "x", "error_detail": [{"exc_type": "RuntimeError", "exc_value": "boom"}]}) + "\n")
    (tmp_path / "attempt=10.log").write_text(json.dumps({"event": "fine"}) + "\n")
    assert checks.last_error_of(tmp_path) == ("no error in the log", tmp_path / "attempt=10.log")
    (tmp_path / "attempt=10.log").unlink()
    assert checks.last_error_of(tmp_path) == ("RuntimeError: boom", tmp_path / "attempt=2.log")


def test_output_lines_phases_and_summary(capsys):
    out = output.Out(color=False)
    out.phase("One")
    out.success("fine")
    out.warning("hmm")
    out.phase("Two")
    out.error("bad")
    out.phase_end()
    assert out.summary(0, None) == 1  # a failed check fails the run even when nothing raised
    text = capsys.readouterr().out
    assert "[SUCCESS] fine\n" in text and "[WARNING] hmm\n" in text and "[ERROR] bad\n" in text
    assert re.search(r"One took [0-9.]+s", text) and re.search(r"Two +[0-9.]+s +FAILED", text)
    assert "smoke run FAILED (1 failed check(s), 1 warning(s))" in text and "\033[" not in text
    ok = output.Out(color=True)
    ok.success("x")
    assert ok.summary(0, None) == 0 and ok.summary(130, None) == 130
    assert "\033[0;32m[SUCCESS]\033[0m x" in capsys.readouterr().out
    ok.indent("\n".join(f"row {n}" for n in range(16)), limit=12, rest="the whole report is r.md")
    shown = capsys.readouterr().out
    assert "    row 11\n" in shown and "row 12" not in shown
    assert shown.endswith("    ... 4 more line(s): the whole report is r.md\n"), "a cut report says so and where"


def test_fingerprint_sees_every_change_to_a_checkout(tmp_path: Path):
    repo = Path(subprocess.run([sys.executable, str(DEMO), "--dest", str(tmp_path / "r"), "--modules", "4"],
                               capture_output=True, text=True, check=True).stdout.strip())
    before = checks.fingerprint(str(repo))
    assert before == checks.fingerprint(str(repo))
    for change in (["branch", "x"], ["tag", "t"]):
        subprocess.run(["git", "-C", str(repo), *change], check=True, capture_output=True)
    changed = checks.fingerprint(str(repo))
    assert changed != before and "refs/heads/x" in changed
    (repo / "new.txt").write_text("x")
    assert "new.txt" in checks.fingerprint(str(repo))
    assert checks.fingerprint("https://example.com/repo.git") == "remote\n"


# ------------------------------------------------------------------------------------------ quick paths
def test_help_and_bad_arguments():
    out = _run(["--help"])
    assert out.returncode == 0
    for flag in ("--repo", "--home", "--real-api", "--sequential", "--keep-going", "--mode", "--task",
                 "--lint-command", "--isolation", "--min-completed", "--include", "--repos"):
        assert flag in out.stdout
    bad = _run(["--mode", "bogus"])
    assert bad.returncode == 2 and "--mode must be" in bad.stderr
    assert _run(["--parallel", "0"]).returncode == 2
    assert _run(["--no-such-flag"]).returncode == 2
    both = _run(["--repos", "3", "--repo", str(PROJECT)])
    assert both.returncode == 2 and "--repos 3 and --repo" in both.stderr and both.stdout == ""


def test_a_bad_repository_is_refused_before_any_setup(tmp_path: Path):
    """Issue 23: a path that is no git repository is refused in about a second, not after the venv check, the
    database migration and the DAG registration; nothing is created."""
    empty = tmp_path / "empty-repo"
    empty.mkdir()
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    plain = tmp_path / "plain"
    plain.mkdir()
    repo = make_repo(tmp_path / "repo", n_files=1)
    home = tmp_path / "home"
    cases = [([str(tmp_path / "missing")], "no such directory"),
             ([str(plain)], "is not inside a git repository"),
             ([str(empty)], "has no commit yet"),
             ([str(repo), "--conf", '{"base_ref": "no-such-branch"}'], "has no commit 'no-such-branch'")]
    for args, message in cases:
        out = _run(["--repo", *args, "--home", str(home)], timeout=60)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr, out.stdout)
        assert out.stdout == "" and not home.exists(), "refused before any phase ran"
    assert checks.repository_problem(str(repo)) is None
    assert checks.repository_problem("https://example.com/x.git") is None, "URLs are the clone step's to check"


def test_refuses_to_wipe_a_directory_it_did_not_make(tmp_path: Path):
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine\n")
    out = _run(["--home", str(foreign), "--python", sys.executable], timeout=120)
    assert out.returncode == 1, out.stdout
    assert "[ERROR]" in out.stdout and "was not made by smoke_run.sh" in out.stdout
    assert (foreign / "keep.txt").read_text() == "mine\n"
    assert "\033[" not in out.stdout  # NO_COLOR
    assert "Pre-flight checks" in out.stdout and "[SUCCESS] git" in out.stdout


def test_demo_repo_is_deterministic_and_its_tests_pass(tmp_path: Path):
    paths = []
    for name in ("a", "b"):
        out = subprocess.run([sys.executable, str(DEMO), "--dest", str(tmp_path / name), "--modules", "12"],
                             capture_output=True, text=True, check=True)
        paths.append(Path(out.stdout.strip()))
    heads = [subprocess.run(["git", "-C", str(p), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout for p in paths]
    assert heads[0] == heads[1]
    modules = sorted(paths[0].glob("demo/*/mod_*.py"))
    assert len(modules) == 12
    assert all(re.search(r"# (TODO|FIXME)", m.read_text()) for m in modules)
    pytest_run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=paths[0],
                                capture_output=True, text=True, env={**_env(), "PYTHONDONTWRITEBYTECODE": "1"})
    assert pytest_run.returncode == 0, pytest_run.stdout + pytest_run.stderr
    assert "12 passed" in pytest_run.stdout
    again = subprocess.run([sys.executable, str(DEMO), "--dest", str(paths[0])], capture_output=True, text=True)
    assert again.returncode != 0 and "--force" in again.stderr


# ------------------------------------------------------------------------------------------ the real run
@pytest.mark.integration
@pytest.mark.timeout(900)
def test_smoke_run_passes(tmp_path: Path):
    home = tmp_path / "smoke"
    user_repo = Path(subprocess.run([sys.executable, str(DEMO), "--dest", str(tmp_path / "user-repo"),
                                     "--modules", "24"], capture_output=True, text=True, check=True).stdout.strip())
    subprocess.run(["git", "-C", str(user_repo), "branch", "feature"], check=True)
    (user_repo / "notes.txt").write_text("uncommitted\n")  # the user's work in progress must survive
    started = time.monotonic()
    rc, watch = _run_watched(["--home", str(home), "--python", sys.executable, "--repo", str(user_repo)],
                             tmp_path / "out.txt", timeout=840)
    log = (tmp_path / "out.txt").read_text()
    assert rc == 0, log[-6000:]
    assert len(watch.sessions) >= 4, watch.sessions  # offline server, api-server, scheduler, dag-processor...
    for line in (
        "[SUCCESS] no DAG import errors",
        "[SUCCESS] DAG parallel_maintenance_poc is registered",
        "[SUCCESS] all 12 shards completed",
        "[SUCCESS] every recorded branch and commit exists in the clone",
        "[SUCCESS] shards ran in parallel: up to",
        "[SUCCESS] the source repository is untouched",
        "[SUCCESS] no worktree left",
        "[SUCCESS] airflow-worktree status",
        "[SUCCESS] the DAG's report",
        # the default run publishes a draft to the offline GitHub (issue 19)
        "[SUCCESS] offline github TEST DOUBLE at",
        "[SUCCESS] one pull request for octo-org/demo: http://127.0.0.1:",
        "[SUCCESS] its body holds the run's report",
        "[SUCCESS] its body holds no secret",
        "[SUCCESS] smoke run passed",
    ):
        assert line in log, f"missing {line!r} in:\n{log[-6000:]}"
    assert "[ERROR]" not in log
    assert "second run of the same conf" not in log  # only an explicit --publish runs twice
    assert (home / "forge-requests.jsonl").is_file()
    assert "\033[" not in log
    for phase in ("Pre-flight checks", "Isolated AIRFLOW_HOME", "DAG registration", "DAG run", "Post-run verification"):
        assert re.search(rf"{re.escape(phase)}.* took [0-9.]+s", log), phase

    # The home is kept: the runbook's queries work on its shard database.
    db = sqlite3.connect(home / "shard_status.db")
    rows = db.execute("SELECT shard_id, status, started_at, completed_at, branch, commit_sha FROM shard_status").fetchall()
    assert len(rows) == 12 and {r[1] for r in rows} == {"completed"}
    overlap = db.execute(
        "SELECT MAX((SELECT COUNT(*) FROM shard_status b WHERE b.started_at <= a.started_at "
        "AND b.completed_at > a.started_at)) FROM shard_status a").fetchone()[0]
    assert 2 <= overlap <= 10
    db.close()
    assert list((home / "reports").glob("*.md"))

    # The user's repository: still dirty, still on main, the feature branch and no shard branch.
    status = subprocess.run(["git", "-C", str(user_repo), "status", "--porcelain"], capture_output=True, text=True,
                            check=True).stdout
    assert "notes.txt" in status
    branches = subprocess.run(["git", "-C", str(user_repo), "branch", "--format=%(refname:short)"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert sorted(branches) == ["feature", "main"]
    assert watch.leftovers() == []
    print(f"smoke run took {time.monotonic() - started:.0f}s")


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_smoke_run_publishes_to_gitlab_and_a_second_run_updates_the_same_merge_request(tmp_path: Path):
    """Issue 19: ``--publish gitlab`` publishes a draft merge request on the offline GitLab through python-gitlab,
    then runs again and finds the same one updated; ``changesets -o json`` lists it with its url and state."""
    pytest.importorskip("gitlab", reason="python-gitlab is not installed (pip install 'airflow-provider-worktree[gitlab]')")
    home = tmp_path / "smoke"
    rc, watch = _run_watched(["--home", str(home), "--python", sys.executable, "--publish", "gitlab", "--modules", "8",
                              "--metadata-db", "sqlite"], tmp_path / "out.txt", timeout=540)
    log = (tmp_path / "out.txt").read_text()
    assert rc == 0, log[-6000:]
    for line in ("[SUCCESS] offline gitlab TEST DOUBLE at", "[SUCCESS] all 4 shards completed",
                 "[SUCCESS] one pull request for octo-group/demo: http://127.0.0.1:",
                 "[SUCCESS] its body holds no secret", "[INFO] second run of the same conf",
                 "[SUCCESS] the second run (manual__", "shows one pull request created", "[SUCCESS] smoke run passed"):
        assert line in log, f"missing {line!r} in:\n{log[-6000:]}"
    assert "[ERROR]" not in log
    listed = subprocess.run([str(Path(sys.executable).with_name("airflow-worktree")), "changesets", "--db",
                             str(home / "shard_status.db"), "-o", "json"], capture_output=True, text=True, check=True)
    (row,) = json.loads(listed.stdout)["changesets"]
    assert row["forge"] == "gitlab" and "/octo-group/demo/-/merge_requests/" in row["url"]
    assert (row["publication"], row["external_state"]) == ("draft", "open")
    requests = [json.loads(x) for x in (home / "forge-requests.jsonl").read_text().splitlines()]
    assert any(r["method"] == "PUT" and "/merge_requests/" in r["path"] for r in requests), "no update in place"
    assert watch.leftovers() == []


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_smoke_run_campaign_over_three_repositories_opens_three_pull_requests_and_a_rerun_updates_them(tmp_path: Path):
    """Issue 20, item 8: ``--repos 3 --publish github`` runs ONE campaign_maintenance run over three demo
    repositories on the offline GitHub under the scheduler: one draft pull request each on campaign/<name>, each
    body with its own shards only; a second run updates the three (pr-updated) and opens none."""
    pytest.importorskip("github", reason="PyGithub is not installed (pip install 'airflow-provider-worktree[github]')")
    pytest.importorskip("airflow.providers.github", reason="apache-airflow-providers-github is not installed")
    home = tmp_path / "smoke"
    rc, watch = _run_watched(["--home", str(home), "--python", sys.executable, "--repos", "3", "--publish", "github",
                              "--modules", "2", "--metadata-db", "sqlite"], tmp_path / "out.txt", timeout=540)
    log = (tmp_path / "out.txt").read_text()
    assert rc == 0, log[-6000:]
    for line in ("[SUCCESS] DAG campaign_maintenance is registered",
                 "[SUCCESS] 3 demo repositories generated under",
                 "[SUCCESS] offline github TEST DOUBLE at", "with octo-org/demo-1, octo-org/demo-2, octo-org/demo-3",
                 "[SUCCESS] one run, 6 shards, all completed: demo-1 1, demo-2 2, demo-3 3",
                 "[SUCCESS] 3 changesets, one per repository, each with a pull request on head campaign/smoke-todo",
                 "[SUCCESS] the body of octo-org/demo-3#1 lists its 3 shard(s) and none of the other repositories'",
                 "[SUCCESS] the body of octo-org/demo-1#1 holds no secret",
                 "shows 3 pull requests created in all, one per repository, each on head campaign/smoke-todo",
                 "[SUCCESS] the campaign summary: ", "[INFO] second run of the same conf",
                 "updated the 3 pull requests in place (outcomes pr-updated) and opened none",
                 "[SUCCESS] no worktree left", "==> Campaign smoke-todo: 3 pull requests",
                 "[SUCCESS] smoke run passed"):
        assert line in log, f"missing {line!r} in:\n{log[-6000:]}"
    assert "[ERROR]" not in log
    for n in (1, 2, 3):  # each pull request opened by the first run, then updated by the second
        opened = re.findall(rf"\[SUCCESS\] pull request for octo-org/demo-{n}: (http://127\.0\.0\.1:\d+/octo-org/"
                            rf"demo-{n}/pull/\d+) \(draft, open, head campaign/smoke-todo pushed.*campaign outcome "
                            rf"(pr-\w+)$", log, re.MULTILINE)
        assert [o for _, o in opened] == ["pr-opened", "pr-updated"] and opened[0][0] == opened[1][0], opened
        end = rf"^    octo-org/demo-{n}  {re.escape(opened[0][0])}  pr-updated$"  # the results printed at the end
        assert re.search(end, log, re.MULTILINE), log[-3000:]
    summaries = sorted((home / "reports").glob("campaign-smoke-todo-*.md"))
    assert len(summaries) == 2 and all(f"    summary: {p}" in log for p in summaries)
    requests = [json.loads(x) for x in (home / "forge-requests.jsonl").read_text().splitlines()]
    created = [r for r in requests if r["method"] == "POST" and r["status"] == 201 and r["path"].endswith("/pulls")]
    assert sorted(r["path"] for r in created) == [f"/api/v3/repos/octo-org/demo-{n}/pulls" for n in (1, 2, 3)]
    assert watch.leftovers() == []


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_smoke_run_in_batch_mode_defers_and_bills_each_entry_once(tmp_path: Path):
    """Issue 13: ``--batch`` runs the example DAG with mode=batch: one Message Batch for the run (the offline
    server takes 5 s, so the submit task defers on the trigger), each shard applies its reply and commits."""
    home = tmp_path / "smoke"
    rc, watch = _run_watched(["--home", str(home), "--python", sys.executable, "--batch", "--task", "docstrings",
                              "--max-shards", "6", "--metadata-db", "sqlite"], tmp_path / "out.txt", timeout=540)
    log = (tmp_path / "out.txt").read_text()
    assert rc == 0, log[-6000:]
    for line in ("[SUCCESS] all 6 shards completed", "[SUCCESS] one Message Batch for the run, msgbatch_",
                 "[SUCCESS] each of the 6 succeeded entries is billed once",
                 "[SUCCESS] the submit task deferred while the batch ran, and resumed to collect it",
                 "[SUCCESS] report: batch $", "[SUCCESS] no worktree left", "[SUCCESS] smoke run passed"):
        assert line in log, f"missing {line!r} in:\n{log[-6000:]}"
    assert "[ERROR]" not in log
    db = sqlite3.connect(home / "shard_status.db")
    assert db.execute("SELECT COUNT(*), COUNT(batch_id) FROM shard_batches").fetchone() == (1, 1)
    assert db.execute("SELECT COUNT(*) FROM shard_attempts WHERE status = 'batch'").fetchone()[0] == 6
    db.close()
    assert watch.leftovers() == []


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_interrupted_smoke_run_stops_everything(tmp_path: Path):
    home = tmp_path / "smoke"
    logfile = tmp_path / "out.txt"
    with open(logfile, "w") as fh:
        proc = subprocess.Popen([str(SCRIPT), "--home", str(home), "--python", sys.executable, "--modules", "40",
                                 "--latency", "1"], cwd=PROJECT, env=_env(), stdout=fh, stderr=subprocess.STDOUT)
    watch = SessionWatch(proc.pid)
    try:
        deadline = time.monotonic() + 600  # a safety net for a stuck start-up, not a speed check
        while "[SUCCESS] triggered run" not in logfile.read_text():
            assert proc.poll() is None, logfile.read_text()[-4000:]
            assert time.monotonic() < deadline, logfile.read_text()[-4000:]
            watch.sample()
            time.sleep(0.5)
        for _ in range(8):  # tasks are starting and running now
            watch.sample()
            time.sleep(0.5)
        assert len(watch.sessions) >= 4, watch.sessions
        assert watch.leftovers(), "the services should be running before the signal"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:  # the test failed early: let the run stop its services before giving up
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    out = logfile.read_text()
    assert rc == 143, out[-4000:]
    assert "interrupted by SIGTERM" in out
    assert "stopped the processes this run started" in out
    assert "smoke run FAILED" in out
    assert watch.leftovers() == []


def test_min_completed_tolerates_only_failed_shards_above_the_threshold(tmp_path: Path):
    db = tmp_path / "shard_status.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE shard_status (shard_id TEXT, run_id TEXT, status TEXT)")
    con.executemany("INSERT INTO shard_status VALUES (?, 'r1', ?)",
                    [(f"s{i}", "completed") for i in range(9)] + [("s9", "failed")])
    con.execute("INSERT INTO shard_status VALUES ('x', 'other-run', 'failed')")
    con.commit()
    con.close()

    def verdict(min_completed: float, failed_tasks: tuple[str, ...], run_ok: bool = False) -> bool:
        run = SmokeRun(options.parse_args(["--min-completed", str(min_completed)]),
                                 output.Out(color=False))
        run.shard_db, run.run_id, run.run_ok = db, "r1", run_ok
        run.tis = [["plan", -1, "success", 1]] + [[t, 0, "failed", 1] for t in failed_tasks]
        return run._tolerated_failure()

    run_completion = SmokeRun(options.parse_args([]), output.Out(color=False))
    run_completion.shard_db, run_completion.run_id = db, "r1"
    assert run_completion._completion() == (9, 10)
    assert verdict(90, ("maintain", "report")) is True       # 90% completed, only shard tasks failed
    assert verdict(95, ("maintain", "report")) is False      # below the threshold
    assert verdict(100, ("maintain", "report")) is False     # the default tolerates nothing
    assert verdict(90, ("plan", "report")) is False          # a failed plan is never tolerated
    assert verdict(90, ("maintain",), run_ok=True) is False  # nothing to tolerate
