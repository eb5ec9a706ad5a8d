"""The smoke run's campaign (``--repos N``, N > 1): N generated demo repositories created on the offline forge, ONE
run of the example DAG campaign_maintenance over their clone URLs under the real scheduler, and its checks (one
pull request per repository on head ``campaign/<name>``, each body with only its own repository's shards and no
secret, every outcome ``pr-opened``), then a second run of the same conf that opens no new pull request (the
outcomes become ``pr-updated``; the forge's request log shows N creations in all).

It reuses the one-repository run's phases (pre-flight, home, registration, model API, forge, the DAG run itself)
and adds its own: the demo repositories, the campaign's verification and its second run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

from smokerun.checks import fingerprint, git, shard_counts, shard_rows
from smokerun.constants import PROJECT, Fatal

#: The forge's name of the i-th demo repository (1-based).
CAMPAIGN_REPO = "demo-{}"
#: The package's shard id prefix of each repository (``<slug>-<hash>--``), computed by the package itself.
PREFIXES = """
import json, sys
from airflow_provider_worktree.core.campaigns.run import repo_prefix
print(json.dumps({r: repo_prefix(r) for r in sys.argv[1:]}))
"""


class CampaignPhases:
    """The ``--repos N`` phases and checks of :class:`~.run.SmokeRun`."""

    campaign_sources: dict[str, Path]
    campaign_prs: dict[str, dict]  # repository -> {"number", "url", "outcome"} after the last checked run
    campaign_summaries: list[Path]

    @property
    def campaign(self) -> bool:
        """True with --repos N, N > 1: the run is a campaign over N demo repositories."""
        return self.o.repos > 1

    @property
    def campaign_name(self) -> str:
        return f"smoke-{self.o.params.get('task', 'todo')}"

    @property
    def campaign_head(self) -> str:
        return f"campaign/{self.campaign_name}"

    def campaign_phases(self) -> list[tuple[str, object]]:
        o = self.o
        return [
            ("Pre-flight checks", self.preflight),
            ("Isolated AIRFLOW_HOME", self.isolated_home),
            ("DAG registration", self.registration),
            (f"Demo repositories ({o.repos})", self.campaign_repositories),
            ("Model API", self.model_api),
            ("Offline forge", self.campaign_forge),
            (f"DAG run ({o.mode}, parallel limit {o.parallel})", self.dag_run),
            ("Campaign verification", self.campaign_verification),
            ("Second DAG run (same conf)", self.campaign_rerun),
        ]

    # -- phases -------------------------------------------------------------------------------------------------------
    def campaign_repositories(self) -> None:
        """N demo repositories (the smoke run's generator; 2 more modules in each next one, so their contents and
        shard counts differ), each fingerprinted to prove the run leaves it untouched."""
        out, o = self.out, self.o
        assert self.home is not None
        self.campaign_sources, self.campaign_prs, self.campaign_summaries = {}, {}, []
        t0 = time.monotonic()
        sizes = []
        for i in range(o.repos):
            name, modules = CAMPAIGN_REPO.format(i + 1), o.modules + 2 * i
            proc = self.run([self.py, str(PROJECT / "scripts" / "demo_repo.py"), "--dest",
                             str(self.home / "demo-sources" / name), "--modules", str(modules)])
            if proc.returncode != 0:
                raise Fatal(f"scripts/demo_repo.py failed to generate {name}: {proc.stderr.strip()[-300:]}")
            self.campaign_sources[name] = Path(proc.stdout.strip().splitlines()[-1])
            sizes.append(f"{name} ({modules} modules)")
        (self.slog / "sources_before.json").write_text(json.dumps(
            {name: fingerprint(str(path)) for name, path in self.campaign_sources.items()}))
        out.success(f"{o.repos} demo repositories generated under {self.home / 'demo-sources'}: {', '.join(sizes)} "
                    f"({time.monotonic() - t0:.1f}s)")

    def campaign_forge(self) -> None:
        self.offline_forge()
        if not self.forge_info:
            raise Fatal("no offline forge: the campaign has nowhere to publish")
        found = self.forge_info["repositories"]
        if len(found) != self.o.repos:
            raise Fatal(f"the offline forge created {len(found)} repositories, expected {self.o.repos}: {found}")

    def campaign_conf(self) -> dict:
        """The campaign run's conf: the campaign, its task, the forge's clone URLs, the Params that apply."""
        o = self.o
        urls = [f"{self.forge_info['web_url']}/{full}.git" for full in self.forge_info["repositories"]]
        conf = {"campaign": self.campaign_name, "task": o.params.get("task", "todo"), "repositories": urls,
                "max_files_per_shard": o.params.get("max_files_per_shard", 2), "parallel_limit": o.parallel,
                **self.publish_conf}
        if "prompt" in o.params:
            conf["prompt"] = o.params["prompt"]
        if o.conf_json:
            conf.update(json.loads(o.conf_json))
        return conf

    def campaign_verification(self) -> None:
        if not self.run_ok:
            self.out.info("the campaign run did not succeed: its pull requests are not checked")
            return
        self.campaign_prs = self._campaign_check("pr-opened")
        self._campaign_leftovers()

    def campaign_rerun(self) -> None:
        """The same conf again: every pull request updated in place, none opened."""
        out = self.out
        if not self.run_ok or not self.campaign_prs:
            out.info("skipped: the first campaign run did not pass its checks")
            return
        first_run, first = self.run_id, self.campaign_prs
        out.info(f"second run of the same conf: it must update the {len(first)} pull requests, not open others")
        self.dag_run(again=True)
        if not self.run_ok:
            out.error("the second campaign run did not succeed")
            return
        again = self._campaign_check("pr-updated")
        same = bool(again) and self.run_id != first_run and all(
            (again.get(r) or {}).get("number") == pr["number"] and (again.get(r) or {}).get("url") == pr["url"]
            for r, pr in first.items())
        if same and len(again) == len(first):
            out.success(f"the second run ({self.run_id}) updated the {len(again)} pull requests in place (outcomes "
                        "pr-updated) and opened none")
        else:
            out.error(f"the second run did not update the same pull requests: first {first}, then {again}")
        self.campaign_prs = again or first
        self._campaign_leftovers()

    # -- checks -------------------------------------------------------------------------------------------------------
    def _campaign_check(self, outcome: str) -> dict[str, dict]:
        """The checks of one campaign run; its pull requests by repository ({} after a failed check)."""
        out = self.out
        repos = list(self.forge_info["repositories"])
        ok = True
        prefixes = self._prefixes(repos)
        if not prefixes:
            return {}

        # The shards: every repository's in the one run, all completed.
        rows = shard_rows(self.shard_db, "SELECT shard_id, status FROM shard_status WHERE run_id = ?", (self.run_id,))
        per = {r: [(s, st) for s, st in rows if s.startswith(prefixes[r])] for r in repos}
        stray = [s for s, _ in rows if not any(s.startswith(p) for p in prefixes.values())]
        bad = [f"{s} {st}" for r in repos for s, st in per[r] if st != "completed"]
        if all(per.values()) and not bad and not stray:
            out.success(f"one run, {len(rows)} shards, all completed: "
                        + ", ".join(f"{r.rsplit('/', 1)[-1]} {len(per[r])}" for r in repos))
        else:
            ok = False
            out.error(f"the run's shards ({shard_counts(self.shard_db, self.run_id)}): a repository without shards "
                      f"{[r for r in repos if not per[r]]}, not completed {bad[:5]}, of no repository {stray[:5]}")

        # The changesets: one per repository on the campaign's head, with its pull request.
        listed = self.run([*self.awt, "changesets", "--db", str(self.shard_db), "-o", "json"], timeout=120)
        try:
            changesets = json.loads(listed.stdout)["changesets"]
        except (ValueError, KeyError):
            out.error(f"airflow-worktree changesets -o json failed: {(listed.stderr or listed.stdout)[-1500:]}")
            return {}
        mine = {r: [c for c in changesets if c["repository"] == r] for r in repos}
        if len(changesets) == len(repos) and all(len(c) == 1 and c[0].get("url") and c[0]["head"] == self.campaign_head
                                                 for c in mine.values()):
            out.success(f"{len(repos)} changesets, one per repository, each with a pull request on head "
                        f"{self.campaign_head} (airflow-worktree changesets -o json)")
        else:
            out.error(f"expected one changeset with a url on {self.campaign_head} for each of {repos}; the database "
                      f"has: {changesets}")
            return {}
        rows_of = {r: c[0] for r, c in mine.items()}

        # The campaign's outcomes.
        shown = self.run([*self.awt, "campaign", "show", self.campaign_name, "--db", str(self.shard_db), "-o",
                          "json"], timeout=120)
        try:
            outcomes = {x["repository"]: x for x in json.loads(shown.stdout)["repositories"]}
        except (ValueError, KeyError, TypeError):
            out.error(f"airflow-worktree campaign show -o json failed: {(shown.stderr or shown.stdout)[-1500:]}")
            return {}

        # Each pull request on the forge: its head, its body (this repository's shards only, no secret).
        prs = {}
        for r in repos:
            row, got = rows_of[r], outcomes.get(r) or {}
            pr = self._forge_pr(r, row["number"])
            head = pr.get("head", {}).get("ref") if self.publishing == "github" else pr.get("source_branch")
            label = f"{r}#{row['number']}"
            pushed = self._pushed(r)
            if head == self.campaign_head and pushed and got.get("outcome") == outcome \
                    and got.get("run_id") == self.run_id and got.get("url") == row["url"]:
                out.success(f"pull request for {r}: {row['url']} ({row['publication']}, {row['external_state']}, "
                            f"head {head} pushed, {pushed}); campaign outcome {outcome}")
            else:
                ok = False
                out.error(f"pull request for {r}: {row['url']} has head {head} on the forge (expected "
                          f"{self.campaign_head}, pushed: {pushed or 'no'}); campaign outcome {got.get('outcome')} "
                          f"of run {got.get('run_id')} (expected {outcome} of {self.run_id})")
            body = (pr.get("body") if self.publishing == "github" else pr.get("description")) or ""
            self._check_body(body, f"the body of {label}")
            own = [s for s, _ in per[r]]
            others = [p for o, p in prefixes.items() if o != r and p in body]
            if own and all(s in body for s in own) and not others:
                out.success(f"the body of {label} lists its {len(own)} shard(s) and none of the other repositories'")
            else:
                ok = False
                out.error(f"the body of {label} should list its shards {own} only; missing "
                          f"{[s for s in own if s not in body]}, other repositories' prefixes {others}")
            prs[r] = {"number": row["number"], "url": row["url"], "outcome": got.get("outcome")}

        # The forge's request log: N pull requests created in all, each on the campaign's head.
        log = self.home / "forge-requests.jsonl"
        writes = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.is_file() else []
        created = [w for w in writes if w["method"] == "POST" and w["status"] == 201
                   and w["path"].rstrip("/").endswith(("/pulls", "/merge_requests"))]
        heads = {(w.get("request") or {}).get("head") or (w.get("request") or {}).get("source_branch")
                 for w in created}
        urls = {(w.get("response") or {}).get("html_url") or (w.get("response") or {}).get("web_url")
                for w in created}
        if len(created) == len(repos) and heads == {self.campaign_head} and urls == {p["url"] for p in prs.values()}:
            out.success(f"the forge's request log ({log}, {len(writes)} requests) shows {len(created)} pull requests "
                        f"created in all, one per repository, each on head {self.campaign_head}")
        else:
            ok = False
            out.error(f"the forge's request log shows {len(created)} pull requests created (heads "
                      f"{sorted(map(str, heads))}), expected {len(repos)} on {self.campaign_head}, one per "
                      f"repository: {sorted(map(str, urls))}")

        # The campaign's summary beside the shard database.
        path = self.home / "reports" / f"campaign-{self.campaign_name}-{self.run_id.replace(':', '_')}.md"
        text = path.read_text() if path.is_file() else ""
        if text and all(r in text for r in repos) and text.count(outcome) >= len(repos):
            out.success(f"the campaign summary: {path}")
            out.indent(text, limit=12, rest=f"the whole summary is {path}")
            self.campaign_summaries.append(path)
        else:
            ok = False
            out.error(f"no campaign summary naming the {len(repos)} repositories with outcome {outcome} at {path}"
                      + (":" if text else ""))
            out.indent(text, limit=20)
        return prs if ok else {}

    def _prefixes(self, repos: list[str]) -> dict[str, str]:
        proc = self.pyrun(PREFIXES, *repos)
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.out.error(f"could not compute the repositories' shard prefixes: {(proc.stderr or proc.stdout)[-800:]}")
            return {}

    def _pushed(self, repository: str) -> str:
        """How far the campaign's branch on the forge's repository is ahead of its main ("" when it is not there)."""
        bare = self.home / "forge" / f"{repository}.git"
        tip = git("-C", str(bare), "rev-parse", "--verify", "-q", f"refs/heads/{self.campaign_head}").stdout.strip()
        if not tip:
            return ""
        ahead = git("-C", str(bare), "rev-list", "--count", f"refs/heads/main..{tip}").stdout.strip()
        return f"{ahead} commit(s) ahead of main" if ahead not in ("", "0") else ""

    def _forge_pr(self, repository: str, number: int) -> dict:
        if self.publishing == "github":
            return self._forge_get(f"/repos/{repository}/pulls/{number}")
        return self._forge_get(f"/projects/{quote(repository, safe='')}/merge_requests/{number}")

    def _campaign_leftovers(self) -> None:
        """The demo repositories untouched, and no worktree left in the worker's clones or under the worktree root."""
        out = self.out
        assert self.home is not None
        before = json.loads((self.slog / "sources_before.json").read_text())
        changed = [name for name, path in self.campaign_sources.items() if fingerprint(str(path)) != before[name]]
        if changed:
            out.error(f"demo repositories changed during the run: {', '.join(changed)}")
        else:
            out.success(f"the {len(before)} demo repositories are untouched (HEAD, status, branches, worktrees)")
        clones = sorted((self.home / "worktree-cache").glob("*.git"))
        extra = {}
        for clone in clones:
            listing = git("-C", str(clone), "worktree", "list", "--porcelain").stdout
            n = sum(1 for line in listing.splitlines() if line.startswith("worktree "))
            if n != 1:
                extra[clone.name] = n - 1
        root = self.home / "worktrees"
        left = sorted(str(p) for pattern in ("*", "*/*") for p in root.glob(pattern) if not p.name.startswith("."))
        if len(clones) == len(self.campaign_sources) and not extra and not left:
            out.success(f"no worktree left: the worker's {len(clones)} clones ({self.home / 'worktree-cache'}) list "
                        f"none, {root} holds nothing")
        else:
            out.error(f"clones in {self.home / 'worktree-cache'}: {len(clones)} (expected "
                      f"{len(self.campaign_sources)}); worktrees left {extra} {left[:10]}")

    # -- the end ------------------------------------------------------------------------------------------------------
    def campaign_hint(self) -> None:
        """The results (pull requests, the campaign summary), then how to inspect the run."""
        out = self.out
        assert self.home is not None
        out.heading(f"Campaign {self.campaign_name}: {len(self.campaign_prs)} pull requests")
        width = max((len(r) for r in self.campaign_prs), default=0)
        out.indent("\n".join(f"{r:<{width}}  {pr['url']}  {pr['outcome']}" for r, pr in self.campaign_prs.items()))
        for path in self.campaign_summaries:
            out.indent(f"summary: {path}")
        db = "$AIRFLOW_HOME/shard_status.db"
        out.heading("Inspect this run")
        out.indent(f"""\
. {self.home}/env.sh    # AIRFLOW_HOME, DAGs folder, metadata database, PATH of this run
airflow-worktree campaign show {self.campaign_name} --db {db}   # each repository's outcome
airflow-worktree changesets --db {db}   # the pull requests and their states
airflow-worktree report --db {db} --run-id '{self.run_id}'
less {self.home}/forge-requests.jsonl   # every request the offline {self.publishing} served
less {self.slog}/scheduler.log   # task logs: $AIRFLOW_HOME/logs/dag_id={self.dag_id}/""")

