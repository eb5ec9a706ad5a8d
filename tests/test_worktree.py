"""WorktreeManager on real git repositories: lifecycle, sparse checkout, salvage, validation, remotes, secrets."""

from __future__ import annotations

import base64
import http.server
import os
import subprocess
import threading
from pathlib import Path

import pytest

from airflow_provider_worktree.core.git import command as gitcmd
from airflow_provider_worktree.core.errors import ConfigurationError, GitError, PushRejected
from airflow_provider_worktree.core.git import credential_env
from airflow_provider_worktree.core.worktrees import (
    WorktreeDirtyError,
    WorktreeManager,
    slugify_run_id,
)

RUN = "manual__2026-11-28T05:00:00+00:00"


def git(cwd, *args, check=True) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True).stdout


def files_in(path: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        out += [os.path.relpath(os.path.join(dirpath, f), path) for f in filenames if f != ".git"]
    return sorted(out)


@pytest.fixture
def mgr(git_repo, tmp_path) -> WorktreeManager:
    return WorktreeManager(git_repo, worktree_root=tmp_path / "wt")


def repo_state(repo: Path) -> tuple[str, str, str]:
    return (git(repo, "worktree", "list", "--porcelain"), git(repo, "for-each-ref"), git(repo, "status", "--short"))


# ------------------------------------------------------------------------------------------ lifecycle
def test_create_commit_remove_roundtrip(mgr, git_repo, tmp_path):
    info = mgr.create_worktree(RUN, "todo-1", owner="task-a")
    assert info.path == str(tmp_path / "wt" / slugify_run_id(RUN) / "todo-1-a1")
    assert info.branch == f"worktree/{slugify_run_id(RUN)}/todo-1"
    assert info.base_sha == git(git_repo, "rev-parse", "HEAD").strip()
    assert files_in(Path(info.path)) == ["README.md", "docs/guide.md", "src/app.py", "src/util.py"]
    assert git(git_repo, "check-ref-format", "--branch", info.branch).strip() == info.branch

    listed = {w.path: w for w in mgr.list_worktrees()}
    wt = listed[info.path]
    assert wt.locked and wt.managed and wt.branch == info.branch
    assert wt.owner["pid"] == os.getpid() and wt.owner["shard_id"] == "todo-1" and wt.owner["owner"] == "task-a"
    assert wt.owner["run_id"] == RUN and wt.base_sha == info.base_sha
    assert listed[str(git_repo)].is_main

    assert not mgr.is_dirty(info.path)
    assert mgr.commit(info.path, "nothing", {"Shard-Id": "todo-1"}).sha is None

    Path(info.path, "src/app.py").write_text("def add(a, b):\n    return a + b\n")
    Path(info.path, "src/new.py").write_text("X = 1\n")
    assert mgr.is_dirty(info.path)
    assert mgr.changed_files(info.path, info.base_sha) == ["src/app.py", "src/new.py"]
    res = mgr.commit(info.path, "Resolve TODOs", {"Airflow-Run-Id": RUN, "Shard-Id": "todo-1"})
    assert res.sha and sorted(res.files) == ["src/app.py", "src/new.py"]
    assert "2 files changed" in res.diffstat
    assert git(git_repo, "rev-parse", info.branch).strip() == res.sha
    msg = git(git_repo, "log", "-1", "--format=%an <%ae>|%(trailers:key=Airflow-Run-Id,valueonly)"
                                   "%(trailers:key=Shard-Id,valueonly)", info.branch)
    assert msg.startswith("airflow-worktree <airflow-worktree@localhost>|")
    assert RUN in msg and "todo-1" in msg
    assert mgr.changed_files(info.path, info.base_sha) == ["src/app.py", "src/new.py"]

    removed = mgr.remove_worktree(info.path)
    assert removed.removed and not removed.was_dirty and removed.salvage_branch is None
    assert not Path(info.path).exists()
    assert not (tmp_path / "wt" / slugify_run_id(RUN)).exists()  # empty run dir cleaned
    assert git(git_repo, "rev-parse", info.branch).strip() == res.sha  # branch kept
    assert [w.path for w in mgr.list_worktrees()] == [str(git_repo)]
    assert git(git_repo, "status", "--porcelain") == ""


def test_remove_keep_branch_false_deletes_only_empty_branches(mgr, git_repo):
    a = mgr.create_worktree(RUN, "empty")
    b = mgr.create_worktree(RUN, "busy")
    Path(b.path, "README.md").write_text("changed\n")
    mgr.commit(b.path, "change", {})
    ra = mgr.remove_worktree(a.path, keep_branch=False)
    rb = mgr.remove_worktree(b.path, keep_branch=False)
    assert ra.branch_deleted and not git(git_repo, "branch", "--list", a.branch)
    assert not rb.branch_deleted and rb.notes and git(git_repo, "branch", "--list", b.branch)


def test_dirty_remove_refused_then_forced_salvage(mgr, git_repo):
    info = mgr.create_worktree(RUN, "dirty")
    Path(info.path, "src/util.py").write_text("def double(x):\n    return x * 2\n")
    Path(info.path, "notes.txt").write_text("half-done work\n")
    before = repo_state(git_repo)
    with pytest.raises(WorktreeDirtyError, match=r"uncommitted changes .*notes\.txt.*force=True"):
        mgr.remove_worktree(info.path)
    assert repo_state(git_repo) == before
    assert Path(info.path, "notes.txt").read_text() == "half-done work\n"
    assert any(w.path == info.path and w.locked for w in mgr.list_worktrees())

    res = mgr.remove_worktree(info.path, force=True)
    assert res.removed and res.was_dirty and sorted(res.dirty_files) == ["notes.txt", "src/util.py"]
    assert res.salvage_branch.startswith("worktree-salvage/")
    assert git(git_repo, "show", f"{res.salvage_branch}:notes.txt") == "half-done work\n"
    assert git(git_repo, "show", f"{res.salvage_branch}:src/util.py") == "def double(x):\n    return x * 2\n"
    assert git(git_repo, "rev-parse", f"{res.salvage_branch}^").strip() == info.base_sha
    # The shard branch was never moved; holding no commit beyond its base, it went with the worktree.
    assert res.branch_deleted and not git(git_repo, "branch", "--list", info.branch)
    assert not Path(info.path).exists()


def test_sparse_checkout_contains_only_shard_files(repo_factory, tmp_path):
    repo = repo_factory("big", n_files=300)
    m = WorktreeManager(repo, worktree_root=tmp_path / "wt")
    shard = ["pkg/mod_0003.py", "pkg/mod_0100.py", "README.md"]
    info = m.create_worktree(RUN, "sparse-1", sparse_paths=shard)
    assert files_in(Path(info.path)) == sorted(shard)
    Path(info.path, "pkg/mod_0003.py").write_text("def f_3(x):\n    return x + 3\n")
    Path(info.path, "pkg/brand_new.py").write_text("Y = 2\n")  # outside the sparse patterns
    res = m.commit(info.path, "sparse edit", {"Shard-Id": "sparse-1"})
    assert sorted(res.files) == ["pkg/brand_new.py", "pkg/mod_0003.py"]
    tree = git(repo, "ls-tree", "-r", "--name-only", res.sha).split()
    assert len(tree) == 302  # nothing outside the shard was deleted
    assert git(repo, "show", f"{res.sha}:pkg/brand_new.py") == "Y = 2\n"
    assert m.changed_files(info.path, info.base_sha) == ["pkg/brand_new.py", "pkg/mod_0003.py"]
    m.remove_worktree(info.path)
    # A full worktree afterwards is not affected by the other worktree's sparse config.
    full = m.create_worktree(RUN, "full-1")
    assert len(files_in(Path(full.path))) == 301
    assert git(repo, "status", "--porcelain") == ""


def test_two_runs_and_a_retry_get_distinct_paths(mgr, git_repo):
    # "a:b" and "a+b" slug to the same text; the hash keeps them apart.
    one = mgr.create_worktree("a:b", "s1")
    two = mgr.create_worktree("a+b", "s1")
    assert one.path != two.path and one.branch != two.branch
    Path(one.path, "README.md").write_text("attempt 1\n")
    c1 = mgr.commit(one.path, "attempt 1 work", {})
    mgr.remove_worktree(one.path)
    retry = mgr.create_worktree("a:b", "s1", attempt=2)
    assert retry.path not in (one.path, two.path) and retry.path.endswith("s1-a2")
    assert retry.branch == one.branch
    # The retry starts again from the base; attempt 1's commit is kept on a backup branch.
    assert git(git_repo, "rev-parse", retry.branch).strip() == retry.base_sha
    assert retry.previous_branch_backup and git(git_repo, "rev-parse", retry.previous_branch_backup).strip() == c1.sha
    assert Path(retry.path, "README.md").read_text() == "# demo\n"


def test_retry_refused_while_earlier_attempt_is_live(mgr, git_repo):
    mgr.create_worktree(RUN, "s1")
    before = repo_state(git_repo)
    with pytest.raises(ConfigurationError, match=r"checked out in worktree .*s1-a1.*locked by pid"):
        mgr.create_worktree(RUN, "s1", attempt=2)
    assert repo_state(git_repo) == before


def test_base_ref_and_custom_branch(mgr, git_repo):
    git(git_repo, "checkout", "-q", "-b", "feature")
    Path(git_repo, "feature.txt").write_text("f\n")
    git(git_repo, "add", "feature.txt")
    git(git_repo, "commit", "-q", "-m", "feature")
    git(git_repo, "checkout", "-q", "main")
    info = mgr.create_worktree(RUN, "s1", base_ref="feature", branch="custom/shard-one")
    assert info.branch == "custom/shard-one"
    assert Path(info.path, "feature.txt").exists()
    assert info.base_sha == git(git_repo, "rev-parse", "feature").strip()


def test_git_lock_file_is_retried(mgr, git_repo):
    """A lock file left by another git process (here: on the shard's ref) is waited out, not fatal."""
    branch = mgr.default_branch(RUN, "locked")
    lockfile = Path(git_repo, ".git", "refs", "heads", *branch.split("/")).with_suffix(".lock")
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    lockfile.write_text("")
    timer = threading.Timer(0.4, lockfile.unlink)
    timer.start()
    try:
        info = mgr.create_worktree(RUN, "locked")
    finally:
        timer.join()
    assert Path(info.path, "README.md").exists()


# ------------------------------------------------------------------------------------------ validation
def test_not_a_git_repository(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigurationError, match="not a git repository.*git init"):
        WorktreeManager(plain, worktree_root=tmp_path / "wt")
    with pytest.raises(ConfigurationError, match="does not exist"):
        WorktreeManager(tmp_path / "missing", worktree_root=tmp_path / "wt")


def test_worktree_root_inside_repo_is_refused(git_repo):
    with pytest.raises(ConfigurationError, match="inside the repository.*outside"):
        WorktreeManager(git_repo, worktree_root=git_repo / "worktrees")
    with pytest.raises(ConfigurationError, match="inside the repository"):
        WorktreeManager(git_repo / "src", worktree_root=git_repo / ".git" / "wt")


def test_unknown_base_ref_changes_nothing(mgr, git_repo, tmp_path):
    before = repo_state(git_repo)
    with pytest.raises(ConfigurationError, match="base_ref 'no-such-branch' does not name a commit"):
        mgr.create_worktree(RUN, "s1", base_ref="no-such-branch")
    with pytest.raises(ConfigurationError, match="not a valid git revision"):
        mgr.create_worktree(RUN, "s1", base_ref="--output=/tmp/x")
    assert repo_state(git_repo) == before
    assert not (tmp_path / "wt").exists() or not any((tmp_path / "wt").iterdir())


@pytest.mark.parametrize("branch", ["bad..name", "has space", "ends.lock", "-dash", "a~b", "x/", ""])
def test_invalid_branch_name(mgr, git_repo, branch):
    before = repo_state(git_repo)
    with pytest.raises(ConfigurationError, match="not a valid git branch name|is invalid"):
        mgr.create_worktree(RUN, "s1", branch=branch)
    assert repo_state(git_repo) == before


@pytest.mark.parametrize("shard_id", ["..", "../escape", "a/b", "a\\b", "-rf", "bad\nname", "tab\tx", "",
                                      ".hidden", "x.lock", None])
def test_shard_ids_that_would_escape_are_refused(mgr, git_repo, shard_id, tmp_path):
    before = repo_state(git_repo)
    with pytest.raises(ConfigurationError, match="shard_id"):
        mgr.create_worktree(RUN, shard_id)
    assert repo_state(git_repo) == before
    assert not (tmp_path / "wt").exists() or not any((tmp_path / "wt").iterdir())


@pytest.mark.parametrize("bad", [[], ["/etc/passwd"], ["../x"], ["a/../b"], [".git/config"], ["a\nb"]])
def test_bad_sparse_paths(mgr, bad):
    with pytest.raises(ConfigurationError, match="sparse"):
        mgr.create_worktree(RUN, "s1", sparse_paths=bad)


def test_bad_run_id_and_attempt(mgr):
    with pytest.raises(ConfigurationError, match="run_id is empty"):
        mgr.create_worktree("  ", "s1")
    with pytest.raises(ConfigurationError, match="attempt"):
        mgr.create_worktree(RUN, "s1", attempt=0)


def test_target_path_already_exists(mgr, git_repo):
    path = Path(mgr.worktree_path(RUN, "s1"))
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("mine\n")
    before = repo_state(git_repo)
    with pytest.raises(ConfigurationError, match="already exists.*new attempt"):
        mgr.create_worktree(RUN, "s1")
    assert repo_state(git_repo) == before
    assert (path / "keep.txt").read_text() == "mine\n"


def test_remove_refuses_non_worktrees(mgr, git_repo, tmp_path):
    with pytest.raises(ConfigurationError, match="main worktree"):
        mgr.remove_worktree(git_repo)
    with pytest.raises(ConfigurationError, match="not a worktree"):
        mgr.remove_worktree(tmp_path)


def test_bad_trailers_and_message(mgr):
    info = mgr.create_worktree(RUN, "s1")
    Path(info.path, "README.md").write_text("x\n")
    with pytest.raises(ConfigurationError, match="Trailer"):
        mgr.commit(info.path, "msg", {"Bad Key": "v"})
    with pytest.raises(ConfigurationError, match="Trailer"):
        mgr.commit(info.path, "msg", {"Shard-Id": "two\nlines"})
    with pytest.raises(ConfigurationError, match="message is empty"):
        mgr.commit(info.path, "  ", {})


@pytest.fixture
def fake_git_path(tmp_path, monkeypatch):
    def _install(version_line: str | None) -> None:
        bindir = tmp_path / "fakebin"
        bindir.mkdir(exist_ok=True)
        if version_line is not None:
            script = bindir / "git"
            script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
            script.chmod(0o755)
        monkeypatch.setenv("PATH", str(bindir))
        gitcmd.git_version.cache_clear()
    yield _install
    monkeypatch.undo()
    gitcmd.git_version.cache_clear()


def test_git_missing(fake_git_path, git_repo, tmp_path):
    fake_git_path(None)
    with pytest.raises(GitError, match="not installed.*2.20"):
        WorktreeManager(git_repo, worktree_root=tmp_path / "wt")


def test_git_too_old(fake_git_path, git_repo, tmp_path):
    fake_git_path("git version 2.19.1")
    with pytest.raises(GitError, match="too old.*2.20"):
        WorktreeManager(git_repo, worktree_root=tmp_path / "wt")


# ------------------------------------------------------------------------------------------ remotes
def test_remote_url_is_cloned_into_cache_and_push_arrives(git_repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(git_repo), str(remote))
    cache = tmp_path / "cache"
    token = "s3cr3t-token-value"
    env = credential_env("bot", token, url="https://git.example.invalid/org/repo.git")
    m = WorktreeManager(f"file://{remote}", worktree_root=tmp_path / "wt", cache_dir=cache, git_env=env)
    clones = [p for p in cache.iterdir() if p.suffix == ".git"]
    assert len(clones) == 1 and clones[0].name.startswith("remote-") and m.common_dir == str(clones[0])

    # A new commit on the remote is seen by a fresh manager (fetch), and "main" means the remote's main.
    upstream = tmp_path / "upstream"
    git(tmp_path, "clone", "-q", str(remote), str(upstream))
    Path(upstream, "later.txt").write_text("later\n")
    git(upstream, "add", "later.txt")
    git(upstream, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "later")
    git(upstream, "push", "-q", "origin", "main")
    m2 = WorktreeManager(f"file://{remote}", worktree_root=tmp_path / "wt", cache_dir=cache, git_env=env)
    assert m2.common_dir == m.common_dir
    info = m2.create_worktree(RUN, "remote-1", base_ref="main")
    assert Path(info.path, "later.txt").exists()
    head_info = m2.create_worktree(RUN, "remote-2")  # HEAD = the remote's default branch, fetched
    assert Path(head_info.path, "later.txt").exists()

    Path(info.path, "README.md").write_text("# changed remotely\n")
    res = m2.commit(info.path, "remote change", {"Shard-Id": "remote-1"})
    pushed = m2.push(info.branch, path=info.path)
    assert pushed.sha == res.sha
    assert git(remote, "rev-parse", f"refs/heads/{info.branch}").strip() == res.sha
    m2.remove_worktree(info.path)
    m2.remove_worktree(head_info.path)

    # Secrets: never on a command line, never on disk in the cache.
    secrets = [token, base64.b64encode(f"bot:{token}".encode()).decode()]
    for argv in list(m.call_log) + list(m2.call_log):
        assert not any(s in a for s in secrets for a in argv), argv
    for path in cache.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path
    assert git(m2.common_dir, "config", "remote.origin.url").strip() == f"file://{remote}"


class _AuthRecorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self):  # noqa: N802 - http.server API
        cmdlines = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmdlines.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass
        self.seen.append({"auth": self.headers.get("Authorization"), "cmdlines": cmdlines})
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_https_credentials_sent_as_header_never_in_argv_or_files(tmp_path):
    """A real HTTP exchange: git sends the token as a header; no process argv, error, log or file holds it."""
    _AuthRecorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = "tok-Zq81-very-secret"
    url = f"http://builder:{token}@127.0.0.1:{server.server_address[1]}/org/repo.git"
    cache = tmp_path / "cache"
    try:
        with pytest.raises(GitError) as err:
            WorktreeManager(url, worktree_root=tmp_path / "wt", cache_dir=cache, git_timeout=30)
    finally:
        server.shutdown()
    basic = base64.b64encode(f"builder:{token}".encode()).decode()
    assert _AuthRecorder.seen, "git never reached the server"
    assert _AuthRecorder.seen[0]["auth"] == f"Basic {basic}"
    cmdlines = _AuthRecorder.seen[0]["cmdlines"]
    assert any("127.0.0.1" in c for c in cmdlines), "the scan did not see git's processes"
    assert not any(token in c or basic in c for c in cmdlines)
    exc = err.value
    text = " ".join([str(exc), exc.stderr, *exc.git_args])
    assert token not in text and basic not in text
    for path in cache.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes()


