#!/usr/bin/env bash
# smoke_run.sh: the runbook's smoke test, made real. A thin launcher: the logic is in scripts/smoke_run.py.
#
# Runs the example DAG parallel_maintenance_poc end to end on a throwaway clone of a repository (a generated
# demo repository by default), with a parallel limit of 10, in an isolated AIRFLOW_HOME, against the
# package's offline Messages API server (a test double; --real-api uses the real API), then verifies the
# result. Exit 0 only when every check passed. See docs/runbook.md.
#
#   ./scripts/smoke_run.sh                    # demo repository, LocalExecutor + scheduler, offline API
#   ./scripts/smoke_run.sh --repo ~/src/proj  # a real repository (cloned; your checkout is not changed)
#   ./scripts/smoke_run.sh --help
#
# This launcher only finds a Python >= 3.11 to run smoke_run.py (standard library only); smoke_run.py
# picks the interpreter that has Airflow (--python, else python3, else the venv it creates in .venv).
set -euo pipefail
PROJECT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=""
prev=""
for arg in "$@"; do  # --python PY runs the driver too
  [ "$prev" = "--python" ] && PY="$arg"
  prev="$arg"
done
for candidate in "$PY" "${PYTHON:-}" python3 python; do
  [ -n "$candidate" ] || continue
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    exec "$candidate" "$PROJECT/scripts/smoke_run.py" "$@"
  fi
done
echo "smoke_run.sh: no Python >= 3.11 found: install python3 (>= 3.11) or pass --python PY" >&2
exit 1
