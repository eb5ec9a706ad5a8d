#!/usr/bin/env python3
"""smoke_run.py: the runbook's smoke test, made real (run it as ``./scripts/smoke_run.sh``).

Runs the example DAG parallel_maintenance_poc end to end on a throwaway clone of a repository (a generated
demo repository by default), with a parallel limit of 10, in an isolated AIRFLOW_HOME, against the
package's offline Messages API server (a test double; --real-api uses the real API), then verifies the
shard database, the branches and commits, the worktrees, the overlap of the shards in time and that the
repository you pointed at is untouched. Exit 0 only when every check passed; 2 for a bad option; 130/143
when interrupted (everything the run started is stopped first). See docs/runbook.md.

This file needs only the standard library: it runs Airflow as processes (``airflow db migrate``, ``api-server``,
``scheduler``, ``dag-processor``, ``dags trigger``...) with the interpreter that has Airflow (``--python``,
else this one, else the project's venv, created on first use), and reads the metadata database through small
scripts run by that interpreter. It lives in scripts/ because it needs a checkout: the demo repository
generator (scripts/demo_repo.py), the venv bootstrap (``pip install -e '.[test]'``) and the process helpers it
shares with scripts/distributed_run.py (scripts/harness/).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smokerun.run import main  # noqa: E402  (scripts/smokerun/: standard library only)

if __name__ == "__main__":
    sys.exit(main())