def test_branch_checked_out_in_main_worktree_is_refused(mgr, git_repo):
    before = repo_state(git_repo)
    with pytest.raises(ConfigurationError, match="'main' is checked out in worktree"):
        mgr.create_worktree(RUN, "s1", branch="main")
    assert repo_state(git_repo) == before


# ------------------------------------------------------------------------------------------ scope at the commit
def test_commit_stages_only_allowed_paths(mgr, git_repo):
    info = mgr.create_worktree(RUN, "scoped")
    wt = Path(info.path)
    (wt / "src/app.py").write_text("def add(a, b):\n    return a + b\n")
    (wt / "docs/guide.md").unlink()
    (wt / ".github/workflows").mkdir(parents=True)
    (wt / ".github/workflows/ci.yml").write_text("on: push\n")  # written by a test during verify
    (wt / "setup.py").write_text("import os\n")
    (wt / "README.md").write_text("staged by someone else\n")
    git(wt, "add", "README.md")
    res = mgr.commit(info.path, "scoped", {"Shard-Id": "scoped"}, allowed=["src/app.py", "docs/guide.md"])
    assert sorted(res.files) == ["docs/guide.md", "src/app.py"]
    assert res.excluded == [".github/workflows/ci.yml", "README.md", "setup.py"]
    tree = git(git_repo, "ls-tree", "-r", "--name-only", res.sha).split()
    assert ".github/workflows/ci.yml" not in tree and "setup.py" not in tree and "docs/guide.md" not in tree
    assert git(git_repo, "show", f"{res.sha}:README.md") == "# demo\n"
    assert (wt / "setup.py").exists(), "excluded files are left in the worktree"
    # A predicate works too; nothing allowed left: nothing to commit, the rest reported.
    again = mgr.commit(info.path, "nothing", allowed=lambda p: p.startswith("src/"))
    assert again.sha is None and ".github/workflows/ci.yml" in again.excluded
    removed = mgr.remove_worktree(info.path, force=True)  # excluded work: salvaged locally, branch untouched
    assert git(git_repo, "rev-parse", info.branch).strip() == res.sha
    assert git(git_repo, "show", f"{removed.salvage_branch}:setup.py") == "import os\n"


