"""Commands run as the unprivileged user ``nobody`` (test_cli_errors.py, test_box.py), from any checkout.

A checkout and its venv inside a private directory (mode 0700, like many users' homes) are unreadable for
``nobody``. ``readable_copy()`` puts a copy of the package, and of the third-party modules its CLI and core
import, in a world-readable temporary directory (removed at exit); ``interpreter()`` names a Python of this
version that ``nobody`` can run. ``skip_reason()`` says why neither is possible here.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534
SETPRIV = shutil.which("setpriv")

#: Imports everything the CLI and core import at module level (plus the CLI's output libraries), then prints the
#: top-level modules that came from outside the standard library, with where they live.
_PROBE = """
import importlib, json, pkgutil, sys
import airflow_provider_worktree.cli, airflow_provider_worktree.core as core
for pkg in (core, airflow_provider_worktree.cli):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not m.name.endswith(".__main__"):
            importlib.import_module(m.name)
for name in ("rich", "yaml", "pathspec", "packaging"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
found = {}
for name, mod in list(sys.modules.items()):
    path = getattr(mod, "__file__", None) or ""
    if "." in name or name == "airflow" or not ("/site-packages/" in path or "/dist-packages/" in path):
        continue
    found[name] = path
print(json.dumps(found))
"""


def as_nobody(cmd: list[str]) -> list[str]:
    return [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]


def nobody_may(test_flag: str, path: str | os.PathLike) -> bool:
    """``test -r`` / ``test -x`` as nobody: the real answer (permission bits of every parent, ACLs)."""
    return subprocess.run(as_nobody(["test", test_flag, str(path)]), capture_output=True).returncode == 0


@functools.cache
def interpreter() -> str | None:
    """A Python of this major.minor that nobody can run (C extensions of the copied modules must load)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [os.path.realpath(sys.executable), os.path.realpath(getattr(sys, "_base_executable", "")),
                  f"/usr/bin/python{version}", "/usr/bin/python3"]
    for candidate in dict.fromkeys(c for c in candidates if c and os.path.exists(c)):
        if not nobody_may("-x", candidate):
            continue
        probe = subprocess.run(as_nobody([candidate, "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]),
                               capture_output=True, text=True)
        if probe.stdout.strip() == version:
            return candidate
    return None


def skip_reason() -> str | None:
    if SETPRIV is None or os.geteuid() != 0:
        return "needs root and setpriv to run the command as another user"
    if interpreter() is None:
        return (f"no Python {sys.version_info.major}.{sys.version_info.minor} that the user nobody may run "
                f"(this one, {os.path.realpath(sys.executable)}, is in a directory nobody cannot enter)")
    return None


@functools.cache
def readable_copy() -> Path:
    """A world-readable directory holding ``airflow_provider_worktree`` and the third-party modules it needs:
    the PYTHONPATH of a command run as nobody."""
    found = json.loads(subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
                                      cwd=ROOT).stdout)
    dest = Path(tempfile.mkdtemp(prefix="wt-nobody-"))
    atexit.register(shutil.rmtree, dest, True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "airflow_provider_worktree", dest / "airflow_provider_worktree", ignore=ignore)
    for top, path in found.items():
        source = Path(path)
        if source.name.startswith("__init__."):
            shutil.copytree(source.parent, dest / top, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(source, dest / source.name)
    for directory, dirs, files in os.walk(dest):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)
    return dest
