"""Glob matching (core.files.globs, on pathspec) against git's own verdicts on a real repository: every pattern
and list below is given to git as exclude patterns (``git ls-files --others --ignored --exclude-from``), and the
files git reports must be exactly the files the package's globs match."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from airflow_provider_worktree.core.files.globs import match_any, match_glob, selected_by

PATHS = [
    "a.py", "b.js", "README.md", "docs/guide.md", "docs/api/index.md", "src/app.py", "src/util.py",
    "src/sub/deep.py", "src/sub/x.js", "src/tests/test_x.py", "tests/test_x.py", "tests/conftest.py",
    "conftest.py", "a/b/c.py", "a/c.py", "x/a/b/c.py", "lib/ext/x.py", "vendor/keep/z.py", "vendor/other/y.py",
    "node_modules/pkg/index.js", ".github/workflows/ci.yml", "spaced dir/s.py", "weird[1].py", "q1.py", "qq.py",
    "foo.py/bar.txt", "build/out.o", "build/keep.txt", "x/build/y.o", "Makefile", "src/Makefile", ".hidden/h.py",
    "dir.d/f", "abc/abc", "#hash.py", "!bang.py", "data/cases.test", "fix.patch", "caf\u00e9.py", "UPPER.PY",
]

PATTERNS = [
    # wildcards
    "*", "**", "**/*", "*.py", "**/*.py", "*.md", "**/*.md", "*.test", "*.PY", "q?.py", "?.py", "?",
    # character classes
    "[ab].py", "[!a].py", "[a-c]/c.py", "weird[0-9].py", "weird?1?.py", "*.[pj][ys]", "[A-Z]*",
    # anchored (a slash in the pattern, or a leading one)
    "a/*.py", "/a.py", "a.py", "/docs", "tests/test_*.py", "*/c.py", "*/*/c.py", "docs/*.md", "/Makefile",
    "spaced dir/*.py", "a/b", "src/*",
    # double stars
    "a/**", "a/**/c.py", "**/c.py", "**/tests/**", "src/**/*.py", "**/b/*", "docs/**", "vendor/**", "lib/**",
    "**/abc", "abc/**", "a/**/b/*.py", "**/build",
    # directories
    "src", "src/", "docs/", "build/", "spaced dir/", ".github/", "*/", "*.py/", "src/*/", "**/*/", "dir.d", "abc",
    # literal names and escapes
    "Makefile", "foo.py", "\\#hash.py", "\\!bang.py", "caf\u00e9.py", "  a.py  ",
]

LISTS = [
    ["**/*.py", "!src/**"],
    ["src/**/*.py", "!src/sub/*", "src/sub/deep.py"],
    ["build/*", "!build/keep.txt"],
    ["*.py", "!tests/*", "tests/conftest.py"],
    ["*.md", "!docs/api/*"],
    ["!*.py", "*.py"],
]


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("globs")
    _git(repo, "init", "-q")
    for rel in PATHS:
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    return repo


def _git_matches(repo: Path, lines: list[str]) -> set[str]:
    """The files git excludes with ``lines`` as its exclude patterns (all files here are untracked)."""
    patterns = repo / ".git" / "test-patterns"
    patterns.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out = _git(repo, "-c", "core.quotePath=false", "ls-files", "-z", "--others", "--ignored",
               f"--exclude-from={patterns}")
    return {name for name in out.decode("utf-8").split("\0") if name}


def test_the_scratch_repository_holds_every_path(scratch):
    assert _git_matches(scratch, ["*"]) == set(PATHS)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_one_glob_matches_what_git_matches(scratch, pattern):
    expected = _git_matches(scratch, [pattern.strip()])   # the package strips blanks around a pattern
    assert {p for p in PATHS if match_glob(p, pattern)} == expected


@pytest.mark.parametrize("lines", LISTS, ids=" ".join)
def test_a_list_with_exclusions_matches_what_git_matches(scratch, lines):
    assert {p for p in PATHS if match_any(p, lines)} == _git_matches(scratch, lines)


def test_a_list_is_read_per_path_where_gitignore_prunes_directories(scratch):
    # git cannot re-include a file below a directory an earlier pattern excluded (it prunes its walk there);
    # a glob list selects files, so a later `!pattern` leaves out the .js files at every depth.
    lines = ["**/*", "!*.js"]
    assert {"src/sub/x.js", "node_modules/pkg/index.js"} <= _git_matches(scratch, lines)
    selected = {p for p in PATHS if match_any(p, lines)}
    assert not {p for p in selected if p.endswith(".js")}
    assert selected == {p for p in PATHS if not p.endswith(".js")}
    lines = ["build/", "!build/keep.txt"]
    assert _git_matches(scratch, lines) == {"build/out.o", "build/keep.txt", "x/build/y.o"}
    assert {p for p in PATHS if match_any(p, lines)} == {"build/out.o", "x/build/y.o"}


def test_task_globs_of_exclusions_alone_start_from_every_file():
    assert selected_by("a.py", ["!*.js"]) and not selected_by("src/sub/x.js", ["!*.js"])
    assert selected_by("a.py", []) and not match_any("a.py", [])
    assert not match_any("a.py", ["!*.js"])                 # include/exclude lists: nothing to select from
    assert match_glob("src/app.py", "./src/**")             # the shell's ./ is dropped
