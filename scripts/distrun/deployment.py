"""One distributed deployment and its scenarios: run each, check it, tear everything down."""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from distrun.constants import DAG_ID, CannotRun, Scenario
from distrun.services import Postgres, git, make_demo
from distrun.setup import DeploymentSetup
from distrun.verify import DeploymentChecks
from harness.processes import Proc, Processes, log, run


class Deployment(DeploymentSetup, DeploymentChecks):
    """One CeleryExecutor deployment on this machine: set up, run scenarios, verify, tear down."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs = Processes()
        self.tag = "wt_dist_" + secrets.token_hex(4)
        self.pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
        self.broker = None
        self.queue = self.tag
        self.home_is_temp = args.home is None
        self.home = Path(args.home).resolve() if args.home else Path(tempfile.mkdtemp(prefix="wt-dist-"))
        self.bin = Path(sys.executable).parent
        self.airflow = str(self.bin / "airflow") if (self.bin / "airflow").exists() else None
        self.meta_db = self.tag
        self.shard_db = self.tag + "_shards"
        self.workers: dict[str, Proc] = {}
        self.roots: dict[str, Path] = {}
        self.caches: dict[str, Path] = {}
        self.timings: dict[str, float] = {}

    # -------------------------------------------------------------------------------- set-up
    def run_scenario(self, sc: Scenario) -> None:
        a = self.args
        work = self.home / sc.name
        work.mkdir()
        demo = make_demo(work / "demo", a.modules)
        sc.remote = work / "remote.git"
        git("clone", "--bare", "-q", str(demo), str(sc.remote))
        remote_url = sc.remote.as_uri()
        from airflow_provider_worktree.core.planning import plan_shards

        expected = {s["shard_id"] for s in plan_shards(str(demo), "todo", max_files=a.max_files_per_shard)}
        sc.facts["shards_planned"] = len(expected)
        log(f"[{sc.name}] remote {remote_url}: {a.modules} modules, {len(expected)} shards expected")

        sc.run_id = f"dist_{sc.name.replace('-', '_')}_{int(time.time())}"
        conf = {"repo": remote_url, "push": True, "max_files_per_shard": a.max_files_per_shard,
                "model": "claude-sonnet-4-6", "integration_branch": a.integration_branch}
        env = self.base_env()
        t0 = time.monotonic()
        run([self.airflow, "dags", "unpause", DAG_ID], env=env)
        run([self.airflow, "dags", "trigger", DAG_ID, "--run-id", sc.run_id, "-c", json.dumps(conf)], env=env)
        sc.timings["trigger_s"] = round(time.monotonic() - t0, 1)
        log(f"[{sc.name}] triggered {sc.run_id}")

        sc.facts["_log_offsets"] = {n: w.log_path.stat().st_size for n, w in self.workers.items()}
        killed_shards: set[str] = set()
        killed_at = None
        deadline = time.monotonic() + a.timeout
        last_progress = 0.0
        state = None
        while True:
            self.procs.check_alive(["api-server", "scheduler", "dag-processor", "worker1"]
                                   + ([] if self.workers["worker2"].stopped else ["worker2"]))
            state = self._run_state(sc.run_id)
            if state in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {sc.run_id} not finished after {a.timeout}s (--timeout); "
                                   f"{self._progress(sc.run_id)}")
            if sc.kill_worker and killed_at is None:
                on_w2 = self._running_on("worker2", sc.run_id)
                done = self._shard_counts(sc.run_id).get("completed", 0)
                if len(on_w2) >= a.kill_after_running and done >= 1:
                    pids = self.procs.kill_tree(self.workers["worker2"], group_only=a.kill_mode == "group")
                    killed_at = time.monotonic()
                    # A shard may have finished between the look and the kill: it was not killed.
                    finished = {sid for sid, in self.pg.query(
                        self.shard_db, "SELECT shard_id FROM shard_status WHERE run_id = %s AND status = "
                                       "'completed' AND attempt = 1", (sc.run_id,)) if sid in on_w2}
                    killed_shards = set(on_w2) - finished
                    if finished:
                        sc.facts["completed_before_kill"] = sorted(finished)
                    sc.facts["killed_pids"] = len(pids)
                    sc.facts["killed_shards"] = sorted(killed_shards)
                    sc.timings["kill_at_s"] = round(killed_at - t0, 1)
                    log(f"[{sc.name}] SIGKILLed worker2 ({a.kill_mode}: {len(pids)} processes) while it ran shards "
                        f"{sorted(killed_shards)}; {done} shards completed so far")
            if time.monotonic() - last_progress > 10:
                last_progress = time.monotonic()
                log(f"[{sc.name}] {self._progress(sc.run_id)}")
            time.sleep(0.5)
        sc.timings["run_s"] = round(time.monotonic() - t0, 1)
        if killed_at is not None:
            sc.timings["recovery_after_kill_s"] = round(time.monotonic() - killed_at, 1)
        log(f"[{sc.name}] run {sc.run_id} ended: {state} in {sc.timings['run_s']}s")
        self._verify(sc, state, expected, killed_shards)

    def teardown(self) -> None:
        try:
            self.procs.stop_all()
        except Exception as exc:  # noqa: BLE001
            log(f"error while stopping processes: {exc}")
        if self.broker is not None:
            try:
                self.broker.cleanup(self.queue)
            except Exception as exc:  # noqa: BLE001
                log(f"broker cleanup failed: {exc}")
        if not self.args.keep:
            try:
                self.pg.drop_all()
            except Exception as exc:  # noqa: BLE001
                log(f"could not drop databases {self.pg.created}: {exc}")
            if self.home_is_temp:
                shutil.rmtree(self.home, ignore_errors=True)
        else:
            log(f"kept: AIRFLOW_HOME {self.home}, databases {self.pg.created} (--keep)")


# ------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=("normal", "kill-worker", "both"), default="both",
                   help="normal: two workers share the run; kill-worker: SIGKILL worker 2 mid-run; both "
                        "(default): one deployment, the two scenarios one after the other")
    p.add_argument("--kill-worker", action="store_true", help="same as --scenario kill-worker")
    p.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    p.add_argument("--redis-host", default="127.0.0.1")
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--redis-db", type=int, help="Redis database number (must be empty; default: the highest empty "
                                                "one of 15..1)")
    p.add_argument("--rabbitmq-url", default="amqp://guest:guest@127.0.0.1:5672//")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--home", help="AIRFLOW_HOME to use (empty or new; default: a temp dir, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the databases and the home for inspection")
    p.add_argument("--modules", type=int, default=24, help="demo repository modules (default 24)")
    p.add_argument("--max-files-per-shard", type=int, default=1, help="DAG param (default 1: one shard a module)")
    p.add_argument("--concurrency", type=int, default=4, help="Celery worker concurrency (default 4 each)")
    p.add_argument("--parallel", type=int, default=8,
                   help="WORKTREE_PARALLEL_LIMIT and the model pool's size (default 8)")
    p.add_argument("--latency", type=float, default=0.3, help="offline API latency per reply (default 0.3 s)")
    p.add_argument("--heartbeat-timeout", type=int, default=20,
                   help="[scheduler] task_instance_heartbeat_timeout in seconds (default 20)")
    p.add_argument("--queued-timeout", type=int, default=45,
                   help="[scheduler] task_queued_timeout in seconds (default 45)")
    p.add_argument("--kill-after-running", type=int, default=2,
                   help="kill worker 2 once this many shards run on it (default 2)")
    p.add_argument("--kill-mode", choices=("tree", "group"), default="tree",
                   help="tree (default): worker 2's process group and every process it started, in any group "
                        "(its host died); group: only worker 2's own process group, so Airflow's task processes "
                        "(own groups) live on as orphans")
    p.add_argument("--integration-branch", default="maintenance/integration")
    p.add_argument("--triggerer", action="store_true", help="also start a triggerer (deferrable sensors)")
    p.add_argument("--timeout", type=float, default=420, help="seconds a DAG run may take (default 420)")
    a = p.parse_args(argv)
    if a.kill_worker:
        a.scenario = "kill-worker"
    if a.modules < 20 * a.max_files_per_shard:
        p.error(f"--modules {a.modules} with --max-files-per-shard {a.max_files_per_shard} gives fewer than 20 "
                "shards")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = ["normal", "kill-worker"] if args.scenario == "both" else [args.scenario]
    scenarios = [Scenario(n, kill_worker=(n == "kill-worker")) for n in names]
    dep = Deployment(args)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    error = None
    rc = 1
    try:
        dep.preflight()
        log(f"CeleryExecutor deployment {dep.tag}: broker {args.broker} ({dep.broker.url.split('@')[-1]}), "
            f"queue {dep.queue}, home {dep.home}")
        dep.setup()
        for sc in scenarios:
            t = time.monotonic()
            try:
                dep.run_scenario(sc)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - record, keep going with the summary
                sc.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
                traceback.print_exc()
            sc.timings["scenario_s"] = round(time.monotonic() - t, 1)
    except CannotRun as exc:
        print(f"distributed_run: cannot run here: {exc}", file=sys.stderr)
        rc = 2
        error = str(exc)
    except KeyboardInterrupt as exc:
        error = f"interrupted ({exc or 'Ctrl-C'})"
        log(error + ": stopping everything this run started")
    except Exception as exc:  # noqa: BLE001
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        dep.teardown()

    total = round(time.monotonic() - t0, 1)
    print("\n==> Summary (CeleryExecutor, 2 workers, broker %s)" % args.broker)
    print(f"    startup {dep.timings.get('startup_s', '-')}s (db migrate {dep.timings.get('db_migrate_s', '-')}s)")
    for sc in scenarios:
        n_ok = sum(ok for _, ok, _ in sc.checks)
        print(f"    scenario {sc.name}: {'PASSED' if sc.passed else 'FAILED'} ({n_ok}/{len(sc.checks)} checks), "
              f"run {sc.timings.get('run_s', '-')}s, scenario {sc.timings.get('scenario_s', '-')}s")
        for key in ("shards", "completed_by_worker", "attempts", "maintain_retried", "celery_tasks_received",
                    "killed_shards", "killed_shards_completed_by", "worker2_pruned_after_restart"):
            if key in sc.facts:
                print(f"      {key}: {json.dumps(sc.facts[key])}")
        for key in ("kill_at_s", "recovery_after_kill_s"):
            if key in sc.timings:
                print(f"      {key}: {sc.timings[key]}")
        for name, ok, detail in sc.checks:
            if not ok:
                print(f"      FAILED: {name}: {detail}")
        for warning in sc.warnings:
            print(f"      WARNING: {warning}")
    print(f"    total {total}s")
    if rc == 2:
        print("RESULT: SKIPPED (cannot run here)")
        return 2
    if error is None and all(sc.passed for sc in scenarios):
        print("RESULT: PASSED")
        return 0
    print("RESULT: FAILED" + (f" ({error})" if error else ""))
    return 1