def test_allowed_must_be_paths_or_a_predicate(mgr):
    info = mgr.create_worktree(RUN, "bad-allowed")
    with pytest.raises(ConfigurationError, match="single string"):
        mgr.commit(info.path, "x", allowed="src/app.py")
    with pytest.raises(ConfigurationError, match="allowed path"):
        mgr.commit(info.path, "x", allowed=["../etc/passwd"])


def test_trailers_join_an_existing_trailer_block(mgr, git_repo):
    info = mgr.create_worktree(RUN, "trailers")
    Path(info.path, "README.md").write_text("x\n")
    res = mgr.commit(info.path, "Subject\n\nBody text.\n\nCo-authored-by: A <a@x>", {"Shard-Id": "t1"})
    msg = git(git_repo, "log", "-1", "--format=%B", res.sha)
    assert msg.rstrip().endswith("Co-authored-by: A <a@x>\nShard-Id: t1")
    assert git(git_repo, "log", "-1", "--format=%(trailers:key=Shard-Id,valueonly)", res.sha).strip() == "t1"


# ------------------------------------------------------------------------------------------ non-UTF-8 names
def test_non_utf8_file_names_end_to_end(repo_factory, tmp_path):
    repo = repo_factory("latin1")
    raw = b"caf\xe9 \xff.txt"
    with open(os.path.join(os.fsencode(repo), raw), "wb") as fh:
        fh.write(b"old\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "latin-1 name")
    m = WorktreeManager(repo, worktree_root=tmp_path / "wt")
    info = m.create_worktree(RUN, "bytes")
    name = os.fsdecode(raw)
    with open(os.path.join(os.fsencode(info.path), raw), "wb") as fh:
        fh.write(b"new\n")
    new_raw = b"d\xe9j\xe0/nouveau.txt"
    os.makedirs(os.path.join(os.fsencode(info.path), b"d\xe9j\xe0"))
    with open(os.path.join(os.fsencode(info.path), new_raw), "wb") as fh:
        fh.write(b"added\n")
    assert m.changed_files(info.path, info.base_sha) == sorted([name, os.fsdecode(new_raw)])
    assert m.is_dirty(info.path)
    res = m.commit(info.path, "bytes", {}, allowed=[name, os.fsdecode(new_raw)])
    assert sorted(res.files) == sorted([name, os.fsdecode(new_raw)]) and res.excluded == []
    res.diffstat.encode("utf-8")  # printable: quoted by git
    listed = subprocess.run(["git", "ls-tree", "-r", "-z", "--name-only", res.sha], cwd=repo,
                            capture_output=True).stdout.split(b"\0")
    assert raw in listed and new_raw in listed
    m.remove_worktree(info.path)


# ------------------------------------------------------------------------------------------ compare-and-swap push
def test_compare_and_swap_push(git_repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(git_repo), str(remote))
    git(git_repo, "remote", "add", "origin", f"file://{remote}")
    m = WorktreeManager(git_repo, worktree_root=tmp_path / "wt")
    info = m.create_worktree(RUN, "cas")
    Path(info.path, "README.md").write_text("attempt 1\n")
    c1 = m.commit(info.path, "attempt 1", {})
    assert m.remote_branch_sha(info.branch) is None
    assert m.push(info.branch, path=info.path, expect=None).expected is None
    assert m.remote_branch_sha(info.branch) == c1.sha
    assert m.push(info.branch, path=info.path, expect=None).sha == c1.sha  # already there: a no-op

    Path(info.path, "README.md").write_text("attempt 2\n")
    c2 = m.commit(info.path, "attempt 2", {})
    with pytest.raises(PushRejected, match="expected no branch") as err:
        m.push(info.branch, path=info.path, expect=None)
    assert err.value.actual == c1.sha and err.value.expected is None
    m.push(info.branch, path=info.path, expect=c1.sha)
    assert git(remote, "rev-parse", f"refs/heads/{info.branch}").strip() == c2.sha

    # A worker fenced out after reading c1 must not replace the newer result.
    Path(info.path, "README.md").write_text("stale worker\n")
    c3 = m.commit(info.path, "stale", {})
    with pytest.raises(PushRejected, match=f"remote branch is at {c2.sha}.*expected {c1.sha}") as err:
        m.push(info.branch, path=info.path, expect=c1.sha)
    assert err.value.actual == c2.sha and isinstance(err.value, GitError)
    assert git(remote, "rev-parse", f"refs/heads/{info.branch}").strip() == c2.sha != c3.sha
    with pytest.raises(ConfigurationError, match="full commit sha"):
        m.push(info.branch, path=info.path, expect="HEAD~1")


def test_scoped_commit_in_a_sparse_worktree_keeps_the_rest_of_the_tree(repo_factory, tmp_path):
    repo = repo_factory("sparse-scope", n_files=50)
    m = WorktreeManager(repo, worktree_root=tmp_path / "wt")
    info = m.create_worktree(RUN, "sp", sparse_paths=["pkg/mod_0001.py", "README.md"])
    Path(info.path, "pkg/mod_0001.py").write_text("X = 1\n")
    Path(info.path, "pkg/new.py").write_text("Y = 1\n")  # outside the sparse patterns, allowed
    Path(info.path, "README.md").write_text("not allowed\n")
    res = m.commit(info.path, "sparse scoped", allowed=["pkg/mod_0001.py", "pkg/new.py"])
    assert sorted(res.files) == ["pkg/mod_0001.py", "pkg/new.py"] and res.excluded == ["README.md"]
    assert len(git(repo, "ls-tree", "-r", "--name-only", res.sha).split()) == 52
    assert m.changed_files(info.path, res.sha) == ["README.md"]
