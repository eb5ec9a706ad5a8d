#!/usr/bin/env python3
"""distributed_run.py: the example DAG on a real CeleryExecutor deployment, on this machine, then checks.

Starts, in a fresh AIRFLOW_HOME (a temp dir, or --home):

* the Airflow metadata database: a fresh PostgreSQL database ``wt_dist_<random>`` (dropped at the end unless
  --keep), also the Celery result backend (``db+postgresql://``);
* the shard status database: a second fresh PostgreSQL database (connection ``shard_status_default``,
  conn_type postgres);
* the broker: an empty Redis database number (claimed with a marker key, flushed at the end), or RabbitMQ
  with --broker rabbitmq; either way a queue of its own (``wt_dist_<random>``);
* ``airflow api-server`` (the execution API the Celery workers' tasks talk to), ``scheduler``,
  ``dag-processor`` (DAGs folder = the package's example_dags/), and TWO ``airflow celery worker`` processes
  with distinct ``--celery-hostname``, each with its own ``[worktree] worktree_root`` / ``cache_dir``
  (AIRFLOW__WORKTREE__*), log file and log-server port;
* the offline Messages API server (a test double, not Claude) with a small latency so shards overlap;
* a bare git repository as the shared remote (``file://``), seeded with the demo repository.

Then, per scenario, it triggers ``parallel_maintenance_poc`` with ``push: true`` and an integration branch,
waits for the run and checks: the run succeeded; both workers processed shards (the worktree path each shard
recorded lies under one worker's root); every shard completed exactly once in the PostgreSQL shard database;
every shard branch is on the remote at the recorded commit; the integration branch is on the remote and
contains every shard commit; no worktree is left in either worker's root.

Scenario ``kill-worker``: once shards are running on worker 2, SIGKILL worker 2's process group and every
process it started (as if its host died). Airflow notices the missing task heartbeats, fails those tries and
retries them on worker 1; the retry reclaims the dead holder's shard lease (same host, dead pid). Worker 2's
abandoned worktrees are then pruned the way its janitor would after a restart (dead owner: salvaged, removed).

    .venv/bin/python scripts/distributed_run.py                      # both scenarios, Redis broker
    .venv/bin/python scripts/distributed_run.py --scenario normal
    .venv/bin/python scripts/distributed_run.py --kill-worker        # only the kill scenario
    .venv/bin/python scripts/distributed_run.py --broker rabbitmq --keep

Everything it started is stopped at the end (also on Ctrl-C or an error) and its databases dropped.
Exit status: 0 when every check passed, 1 when a check failed, 2 when it cannot run here (missing service or
package; the message names the fix).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distrun.deployment import main  # noqa: E402  (scripts/distrun/ and scripts/harness/)

if __name__ == "__main__":
    sys.exit(main())
