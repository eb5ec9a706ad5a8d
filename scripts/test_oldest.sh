#!/usr/bin/env bash
# The oldest supported Airflow (MIN_AIRFLOW_VERSION in airflow_provider_worktree/__init__.py, the same as
# pyproject.toml's floor): a fresh venv with that Airflow and the dependency floors, the package installed the way
# a user installs it (pip resolves its dependencies; Airflow core must stay where it is), then the chosen subset of
# tests, OLDEST_TESTS below: the one place it is chosen. Extra arguments pass through to pytest.
#
# Airflow's constraints files cannot be downloaded in CI, so what a constraints file would fix is pinned here:
# our own dependency floors (FLOORS), so the floors pyproject.toml states are the versions tested, and what the
# old Airflow line breaks on (OLD_LINE_PINS).
# VENV_OLDEST=path chooses the venv (default .ci-venv-oldest; an existing one is reused).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV_OLDEST:-.ci-venv-oldest}"
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1

# AIRFLOW_VERSION=3.2.2 (and EXTRA_PINS="pkg<ver ...") tries another supported minor the same way.
AIRFLOW_VERSION="${AIRFLOW_VERSION:-$(sed -n 's/^MIN_AIRFLOW_VERSION = "\(.*\)"$/\1/p' airflow_provider_worktree/__init__.py)}"
[ -n "$AIRFLOW_VERSION" ] || { echo "[test_oldest] no MIN_AIRFLOW_VERSION in airflow_provider_worktree/__init__.py" >&2; exit 1; }

# The lowest versions pyproject.toml allows for the providers and the SDK this package uses directly.
FLOORS=(
  "apache-airflow-providers-anthropic==1.2.0"
  "apache-airflow-providers-common-sql==2.4.0"
  "anthropic==2.14.0"
)
# Airflow 3.1's get_fernet() sets an attribute on cryptography's MultiFernet, which cryptography 51 (Rust, no
# instance attributes) refuses: every connection with a password fails to load ("isn't defined") once airflow.cfg
# has a fernet key. Airflow 3.2 wraps it; 3.1's constraints file pins an older cryptography.
OLD_LINE_PINS=(
  "cryptography<51"
)
# shellcheck disable=SC2206
[ -n "${EXTRA_PINS:-}" ] && OLD_LINE_PINS+=(${EXTRA_PINS})

# The subset: install and discovery (providers list), both example DAGs parse without import errors and run (the
# maintenance operator, the sensor and its trigger), the plugin in a real api-server and the scheduler preload,
# the CLI (airflow-worktree, and `airflow worktree` where this Airflow has provider CLI commands).
OLDEST_TESTS=(
  tests/test_airflow_versions.py
  tests/test_provider.py
  "tests/test_example_dags.py::test_dags_parse_fast_without_import_errors_or_side_effects"
  "tests/test_example_dags.py::test_parallel_maintenance_poc_runs_end_to_end"
  "tests/test_example_dags.py::test_health_dag_reclaims_stale_lock_and_prunes_orphan_worktree"
  tests/test_operator.py
  tests/test_sensor.py
  tests/test_plugin_preload.py
  tests/test_cli.py
)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[test_oldest] creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
fi
pip_q() {  # pip's own exit code counts (a ResolutionImpossible must stop here, not install something else)
  local rc=0
  "$VENV/bin/python" -m pip install -q "$@" > "$VENV/pip.log" 2>&1 || rc=$?
  grep -v "^WARNING: Location" "$VENV/pip.log" || true
  [ "$rc" = 0 ] || { echo "[test_oldest] pip install $* failed (exit $rc)" >&2; exit 1; }
}

echo "[test_oldest] Airflow $AIRFLOW_VERSION with ${FLOORS[*]} ${OLD_LINE_PINS[*]}"
pip_q "apache-airflow==$AIRFLOW_VERSION" "${FLOORS[@]}" "${OLD_LINE_PINS[@]}" pytest pytest-timeout
echo "[test_oldest] installing airflow-provider-worktree into $VENV (its own dependency resolution)"
pip_q -e ".[postgres]"
installed="$("$VENV/bin/python" -c 'import airflow; print(airflow.__version__)')"
if [ "$installed" != "$AIRFLOW_VERSION" ]; then
  echo "[test_oldest] installing the package changed Airflow core: $AIRFLOW_VERSION -> $installed" >&2
  exit 1
fi
for pin in "${FLOORS[@]}"; do
  name="${pin%%==*}" want="${pin#*==}"
  have="$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')"
  [ "$have" = "$want" ] || { echo "[test_oldest] installing the package changed $name: $want -> $have" >&2; exit 1; }
done
"$VENV/bin/python" -m pip check || { echo "[test_oldest] pip check failed: see above" >&2; exit 1; }
echo "[test_oldest] Airflow core stays at $installed; running ${#OLDEST_TESTS[@]} test selections"
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "${OLDEST_TESTS[@]}" "$@"
