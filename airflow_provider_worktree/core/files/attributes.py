"""``linguist-vendored`` and ``linguist-generated`` of the files at a commit, as git itself reads them.

git answers (``git check-attr``), so every rule of gitattributes(5) holds as git applies it: patterns relative
to the ``.gitattributes`` file that holds them, deeper files and later lines winning, macros (``[attr]``),
quoted patterns, ``$GIT_DIR/info/attributes`` and the user's ``core.attributesFile``. ``attr``/``attr=true``
set an attribute, ``-attr`` and ``attr=false`` (``0``, ``no``, ``off``: GitHub Linguist's reading of a value)
unset it, ``!attr`` returns it to unspecified. Only the committed ``.gitattributes`` files count, never the
checkout's; git runs hardened (:func:`~airflow_provider_worktree.core.git.safety.harden`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from airflow_provider_worktree.core.files.listing import git_bytes, scratch_dir

__all__ = ["GitAttributes", "ATTRS"]

#: The attributes the skip rules read.
ATTRS = ("linguist-vendored", "linguist-generated")
_FALSE_VALUES = frozenset({"false", "0", "no", "off"})
#: A private index is written whole, in one file (no split index, no sparse index), outside the repository.
_PRIVATE_INDEX = ("-c", "core.splitIndex=false", "-c", "index.sparse=false")


def _state(info: str) -> bool | None:
    """check-attr's ``set``/``unset``/``unspecified``/value as True, False or None."""
    if info == "unspecified":
        return None
    if info == "unset":
        return False
    return info.lower() not in _FALSE_VALUES         # "set", or a value such as "true"


class GitAttributes:
    """``{attribute: True | False | None}`` per path (None: unspecified), read from a commit."""

    ATTRS = ATTRS

    def __init__(self, states: Mapping[str, Mapping[str, bool | None]] | None = None) -> None:
        self.states = {path: dict(values) for path, values in (states or {}).items()}

    @classmethod
    def from_commit(cls, repo_path: str | os.PathLike[str], commit: str, paths: Iterable[str]) -> GitAttributes:
        """The attributes of ``paths`` at ``commit`` (one ``git read-tree`` and one ``git check-attr``)."""
        wanted = b"".join(os.fsencode(p) + b"\0" for p in paths)
        if not wanted:
            return cls()
        # `git check-attr --source=<commit>` reads a commit's .gitattributes without a checkout, but only from
        # git 2.40 on, and the package supports git >= 2.20 (MIN_GIT_VERSION in core/git/command.py). So the
        # commit's tree goes into a private temporary index (GIT_INDEX_FILE, removed afterwards) and check-attr
        # reads that index alone (--cached): the same answer, on every supported git, and neither the
        # repository's own index nor its working tree is read or written.
        with scratch_dir("worktree-attr-") as scratch:
            env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
            git_bytes(repo_path, [*_PRIVATE_INDEX, "read-tree", commit], env=env)
            out = git_bytes(repo_path, [*_PRIVATE_INDEX, "check-attr", "-z", "--cached", "--stdin", *ATTRS],
                            input=wanted, env=env)
        fields = out.split(b"\0")
        states: dict[str, dict[str, bool | None]] = {}
        for i in range(0, len(fields) - 2, 3):          # path NUL attribute NUL info NUL
            path, attr, info = fields[i:i + 3]
            states.setdefault(os.fsdecode(path), {})[attr.decode("ascii")] = _state(info.decode("utf-8", "replace"))
        return cls(states)

    def lookup(self, path: str) -> dict[str, bool | None]:
        """``{attribute: True | False | None}`` for ``path`` (None: unspecified, or a path not read)."""
        return {**dict.fromkeys(ATTRS), **self.states.get(path, {})}
