"""The smoke run's post-run verification: the shard database, branches, worktrees, overlap, batch mode, isolation."""

from __future__ import annotations

import json

from smokerun.checks import (
    _epoch,
    fingerprint,
    git,
    max_overlap,
    shard_counts,
    shard_rows,
)


class VerifyPhases:
    """Post-run checks of :class:`~.run.SmokeRun`."""

    def verification(self) -> None:
        out = self.out
        assert self.home is not None
        nothing_to_do = None
        report = self._dag_report()
        if report is not None:
            nothing_to_do = report.get("nothing_to_do")
        if not self.shard_db.is_file() and not nothing_to_do:
            out.error(f"no shard database at {self.shard_db}: the plan task never registered shards")
        elif nothing_to_do is not None or self._completion()[1] == 0:
            if nothing_to_do and self.run_ok:
                out.success(f"nothing to do: {nothing_to_do}")
            else:
                out.error("the run registered no shard and its report does not say why")
        else:
            self._check_shards()
        after = fingerprint(self.source)
        (self.slog / "source_after.txt").write_text(after)
        before = (self.slog / "source_before.txt").read_text()
        if after == before:
            out.success(f"the source repository is untouched (HEAD, status, branches, worktrees, stashes): {self.source}")
        else:
            out.error("the source repository changed during the run:")
            import difflib
            out.indent("\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")), limit=20)

        # No worktree left: git knows only the main one and the worktree root holds nothing.
        wt_list = git("-C", str(self.clone), "worktree", "list", "--porcelain").stdout
        count = sum(1 for line in wt_list.splitlines() if line.startswith("worktree "))
        root = self.home / "worktrees"
        left = sorted(str(p) for pattern in ("*", "*/*") for p in root.glob(pattern) if not p.name.startswith("."))
        if count == 1 and not left:
            out.success(f"no worktree left: git worktree list shows only the clone, {root} is empty")
        else:
            out.error(f"worktrees left behind (git worktree list: {count} entries):")
            out.indent(git("-C", str(self.clone), "worktree", "list").stdout + "\n".join(left[:10]))

        self._isolation_in_force(report)
        if self.publishing:
            self.check_publish()
        if self.o.batch:
            self._check_batch(report)
        if self.shard_db.is_file():
            status = self.run([*self.awt, "status", "--db", str(self.shard_db), "--run-id", self.run_id])
            (self.slog / "awt_status.txt").write_text(status.stdout + status.stderr)
            if status.returncode == 0:
                out.success(f"airflow-worktree status --db {self.shard_db}: no threshold crossed")
            elif status.returncode == 1:
                out.warning("airflow-worktree status: a warning threshold is crossed")
            else:
                out.error(f"airflow-worktree status exited {status.returncode}")
            out.indent(status.stdout + status.stderr)
            rep = self.run([*self.awt, "report", "--db", str(self.shard_db), "--run-id", self.run_id])
            (self.slog / "awt_report.txt").write_text(rep.stdout + rep.stderr)
            if rep.returncode == 0:
                out.success(f"airflow-worktree report --db {self.shard_db} --run-id '{self.run_id}':")
                out.indent(rep.stdout, limit=40)
            else:
                out.error("airflow-worktree report failed:")
                out.tail(self.slog / "awt_report.txt")
        reports = sorted((self.home / "reports").glob("*.md"), key=lambda p: p.stat().st_mtime)
        if reports:
            out.success(f"the DAG's report: {reports[-1]}")
            out.indent(reports[-1].read_text(), limit=12, rest=f"the whole report is {reports[-1]}")
        else:
            out.error(f"the DAG's report task wrote no Markdown report under {self.home / 'reports'}")

    def _dag_report(self) -> dict | None:
        assert self.home is not None
        reports = sorted((self.home / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime)
        for path in reversed(reports):
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue
            if data.get("run_id") == self.run_id:
                return data
        return None

    def _check_shards(self) -> None:
        out, o = self.out, self.o
        run = self.run_id
        done, total = self._completion()
        out.info(f"shard database {self.shard_db}: {shard_counts(self.shard_db)}")
        if done == total:
            out.success(f"all {total} shards completed")
        else:
            pct = 100.0 * done / total
            others = shard_rows(self.shard_db, "SELECT shard_id, status, error_message FROM shard_status "
                                               "WHERE run_id = ? AND status != 'completed'", (run,))
            text = "\n".join(f"{s}|{st}|{(e or '')[:280]}" for s, st, e in others)
            if pct >= o.min_completed:
                out.success(f"{done} of {total} shards completed ({pct:.0f}% >= --min-completed "
                            f"{o.min_completed:g}%)")
                out.warning(f"{total - done} shard(s) did not complete:")
            else:
                out.error(f"{done} of {total} shards completed ({pct:.0f}%); the others:")
            out.indent(text)
        if 0 < total < o.parallel:  # the plan, not the limit, bounds the parallelism: nothing to warn about
            out.info(f"{total} shard(s) for a parallel limit of {o.parallel}: at most {total} can run at once")

        # Branches and commits recorded for each completed shard exist in the clone, and the branch is there.
        bad = no_commit = checked = 0
        clone = str(self.clone)
        for shard, branch, commit in shard_rows(
                self.shard_db, "SELECT shard_id, COALESCE(branch, ''), COALESCE(commit_sha, '') FROM shard_status "
                               "WHERE run_id = ? AND status = 'completed' ORDER BY shard_id", (run,)):
            if not commit:
                no_commit += 1
                continue
            checked += 1
            tip = git("-C", clone, "rev-parse", "--verify", "-q", f"refs/heads/{branch}").stdout.strip()
            problem = ""
            if git("-C", clone, "rev-parse", "--verify", "-q", f"{commit}^{{commit}}").returncode != 0:
                problem = f"commit {commit} is not in the clone"
            elif not tip:
                problem = f"branch {branch} is not in the clone"
            elif tip != commit and git("-C", clone, "merge-base", "--is-ancestor", commit, tip).returncode != 0:
                problem = f"commit {commit} is not on branch {branch} ({tip})"
            elif self.base_head and git("-C", clone, "merge-base", "--is-ancestor", self.base_head,
                                        commit).returncode != 0:
                problem = f"commit {commit} does not descend from the base {self.base_head}"
            if problem:
                bad += 1
                out.error(f"shard {shard}: {problem}")
        if checked and not bad:
            out.success(f"every recorded branch and commit exists in the clone ({checked} checked with git "
                        "rev-parse --verify)")
        elif not checked and not bad and done:
            out.error("no completed shard recorded a commit")
        if no_commit:
            out.warning(f"{no_commit} completed shard(s) changed nothing and recorded no commit")
        branches = git("-C", clone, "for-each-ref", "--format=%(refname:short)", "refs/heads/worktree/").stdout.split()
        integration = f"worktree/{self.conf.get('task', 'todo')}"  # what the example DAG publishes
        shards = [b for b in branches if b != integration]
        out.info(f"the clone has {len(shards)} shard branch(es) under refs/heads/worktree/"
                 + (f", and the integration branch {integration}" if integration in branches else ""))

        # Overlap: the largest number of shards running at the same instant (from started_at/completed_at).
        spans = [(_epoch(a), _epoch(b)) for a, b in shard_rows(
            self.shard_db, "SELECT started_at, completed_at FROM shard_status WHERE run_id = ? "
                           "AND started_at IS NOT NULL", (run,))]
        spans = [(a, b) for a, b in spans if a is not None and b is not None]
        overlap = max_overlap(spans)
        wall = (max(b for _, b in spans) - min(a for a, _ in spans)) if spans else 0.0
        busy = sum(b - a for a, b in spans)
        expect = min(total, o.parallel)
        if o.mode == "sequential":
            if overlap >= 2:
                out.success(f"shards overlapped: up to {overlap} at once")
            else:
                out.warning(f"shards did not overlap (max {overlap} at once): sequential mode runs one task at a time")
        elif total < 2:
            out.info(f"{total} shard: nothing to overlap")
        elif overlap >= 2:
            out.success(f"shards ran in parallel: up to {overlap} at once (limit {o.parallel}); {busy:.1f}s of shard "
                        f"work in {wall:.1f}s")
            if overlap > o.parallel:
                out.error(f"more shards ran at once ({overlap}) than the parallel limit {o.parallel}")
            if overlap < (expect + 1) // 2:
                out.warning(f"less overlap than expected (up to {overlap} of {expect}): the machine may be short of CPU")
        else:
            out.error(f"shards did not overlap in time (max {overlap} at once): parallel execution is not working")

    def _check_batch(self, report: dict | None) -> None:
        """Batch mode: one batch for the run, its id recorded; every entry collected and billed once (attempt 0);
        the submit task deferred while the batch ran; the report shows batch and interactive cost apart."""
        out, run = self.out, self.run_id
        if not self.shard_db.is_file():
            return
        parts = shard_rows(self.shard_db, "SELECT part, batch_id, status, requests FROM shard_batches WHERE run_id = ?",
                           (run,))
        entries = dict(shard_rows(self.shard_db, "SELECT status, COUNT(*) FROM batch_entries WHERE run_id = ? "
                                                 "GROUP BY status", (run,)))
        billed = shard_rows(self.shard_db, "SELECT shard_id, COUNT(*) FROM shard_attempts WHERE run_id = ? AND "
                                           "status = 'batch' GROUP BY shard_id", (run,))
        ids = [p[1] for p in parts if p[1]]
        if len(ids) == len(parts) == 1 and parts[0][2] == "collected":
            out.success(f"one Message Batch for the run, {ids[0]}: {parts[0][3]} request(s), collected; entries: "
                        + ", ".join(f"{n} {s}" for s, n in sorted(entries.items())))
        else:
            out.error(f"expected one collected batch for the run, found: {parts}")
        if billed and all(n == 1 for _, n in billed) and len(billed) == entries.get("succeeded", 0):
            out.success(f"each of the {len(billed)} succeeded entries is billed once (attempt 0, batch prices)")
        else:
            out.error(f"batch spend rows do not match the succeeded entries: {billed} vs {entries}")
        logs = self.home / "logs" / f"dag_id={self.dag_id}" / f"run_id={run}" / "task_id=submit_batch"
        text = "\n".join(p.read_text(errors="replace") for p in logs.rglob("*.log")) if logs.is_dir() else ""
        if "deferring while batch(es)" in text and "batch mode of run" in text:
            out.success("the submit task deferred while the batch ran, and resumed to collect it")
        else:
            out.error(f"no deferral of the submit task found in its log under {logs}")
        t = (report or {}).get("totals") or {}
        if t.get("batch_shards"):
            out.success(f"report: batch ${t['batch_cost_usd']:.4f} ({t['batch_shards']} shard(s)), interactive "
                        f"${t['interactive_cost_usd']:.4f} (list prices; offline, nothing billed)")
        else:
            out.error("the report shows no batch shard")

    def _isolation_in_force(self, report: dict | None) -> None:
        """Which isolation the shards ran with, from the run's records; else the configured value."""
        seen: set[str] = set()
        for s in (report or {}).get("shards", []):
            if s.get("isolation"):
                seen.add(str(s["isolation"]))
        if not seen and self.shard_db.is_file():
            cols = {r[1] for r in shard_rows(self.shard_db, "PRAGMA table_info(shard_status)")}
            if "isolation" in cols:
                seen = {r[0] for r in shard_rows(self.shard_db, "SELECT DISTINCT isolation FROM shard_status "
                                                                "WHERE run_id = ? AND isolation IS NOT NULL",
                                                 (self.run_id,))}
        configured = self.conf.get("isolation", "auto")
        if seen:
            self.out.info(f"isolation in force: {', '.join(sorted(seen))} (recorded by the shards; configured: "
                          f"{configured})")
        else:
            self.out.info(f"isolation configured: {configured} (the run's records do not say which was in force)")

    def inspect_hint(self) -> None:
        assert self.home is not None
        if self.campaign:
            self.campaign_hint()
            return
        self.out.heading("Inspect this run")
        self.out.indent(f"""\
. {self.home}/env.sh    # AIRFLOW_HOME, DAGs folder, metadata database, PATH of this run
airflow-worktree status --db $AIRFLOW_HOME/shard_status.db
airflow-worktree report --db $AIRFLOW_HOME/shard_status.db --run-id '{self.run_id}'
sqlite3 $AIRFLOW_HOME/shard_status.db "SELECT shard_id, status, started_at, completed_at, branch FROM shard_status ORDER BY started_at;"
sqlite3 $AIRFLOW_HOME/shard_status.db "SELECT status, COUNT(*) FROM shard_status GROUP BY status;"
git -C {self.clone} branch --list 'worktree/*'
less {self.slog}/dag_run.log {self.slog}/scheduler.log   # whichever exists; task logs: $AIRFLOW_HOME/logs/dag_id={self.dag_id}/"""
                        + "".join(f"\n{line}" for line in self.publish_hint()))

    # -- driver -----------------------------------------------------------------------------------------
