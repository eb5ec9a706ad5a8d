"""Hostile repositories: the package's git runs nothing from the repository, and credentials reach only the
commands that talk to the remote.

Every attack writes a marker file (and dumps its environment) when it runs; the tests drive the real manager
through its whole lifecycle on a real repository and assert that no marker appeared. A control run with plain
git proves the traps are armed.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from airflow_provider_worktree.core.git import command as gitcmd
from airflow_provider_worktree.core.health.report import merge_branches
from airflow_provider_worktree.core.git import credential_env
from airflow_provider_worktree.core.worktrees import WorktreeManager

RUN = "manual__2026-11-29T00:00:00+00:00"
HOOKS = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "reference-transaction",
         "post-index-change", "post-checkout", "post-merge", "pre-merge-commit", "pre-push", "pre-auto-gc",
         "post-rewrite", "pre-receive", "update", "post-receive", "push-to-checkout")
SECRET = "tok-hardening-7f3a9"


def git(cwd, *args, env=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=env).stdout


def trap(path: Path, name: str, markers: Path, tail: str = "") -> str:
    """An executable that records that it ran (``<markers>/<name>``, with its environment), then ``tail``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nenv > '{markers}/{name}'.$$\n{tail}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


@pytest.fixture
def hostile(tmp_path):
    """A repository whose config, hooks and attributes try to run code, with a bare file:// remote."""
    markers = tmp_path / "markers"
    markers.mkdir()
    bin_dir = tmp_path / "evil-bin"
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for rel, text in {"README.md": "# demo\n", "src/app.py": "VALUE = 'a'\n", "data.txt": "alpha\n"}.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    (repo / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n")
    # Hooks the repository carries in its tree, for core.hooksPath pointing into the worktree.
    for hook in HOOKS:
        trap(repo / ".githooks" / hook, f"tree-hook-{hook}", markers)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "initial")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))
    for hook in HOOKS:
        trap(repo / ".git" / "hooks" / hook, f"git-hook-{hook}", markers)
        trap(remote / "hooks" / hook, f"remote-hook-{hook}", markers)  # the remote's own are its business
    for hook in HOOKS:
        (remote / "hooks" / hook).unlink()
    config = {
        "core.hooksPath": ".githooks",
        "core.fsmonitor": trap(bin_dir / "fsmonitor", "fsmonitor", markers),
        "filter.evil.clean": trap(bin_dir / "clean", "filter-clean", markers, "sed s/a/EVIL/"),
        "filter.evil.smudge": trap(bin_dir / "smudge", "filter-smudge", markers, "sed s/a/EVIL/"),
        "filter.evil.process": trap(bin_dir / "process", "filter-process", markers, "exit 1"),
        "filter.evil.required": "true",
        "diff.evil.textconv": trap(bin_dir / "textconv", "textconv", markers, "cat \"$1\""),
        "diff.evil.command": trap(bin_dir / "diffcmd", "diff-command", markers),
        "diff.external": trap(bin_dir / "extdiff", "diff-external", markers),
        "merge.evil.driver": trap(bin_dir / "merge", "merge-driver", markers) + " %O %A %B",
        "core.sshCommand": trap(bin_dir / "ssh", "ssh-command", markers),
        "core.askPass": trap(bin_dir / "askpass", "askpass", markers),
        "credential.helper": "!" + trap(bin_dir / "cred", "credential-helper", markers),
        "gpg.program": trap(bin_dir / "gpg", "gpg", markers),
        "commit.gpgSign": "true",
        "log.showSignature": "true",
        "core.pager": trap(bin_dir / "pager", "pager", markers),
        "core.editor": trap(bin_dir / "editor", "editor", markers),
        "trailer.shard-id.command": trap(bin_dir / "trailer", "trailer-command", markers),
        "remote.origin.url": f"file://{remote}",
        "remote.origin.fetch": "+refs/heads/*:refs/remotes/origin/*",
        "remote.origin.uploadpack": trap(bin_dir / "upload", "upload-pack", markers, 'exec git-upload-pack "$@"'),
        "remote.origin.receivepack": trap(bin_dir / "receive", "receive-pack", markers,
                                          'exec git-receive-pack "$@"'),
        "user.name": "Repo Owner",
        "user.email": "owner@example.com",
    }
    for key, value in config.items():
        git(repo, "config", key, value)
    return repo, remote, markers


