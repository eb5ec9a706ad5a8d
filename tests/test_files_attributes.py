"""``.gitattributes`` at a commit (core.files.attributes) against git's own verdicts: ``git check-attr`` run in a
checkout of the same commit must say the same for every file, whatever the working tree of the planned clone
holds, and reading them writes nothing into the repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from airflow_provider_worktree.core.files import R_ATTR_VENDORED, R_VENDORED, skip_reason
from airflow_provider_worktree.core.files.attributes import ATTRS, GitAttributes

ATTRIBUTES = {
    ".gitattributes": (
        "# comments and blank lines are ignored\n\n"
        "lib/ext/** linguist-vendored\n"
        "vendor/keep/** -linguist-vendored\n"
        "gen/*.py linguist-generated\n"
        '"spaced dir/*.py" linguist-vendored=true\n'
        "[attr]thirdparty linguist-vendored linguist-generated=false\n"
        "*.min.js thirdparty\n"
        "docs/ linguist-vendored\n"                      # git: a pattern ending in / matches no file
        "**/build/** linguist-generated\n"
        "/top.py linguist-generated\n"
        "*.pb.go linguist-generated=false\n"
        "flags/* linguist-vendored=no linguist-generated=1\n"
        "!neg.py linguist-vendored\n"                    # git ignores negative patterns
        "Mixed.PY linguist-vendored\n"
    ),
    "sub/.gitattributes": "*.py linguist-vendored\nkeep.py !linguist-vendored\nx.py linguist-vendored=false\n",
    "sub/deeper/.gitattributes": "*.py -linguist-vendored\n",
}
FILES = [
    "src/app.py", "lib/ext/x.py", "lib/ext/deep/y.py", "vendor/keep/z.py", "vendor/other/y.py", "gen/out.py",
    "gen/sub/out.py", "spaced dir/s.py", "static/app.min.js", "docs/guide.py", "build/o.py", "a/build/b/c.py",
    "top.py", "sub/top.py", "api.pb.go", "flags/f.py", "neg.py", "Mixed.PY", "mixed.py", "sub/a.py",
    "sub/keep.py", "sub/x.py", "sub/deeper/d.py", "sub/deeper/d.txt", "caf\u00e9.py",
]


def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, input=input).stdout


def _linguist(info: str) -> bool | None:
    """git's answer as GitHub Linguist reads it (a value of false/0/no/off unsets)."""
    return {"set": True, "unset": False, "unspecified": None}.get(info, info.lower() not in ("false", "0", "no", "off"))


def _git_verdicts(checkout: Path) -> dict[str, dict[str, bool | None]]:
    out = _git(checkout, "check-attr", "-z", "--stdin", *ATTRS, input=b"".join(os.fsencode(f) + b"\0" for f in FILES))
    fields = out.split(b"\0")
    verdicts: dict[str, dict[str, bool | None]] = {}
    for i in range(0, len(fields) - 2, 3):
        verdicts.setdefault(os.fsdecode(fields[i]), {})[fields[i + 1].decode()] = _linguist(fields[i + 2].decode())
    return verdicts


@pytest.fixture
def attr_repo(repo_factory) -> Path:
    return repo_factory("attrs", {**ATTRIBUTES, **{f: "x = 1\n" for f in FILES}})


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file()}


def test_attributes_at_a_commit_are_what_git_says_in_a_checkout(attr_repo, tmp_path):
    commit = _git(attr_repo, "rev-parse", "HEAD").decode().strip()
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(attr_repo), str(checkout)], check=True)
    expected = _git_verdicts(checkout)
    assert expected["lib/ext/x.py"]["linguist-vendored"] is True          # the comparison sees real answers
    # The planned clone's working tree and index say otherwise: neither counts, only the commit.
    (attr_repo / ".gitattributes").write_text("* linguist-vendored\n")
    (attr_repo / "sub/.gitattributes").unlink()
    _git(attr_repo, "add", "-A")
    before = _snapshot(attr_repo / ".git")
    attributes = GitAttributes.from_commit(attr_repo, commit, FILES)
    assert {f: attributes.lookup(f) for f in FILES} == expected
    assert _snapshot(attr_repo / ".git") == before                        # nothing written, not even the index


def test_rules_where_the_old_parser_differed_from_git(attr_repo):
    commit = _git(attr_repo, "rev-parse", "HEAD").decode().strip()
    attributes = GitAttributes.from_commit(attr_repo, commit, FILES)
    # A pattern ending in "/" matches no file in git (the old parser took it as the whole directory).
    assert attributes.lookup("docs/guide.py")["linguist-vendored"] is None
    # Macros apply (the old parser skipped [attr] lines).
    assert attributes.lookup("static/app.min.js") == {"linguist-vendored": True, "linguist-generated": False}
    # Deeper files win, "-attr" unsets and "!attr" returns to unspecified.
    assert attributes.lookup("sub/deeper/d.py")["linguist-vendored"] is False
    assert attributes.lookup("sub/keep.py")["linguist-vendored"] is None
    assert skip_reason("sub/a.py", code_task=True, attributes=attributes) == R_ATTR_VENDORED
    # -linguist-vendored overrides the planner's vendored-directory rule, as in GitHub Linguist.
    assert skip_reason("vendor/keep/z.py", code_task=True, attributes=attributes) is None
    assert skip_reason("vendor/other/y.py", code_task=True, attributes=attributes) == R_VENDORED


def test_a_bare_clone_gives_the_same_answer(attr_repo, tmp_path):
    commit = _git(attr_repo, "rev-parse", "HEAD").decode().strip()
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(attr_repo), str(bare)], check=True)
    from_bare = GitAttributes.from_commit(bare, commit, FILES)
    from_clone = GitAttributes.from_commit(attr_repo, commit, FILES)
    assert {f: from_bare.lookup(f) for f in FILES} == {f: from_clone.lookup(f) for f in FILES}
    assert GitAttributes.from_commit(bare, commit, []).lookup("src/app.py") == dict.fromkeys(ATTRS)
