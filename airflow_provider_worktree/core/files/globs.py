"""Glob patterns over repository-relative POSIX paths, with git's wildmatch rules (the ``.gitignore`` dialect),
matched by :mod:`pathspec`.

- ``*`` and ``?`` stay inside one path segment, ``**`` crosses directories, ``[...]`` is a character class
  (``[!...]`` negated);
- a pattern without a ``/`` (a trailing one aside) matches the name at any depth; one with a ``/`` is anchored at
  the repository root, as is one starting with ``/``;
- a pattern that matches a directory matches everything below it (``docs/``, ``src``, ``a/**``);
- in a list, ``!pattern`` excludes what the patterns before it matched: the last pattern that matches a path
  decides. The list is read per path: a file below a directory that an earlier pattern matched can still be
  excluded (``["**/*", "!*.js"]`` leaves out every ``.js`` file), where ``.gitignore`` could not re-include it.

``tests/test_files_globs.py`` checks the patterns against git's own verdicts on a real repository.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pathspec

from airflow_provider_worktree.core.errors import ConfigurationError

__all__ = ["match_glob", "match_any", "selected_by", "normalise_globs", "optional_globs"]


def _clean(pattern: str) -> str:
    """A user's pattern as git reads it: surrounding blanks dropped, a leading ``./`` (the shell habit) too."""
    pat = pattern.strip()
    neg = "!" if pat.startswith("!") else ""
    body = pat[len(neg):]
    return neg + (body[2:] if body.startswith("./") else body)


@functools.lru_cache(maxsize=512)
def _spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    # GitIgnoreSpec is pathspec's gitwildmatch dialect with git's own edge cases (pathspec >= 0.10; the
    # from_lines("gitwildmatch") spelling warns as deprecated from pathspec 1.0 on).
    return pathspec.GitIgnoreSpec.from_lines([_clean(p) for p in patterns])


def match_glob(path: str, pattern: str) -> bool:
    """True when the repository-relative POSIX ``path`` matches the glob ``pattern``."""
    return _spec((pattern,)).match_file(path)


def match_any(path: str, patterns: Sequence[str]) -> bool:
    """True when ``patterns`` (``!pattern`` excludes, the last match decides) select ``path``; an empty list
    selects nothing."""
    return bool(patterns) and _spec(tuple(patterns)).match_file(path)


def selected_by(path: str, globs: Sequence[str]) -> bool:
    """A task's ``globs`` select ``path``: as :func:`match_any`, except that a list of ``!`` patterns alone (or
    none) starts from every file, so ``["!*.js"]`` means every file but ``.js`` ones."""
    patterns = tuple(globs)
    if all(_clean(p).startswith("!") for p in patterns):
        patterns = ("**", *patterns)
    return _spec(patterns).match_file(path)


def normalise_globs(globs: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """``globs`` as a non-empty list (a string is one glob), or ``default`` for None."""
    if globs is None:
        return list(default)
    if isinstance(globs, str):
        globs = [globs]
    globs = [g.strip() for g in globs if g and g.strip()]
    if not globs:
        raise ConfigurationError("globs is empty. Pass at least one glob such as '**/*.py', or None for the default.")
    return globs


def optional_globs(globs: str | Sequence[str] | None, what: str) -> list[str]:
    """``globs`` (``include``/``exclude``, named ``what`` in the error) as a list, empty for None."""
    if globs is None:
        return []
    if isinstance(globs, str):
        globs = [globs]
    if not all(isinstance(g, str) for g in globs):
        raise ConfigurationError(f"{what} must be a list of glob strings, got {globs!r}. Example: ['vendor/**'].")
    return [g.strip() for g in globs if g.strip()]
