#!/usr/bin/env python3
"""Generate a deterministic demo git repository for the smoke run, and print its path.

The repository is a small Python project: ``--modules N`` modules (default 30) spread over a few packages
under ``demo/``, every module with TODO and FIXME comments for the maintenance tasks to work on, and a
``tests/`` directory whose pytest tests pass. The same arguments always give the same files and the same
commit id (fixed author, committer and dates), so runs can be compared.

    python scripts/demo_repo.py                      # a new temporary directory
    python scripts/demo_repo.py --dest /tmp/demo     # that directory (must not exist, or be empty)
    python scripts/demo_repo.py --dest /tmp/demo --modules 60 --force

Only the standard library and the git CLI are used; nothing else from this project is imported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = ("arith", "text", "seq", "config")
FIXED_DATE = "2026-01-01T12:00:00+00:00"
AUTHOR = ("Demo Author", "demo@example.com")

# One template per package: (module docstring, source, test). {i} is the module number, {n} a small
# number derived from it. Each source has TODO/FIXME comments the "todo" task resolves; the tests pin the
# current behaviour so they pass before and after a careful edit.
TEMPLATES = {
    "arith": (
        '''"""Arithmetic helpers, part {i}."""


def scale_{i}(value, factor={n}):
    # TODO: reject a negative factor with a ValueError
    return value * factor


def clamp_{i}(value, low=0, high={hi}):
    # FIXME: low and high given in the wrong order silently return low
    return max(low, min(value, high))


def mean_{i}(values):
    # TODO: return None for an empty sequence instead of raising ZeroDivisionError
    return sum(values) / len(values)
''',
        '''def test_mod_{i}():
    from demo.arith.mod_{i:02d} import clamp_{i}, mean_{i}, scale_{i}

    assert scale_{i}(2) == {twice}
    assert clamp_{i}({big}) == {hi}
    assert clamp_{i}(-5) == 0
    assert mean_{i}([1, 2, 3]) == 2
''',
    ),
    "text": (
        '''"""Text helpers, part {i}."""


def slug_{i}(text):
    # TODO: collapse repeated separators ("a  b" gives "a--b" today)
    return text.strip().lower().replace(" ", "-")


def truncate_{i}(text, width={w}):
    # FIXME: the ellipsis makes the result one character longer than width
    if len(text) <= width:
        return text
    return text[:width] + "…"


def count_words_{i}(text):
    # TODO: treat punctuation as a word separator
    return len(text.split())
''',
        '''def test_mod_{i}():
    from demo.text.mod_{i:02d} import count_words_{i}, slug_{i}, truncate_{i}

    assert slug_{i}(" Hello World ") == "hello-world"
    assert truncate_{i}("abc") == "abc"
    assert truncate_{i}("x" * 100).startswith("x" * {w})
    assert count_words_{i}("one two  three") == 3
''',
    ),
    "seq": (
        '''"""Sequence helpers, part {i}."""


def chunks_{i}(items, size={n}):
    # TODO: raise ValueError when size is not positive (size=0 loops forever today)
    return [items[k:k + size] for k in range(0, len(items), size)]


def dedupe_{i}(items):
    # FIXME: unhashable items raise TypeError; fall back to a linear scan
    seen = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def first_{i}(items, default=None):
    # TODO: accept any iterable, not only sequences
    return items[0] if items else default
''',
        '''def test_mod_{i}():
    from demo.seq.mod_{i:02d} import chunks_{i}, dedupe_{i}, first_{i}

    assert chunks_{i}(list(range({n2}))) == [list(range({n2}))[k:k + {n}] for k in range(0, {n2}, {n})]
    assert dedupe_{i}([3, 1, 3, 2, 1]) == [3, 1, 2]
    assert first_{i}([]) is None
    assert first_{i}([{i}, 0]) == {i}
''',
    ),
    "config": (
        '''"""Configuration helpers, part {i}."""

DEFAULTS_{i} = {{"retries": {n}, "timeout": {hi}, "name": "service-{i}"}}


def parse_bool_{i}(value):
    # TODO: accept "yes"/"no" and "on"/"off" as well
    return str(value).strip().lower() in ("1", "true")


def merged_{i}(overrides):
    # FIXME: nested dictionaries are replaced instead of merged
    result = dict(DEFAULTS_{i})
    result.update(overrides or {{}})
    return result


def env_name_{i}(key):
    # TODO: validate that key is an identifier
    return "DEMO_{i}_" + key.upper()
''',
        '''def test_mod_{i}():
    from demo.config.mod_{i:02d} import env_name_{i}, merged_{i}, parse_bool_{i}

    assert parse_bool_{i}("True") is True
    assert parse_bool_{i}("no") is False
    assert merged_{i}({{"retries": 0}})["retries"] == 0
    assert merged_{i}(None)["timeout"] == {hi}
    assert env_name_{i}("port") == "DEMO_{i}_PORT"
''',
    ),
}

README = """# demo