def ran(markers: Path) -> list[str]:
    return sorted({p.name.rsplit(".", 1)[0] for p in markers.iterdir()})


def test_traps_are_armed(hostile, tmp_path):
    """Control: plain git in the hostile repository does run them (so the next tests can fail)."""
    repo, _remote, markers = hostile
    (repo / "data.txt").write_text("beta\n")
    subprocess.run(["git", "status"], cwd=repo, capture_output=True)
    git(repo, "config", "--unset", "filter.evil.process")  # a process filter would take precedence over clean
    subprocess.run(["git", "-c", "commit.gpgSign=false", "commit", "-qam", "x"], cwd=repo, capture_output=True)
    assert {"tree-hook-pre-commit", "tree-hook-post-commit", "tree-hook-reference-transaction", "fsmonitor",
            "filter-clean"} <= set(ran(markers)), ran(markers)


def test_hostile_repository_runs_nothing_through_the_whole_lifecycle(hostile, tmp_path, monkeypatch):
    repo, remote, markers = hostile
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-worker-secret")
    env = credential_env("bot", SECRET, url="https://git.example.invalid/org/repo.git")
    m = WorktreeManager(repo, worktree_root=tmp_path / "wt", git_env=env)
    info = m.create_worktree(RUN, "s1")
    assert Path(info.path, "data.txt").read_text() == "alpha\n", "the smudge filter did not run"
    wt = Path(info.path)
    # The model rewrites the in-tree hooks (core.hooksPath points there) and a worktree-scoped config.
    for hook in HOOKS:
        trap(wt / ".githooks" / hook, f"edited-hook-{hook}", markers)
    git(repo, "config", "extensions.worktreeConfig", "true")
    git(wt, "config", "--worktree", "core.fsmonitor", trap(tmp_path / "wt-fsmonitor", "wt-fsmonitor", markers))
    git(wt, "config", "--worktree", "filter.evil.clean", trap(tmp_path / "wt-clean", "wt-clean", markers))
    (wt / "data.txt").write_text("alpha changed\n")
    (wt / "src" / "app.py").write_text("VALUE = 'b'\n")
    (wt / "stray.txt").write_text("written by a test\n")

    assert m.is_dirty(info.path)
    assert "data.txt" in m.changed_files(info.path, info.base_sha)
    res = m.commit(info.path, "edit", {"Shard-Id": "s1"}, allowed=["data.txt", "src/app.py"])
    assert res.sha and sorted(res.files) == ["data.txt", "src/app.py"]
    assert "stray.txt" in res.excluded
    assert git(repo, "show", f"{res.sha}:data.txt") == "alpha changed\n", "the clean filter did not run"
    assert m.remote_branch_sha(info.branch) is None
    pushed = m.push(info.branch, path=info.path, expect=None)
    assert git(remote, "rev-parse", f"refs/heads/{info.branch}").strip() == pushed.sha == res.sha
    # A second shard touching the same file, merged by the report (merge driver, merge hooks).
    other = m.create_worktree(RUN, "s2")
    Path(other.path, "data.txt").write_text("alpha\nmore\n")
    c2 = m.commit(other.path, "other edit", {"Shard-Id": "s2"})
    m.remove_worktree(other.path)
    merged = merge_branches(m, [info.branch, other.branch], "integration", run_id=RUN, push=False)
    assert merged["merged"] and c2.sha
    removed = m.remove_worktree(info.path, force=True)  # salvages stray.txt
    assert removed.salvage_branch
    m.prune()
    assert ran(markers) == [], "git ran code from the repository"


