"""The smoke run publishes: the offline forge (GitHub or GitLab) started as a process, the run's conf pointing the
example DAG's publish step at it, and the checks of what it published (one pull request for the repository, its
body holds the report and no secret, a second run updates the same one)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from smokerun.checks import shard_rows
from smokerun.constants import Fatal

#: The forge's repository for the clone (``<owner>/demo``; the double's default owner and group).
REPO_NAME = "demo"


class PublishPhases:
    """The forge phase and the publish checks of :class:`~.run.SmokeRun`."""

    forge_info: dict

    @property
    def publishing(self) -> str:
        """The forge the run publishes to ("" when --publish none)."""
        return "" if self.o.publish == "none" else (self.o.publish or "github")

    def offline_forge(self) -> None:
        """Start the offline forge with the clone as its repository; the connection points at it."""
        out = self.out
        client = "import airflow.providers.github, github" if self.publishing == "github" else "import gitlab"
        if self.pyrun(client).returncode != 0:
            extra = "github" if self.publishing == "github" else "gitlab"
            missing = (f"the {self.publishing} client is not installed in {self.py} (pip install "
                       f"'airflow-provider-worktree[{extra}]')")
            if self.campaign:  # a campaign's every check is about its pull requests
                raise Fatal(f"--repos {self.o.repos}: {missing}")
            if self.o.publish:
                out.error(f"--publish {self.publishing}: {missing}")
            else:
                out.warning(f"publishing nothing: {missing}")
            self.o.publish = "none"
            return
        info = self.slog / "forge.json"
        repos = [arg for name, path in self.forge_repositories() for arg in ("--repo", f"{name}={path}")]
        popen = self.bg.start("offline-forge", self.slog / "offline_forge.log",
                              [self.py, "-m", "airflow_provider_worktree.testing.forge", self.publishing,
                               "--root", str(self.home / "forge"), *repos,
                               "--request-log", str(self.home / "forge-requests.jsonl"), "--conn-file", str(info)],
                              self.env)
        for _ in range(300):
            if info.is_file() or popen.poll() is not None:
                break
            time.sleep(0.1)
        if not info.is_file():
            out.error(f"the offline {self.publishing} did not start:")
            out.tail(self.slog / "offline_forge.log")
            return
        self.forge_info = json.loads(info.read_text())
        conn_var = f"AIRFLOW_CONN_{self.publishing.upper()}_DEFAULT"
        self.env[conn_var] = json.dumps(self.forge_info["connection"])
        repositories = self.forge_info["repositories"]
        if self.campaign:
            self.publish_conf = {"publish": "draft", "forge": self.publishing}
            what = f"{', '.join(repositories)} (mirrors of the demo repositories)"
        else:
            (repository,) = repositories
            self.publish_conf = {"publish": "draft", "forge": self.publishing, "forge_repository": repository}
            what = f"{repository} (a mirror of the clone)"
        out.success(f"offline {self.publishing} TEST DOUBLE at {self.forge_info['web_url']} with {what}; "
                    f"{conn_var.removeprefix('AIRFLOW_CONN_').lower()} points at it; requests logged to "
                    f"{self.home / 'forge-requests.jsonl'}")

    def forge_repositories(self) -> list[tuple[str, Path]]:
        """The forge's repositories (name, local repository it mirrors): the clone; with --repos N, the demo ones."""
        return list(self.campaign_sources.items()) if self.campaign else [(REPO_NAME, self.clone)]

    # -- checks ---------------------------------------------------------------------------------------------------
    def _forge_get(self, path: str) -> dict:
        conn = self.forge_info["connection"]
        auth = ({"Authorization": f"token {conn['password']}"} if self.publishing == "github"
                else {"PRIVATE-TOKEN": conn["password"]})
        base = conn["host"] if self.publishing == "github" else conn["host"] + "/api/v4"
        req = urllib.request.Request(base + path, headers={**auth, "Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def _published(self) -> tuple[dict, str] | None:
        """(the changeset recorded for the repository, the body the forge holds), checked; None after an error."""
        out = self.out
        listed = self.run([*self.awt, "changesets", "--db", str(self.shard_db), "-o", "json"], timeout=120)
        try:
            rows = json.loads(listed.stdout)["changesets"]
        except (ValueError, KeyError):
            out.error(f"airflow-worktree changesets -o json failed: {(listed.stderr or listed.stdout)[-1500:]}")
            return None
        mine = [r for r in rows if r["repository"] == self.publish_conf["forge_repository"]]
        if len(mine) != 1 or not mine[0].get("url"):
            out.error(f"expected one changeset with a url for {self.publish_conf['forge_repository']}, the database "
                      f"has: {rows}")
            return None
        row = mine[0]
        repo = quote(row["repository"], safe="")
        if self.publishing == "github":
            body = self._forge_get(f"/repos/{row['repository']}/pulls/{row['number']}")["body"] or ""
            opened = self._forge_get(f"/repos/{row['repository']}/pulls?state=all")
        else:
            body = self._forge_get(f"/projects/{repo}/merge_requests/{row['number']}")["description"] or ""
            opened = self._forge_get(f"/projects/{repo}/merge_requests?state=all")
        if len(opened) == 1:
            out.success(f"one pull request for {row['repository']}: {row['url']} ({row['publication']}, "
                        f"{row['external_state']}; airflow-worktree changesets -o json lists it)")
        else:
            out.error(f"{len(opened)} pull requests for {row['repository']} on the forge, expected one")
        return row, body

    def _check_body(self, body: str, whose: str = "its body") -> None:
        """The body holds the run's report and no secret (``whose``: how the lines name it)."""
        out = self.out
        secrets = {"the forge token": self.forge_info["connection"]["password"],
                   "the model API key": json.loads(self.env["AIRFLOW_CONN_ANTHROPIC_DEFAULT"]).get("password") or "",
                   "the API's JWT secret": self.env.get("AIRFLOW__API_AUTH__JWT_SECRET", "")}
        leaked = [name for name, value in secrets.items() if value and value in body]
        if self.run_id in body and "shards" in body:
            out.success(f"{whose} holds the run's report (run {self.run_id}, shards, tokens, cost)")
        else:
            out.error(f"{whose} does not hold the report of run {self.run_id}:")
            out.indent(body[:1500], limit=20)
        if leaked:
            out.error(f"{whose} holds {', '.join(leaked)}")
        else:
            out.success(f"{whose} holds no secret (forge token, model API key, JWT secret)")

    def check_publish(self) -> None:
        """One changeset for the repository, its body checked; with an explicit --publish, a second run of the same
        conf updates the same pull request."""
        out = self.out
        if not self.run_ok or not getattr(self, "forge_info", None):
            return
        states = {t: s for t, _, s, _ in self.tis}
        accepted = shard_rows(self.shard_db, "SELECT COUNT(*) FROM shard_status WHERE run_id = ? AND status = 'completed' "
                              "AND commit_sha IS NOT NULL AND commit_sha != ''", (self.run_id,))
        if states.get("publish") == "skipped" and accepted and accepted[0][0] == 0:
            out.success("the publish task skipped: the run accepted no change, so there is nothing to publish")
            return
        if states.get("publish") != "success":
            out.error(f"the publish task ended {states.get('publish', 'missing')}")
            return
        first = self._published()
        if first is None:
            return
        row, body = first
        self._check_body(body)
        if not self.o.publish:  # the default run publishes once; --publish X also proves the re-run
            return
        out.info(f"second run of the same conf: it must update {row['url']}, not open another")
        first_run = self.run_id
        self.dag_run(again=True)
        if not self.run_ok:
            out.error("the second run did not succeed")
            return
        second = self._published()
        if second is None:
            return
        again, body = second
        if again["number"] == row["number"] and again["url"] == row["url"] and self.run_id in body \
                and self.run_id != first_run:
            out.success(f"the second run ({self.run_id}) updated the same pull request {again['url']}")
        else:
            out.error(f"the second run did not update {row['url']} in place: {again}")
        self._check_body(body)
        log = Path(self.home / "forge-requests.jsonl")
        writes = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        created = [w for w in writes if w["method"] == "POST" and w["status"] == 201
                   and w["path"].rstrip("/").endswith(("/pulls", "/merge_requests"))]
        if len(created) == 1:
            out.success(f"the forge's request log ({log}, {len(writes)} requests) shows one pull request created")
        else:
            out.error(f"the forge's request log shows {len(created)} pull requests created, expected one")
        rows = shard_rows(self.shard_db, "SELECT COUNT(*) FROM changesets")
        if rows and rows[0][0] != 1:
            out.error(f"the shard database records {rows[0][0]} changesets, expected one")

    def publish_hint(self) -> list[str]:
        if not getattr(self, "forge_info", None):
            return []
        return [f"airflow-worktree changesets --db $AIRFLOW_HOME/shard_status.db   # the pull request and its states",
                f"less {self.home}/forge-requests.jsonl   # every request the offline {self.publishing} served"]
