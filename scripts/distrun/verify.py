"""The checks after each scenario: shards, branches, the integration branch, workers, leftovers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from distrun.constants import DAG_ID, Scenario
from distrun.services import git, ls_remote
from harness.processes import descendants, log, tail


class DeploymentChecks:
    """Reads and checks of :class:`~.deployment.Deployment`."""

    def _run_state(self, run_id: str) -> str | None:
        rows = self.pg.query(self.meta_db, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s",
                             (DAG_ID, run_id))
        return rows[0][0] if rows else None

    def _shard_counts(self, run_id: str) -> dict[str, int]:
        if not self.pg.query(self.shard_db, "SELECT to_regclass('shard_status')")[0][0]:
            return {}
        return dict(self.pg.query(self.shard_db, "SELECT status, count(*) FROM shard_status WHERE run_id = %s "
                                                 "GROUP BY status", (run_id,)))

    def _progress(self, run_id: str) -> str:
        tis = self.pg.query(self.meta_db, "SELECT coalesce(state, 'none'), count(*) FROM task_instance WHERE "
                                          "dag_id = %s AND run_id = %s GROUP BY 1 ORDER BY 1", (DAG_ID, run_id))
        shards = self._shard_counts(run_id)
        return ("task instances " + (" ".join(f"{s}={n}" for s, n in tis) or "-") + "; shards "
                + (" ".join(f"{s}={n}" for s, n in sorted(shards.items())) or "-"))

    def _running_on(self, worker: str, run_id: str) -> list[str]:
        """Shards running now in a process of ``worker`` (the lease's worker_id is host:pid)."""
        if not self._shard_counts(run_id).get("running"):
            return []
        pids = set(descendants(self.workers[worker].popen.pid))
        out = []
        for shard_id, worker_id in self.pg.query(self.shard_db, "SELECT shard_id, worker_id FROM shard_status "
                                                                "WHERE run_id = %s AND status = 'running'", (run_id,)):
            pid = (worker_id or "").rpartition(":")[2]
            if pid.isdigit() and int(pid) in pids:
                out.append(shard_id)
        return out

    # -------------------------------------------------------------------------------- checks
    def _worker_of(self, path: str | None) -> str | None:
        for name, root in self.roots.items():
            if path and (path == str(root) or path.startswith(str(root) + os.sep)):
                return name
        return None

    def _verify(self, sc: Scenario, state: str | None, expected: set[str], killed: set[str]) -> None:
        from airflow_provider_worktree.core.store import ShardStore
        from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

        log(f"[{sc.name}] checks")
        sc.check("DAG run succeeded", state == "success", f"state={state}")
        if state != "success":
            for name in ("scheduler", "worker1", "worker2"):
                log(f"{name} log tail:\n" + tail(self.logs / f"{name}.log", 15))

        store = ShardStore.open(self.pg.url(self.shard_db))
        rows = store.list_shards(run_id=sc.run_id)
        ids = [r["shard_id"] for r in rows]
        sc.facts["shards"] = len(rows)
        sc.check(">= 20 shards", len(rows) >= 20, f"{len(rows)} shards")
        sc.check("shard rows = planned shards, one row each", set(ids) == expected and len(ids) == len(set(ids)),
                 f"{len(ids)} rows, {len(set(ids))} distinct, {len(expected)} planned")
        not_done = [(r["shard_id"], r["status"], r["error_message"]) for r in rows if r["status"] != "completed"]
        sc.check("every shard completed", not not_done, f"not completed: {not_done[:5]}" if not_done else
                 f"{len(rows)} completed")
        no_commit = [r["shard_id"] for r in rows if not r["commit_sha"] or not r["branch"]]
        sc.check("every shard recorded a branch and a commit", not no_commit, ", ".join(no_commit[:5]))
        attempts: dict[int, int] = {}
        for r in rows:
            attempts[int(r["attempt"] or 0)] = attempts.get(int(r["attempt"] or 0), 0) + 1
        sc.facts["attempts"] = {f"attempt {k}": v for k, v in sorted(attempts.items())}

        by_worker: dict[str, int] = {}
        where: dict[str, str | None] = {}
        for r in rows:
            w = self._worker_of((r.get("result_summary") or {}).get("worktree_path"))
            where[r["shard_id"]] = w
            by_worker[w or "unknown"] = by_worker.get(w or "unknown", 0) + 1
        sc.facts["completed_by_worker"] = by_worker
        sc.check("every completed shard's worktree lay under a worker's root", "unknown" not in by_worker,
                 json.dumps(by_worker))

        # task instances of maintain: tries, hostnames (both workers share this host's name here)
        tis = self.pg.query(self.meta_db, "SELECT map_index, try_number, state, hostname FROM task_instance "
                                          "WHERE dag_id = %s AND run_id = %s AND task_id = 'maintain'",
                            (DAG_ID, sc.run_id))
        sc.facts["maintain_tis"] = len(tis)
        sc.facts["maintain_retried"] = sum(1 for t in tis if (t[1] or 0) > 1)
        sc.check("one maintain task instance per shard, all success",
                 len(tis) == len(rows) and all(t[2] == "success" for t in tis),
                 f"{len(tis)} TIs, states {sorted({t[2] for t in tis})}")
        received = {}
        for name, offset in sc.facts.pop("_log_offsets", {}).items():
            with open(self.logs / f"{name}.log", "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
            received[name] = sum(1 for line in text.splitlines() if "execute_workload[" in line and "received" in line)
        sc.facts["celery_tasks_received"] = received

        if not sc.kill_worker:
            sc.check("both workers completed shards", by_worker.get("worker1", 0) > 0 and by_worker.get(
                "worker2", 0) > 0, json.dumps(by_worker))
            sc.check("no shard needed a retry", set(attempts) == {1}, json.dumps(sc.facts["attempts"]))
        else:
            sc.check("worker2 was killed while running shards", bool(killed),
                     f"killed while running {sorted(killed)}")
            row = {r["shard_id"]: r for r in rows}
            sc.facts["killed_shards_completed_by"] = {s: f"{where.get(s)} (attempt {row[s]['attempt']})"
                                                      for s in sorted(killed)}
            if self.args.kill_mode == "tree":
                bad = [s for s in killed if where.get(s) != "worker1"]
                sc.check("every shard killed on worker2 completed on worker1", killed and not bad,
                         f"not on worker1: {bad}" if bad else f"{len(killed)} shards")
                low = [s for s in killed if int(row[s]["attempt"] or 0) < 2]
                sc.check("the killed shards were re-claimed (attempt >= 2 in the shard database)",
                         killed and not low, json.dumps(sc.facts["attempts"]))
            # group mode: the orphaned task processes may finish their shards themselves (the retry then
            # finds them completed and skips); "every shard completed exactly once" above is what counts
            sc.check("Airflow retried the killed task instances (try_number >= 2)",
                     sc.facts["maintain_retried"] >= len(killed), f"{sc.facts['maintain_retried']} TIs retried")
            sched = (self.logs / "scheduler.log").read_text(errors="replace")
            sc.facts["scheduler_heartbeat_timeout_lines"] = sum(
                1 for line in sched.splitlines() if "heartbeat" in line.lower() and "timed out" in line.lower()
                or "Detected" in line and "heartbeat" in line.lower())

        refs = ls_remote(sc.remote)
        missing = [r["branch"] for r in rows if refs.get(f"refs/heads/{r['branch']}") != r["commit_sha"]]
        sc.check("every shard branch is on the remote at the recorded commit", rows and not missing,
                 f"missing or different: {missing[:5]}" if missing else f"{len(rows)} branches")
        integ = refs.get(f"refs/heads/{self.args.integration_branch}")
        sc.check("integration branch is on the remote", bool(integ), f"{self.args.integration_branch} @ "
                 f"{(integ or '')[:12]}")
        if integ:
            not_merged = [r["shard_id"] for r in rows if r["commit_sha"] and subprocess.run(
                ["git", "merge-base", "--is-ancestor", r["commit_sha"], integ], cwd=sc.remote,
                capture_output=True).returncode != 0]
            sc.check("integration branch contains every shard commit", not not_merged, ", ".join(not_merged[:5]))

        remote_url = sc.remote.as_uri()
        for name in ("worker1", "worker2"):
            leftover = self._leftovers(name, remote_url)
            if name == "worker2" and sc.kill_worker and leftover:
                # the host died mid-shard: its janitor (worktree_health DAG / airflow-worktree prune) cleans up
                mgr = WorktreeManager(remote_url, worktree_root=str(self.roots[name]),
                                      cache_dir=str(self.caches[name]))
                report = mgr.prune()
                sc.facts["worker2_pruned_after_restart"] = len(report.actions)
                sc.check("worker2's abandoned worktrees are those of shards killed there",
                         {Path(p).name.rsplit("-a", 1)[0] for p in leftover} <= killed,
                         f"{len(leftover)} left: {[Path(p).name for p in leftover]}")
                leftover = self._leftovers(name, remote_url)
                # not a failure of the run: a git process SIGKILLed mid-command can leave an index.lock in a
                # worktree, and prune then cannot save that worktree's work (reported as a known issue)
                sc.warn("worker2's janitor prune (dead owner) removes them", not leftover,
                        f"{len(report.actions)} actions" if not leftover else
                        f"still there: {[Path(p).name for p in leftover]}; prune errors: "
                        f"{[e['error'][:300] for e in report.errors]}")
            else:
                sc.check(f"nothing left in {name}'s worktree root", not leftover,
                         f"left: {leftover[:5]}" if leftover else str(self.roots[name]))

    def _leftovers(self, name: str, remote_url: str) -> list[str]:
        """Worktrees (registered or not) under the worker's root for this scenario's repository."""
        left = []
        root = self.roots[name]
        for dirpath, dirnames, filenames in os.walk(root):
            if ".git" in filenames or ".git" in dirnames:
                left.append(dirpath)
                dirnames[:] = []
            elif filenames:
                left.extend(os.path.join(dirpath, f) for f in filenames)
        for clone in self.caches[name].glob("*.git"):
            out = git("worktree", "list", "--porcelain", cwd=clone, check=False)
            for line in out.splitlines():
                if line.startswith("worktree ") and line[9:] != str(clone) and line[9:] not in left:
                    if line[9:].startswith(str(root)):
                        left.append(line[9:])
        return sorted(set(left))

    # -------------------------------------------------------------------------------- teardown