def test_credentials_reach_only_remote_commands(hostile, tmp_path, monkeypatch):
    """A git wrapper on PATH records every invocation's environment, then runs the real git."""
    repo, _remote, _markers = hostile
    log = tmp_path / "git-calls.log"
    wrapper_dir = tmp_path / "wrapper"
    wrapper_dir.mkdir()
    real_git = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True).stdout.strip()
    wrapper = wrapper_dir / "git"
    wrapper.write_text(f"#!/bin/sh\n{{ printf 'ARGV %s\\n' \"$*\"; env; printf '@@END@@\\n'; }} >> '{log}'\n"
                       f"exec '{real_git}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-worker-secret")
    gitcmd.git_version.cache_clear()
    try:
        env = {**credential_env("bot", SECRET, url=f"file://{repo}"), "GIT_SSH_COMMAND": "ssh -i /keys/id"}
        m = WorktreeManager(repo, worktree_root=tmp_path / "wt", git_env=env)
        info = m.create_worktree(RUN, "s1")
        Path(info.path, "README.md").write_text("# changed\n")
        m.commit(info.path, "edit", {"Shard-Id": "s1"})
        m.push(info.branch, path=info.path)
        m.remote_branch_sha(info.branch)
        m.remove_worktree(info.path)
    finally:
        gitcmd.git_version.cache_clear()
    calls = [c for c in log.read_text().split("@@END@@\n") if c.strip()]
    remote_calls = [c for c in calls if any(f" {s} " in f" {c.splitlines()[0]} " for s in ("push", "ls-remote"))]
    local_calls = [c for c in calls if c not in remote_calls]
    assert len(remote_calls) == 2 and len(local_calls) > 10
    assert not any(SECRET in c for c in calls), "the raw secret reached git"
    for call in local_calls:
        assert "GIT_CONFIG_VALUE_0" not in call and "GIT_SSH_COMMAND" not in call, call.splitlines()[0]
    for call in remote_calls:
        assert "GIT_CONFIG_VALUE_0=Authorization: Basic" in call and "GIT_SSH_COMMAND=ssh -i /keys/id" in call
    assert not any("sk-ant-worker-secret" in c for c in calls), "the worker's environment reached git"


def test_operator_config_is_kept_repository_config_is_not(tmp_path):
    """The operator's global settings win over the repository's; drivers are neutralised in every scope."""
    from airflow_provider_worktree.core.git.safety import config_overrides, transport_options

    entries = [
        ("global", "core.sshcommand", "ssh -i /keys/ops"),
        ("local", "core.sshcommand", "/evil/ssh"),
        ("local", "core.askpass", "/evil/askpass"),
        ("global", "credential.helper", "store"),
        ("local", "credential.https://example.com.helper", "!/evil/cred"),
        ("worktree", "core.gitproxy", "/evil/proxy"),
        ("global", "filter.lfs.clean", "git-lfs clean -- %f"),
        ("worktree", "merge.evil.driver", "/evil/merge %A"),
        ("local", "remote.origin.uploadpack", "/evil/upload"),
    ]
    final = {}
    for key, value in config_overrides(entries):
        final[key] = value  # git: the last value wins
    assert final["core.sshcommand"] == "ssh -i /keys/ops" and final["core.askpass"] == ""
    assert final["credential.helper"] == "" and final["protocol.git.allow"] == "never"
    assert final["filter.lfs.clean"] == "" and final["filter.lfs.required"] == "false"
    assert final["merge.evil.driver"].startswith("git merge-file")
    assert transport_options(["ls-remote", "origin"], entries) == ["--upload-pack=git-upload-pack"]
    assert transport_options(["push", "origin"], entries) == []
    # Without anything from the repository, nothing is overridden.
    assert config_overrides([("global", "core.sshcommand", "ssh -i /keys/ops"),
                             ("global", "credential.helper", "store")]) == []


def test_global_filter_driver_does_not_run_on_model_content(git_repo, tmp_path, monkeypatch):
    """A filter the operator configured globally (git-lfs style) does not run on what the model wrote."""
    markers = tmp_path / "markers"
    markers.mkdir()
    global_cfg = tmp_path / "gitconfig"
    global_cfg.write_text(f"[filter \"lfs\"]\n\tclean = {trap(tmp_path / 'lfs-clean', 'lfs-clean', markers)}\n"
                          f"\tsmudge = {trap(tmp_path / 'lfs-smudge', 'lfs-smudge', markers)}\n"
                          "\trequired = true\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(global_cfg))
    m = WorktreeManager(git_repo, worktree_root=tmp_path / "wt")
    info = m.create_worktree(RUN, "lfs")
    Path(info.path, ".gitattributes").write_text("*.bin filter=lfs\n")
    Path(info.path, "model.bin").write_bytes(b"\x00model output\n")
    res = m.commit(info.path, "model wrote", {})
    assert git(git_repo, "show", f"{res.sha}:model.bin") == "\x00model output\n"
    m.remove_worktree(info.path)
    assert ran(markers) == []