A generated demo project for the airflow-provider-worktree smoke run ({modules} modules in
{packages} packages). Every module has TODO and FIXME comments; `python -m pytest -q` runs its tests.
"""

PYPROJECT = """[project]
name = "demo"
version = "0.0.0"
requires-python = ">=3.9"

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
"""

CONFTEST = '''"""Make the demo package importable from the tests without installing it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
'''


def demo_files(modules: int) -> dict[str, str]:
    """Relative path -> text of every file of the demo repository with ``modules`` modules."""
    if modules < 1:
        raise ValueError(f"--modules must be at least 1, got {modules}")
    files: dict[str, str] = {
        "README.md": README.format(modules=modules, packages=min(modules, len(PACKAGES))),
        "pyproject.toml": PYPROJECT,
        ".gitignore": "__pycache__/\n*.pyc\n.pytest_cache/\n",
        "demo/__init__.py": '"""Generated demo package."""\n',
        "tests/conftest.py": CONFTEST,
    }
    tests: dict[str, list[str]] = {}
    for i in range(modules):
        pkg = PACKAGES[i % len(PACKAGES)]
        n = 2 + i % 5
        values = {"i": i, "n": n, "n2": n * 3 + 1, "twice": 2 * n, "hi": 100 + i, "big": 1000 + i,
                  "w": 10 + i % 7}
        source, test = TEMPLATES[pkg]
        files.setdefault(f"demo/{pkg}/__init__.py", f'"""Generated {pkg} helpers."""\n')
        files[f"demo/{pkg}/mod_{i:02d}.py"] = source.format(**values)
        tests.setdefault(pkg, []).append(test.format(**values))
    for pkg, bodies in tests.items():
        files[f"tests/test_{pkg}.py"] = f'"""Tests of demo.{pkg}."""\n\n\n' + "\n\n".join(bodies)
    return files


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("GIT_") and key not in ("GIT_EXEC_PATH",):
            env.pop(key)  # a caller's GIT_DIR / GIT_WORK_TREE must not redirect us
    env.update(
        GIT_AUTHOR_NAME=AUTHOR[0], GIT_AUTHOR_EMAIL=AUTHOR[1], GIT_AUTHOR_DATE=FIXED_DATE,
        GIT_COMMITTER_NAME=AUTHOR[0], GIT_COMMITTER_EMAIL=AUTHOR[1], GIT_COMMITTER_DATE=FIXED_DATE,
        GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
    )
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo_repo: git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout


def make_demo_repo(dest: Path, modules: int = 30, force: bool = False) -> Path:
    """Write the demo files to ``dest``, commit them on ``main`` and return the resolved path."""
    dest = dest.expanduser().resolve()
    if dest.exists() and any(dest.iterdir()):
        if not force:
            raise SystemExit(f"demo_repo: {dest} exists and is not empty; choose another --dest or pass --force")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for rel, text in sorted(demo_files(modules).items()):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    _git(dest, "init", "-q")
    _git(dest, "symbolic-ref", "HEAD", "refs/heads/main")  # works on git < 2.28 (no init -b)
    _git(dest, "config", "user.name", AUTHOR[0])
    _git(dest, "config", "user.email", AUTHOR[1])
    _git(dest, "config", "commit.gpgsign", "false")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", f"demo: {modules} modules with TODO/FIXME markers and tests")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, help="directory to create (default: a new temporary directory)")
    parser.add_argument("--modules", type=int, default=30, help="number of Python modules (default 30)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --dest")
    args = parser.parse_args(argv)
    if args.modules < 1:
        parser.error(f"--modules must be at least 1, got {args.modules}")
    dest = args.dest or Path(tempfile.mkdtemp(prefix="worktree-demo-"))
    print(make_demo_repo(dest, args.modules, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
