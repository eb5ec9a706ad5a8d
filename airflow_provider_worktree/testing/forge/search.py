"""Repository search of the offline GitHub (``GET /search/repositories``) and what it reports of a repository
(archived, fork, empty, topics, language): the campaign selection's counterpart. A mixin of
:class:`~.github.OfflineGitHub` (uses its ``repos``, ``_lock``, ``_repo_obj``). TEST DOUBLE, built to GitHub's
OpenAPI description (``repo-search-result-item``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_worktree.testing.forge.pulls import ForgeError


class SearchHandlers:
    def set_repo(self, full_name: str, *, archived: bool | None = None, fork: bool | None = None,
                 empty: bool | None = None, topics: list[str] | None = None, language: str | None = None) -> None:
        """What repository search reports of ``full_name``: archived, a fork, empty (``size`` 0), topics, language."""
        with self._lock:
            repo = self.repos[full_name]
            for key, value in (("archived", archived), ("fork", fork), ("topics", topics), ("language", language)):
                if value is not None:
                    repo[key] = value
            if empty is not None:
                repo["size"] = 0 if empty else 1
            self._generation += 1

    def _search_repos(self, params: dict, body: Any) -> tuple[int, Any]:
        """``GET /search/repositories?q=...``: the qualifiers ``org:``/``user:``, ``topic:`` (each must match),
        ``language:``, ``fork:true|only`` (forks are left out otherwise, as on GitHub), ``archived:true|false``,
        ``in:name``; other words must appear in the name or description. One page holds every match."""
        words, quals = [], {}
        for token in str(params.get("q") or "").split():
            key, sep, value = token.partition(":")
            if sep and key in ("org", "user", "topic", "language", "fork", "archived", "in"):
                quals.setdefault(key, []).append(value.lower())
            else:
                words.append(token.lower())
        if not words and not quals:
            raise ForgeError(422, "Validation Failed", [{"resource": "Search", "field": "q", "code": "missing"}])
        owners = quals.get("org", []) + quals.get("user", [])
        forks = (quals.get("fork") or ["false"])[-1]
        items = []
        for full, repo in sorted(self.repos.items()):
            text = f"{repo['name']} {repo.get('description') or ''}".lower()
            if (owners and repo["owner"].lower() not in owners
                    or any(t not in [x.lower() for x in repo.get("topics", [])] for t in quals.get("topic", []))
                    or (quals.get("language") and (repo.get("language") or "").lower() not in quals["language"])
                    or (forks == "false" and repo.get("fork")) or (forks == "only" and not repo.get("fork"))
                    or (quals.get("archived") and str(bool(repo.get("archived"))).lower() != quals["archived"][-1])
                    or any(w not in text for w in words)):
                continue
            items.append({**self._repo_obj(repo), "score": 1.0})
        if int(params.get("page", 1)) > 1:
            items = []
        return 200, {"total_count": len(items), "incomplete_results": False, "items": items}
