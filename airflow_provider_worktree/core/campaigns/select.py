"""Which repositories a campaign covers: a list of paths or URLs, a GitHub repository search, or a GitLab group.

A GitHub selection is one search (``GET /search/repositories``, through PyGithub's ``search_repositories``) with the
owner, topic, language and name qualifiers GitHub documents. Forks and archived repositories are asked for too
(``fork:true``), so that each one left out is listed with its reason rather than silently missing: archived
(read-only), empty (nothing to change), a fork (unless ``include_forks``). GitHub caps a search at 1,000 results:
a selection that reaches the cap is refused with the fix (narrow it with topics or language).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_worktree.core.campaigns.types import Selection, Skipped, Target
from airflow_provider_worktree.core.errors import ConfigurationError

SEARCH_CAP = 1000
_URL = re.compile(r"^(?:https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")
_QUALIFIER = re.compile(r"^[\w.-]+$")


def _name_of(location: str) -> str:
    """The repository path of a forge URL (``owner/name`` of ``https://host/owner/name.git`` or
    ``git@host:owner/name.git``; a GitLab project keeps its groups); the last path
    part of a ``file://`` URL."""
    scp = re.match(r"^[\w.-]+@[\w.-]+:(.*)$", location)
    path = scp.group(1) if scp else urlsplit(location).path
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1].endswith(".git"):
        parts[-1] = parts[-1][:-4]
    if not parts:
        return location
    return parts[-1] if location.startswith("file:") else "/".join(parts)


def select_from_list(entries: Iterable[str]) -> Selection:
    """Paths (each must be a git repository) and clone URLs (taken as given: the clone tells). Duplicates are
    skipped with the reason."""
    sel, seen = Selection(), set()
    for raw in entries:
        entry = str(raw).strip()
        if not entry:
            continue
        if _URL.match(entry):
            target = Target(_name_of(entry), entry)
        else:
            path = Path(entry).expanduser()
            if not path.is_dir():
                sel.skipped.append(Skipped(entry, "no such directory: check the path"))
                continue
            probe = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                                   text=True, check=False)
            if probe.returncode != 0:
                sel.skipped.append(Skipped(entry, "not a git repository: give its checkout or a clone URL"))
                continue
            target = Target(path.resolve().name, str(path.resolve()))
        if target.location in seen:
            sel.skipped.append(Skipped(target.repository, "listed twice: kept once"))
            continue
        seen.add(target.location)
        sel.targets.append(target)
    return sel


def github_query(org: str | None = None, user: str | None = None, topics: Iterable[str] = (),
                 language: str | None = None, name: str | None = None) -> str:
    """The search text for GitHub's repository search (forks asked for too, to list them as skipped)."""
    if bool(org) == bool(user):
        raise ConfigurationError("a GitHub selection needs exactly one of org or user (the owner to search)")
    words = [f"org:{org}" if org else f"user:{user}", *(f"topic:{t}" for t in topics)]
    if language:
        words.append(f"language:{language}")
    for word in words:
        value = word.split(":", 1)[1]
        if not _QUALIFIER.match(value):
            raise ConfigurationError(f"GitHub selection {word!r}: letters, digits, '.', '_' and '-' only")
    if name:
        words += [f"{name}", "in:name"]
    return " ".join([*words, "fork:true"])


def select_from_github(client: Any, *, include_forks: bool = False, **query: Any) -> Selection:
    """Repositories a GitHub search finds (``client``: a ``github.Github``). ``query``: ``org`` or ``user``,
    ``topics``, ``language``, ``name``."""
    q = github_query(**query)
    sel = Selection()
    results = client.search_repositories(q)
    if results.totalCount >= SEARCH_CAP:
        raise ConfigurationError(f"the GitHub search {q!r} finds {results.totalCount} repositories, GitHub's cap "
                                 f"is {SEARCH_CAP}: narrow it with topics, language or name")
    for repo in results:
        if repo.archived:
            sel.skipped.append(Skipped(repo.full_name, "archived (read-only on GitHub)"))
        elif repo.size == 0:
            sel.skipped.append(Skipped(repo.full_name, "empty (no commits to change)"))
        elif repo.fork and not include_forks:
            sel.skipped.append(Skipped(repo.full_name, "a fork (pass include_forks to include forks)"))
        else:
            sel.targets.append(Target(repo.full_name, repo.clone_url, "github", repo.default_branch))
    return sel


def select_from_gitlab(client: Any, *, group: str, topics: Iterable[str] = (), include_forks: bool = False,
                       **unknown: Any) -> Selection:
    """The projects of a GitLab group and its subgroups (``client``: a ``gitlab.Gitlab``), through python-gitlab's
    ``groups.get(group).projects.list(include_subgroups=True)``; only those with every topic in ``topics``."""
    if unknown:
        raise ConfigurationError(f"a GitLab selection takes group and topics, not {sorted(unknown)}")
    wanted = set(topics)
    sel = Selection()
    for p in client.groups.get(group).projects.list(include_subgroups=True, get_all=True):
        attrs = p.attributes
        if wanted - set(attrs.get("topics") or []):
            continue
        name = attrs["path_with_namespace"]
        if attrs.get("archived"):
            sel.skipped.append(Skipped(name, "archived (read-only on GitLab)"))
        elif attrs.get("empty_repo"):
            sel.skipped.append(Skipped(name, "empty (no commits to change)"))
        elif attrs.get("forked_from_project") and not include_forks:
            sel.skipped.append(Skipped(name, "a fork (pass include_forks to include forks)"))
        else:
            sel.targets.append(Target(name, attrs["http_url_to_repo"], "gitlab", attrs.get("default_branch")))
    return sel
