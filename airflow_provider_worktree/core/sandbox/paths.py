"""Confinement to one worktree: the rules every path the model or the repository names goes through.

:func:`resolve_in_worktree` resolves a path the model named, and refuses

* absolute paths (``/etc/passwd``, even ``/repo/src/a.py``: the model is told to use repository-relative
  paths such as ``src/a.py``) and home-relative ones (``~/...``);
* ``..`` components, NUL and other control characters, backslashes;
* anything inside ``.git`` (the worktree's ``.git`` file and any nested repository's internals);
* symlinks, at any component, whose target leaves the worktree (each component is ``lstat``-ed and every
  symlink's ``realpath`` is checked against the worktree's ``realpath``).

:func:`read_repo_bytes` is the package's one way to read repository content itself (conventions files,
metrics, the editor, a worktree's ``.git`` file): it never leaves the worktree, never opens a FIFO or a device,
and stops at a size cap. Text given back to the model never carries lone surrogates (:func:`clean_text`).

Plain Python: no Airflow import.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

from airflow_provider_worktree.core.errors import WorktreeProviderError

#: NUL and the other control characters: refused in paths, refs, names, trailers and commands.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


class SandboxViolation(WorktreeProviderError):
    """A path or command the model asked for is not allowed in the worktree. Returned as a tool error."""


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate (from a non-UTF-8 file name or a hostile input) replaced by U+FFFD."""
    return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text


def is_within(path: str, root: str) -> bool:
    """Whether the (real, normalised) ``path`` is ``root`` or lies below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def read_repo_bytes(root: str | os.PathLike[str], path: str | os.PathLike[str], *, max_bytes: int,
                    truncate: bool = False) -> bytes:
    """The bytes of a regular file of the repository at ``root``: the package's one way to read repository content.

    ``path`` is relative to ``root`` or absolute; symlinks are followed, and the real path must stay inside
    ``root``'s real path. Only a regular file is read: it is opened with ``O_NONBLOCK`` (a FIFO cannot hang us)
    and checked with ``fstat`` (a device, a FIFO or a socket is refused). More than ``max_bytes`` is refused
    (``truncate=True``: the first ``max_bytes`` are returned).

    :raises FileNotFoundError: there is no such file.
    :raises SandboxViolation: it leaves the repository, is not a regular file, or is too large.
    """
    real_root = os.path.realpath(os.fspath(root))
    name = os.fspath(path)
    real = os.path.realpath(name if os.path.isabs(name) else os.path.join(real_root, name))
    shown = os.path.relpath(real, real_root) if is_within(real, real_root) else name
    if not is_within(real, real_root):
        raise SandboxViolation(f"{clean_text(name)} resolves outside the repository; it is not read.")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise SandboxViolation(f"{clean_text(shown)} is a directory.") from None
    except OSError as exc:
        raise SandboxViolation(f"{clean_text(shown)} cannot be opened: {exc.strerror}.") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SandboxViolation(f"{clean_text(shown)} is not a regular file (a directory, FIFO, socket or device);"
                                   " it is not read.")
        if st.st_size > max_bytes and not truncate:
            raise SandboxViolation(f"file {clean_text(shown)} is {st.st_size} bytes, over the {max_bytes}-byte limit.")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        if not truncate:
            raise SandboxViolation(f"file {clean_text(shown)} is over the {max_bytes}-byte limit.")
        data = data[:max_bytes]
    return data


def resolve_in_worktree(root: str | os.PathLike[str], user_path: object) -> Path:
    """Resolve a path the model named to a real path inside ``root``; raise :class:`SandboxViolation` if not.

    ``user_path`` must be repository-relative (``src/a.py``; ``.`` or ``""`` is the root itself). The returned
    path has every symlink resolved, and is guaranteed (at the time of the call) to lie inside ``root``'s real
    path. Components that do not exist yet are allowed (for ``create``), as long as no existing component
    escapes.
    """
    real_root = os.path.realpath(os.fspath(root))
    if not isinstance(user_path, str):
        raise SandboxViolation(f"path must be a string, got {type(user_path).__name__}.")
    if CONTROL_RE.search(user_path):
        raise SandboxViolation("path contains a NUL or control character; use a plain repository-relative path.")
    if _SURROGATES.search(user_path):
        raise SandboxViolation("path contains a lone surrogate (not valid Unicode); name files with valid UTF-8.")
    if "\\" in user_path:
        raise SandboxViolation(f"path {user_path!r} contains a backslash; use '/' as the separator.")
    if user_path.startswith("/"):
        raise SandboxViolation(
            f"absolute path {user_path!r} refused: use a path relative to the repository root, "
            "e.g. 'src/module.py' (the repository root is '.')."
        )
    if user_path.startswith("~"):
        raise SandboxViolation(f"path {user_path!r} refused: use a path relative to the repository root.")
    parts = [p for p in PurePosixPath(user_path).parts if p not in ("", ".")]
    if ".." in parts:
        raise SandboxViolation(f"path {user_path!r} refused: '..' components are not allowed; stay inside the "
                               "repository and use repository-relative paths.")
    if ".git" in parts:
        raise SandboxViolation(f"path {user_path!r} refused: git internals (.git) are off limits.")

    current = real_root
    for index, part in enumerate(parts):
        candidate = os.path.join(current, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            # The rest does not exist yet: nothing there can be a symlink.
            current = os.path.join(candidate, *parts[index + 1:]) if index + 1 < len(parts) else candidate
            break
        except OSError as exc:
            raise SandboxViolation(f"path {user_path!r} cannot be inspected: {exc.strerror}.") from None
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(candidate)
            if not is_within(target, real_root):
                raise SandboxViolation(
                    f"path {user_path!r} refused: {'/'.join(parts[:index + 1])} is a symlink leading outside "
                    "the repository."
                )
            if ".git" in PurePosixPath(os.path.relpath(target, real_root)).parts:
                raise SandboxViolation(f"path {user_path!r} refused: it leads into git internals (.git).")
            current = target
        else:
            current = candidate
    final = os.path.realpath(current)
    if not is_within(final, real_root):  # belt and braces
        raise SandboxViolation(f"path {user_path!r} refused: it resolves outside the repository.")
    return Path(final)

