"""Real open-source repositories for tests: sources of well-known PyPI packages, committed into fresh git repositories.

Nobody here wrote this code, so it is honest acceptance data for planning, the offline model and the smoke run
(our own demo repository was made to pass). The sources are fetched with ``pip download --no-binary :all:
--no-deps`` into a cache outside the project (``$WORKTREE_TEST_SDIST_CACHE``, default
``~/.cache/airflow-provider-worktree-tests/sdists``) and never committed to this repository. Tests skip with the
reason when the package index cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

# Pinned so results are repeatable. mypy is the large one (over 100k lines of Python with its typeshed stubs).
PINNED = {
    "requests": "2.32.3",   # an HTTP library, small
    "flask": "3.1.0",       # a web framework, medium
    "mypy": "1.13.0",       # a type checker, large
    "attrs": "24.2.0",
    "click": "8.1.7",
    "pyparsing": "3.2.0",   # examples with real lint findings (whitespace, == None, unused imports)
}

CACHE = Path(os.environ.get("WORKTREE_TEST_SDIST_CACHE")
             or Path.home() / ".cache" / "airflow-provider-worktree-tests" / "sdists")


def fetch_sdist(name: str, version: str | None = None) -> Path:
    """The sdist archive of ``name`` (pinned version unless given), downloaded once into the cache."""
    version = version or PINNED[name]
    target = CACHE / f"{name}-{version}"
    found = sorted(p for p in target.glob("*") if p.suffix in (".gz", ".zip")) if target.is_dir() else []
    if found:
        return found[0]
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
         f"{name}=={version}", "-d", str(target)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    found = sorted(p for p in target.glob("*") if p.suffix in (".gz", ".zip"))
    if proc.returncode != 0 or not found:
        pytest.skip(f"cannot download the sdist of {name}=={version} from the package index "
                    f"(no network?): {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return found[0]


def _extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, dropping the archive's single top-level directory."""
    tmp = dest.with_name(dest.name + ".extract")
    tmp.mkdir(parents=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
    else:
        with tarfile.open(archive) as t:
            t.extractall(tmp, filter="data")
    entries = list(tmp.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    top.rename(dest)
    if top is not tmp:
        tmp.rmdir()


def real_repo(dest: Path, name: str, version: str | None = None) -> Path:
    """A fresh git repository at ``dest`` (branch main, one commit) holding the sources of a PyPI package."""
    _extract(fetch_sdist(name, version), dest)
    env = {**os.environ, "GIT_AUTHOR_NAME": "Upstream", "GIT_AUTHOR_EMAIL": "upstream@example.com",
           "GIT_COMMITTER_NAME": "Upstream", "GIT_COMMITTER_EMAIL": "upstream@example.com"}
    for args in (["init", "-q", "-b", "main"], ["config", "commit.gpgsign", "false"], ["add", "-A", "-f"],
                 ["commit", "-q", "-m", f"{name} {version or PINNED[name]} sources (sdist)"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True, env=env)
    return dest


def python_lines(repo: Path) -> int:
    """Lines of Python in ``repo`` (to show a repository is as large as a test says)."""
    return sum(len(p.read_bytes().splitlines()) for p in repo.rglob("*.py") if ".git" not in p.parts)
