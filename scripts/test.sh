#!/usr/bin/env bash
# Make a virtual environment, install the package with its test extra, run pytest.
# Arguments pass through to pytest:  ./scripts/test.sh -k worktree -x
# VENV=path chooses the venv (default: .venv in the project); an existing venv is reused and refreshed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1
if [ ! -x "$VENV/bin/python" ]; then
  echo "[test.sh] creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
fi
echo "[test.sh] installing airflow-provider-worktree[test] into $VENV"
"$VENV/bin/python" -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import airflow_provider_worktree, airflow, anthropic, pytest" \
  || { echo "[test.sh] install failed: see pip output above" >&2; exit 1; }
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "$@"
