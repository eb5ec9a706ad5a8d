"""The smoke run: its phases in order, the DAG run itself, and the clean-up that stops everything it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness.processes import Background

from smokerun.checks import (
    PG_ADMIN,
    RUN_FACTS,
    RUN_WATCHER,
    last_error_of,
    repository_problem,
    shard_counts,
    shard_rows,
)
from smokerun.campaign import CampaignPhases
from smokerun.constants import CAMPAIGN_DAG_ID, DAG_ID, PROG, USAGE, Fatal, Interrupted, UsageError
from smokerun.options import Options, parse_args
from smokerun.output import Out
from smokerun.publish import PublishPhases
from smokerun.setup import SetupPhases
from smokerun.verify import VerifyPhases


class SmokeRun(SetupPhases, PublishPhases, VerifyPhases, CampaignPhases):
    """One smoke run: :meth:`main` runs the phases in order and always ends with :meth:`cleanup`."""

    def __init__(self, opts: Options, out: Out) -> None:
        self.o, self.out = opts, out
        self.bg = Background()
        self.env = dict(os.environ)
        self.py = ""
        self.airflow: list[str] = []
        self.awt: list[str] = []
        self.home: Path | None = None
        self.slog = Path()
        self.shard_db = Path()
        self.pg_db_created = ""
        self.source = ""
        self.clone = Path()
        self.base_head = ""
        self.run_id = ""
        self.conf: dict = {}
        self.run_ok = False
        self.tis: list[list] = []
        self.forge_info: dict = {}
        self.publish_conf: dict = {}
        self.services_started = False
        self.dag_id = CAMPAIGN_DAG_ID if opts.repos > 1 else DAG_ID

    # -- small tools ------------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, **kw)

    def af(self, *args: str, log: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = self.run([*self.airflow, *args], timeout=timeout)
        if log is not None:
            log.write_text(proc.stdout + proc.stderr)
        return proc

    def pyrun(self, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run([self.py, "-c", code, *args], timeout=timeout)

    def pg_admin(self, action: str, name: str = "") -> bool:
        return self.pyrun(PG_ADMIN, self.o.pg_dsn, action, name, timeout=30).returncode == 0

    def wait_http(self, url: str, secs: float, popen: subprocess.Popen) -> str:
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                return "exited"
            try:
                urllib.request.urlopen(url, timeout=2)
                return "ok"
            except OSError:
                time.sleep(0.5)
        return "timeout"

    def wait_run(self, popen: subprocess.Popen, label: str) -> bool:
        """Wait for a background DAG run process, printing the shard counts every 10 s."""
        deadline = time.monotonic() + self.o.timeout
        last = 0.0
        while popen.poll() is None:
            if time.monotonic() >= deadline:
                self.out.error(f"{label} did not finish within {self.o.timeout}s (--timeout); shards: "
                               f"{shard_counts(self.shard_db)}")
                return False
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                self.out.info(f"{label}: {shard_counts(self.shard_db)}")
            time.sleep(1)
        return popen.returncode == 0

    # -- phases -----------------------------------------------------------------------------------------
    def dag_run(self, again: bool = False) -> None:
        """Run the DAG once; ``again``: a second run with the same conf (the scheduler and api-server already up)."""
        out, o = self.out, self.o
        self.run_id = ""  # airflow dags test names no run: RUN_FACTS then reads the newest (not the first run's)
        self.conf = self.run_conf()
        conf = json.dumps(self.conf)
        out.info(f"conf: {conf}")
        if not self.campaign:
            isolation = self.conf.get("isolation", "auto")
            out.info(f"isolation configured: {isolation} (the run's records say which one was in force; see below)")
        ok = False
        t0 = time.monotonic()
        run_log = self.slog / ("dag_run_2.log" if again else "dag_run.log")
        if o.mode == "sequential":
            out.warning("sequential mode: airflow dags test runs the mapped shards one at a time, so they will not "
                        "overlap")
            popen = self.bg.start("dags-test", run_log, [*self.airflow, "dags", "test", self.dag_id, "-c", conf],
                                  self.env)
            ok = self.wait_run(popen, "airflow dags test")
        elif o.mode == "executor":
            if self.services_started or self._start_api_server():
                self.services_started = True
                if o.deferrable or o.batch:
                    self.bg.start("triggerer", self.slog / "triggerer.log", [*self.airflow, "triggerer"], self.env)
                    out.success("airflow triggerer started (deferred tasks)")
                out.info(f"airflow dags test --use-executor: LocalExecutor with {o.parallel} slots (dags test "
                         "ignores the DAG's own limits)")
                popen = self.bg.start("dags-test", run_log,
                                      [*self.airflow, "dags", "test", self.dag_id, "-c", conf, "--use-executor"],
                                      self.env)
                ok = self.wait_run(popen, "airflow dags test --use-executor")
        elif again or self._start_api_server():
            if not again:
                self.bg.start("scheduler", self.slog / "scheduler.log", [*self.airflow, "scheduler"], self.env)
                self.bg.start("dag-processor", self.slog / "dag_processor.log", [*self.airflow, "dag-processor"],
                              self.env)
                triggerer = o.deferrable or o.batch
                if triggerer:
                    self.bg.start("triggerer", self.slog / "triggerer.log", [*self.airflow, "triggerer"], self.env)
                out.success(f"airflow scheduler{', triggerer' if triggerer else ''} and dag-processor started")
                if self.af("dags", "unpause", self.dag_id, log=self.slog / "unpause.log").returncode != 0:
                    out.error(f"airflow dags unpause {self.dag_id} failed: see {self.slog / 'unpause.log'}")
            trig = self.af("dags", "trigger", self.dag_id, "-c", conf, "-o", "json")
            (self.slog / "trigger.err").write_text(trig.stderr)
            try:
                self.run_id = json.loads(trig.stdout.strip().splitlines()[-1])[0]["dag_run_id"]
            except (ValueError, IndexError, KeyError, TypeError):
                self.run_id = ""
            if not self.run_id:
                out.error(f"airflow dags trigger {self.dag_id} failed:")
                out.indent((trig.stderr or trig.stdout)[-3000:], limit=25)
            else:
                out.success(f"triggered run {self.run_id}")
                # Poll the metadata database with one long-lived Python (an airflow CLI call costs seconds).
                watcher = self.slog / "run_watcher.py"
                watcher.write_text(RUN_WATCHER)
                popen = self.bg.start("run-watcher", self.slog / ("run_watcher_2.log" if again else "run_watcher.log"),
                                      [self.py, str(watcher), self.dag_id, self.run_id], self.env)
                ok = self.wait_run(popen, "scheduler run")
        secs = time.monotonic() - t0
        facts = self.pyrun(RUN_FACTS, self.dag_id, self.run_id)
        try:
            data = json.loads(facts.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            data = {"run_id": self.run_id, "tis": []}
        self.run_id = self.run_id or data["run_id"]
        tis = data["tis"]
        (self.slog / "task_instances.txt").write_text("".join(f"{t}|{m}|{s}|{n}\n" for t, m, s, n in tis))
        self.run_ok = ok
        self.tis = tis
        if ok:
            out.info(f"DAG run {self.run_id} ended in state success after {secs:.1f}s; checking what it did")
        elif self._tolerated_failure():
            done, total = self._completion()
            out.warning(f"DAG run {self.run_id} failed ({secs:.1f}s) because {total - done} of {total} shard(s) "
                        f"failed; {done} completed, within --min-completed {o.min_completed:g}%")
        else:
            out.error(f"DAG run {self.run_id or '?'} did not succeed ({secs:.1f}s); the run's log: {run_log}")
            if run_log.is_file():
                hits = [line for line in run_log.read_text(errors="replace").splitlines()
                        if re.search(r"Traceback|Error|error", line)]
                out.indent("\n".join(h[:300] for h in hits[-3:]))
        if tis:
            counts: dict[str, int] = {}
            for _, _, state, _ in tis:
                counts[state] = counts.get(state, 0) + 1
            out.info("task instances: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
            bad = [t for t in tis if t[2] not in ("success", "skipped")]
            if bad:
                report = self._report_failed_tasks if self._tolerated_failure() else out.error
                report("task instances not successful; the error of each one's last attempt:")
                root = self.home / "logs" / f"dag_id={self.dag_id}" / f"run_id={self.run_id}"
                for task, idx, state, tries in bad:
                    sub = root / f"task_id={task}" / (f"map_index={idx}" if idx != -1 else "")
                    what, log = last_error_of(sub)
                    label = task if idx == -1 else f"{task}[{idx}]"
                    out.indent(f"{label} {state} after {tries} tr{'y' if tries == 1 else 'ies'}: {what[:300]}")
                    if log:
                        out.indent(f"    {log}")
            retried = [f"{t}[{m}] try {n}" for t, m, s, n in tis if n > 1]
            if retried:
                out.warning("task instances that needed a retry: " + " ".join(retried))

    def run_conf(self) -> dict:
        """The DAG run's conf: the campaign's with --repos N, else the publish settings and the Params."""
        if self.campaign:
            return self.campaign_conf()
        return {**self.publish_conf, **self.o.conf(str(self.clone))}

    def _report_failed_tasks(self, msg: str) -> None:
        self.out.warning(msg.replace("not successful", "failed (tolerated by --min-completed)"))

    def _completion(self) -> tuple[int, int]:
        if not self.shard_db.is_file():
            return 0, 0
        rows = shard_rows(self.shard_db, "SELECT status FROM shard_status WHERE run_id = ?", (self.run_id,))
        return sum(1 for (s,) in rows if s == "completed"), len(rows)

    def _tolerated_failure(self) -> bool:
        """The run failed only because some shards failed, and enough completed for --min-completed."""
        if self.run_ok or self.o.min_completed >= 100:
            return False
        done, total = self._completion()
        if total == 0 or 100.0 * done / total < self.o.min_completed:
            return False
        bad = {t for t, _, s, _ in self.tis if s not in ("success", "skipped")}
        return bad <= {"maintain", "watch_shards", "report"} and "plan" not in bad

    def phases(self) -> list[tuple[str, object]]:
        if self.campaign:
            return self.campaign_phases()
        return [
            ("Pre-flight checks", self.preflight),
            ("Isolated AIRFLOW_HOME", self.isolated_home),
            ("DAG registration", self.registration),
            ("Repository clone", self.repository),
            ("Model API", self.model_api),
            *([("Offline forge", self.offline_forge)] if self.publishing else []),
            (f"DAG run ({self.o.mode}, parallel limit {self.o.parallel})", self.dag_run),
            ("Post-run verification", self.verification),
        ]

    def main(self) -> int:
        out, rc = self.out, 0
        try:
            for name, fn in self.phases():
                out.phase(name)
                try:
                    fn()  # type: ignore[operator]
                except Fatal as exc:
                    out.error(str(exc))
                    rc = 1
                    break
                if out.phase_failed() and not self.o.keep_going:
                    out.info(f"stopping after the failed phase '{name}' (--keep-going runs the remaining phases)")
                    rc = 1
                    break
            else:
                out.phase_end()
                self.inspect_hint()
        except Interrupted as exc:
            print(f"\n{out.yellow}[WARNING]{out.off} interrupted by {exc.name} during "
                  f"\"{out.phase_name or 'start-up'}\": stopping everything this run started", flush=True)
            out.failures += 1
            rc = exc.code
        except Exception as exc:  # a bug here must still stop the services
            out.error(f"smoke_run.py failed: {type(exc).__name__}: {exc}")
            rc = 1
        finally:
            rc = self.cleanup(rc)
        return rc

    def cleanup(self, rc: int) -> int:
        out = self.out
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        if out.phase_name:
            if rc and not out.phase_failed():
                out.failures += 1
            out.phase_end()
        if self.bg.procs:
            names = self.bg.stop_all()
            out.info(f"stopped the processes this run started: {', '.join(names)}")
        if self.pg_db_created and not self.o.keep_metadata_db:
            if self.pg_admin("drop", self.pg_db_created):
                out.info(f"dropped the PostgreSQL metadata database {self.pg_db_created}")
            else:
                print(f"{out.yellow}[WARNING]{out.off} could not drop PostgreSQL database {self.pg_db_created}")
        return out.summary(rc, self.home)


def _on_signal(signum: int, _frame) -> None:
    name = signal.Signals(signum).name
    raise Interrupted(name, 128 + signum)


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if opts is None:
        print(USAGE, end="")
        return 0
    try:
        problem = repository_problem(opts.repo, str(opts.conf(opts.repo).get("base_ref") or "HEAD"))
    except UsageError as exc:
        problem = str(exc)
    if problem:  # before any setup: a bad path costs a second, not the venv check and the DAG registration
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    out = Out(color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    return SmokeRun(opts, out).main()

