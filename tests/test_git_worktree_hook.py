"""GitWorktreeHook with connections from AIRFLOW_CONN_* (JSON) over real git repositories."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.worktrees.manager import WorktreeManager
from airflow_provider_worktree.get_provider_info import get_provider_info
from airflow_provider_worktree.hooks.git_worktree import EXTRA_FIELDS, GitWorktreeHook

RUN = "manual__2026-11-28T05:00:00+00:00"


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def set_conn(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_hook_metadata_and_provider_conn_fields_match():
    assert GitWorktreeHook.conn_name_attr == "git_worktree_conn_id"
    assert GitWorktreeHook.default_conn_name == "git_worktree_default"
    assert GitWorktreeHook.conn_type == "git_worktree"
    assert GitWorktreeHook.hook_name == "Git Worktree"
    (ct,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "git_worktree"]
    assert ct["hook-class-name"] == "airflow_provider_worktree.hooks.git_worktree.GitWorktreeHook"
    assert set(ct["conn-fields"]) == set(EXTRA_FIELDS)
    from airflow_provider_worktree.hooks import GitWorktreeHook as exported
    assert exported is GitWorktreeHook


def test_hook_lifecycle_through_env_connection(monkeypatch, git_repo, tmp_path):
    root = tmp_path / "wt"
    set_conn(monkeypatch, "git_worktree_default", conn_type="git_worktree", host=str(git_repo),
             extra={"worktree_root": str(root), "author_name": "Maint Bot", "author_email": "bot@example.com"})
    hook = GitWorktreeHook()
    mgr = hook.get_manager()
    assert isinstance(mgr, WorktreeManager) and hook.get_manager() is mgr and hook.get_conn() is mgr
    assert mgr.worktree_root == str(root) and mgr.repo == str(git_repo)

    info = mgr.create_worktree(RUN, "hook-1", sparse_paths=["src/app.py"])
    assert info.path.startswith(str(root)) and Path(info.path, "src/app.py").exists()
    assert not Path(info.path, "README.md").exists()
    Path(info.path, "src/app.py").write_text("def add(a, b):\n    return a + b\n")
    assert mgr.is_dirty(info.path)
    assert mgr.changed_files(info.path, info.base_sha) == ["src/app.py"]
    res = mgr.commit(info.path, "Resolve TODO", {"Shard-Id": "hook-1"})
    assert git(git_repo, "log", "-1", "--format=%an <%ae>", res.sha).strip() == "Maint Bot <bot@example.com>"
    assert [w.path for w in mgr.list_worktrees() if w.managed] == [info.path]
    assert mgr.prune(dry_run=True).actions == []
    removed = mgr.remove_worktree(info.path)
    assert removed.removed and not Path(info.path).exists()
    assert mgr.cleanup_all().removed == []


def test_base_ref_from_connection_and_explicit_overrides(monkeypatch, git_repo, tmp_path):
    git(git_repo, "branch", "release")
    Path(git_repo, "later.txt").write_text("later\n")
    git(git_repo, "add", "later.txt")
    git(git_repo, "commit", "-q", "-m", "later on main")
    set_conn(monkeypatch, "wt_conn", conn_type="git_worktree", host=str(git_repo),
             extra={"worktree_root": str(tmp_path / "from-conn"), "base_ref": "release"})
    hook = GitWorktreeHook(git_worktree_conn_id="wt_conn", worktree_root=str(tmp_path / "explicit"))
    info = hook.get_manager().create_worktree(RUN, "s1", base_ref=hook.settings["base_ref"])
    assert info.path.startswith(str(tmp_path / "explicit"))
    assert info.base_sha == git(git_repo, "rev-parse", "release").strip()
    assert not Path(info.path, "later.txt").exists()
    assert Path(hook.get_manager().create_worktree(RUN, "s2", base_ref="main").path, "later.txt").exists()


def test_no_connection_with_repo_works_without_one(git_repo, tmp_path):
    hook = GitWorktreeHook(git_worktree_conn_id="does_not_exist", repo=str(git_repo),
                           worktree_root=str(tmp_path / "wt"))
    info = hook.get_manager().create_worktree(RUN, "s1")
    assert hook.get_manager().remove_worktree(info.path).removed


def test_no_connection_and_no_repo_is_a_clear_error():
    hook = GitWorktreeHook(git_worktree_conn_id="missing_conn_xyz")
    with pytest.raises(ConfigurationError, match="missing_conn_xyz.*does not exist.*AIRFLOW_CONN_MISSING_CONN_XYZ"):
        hook.get_manager()
    ok, msg = hook.test_connection()
    assert not ok and "missing_conn_xyz" in msg


def test_test_connection(monkeypatch, git_repo, tmp_path):
    set_conn(monkeypatch, "good", conn_type="git_worktree", host=str(git_repo),
             extra={"worktree_root": str(tmp_path / "wt")})
    ok, msg = GitWorktreeHook("good").test_connection()
    assert ok and str(git_repo) in msg
    plain = tmp_path / "plain"
    plain.mkdir()
    set_conn(monkeypatch, "bad", conn_type="git_worktree", host=str(plain))
    ok, msg = GitWorktreeHook("bad").test_connection()
    assert not ok and "not a git repository" in msg
    set_conn(monkeypatch, "inside", conn_type="git_worktree", host=str(git_repo),
             extra={"worktree_root": str(git_repo / "wt")})
    ok, msg = GitWorktreeHook("inside").test_connection()
    assert not ok and "inside the repository" in msg


def _all_cache_bytes(cache: Path) -> bytes:
    return b"".join(p.read_bytes() for p in cache.rglob("*") if p.is_file())


def test_credentials_from_official_git_connection(monkeypatch, git_repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(git_repo), str(remote))
    token = "ghp_exampletoken123456"
    set_conn(monkeypatch, "my_git", conn_type="git", host=f"file://{remote}", login="bot", password=token)
    cache = tmp_path / "cache"
    set_conn(monkeypatch, "wt", conn_type="git_worktree",
             extra={"git_conn_id": "my_git", "worktree_root": str(tmp_path / "wt"), "cache_dir": str(cache)})
    hook = GitWorktreeHook("wt")
    mgr = hook.get_manager()
    assert mgr.remote_url == f"file://{remote}" and mgr.common_dir.startswith(str(cache))
    header = "Authorization: Basic " + base64.b64encode(f"bot:{token}".encode()).decode()
    assert header not in mgr.git_env.values()  # file:// is not HTTP: no header needed
    info = mgr.create_worktree(RUN, "s1")
    Path(info.path, "README.md").write_text("# pushed\n")
    res = mgr.commit(info.path, "change", {"Shard-Id": "s1"})
    mgr.push(info.branch, path=info.path)
    assert git(remote, "rev-parse", f"refs/heads/{info.branch}").strip() == res.sha
    for argv in mgr.call_log:
        assert not any(token in a for a in argv)
    assert token.encode() not in _all_cache_bytes(cache)


def test_https_credentials_go_to_env_only(monkeypatch, tmp_path, git_repo):
    token = "tok_abcdefghijklmnop"
    set_conn(monkeypatch, "https_conn", conn_type="git_worktree", host="https://git.example.invalid/org/repo.git",
             login="builder", password=token, extra={"worktree_root": str(tmp_path / "wt")})
    hook = GitWorktreeHook("https_conn")
    settings = hook.settings
    assert token not in json.dumps(settings)
    env = hook._git_env
    keys = {env[k] for k in env if k.startswith("GIT_CONFIG_KEY_")}
    assert keys == {"http.https://git.example.invalid/.extraHeader"}
    values = [env[k] for k in env if k.startswith("GIT_CONFIG_VALUE_")]
    assert values == ["Authorization: Basic " + base64.b64encode(f"builder:{token}".encode()).decode()]


def test_inline_private_key_is_refused(monkeypatch, git_repo, tmp_path):
    set_conn(monkeypatch, "ssh_git", conn_type="git", host="git@example.invalid:org/repo.git",
             extra={"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nxxx\n"})
    set_conn(monkeypatch, "wt_ssh", conn_type="git_worktree", extra={"git_conn_id": "ssh_git"})
    with pytest.raises(ConfigurationError, match="inline private_key.*key_file"):
        GitWorktreeHook("wt_ssh").get_manager()


def test_key_file_becomes_ssh_command(monkeypatch, git_repo, tmp_path):
    set_conn(monkeypatch, "ssh_git2", conn_type="git", host=str(git_repo),
             extra={"key_file": "/keys/id ed", "strict_host_key_checking": "yes"})
    set_conn(monkeypatch, "wt_ssh2", conn_type="git_worktree",
             extra={"git_conn_id": "ssh_git2", "worktree_root": str(tmp_path / "wt")})
    hook = GitWorktreeHook("wt_ssh2")
    mgr = hook.get_manager()
    assert mgr.repo == str(git_repo)  # repo taken from the git connection when ours has no host
    assert mgr.git_env["GIT_SSH_COMMAND"] == "ssh -i '/keys/id ed' -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes"


def test_hook_scoped_commit_and_compare_and_swap_push(monkeypatch, git_repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(git_repo), str(remote))
    git(git_repo, "remote", "add", "origin", f"file://{remote}")
    set_conn(monkeypatch, "cas", conn_type="git_worktree", host=str(git_repo),
             extra={"worktree_root": str(tmp_path / "wt")})
    mgr = GitWorktreeHook("cas").get_manager()
    info = mgr.create_worktree(RUN, "hook-cas")
    Path(info.path, "src/app.py").write_text("X = 1\n")
    Path(info.path, "stray.txt").write_text("not in the shard\n")
    res = mgr.commit(info.path, "scoped", {"Shard-Id": "hook-cas"}, allowed=["src/app.py"])
    assert res.files == ["src/app.py"] and res.excluded == ["stray.txt"]
    assert mgr.remote_branch_sha(info.branch) is None
    assert mgr.push(info.branch, path=info.path, expect=None).sha == res.sha
    assert mgr.remote_branch_sha(info.branch) == res.sha
    from airflow_provider_worktree.core.errors import PushRejected
    Path(info.path, "src/app.py").write_text("X = 2\n")
    mgr.commit(info.path, "again", {}, allowed=["src/app.py"])
    with pytest.raises(PushRejected):
        mgr.push(info.branch, path=info.path, expect=None)
    removed = mgr.remove_worktree(info.path, force=True)
    assert removed.salvage_branch and not removed.branch_deleted
