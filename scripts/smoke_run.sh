#!/usr/bin/env bash
# smoke_run.sh: the runbook's smoke test, made real.
#
# Runs the example DAG parallel_maintenance_poc end to end on a throwaway clone of a repository (a generated
# demo repository by default), with a parallel limit of 10, in an isolated AIRFLOW_HOME, against the
# package's offline Messages API server (a test double; --real-api uses the real API), then verifies the
# shard database, the branches and commits, the worktrees, the overlap of the shards in time and that the
# repository you pointed at is untouched. Exit 0 only when every check passed. See docs/runbook.md.
#
#   ./scripts/smoke_run.sh                    # demo repository, LocalExecutor + scheduler, offline API
#   ./scripts/smoke_run.sh --repo ~/src/proj  # a real repository (cloned; your checkout is not changed)
#   ./scripts/smoke_run.sh --help
set -euo pipefail

PROJECT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DAG_ID="parallel_maintenance_poc"

# ----------------------------------------------------------------------------------------------- options
usage() {
  cat <<EOF
Usage: ./scripts/smoke_run.sh [options]

Runs the example DAG ${DAG_ID} on a clone of a repository and verifies the result.

Options:
  --repo PATH         repository to maintain (cloned with --no-local into the smoke home; your checkout,
                      its branches and status are verified unchanged). Default: a generated demo repository
  --modules N         modules in the generated demo repository (default 30, i.e. 15 shards of 2 files)
  --home DIR          AIRFLOW_HOME of the run (default: ${PROJECT}/.smoke). Wiped at the start of the next
                      run (only if it is empty or was made by this script), kept afterwards for inspection
  --mode MODE         how the DAG runs:
                        scheduler  airflow scheduler + dag-processor + api-server (execution API) with the
                                   LocalExecutor; the DAG's limits (max_active_tis_per_dagrun, pool) apply
                                   (default)
                        executor   airflow dags test --use-executor + api-server: LocalExecutor, the limit
                                   is the executor's parallelism (dags test ignores the DAG's limits)
                        sequential plain airflow dags test: one task at a time, shards do not overlap
  --sequential        same as --mode sequential
  --parallel N        parallel limit (default 10): WORKTREE_PARALLEL_LIMIT and the executor's slots
  --metadata-db KIND  Airflow metadata database: auto (default), sqlite, postgres. auto uses a fresh
                      PostgreSQL database on 127.0.0.1:5432 when the server and the drivers (psycopg2,
                      asyncpg) are there, else SQLite in the smoke home (Airflow 3 runs the LocalExecutor
                      on SQLite)
  --pg-dsn DSN        PostgreSQL server for --metadata-db (default postgresql://postgres@127.0.0.1:5432/postgres)
  --keep-metadata-db  do not drop the PostgreSQL metadata database on exit
  --deferrable        run deferrable operators deferred (default_deferrable=True; starts a triggerer)
  --real-api          use the real Anthropic API (needs ANTHROPIC_API_KEY; costs money) instead of the
                      offline test double
  --latency S         seconds the offline server waits before each reply (default 0.3), so shards overlap
  --max-shards N      at most N shards (default 20)
  --conf JSON         extra DAG params merged into the run's conf, e.g. '{"verify_command": "python -m pytest -q"}'
  --timeout S         seconds the DAG run may take (default 900)
  --keep-going        run every phase and check even after a failure (default: stop at the first failed phase)
  --python PY         Python with Airflow and this package (default: python3 if it has them, else the venv)
  --venv DIR          venv to create or reuse when Python lacks Airflow (default: ${PROJECT}/.venv, like
                      scripts/test.sh)
  -h, --help          this help

Environment: NO_COLOR disables colour (so does output that is not a terminal); WORKTREE_MODEL_POOL names
a pool for the model calls (created with the parallel limit as its size).
EOF
}

REPO_ARG="" MODULES=30 SMOKE_HOME="${PROJECT}/.smoke" MODE="scheduler" PARALLEL=10 METADATA_DB="auto"
PG_DSN="postgresql://postgres@127.0.0.1:5432/postgres" KEEP_METADATA_DB=0 DEFERRABLE=0 REAL_API=0
LATENCY="0.3" MAX_SHARDS=20 EXTRA_CONF="" RUN_TIMEOUT=900 KEEP_GOING=0 PYTHON_ARG="" VENV_ARG=""

need_value() { [ "$#" -ge 2 ] && [ -n "$2" ] || { echo "smoke_run.sh: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    --repo) need_value "$@"; REPO_ARG="$2"; shift 2 ;;
    --modules) need_value "$@"; MODULES="$2"; shift 2 ;;
    --home) need_value "$@"; SMOKE_HOME="$2"; shift 2 ;;
    --mode) need_value "$@"; MODE="$2"; shift 2 ;;
    --sequential) MODE="sequential"; shift ;;
    --parallel) need_value "$@"; PARALLEL="$2"; shift 2 ;;
    --metadata-db) need_value "$@"; METADATA_DB="$2"; shift 2 ;;
    --pg-dsn) need_value "$@"; PG_DSN="$2"; shift 2 ;;
    --keep-metadata-db) KEEP_METADATA_DB=1; shift ;;
    --deferrable) DEFERRABLE=1; shift ;;
    --real-api) REAL_API=1; shift ;;
    --latency) need_value "$@"; LATENCY="$2"; shift 2 ;;
    --max-shards) need_value "$@"; MAX_SHARDS="$2"; shift 2 ;;
    --conf) need_value "$@"; EXTRA_CONF="$2"; shift 2 ;;
    --timeout) need_value "$@"; RUN_TIMEOUT="$2"; shift 2 ;;
    --keep-going) KEEP_GOING=1; shift ;;
    --python) need_value "$@"; PYTHON_ARG="$2"; shift 2 ;;
    --venv) need_value "$@"; VENV_ARG="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "smoke_run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$MODE" in scheduler|executor|sequential) ;; *) echo "smoke_run.sh: --mode must be scheduler, executor or sequential, got '$MODE'" >&2; exit 2 ;; esac
case "$METADATA_DB" in auto|sqlite|postgres) ;; *) echo "smoke_run.sh: --metadata-db must be auto, sqlite or postgres, got '$METADATA_DB'" >&2; exit 2 ;; esac
for pair in "--parallel:$PARALLEL" "--modules:$MODULES" "--max-shards:$MAX_SHARDS" "--timeout:$RUN_TIMEOUT"; do
  [[ "${pair#*:}" =~ ^[1-9][0-9]*$ ]] || { echo "smoke_run.sh: ${pair%%:*} must be a positive integer, got '${pair#*:}'" >&2; exit 2; }
done
[[ "$LATENCY" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "smoke_run.sh: --latency must be a number of seconds, got '$LATENCY'" >&2; exit 2; }

# ----------------------------------------------------------------------------------------------- output
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  C_GREEN=$'\033[0;32m' C_BLUE=$'\033[0;34m' C_YELLOW=$'\033[1;33m' C_RED=$'\033[0;31m' C_BOLD=$'\033[1m' C_OFF=$'\033[0m'
else
  C_GREEN="" C_BLUE="" C_YELLOW="" C_RED="" C_BOLD="" C_OFF=""
fi
FAILURES=0 WARNINGS=0
success() { printf '%s[SUCCESS]%s %s\n' "$C_GREEN" "$C_OFF" "$*"; }
info()    { printf '%s[INFO]%s %s\n' "$C_BLUE" "$C_OFF" "$*"; }
warning() { WARNINGS=$((WARNINGS + 1)); printf '%s[WARNING]%s %s\n' "$C_YELLOW" "$C_OFF" "$*"; }
error()   { FAILURES=$((FAILURES + 1)); printf '%s[ERROR]%s %s\n' "$C_RED" "$C_OFF" "$*"; }
indent()  { sed 's/^/    /'; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
T_START="$(now)"
PHASE_NAMES=() PHASE_TIMES=() PHASE_STATES=()
CUR_PHASE="" CUR_PHASE_START="" CUR_PHASE_FAILS=0
phase() {
  phase_end
  CUR_PHASE="$1" CUR_PHASE_START="$(now)" CUR_PHASE_FAILS=$FAILURES
  printf '\n%s==> %s%s\n' "$C_BOLD" "$1" "$C_OFF"
}
phase_end() {
  [ -n "$CUR_PHASE" ] || return 0
  local secs state="ok"
  secs="$(elapsed "$CUR_PHASE_START" "$(now)")"
  [ "$FAILURES" -gt "$CUR_PHASE_FAILS" ] && state="FAILED"
  PHASE_NAMES+=("$CUR_PHASE") PHASE_TIMES+=("$secs") PHASE_STATES+=("$state")
  info "$CUR_PHASE took ${secs}s"
  CUR_PHASE=""
}
# A failed phase stops the run unless --keep-going (the EXIT trap still cleans up and summarises).
stop_if_failed() {
  if [ "$FAILURES" -gt "$CUR_PHASE_FAILS" ] && [ "$KEEP_GOING" -eq 0 ]; then
    info "stopping after the failed phase '$CUR_PHASE' (--keep-going runs the remaining phases)"
    exit 1
  fi
}
die() { error "$*"; exit 1; }

# ----------------------------------------------------------------------------------------------- processes
# Every long-lived process runs in its own session (setsid), so it and everything it forks share a process
# group that cleanup can signal as a whole; descendants that made their own groups are found by parentage.
BG_PIDS=() BG_NAMES=()
start_bg() {  # start_bg NAME LOGFILE CMD...
  local name="$1" log="$2"; shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  BG_PIDS+=("$!") BG_NAMES+=("$name")
  LAST_BG_PID="$!"
}
descendants() {  # all descendants of PID (by parent pid), deepest last
  local pid="$1" child
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    echo "$child"; descendants "$child"
  done
}
# stop_all: TERM every started process group and its stray descendants at once, wait up to 20 s for them
# all, then KILL whatever is left, and reap.
STOPPED_NAMES=()
alive_pid() {  # running, not a zombie (our direct children stay zombies until reaped)
  local st
  st="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [ -n "$st" ] && [[ "$st" != Z* ]]
}
stop_all() {
  local pid p pids="" deadline alive leaders_gone_at=""
  for pid in "${BG_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    pids="$pids $pid $(descendants "$pid" | tr '\n' ' ')"
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  # Wait up to 20 s; once every started process has exited, its leftovers (e.g. LocalExecutor workers
  # whose parent is gone and that wait for a queue message) get 3 s more before KILL.
  deadline=$(( $(date +%s) + 20 ))
  while [ -n "$pids" ] && [ "$(date +%s)" -lt "$deadline" ]; do
    alive=0
    for p in $pids; do alive_pid "$p" && { alive=1; break; }; done
    [ "$alive" -eq 0 ] && break
    if [ -z "$leaders_gone_at" ]; then
      alive=0
      for pid in "${BG_PIDS[@]}"; do alive_pid "$pid" && { alive=1; break; }; done
      [ "$alive" -eq 0 ] && leaders_gone_at=$(date +%s) && deadline=$(( leaders_gone_at + 3 < deadline ? leaders_gone_at + 3 : deadline ))
    fi
    sleep 0.3
  done
  for p in $pids; do
    alive_pid "$p" && { kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; }
  done
  for pid in "${BG_PIDS[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  STOPPED_NAMES+=("${BG_NAMES[@]}")
  BG_PIDS=() BG_NAMES=()
}

PG_DB_CREATED=""
CLEANED_UP=0
cleanup() {
  local rc=$?
  [ "$CLEANED_UP" -eq 1 ] && return 0
  CLEANED_UP=1
  trap - EXIT INT TERM
  set +e
  if [ -n "$CUR_PHASE" ]; then
    [ "$rc" -ne 0 ] && [ "$FAILURES" -eq "$CUR_PHASE_FAILS" ] && FAILURES=$((FAILURES + 1))
    phase_end
  fi
  if [ "${#BG_PIDS[@]}" -gt 0 ]; then
    local names="${BG_NAMES[*]}"
    stop_all
    info "stopped the processes this run started: ${names// /, }"
  fi
  if [ -n "$PG_DB_CREATED" ] && [ "$KEEP_METADATA_DB" -eq 0 ]; then
    pg_admin drop "$PG_DB_CREATED" >/dev/null 2>&1 && info "dropped the PostgreSQL metadata database $PG_DB_CREATED" \
      || printf '%s[WARNING]%s could not drop PostgreSQL database %s\n' "$C_YELLOW" "$C_OFF" "$PG_DB_CREATED"
  fi
  summary "$rc"
}
on_signal() {
  printf '\n%s[WARNING]%s interrupted by %s during "%s": stopping everything this run started\n' \
    "$C_YELLOW" "$C_OFF" "$1" "${CUR_PHASE:-start-up}"
  FAILURES=$((FAILURES + 1))
  exit "$2"
}
trap cleanup EXIT
trap 'on_signal SIGINT 130' INT
trap 'on_signal SIGTERM 143' TERM

summary() {
  local rc="$1" i total
  total="$(elapsed "$T_START" "$(now)")"
  printf '\n%s==> Summary%s\n' "$C_BOLD" "$C_OFF"
  for i in "${!PHASE_NAMES[@]}"; do
    printf '    %-42s %8ss  %s\n' "${PHASE_NAMES[$i]}" "${PHASE_TIMES[$i]}" "${PHASE_STATES[$i]}"
  done
  printf '    %-42s %8ss\n' "total" "$total"
  if [ -n "${AIRFLOW_HOME:-}" ] && [ -d "${AIRFLOW_HOME}" ]; then
    info "smoke home kept for inspection: $AIRFLOW_HOME (wiped by the next run)"
  fi
  if [ "$rc" -eq 0 ] && [ "$FAILURES" -eq 0 ]; then
    printf '%s[SUCCESS]%s smoke run passed in %ss (%d warning(s))\n' "$C_GREEN" "$C_OFF" "$total" "$WARNINGS"
    exit 0
  fi
  printf '%s[ERROR]%s smoke run FAILED (%d failed check(s), %d warning(s)) after %ss\n' \
    "$C_RED" "$C_OFF" "$FAILURES" "$WARNINGS" "$total"
  [ "$rc" -eq 0 ] && rc=1
  exit "$rc"
}

# ----------------------------------------------------------------------------------------------- helpers
version_ge() {  # version_ge HAVE NEED  (dotted numbers)
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}
# sql DB QUERY: rows as a|b|c, through the sqlite3 CLI when present, else Python's sqlite3 module.
sql() {
  if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 -bail -batch "$1" "$2"
  else
    "$PY" - "$1" "$2" <<'PYEOF'
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for row in con.execute(sys.argv[2]):
    print("|".join("" if v is None else str(v) for v in row))
PYEOF
  fi
}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
wait_http() {  # wait_http URL SECONDS PID: until URL answers 200, the process dies, or time runs out
  local url="$1" secs="$2" pid="$3" deadline
  deadline=$(( $(date +%s) + secs ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || return 2
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}
# pg_admin create|drop|check NAME: manage a database on the --pg-dsn server with psycopg2.
pg_admin() {
  "$PY" - "$PG_DSN" "$1" "${2:-}" <<'PYEOF'
import sys
import psycopg2
dsn, action, name = sys.argv[1:4]
con = psycopg2.connect(dsn, connect_timeout=3)
con.autocommit = True
with con.cursor() as cur:
    if action == "create":
        cur.execute(f'CREATE DATABASE "{name}"')
    elif action == "drop":
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
con.close()
PYEOF
}
af() { "${AIRFLOW[@]}" "$@"; }
awt() { "${AIRFLOW_WORKTREE[@]}" "$@"; }
log_tail() { [ -f "$1" ] && tail -n "${2:-25}" "$1" | indent; return 0; }

# The run's shard counts, e.g. "completed=12 running=3"
shard_counts() {
  [ -f "$SHARD_DB" ] || { echo "no shards registered yet"; return 0; }
  sql "$SHARD_DB" "SELECT status || '=' || COUNT(*) FROM shard_status GROUP BY status ORDER BY status;" 2>/dev/null \
    | tr '\n' ' ' || echo "shard database not readable yet"
}
# wait_run PID LABEL: wait for a background DAG run process, printing progress; 0 when it exited 0.
wait_run() {
  local pid="$1" label="$2" deadline last=0 rc
  deadline=$(( $(date +%s) + RUN_TIMEOUT ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      error "$label did not finish within ${RUN_TIMEOUT}s (--timeout); shards: $(shard_counts)"
      return 1
    fi
    if [ $(( $(date +%s) - last )) -ge 10 ]; then
      last=$(date +%s)
      info "$label: $(shard_counts)"
    fi
    sleep 1
  done
  wait "$pid" && rc=0 || rc=$?
  return "$rc"
}

# =============================================================================================== pre-flight
phase "Pre-flight checks"
cd "$PROJECT"
info "project: $PROJECT"

# Python: the one given, else python3 if it has Airflow and this package, else the project's venv.
BASE_PY="${PYTHON_ARG:-${PYTHON:-$(command -v python3 || command -v python || true)}}"
[ -n "$BASE_PY" ] || die "Python is not installed: install Python >= 3.11 (python3 on PATH) or pass --python"
py_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null; }
BASE_VER="$(py_version "$BASE_PY")" || die "cannot run $BASE_PY: pass a working interpreter with --python"
version_ge "$BASE_VER" "3.11" || die "Python $BASE_VER at $BASE_PY is too old: this package needs Python >= 3.11"
has_packages() { "$1" -c 'import airflow, airflow_provider_worktree, anthropic' >/dev/null 2>&1; }
if has_packages "$BASE_PY"; then
  PY="$BASE_PY"
  info "using $PY: Airflow and airflow-provider-worktree are importable there"
else
  VENV="${VENV_ARG:-${VENV:-$PROJECT/.venv}}"
  info "Airflow or this package is not importable in $BASE_PY: using the venv $VENV"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1
  if [ ! -x "$VENV/bin/python" ]; then
    info "creating venv $VENV (as scripts/test.sh does)"
    "$BASE_PY" -m venv "$VENV" || die "could not create the venv $VENV with $BASE_PY (on Debian/Ubuntu: apt-get install python3-venv)"
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  fi
  if ! has_packages "$VENV/bin/python"; then
    info "installing airflow-provider-worktree[test] into $VENV (pip install -e '.[test]', a few minutes the first time)"
    "$VENV/bin/python" -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" | indent || true
  fi
  has_packages "$VENV/bin/python" \
    || die "Airflow is not installed: pip install -e '.[test]' into $VENV failed (see the pip output above)"
  PY="$VENV/bin/python"
fi
PY_VER="$(py_version "$PY")"
version_ge "$PY_VER" "3.11" || die "Python $PY_VER at $PY is too old: this package needs Python >= 3.11"
success "Python $PY_VER ($PY)"

command -v git >/dev/null 2>&1 || die "git is not installed: install git >= 2.20 (worktree support)"
GIT_VER="$(git --version | awk '{print $3}')"
version_ge "$GIT_VER" "2.20" || die "git $GIT_VER is too old: worktrees need git >= 2.20"
success "git $GIT_VER"

BIN="$(dirname "$PY")"
if [ -x "$BIN/airflow" ]; then AIRFLOW=("$BIN/airflow"); else AIRFLOW=("$PY" -m airflow); fi
if [ -x "$BIN/airflow-worktree" ]; then AIRFLOW_WORKTREE=("$BIN/airflow-worktree"); else AIRFLOW_WORKTREE=("$PY" -m airflow_provider_worktree.cli); fi
export PATH="$BIN:$PATH"
AF_VER="$("$PY" -c 'import airflow; print(airflow.__version__)')"
PKG_VER="$("$PY" -c 'import airflow_provider_worktree as p; print(p.__version__)' 2>/dev/null || echo '?')"
version_ge "$AF_VER" "3.0" || die "Airflow $AF_VER is installed but this provider needs Airflow 3: pip install -e '.[test]'"
success "Apache Airflow $AF_VER, airflow-provider-worktree $PKG_VER"
[ -f "$PROJECT/airflow_provider_worktree/example_dags/$DAG_ID.py" ] || die "DAG file not found: $PROJECT/airflow_provider_worktree/example_dags/$DAG_ID.py (run from a checkout of the project)"
if command -v sqlite3 >/dev/null 2>&1; then
  success "sqlite3 $(sqlite3 --version | awk '{print $1}') for the shard database queries"
else
  warning "the sqlite3 CLI is not installed: verification uses Python's sqlite3 (apt-get install sqlite3 for the runbook's queries)"
fi
if [ "$REAL_API" -eq 1 ]; then
  [ -n "${ANTHROPIC_API_KEY:-}" ] || die "--real-api needs ANTHROPIC_API_KEY in the environment"
  warning "--real-api: the run calls the real Anthropic API with your key and is billed"
fi
stop_if_failed

# =============================================================================================== home
phase "Isolated AIRFLOW_HOME"
mkdir -p "$(dirname "$SMOKE_HOME")"
SMOKE_HOME="$(cd "$(dirname "$SMOKE_HOME")" && pwd)/$(basename "$SMOKE_HOME")"
MARKER="$SMOKE_HOME/.smoke-home"
if [ -e "$SMOKE_HOME" ]; then
  if [ -f "$MARKER" ]; then
    OLD_PG_DB="$(cat "$SMOKE_HOME/.smoke-pg-db" 2>/dev/null || true)"
    if [ -n "$OLD_PG_DB" ]; then  # a previous run kept its metadata database (--keep-metadata-db)
      pg_admin drop "$OLD_PG_DB" >/dev/null 2>&1 && info "dropped the previous run's PostgreSQL database $OLD_PG_DB" || true
    fi
    rm -rf "$SMOKE_HOME" || die "cannot wipe the previous smoke home $SMOKE_HOME"
    info "wiped the previous smoke home $SMOKE_HOME"
  elif [ -d "$SMOKE_HOME" ] && [ -z "$(ls -A "$SMOKE_HOME")" ]; then
    :
  else
    die "$SMOKE_HOME exists and was not made by smoke_run.sh: choose another --home (it is wiped at the next run)"
  fi
fi
mkdir -p "$SMOKE_HOME/logs/smoke" "$SMOKE_HOME/dags"
printf 'made by scripts/smoke_run.sh on %s; wiped by the next run\n' "$(date -u +%FT%TZ)" >"$MARKER"
SLOG="$SMOKE_HOME/logs/smoke"

# Nothing from the caller's Airflow environment may leak in (a production database, connections...).
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AIRFLOW__|AIRFLOW_CONN_|AIRFLOW_VAR_)' || true)
unset WORKTREE_REPO AIRFLOW_CONFIG 2>/dev/null || true
export AIRFLOW_HOME="$SMOKE_HOME"
export AIRFLOW__CORE__DAGS_FOLDER="$PROJECT/airflow_provider_worktree/example_dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL=1
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.2
export AIRFLOW__API_AUTH__JWT_SECRET="$("$PY" -c 'import secrets; print(secrets.token_hex(48))')"
export AIRFLOW__LOGGING__LOGGING_LEVEL="${SMOKE_LOG_LEVEL:-INFO}"
if [ "$MODE" = "executor" ]; then
  export AIRFLOW__CORE__PARALLELISM="$PARALLEL"        # dags test --use-executor: the only limit that applies
else
  export AIRFLOW__CORE__PARALLELISM=$((PARALLEL + 4))  # the DAG's max_active_tis_per_dagrun is the limit
fi
if [ "$DEFERRABLE" -eq 1 ]; then export AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True; fi
export WORKTREE_PARALLEL_LIMIT="$PARALLEL"
export GIT_TERMINAL_PROMPT=0
SHARD_DB="$AIRFLOW_HOME/shard_status.db"
success "AIRFLOW_HOME=$AIRFLOW_HOME, DAGs from $AIRFLOW__CORE__DAGS_FOLDER, LocalExecutor, parallelism $AIRFLOW__CORE__PARALLELISM"

# Metadata database: PostgreSQL when it is there (and the drivers are), else SQLite in the home.
pg_usable() {
  "$PY" -c 'import psycopg2, asyncpg' >/dev/null 2>&1 || { PG_WHY="the drivers psycopg2 and asyncpg are not both installed (pip install 'apache-airflow[postgres]')"; return 1; }
  pg_admin check >/dev/null 2>&1 || { PG_WHY="no PostgreSQL server answers at ${PG_DSN%%\?*}"; return 1; }
}
PG_WHY=""
DB_KIND="sqlite"
if [ "$METADATA_DB" = "postgres" ]; then
  pg_usable || die "--metadata-db postgres: $PG_WHY"
  DB_KIND="postgres"
elif [ "$METADATA_DB" = "auto" ] && [ "$MODE" != "sequential" ]; then
  if pg_usable; then DB_KIND="postgres"; else info "metadata database: SQLite, because $PG_WHY"; fi
fi
if [ "$DB_KIND" = "postgres" ]; then
  PG_DB_NAME="wt_smoke_$(date +%Y%m%d%H%M%S)_$$"
  pg_admin create "$PG_DB_NAME" || die "could not create the PostgreSQL database $PG_DB_NAME at ${PG_DSN}"
  PG_DB_CREATED="$PG_DB_NAME"
  [ "$KEEP_METADATA_DB" -eq 1 ] && echo "$PG_DB_NAME" >"$SMOKE_HOME/.smoke-pg-db"
  BASE_DSN="${PG_DSN%/*}"
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${BASE_DSN/postgresql:/postgresql+psycopg2:}/$PG_DB_NAME"
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC="${BASE_DSN/postgresql:/postgresql+asyncpg:}/$PG_DB_NAME"
  success "metadata database: PostgreSQL database $PG_DB_NAME (fresh for this run)"
else
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
  success "metadata database: SQLite $AIRFLOW_HOME/airflow.db"
fi

# env.sh: source it to point the airflow and airflow-worktree commands at this run afterwards.
{
  echo "# Source this file to inspect the smoke run: . $SMOKE_HOME/env.sh"
  printf 'export AIRFLOW_HOME=%q\n' "$AIRFLOW_HOME"
  printf 'export AIRFLOW__CORE__DAGS_FOLDER=%q\n' "$AIRFLOW__CORE__DAGS_FOLDER"
  echo "export AIRFLOW__CORE__LOAD_EXAMPLES=False"
  if [ "$DB_KIND" = "sqlite" ] || [ "$KEEP_METADATA_DB" -eq 1 ]; then
    printf 'export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=%q\n' "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
  else
    echo "# the PostgreSQL metadata database was dropped at exit (--keep-metadata-db keeps it)"
  fi
  printf 'export PATH=%q:"$PATH"\n' "$BIN"
} >"$SMOKE_HOME/env.sh"

T0="$(now)"
if af db migrate >"$SLOG/db_migrate.log" 2>&1; then
  success "airflow db migrate ($(elapsed "$T0" "$(now)")s)"
else
  error "airflow db migrate failed: see $SLOG/db_migrate.log"; log_tail "$SLOG/db_migrate.log"
fi
stop_if_failed

# =============================================================================================== DAG registered
phase "DAG registration"
if af dags reserialize >"$SLOG/dags_reserialize.log" 2>&1; then
  success "DAG files parsed into the metadata database (airflow dags reserialize)"
else
  error "airflow dags reserialize failed: see $SLOG/dags_reserialize.log"; log_tail "$SLOG/dags_reserialize.log"
fi
IMPORT_ERRORS="$(af dags list-import-errors -o json 2>"$SLOG/import_errors.err" || true)"
# (the CLI prints log lines on stdout too: the JSON document is the last line that starts with '[')
import_errors_json() {
  "$PY" -c 'import json, sys
lines = [l for l in sys.stdin.read().splitlines() if l.startswith("[")]
errors = json.loads(lines[-1]) if lines else []
for e in errors:
    print(e.get("filepath", "?") if isinstance(e, dict) else e)
    print(e.get("error", "") if isinstance(e, dict) else "")
sys.exit(1 if errors else 0)'
}
if printf '%s\n' "$IMPORT_ERRORS" | import_errors_json >/dev/null 2>&1; then
  success "no DAG import errors (airflow dags list-import-errors)"
else
  error "DAG import errors (airflow dags list-import-errors):"
  printf '%s\n' "$IMPORT_ERRORS" | import_errors_json 2>&1 | head -n 40 | indent || true
  log_tail "$SLOG/import_errors.err" 10
fi
# (captured first: grep -q closing the pipe early would fail the pipeline under pipefail)
DAGS_LIST="$(af dags list -o plain 2>/dev/null || true)"
if grep -q "^$DAG_ID[[:space:]]" <<<"$DAGS_LIST"; then
  success "DAG $DAG_ID is registered (airflow dags list)"
else
  error "DAG $DAG_ID is not registered: check 'python airflow_provider_worktree/example_dags/$DAG_ID.py' for errors"
fi
if [ -n "${WORKTREE_MODEL_POOL:-}" ] && [ "$WORKTREE_MODEL_POOL" != "default_pool" ]; then
  if af pools set "$WORKTREE_MODEL_POOL" "$PARALLEL" "Claude model calls (smoke run)" >"$SLOG/pool.log" 2>&1; then
    success "pool $WORKTREE_MODEL_POOL with $PARALLEL slots"
  else
    error "could not create pool $WORKTREE_MODEL_POOL: see $SLOG/pool.log"
  fi
fi
stop_if_failed

# =============================================================================================== repository
phase "Repository clone"
if [ -n "$REPO_ARG" ]; then
  if [ -d "$REPO_ARG" ]; then
    SOURCE_REPO="$(git -C "$REPO_ARG" rev-parse --show-toplevel 2>/dev/null)" \
      || die "--repo $REPO_ARG is not inside a git repository"
    info "source repository: $SOURCE_REPO (yours; it is cloned, not changed)"
    [ -z "$(GIT_OPTIONAL_LOCKS=0 git -C "$SOURCE_REPO" status --porcelain 2>/dev/null | head -n1)" ] \
      || warning "$SOURCE_REPO has uncommitted changes: the run works on its committed HEAD only"
  else
    SOURCE_REPO="$REPO_ARG"
    info "source repository: $SOURCE_REPO (a URL; cloned)"
  fi
else
  T0="$(now)"
  SOURCE_REPO="$("$PY" "$PROJECT/scripts/demo_repo.py" --dest "$SMOKE_HOME/demo-source" --modules "$MODULES")" \
    || die "scripts/demo_repo.py failed to generate the demo repository"
  success "demo repository with $MODULES modules generated at $SOURCE_REPO ($(elapsed "$T0" "$(now)")s)"
fi
# Fingerprint of the source: HEAD, status, every ref, worktrees, stashes (read-only git calls).
fingerprint() {
  [ -d "$1" ] || { echo "remote"; return 0; }
  export GIT_OPTIONAL_LOCKS=0
  git -C "$1" rev-parse HEAD 2>/dev/null || true
  git -C "$1" symbolic-ref -q HEAD 2>/dev/null || true
  git -C "$1" status --porcelain=v1 --untracked-files=all 2>/dev/null || true
  git -C "$1" for-each-ref --format='%(refname) %(objectname)' 2>/dev/null || true
  git -C "$1" worktree list --porcelain 2>/dev/null || true
  git -C "$1" stash list 2>/dev/null || true
  unset GIT_OPTIONAL_LOCKS
}
fingerprint "$SOURCE_REPO" >"$SLOG/source_before.txt"
CLONE="$SMOKE_HOME/repo"
if git clone --no-local -q -- "$SOURCE_REPO" "$CLONE" 2>"$SLOG/clone.log"; then
  success "cloned into $CLONE (git clone --no-local: the run never touches the source)"
else
  error "git clone of $SOURCE_REPO failed:"; log_tail "$SLOG/clone.log"
fi
BASE_HEAD="$(git -C "$CLONE" rev-parse HEAD 2>/dev/null || true)"
stop_if_failed

# =============================================================================================== model API
phase "Model API"
if [ "$REAL_API" -eq 1 ]; then
  export AIRFLOW_CONN_ANTHROPIC_DEFAULT
  AIRFLOW_CONN_ANTHROPIC_DEFAULT="$("$PY" -c 'import json, os; print(json.dumps({"conn_type": "anthropic", "password": os.environ["ANTHROPIC_API_KEY"]}))')"
  success "connection anthropic_default: the real Anthropic API (key from ANTHROPIC_API_KEY)"
else
  PORT_FILE="$SLOG/offline_api.port"
  start_bg "offline-api" "$SLOG/offline_api.log" "$PY" -m airflow_provider_worktree.testing --port 0 --port-file "$PORT_FILE" --latency "$LATENCY"
  API_SERVER_PID="$LAST_BG_PID"
  for _ in $(seq 100); do [ -s "$PORT_FILE" ] && break; kill -0 "$API_SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  if [ -s "$PORT_FILE" ]; then
    OFFLINE_URL="http://127.0.0.1:$(tr -d '[:space:]' <"$PORT_FILE")"
    export AIRFLOW_CONN_ANTHROPIC_DEFAULT
    AIRFLOW_CONN_ANTHROPIC_DEFAULT="$("$PY" -c 'import json, sys; print(json.dumps({"conn_type": "anthropic", "host": sys.argv[1], "password": "sk-offline-test-double-not-a-key"}))' "$OFFLINE_URL")"
    success "offline Messages API test double at $OFFLINE_URL (latency ${LATENCY}s; NOT Claude), connection anthropic_default points at it"
  else
    error "the offline Messages API server did not start:"; log_tail "$SLOG/offline_api.log"
  fi
fi
stop_if_failed

# =============================================================================================== DAG run
phase "DAG run ($MODE, parallel limit $PARALLEL)"
CONF="$("$PY" - "$CLONE" "$MAX_SHARDS" "$PARALLEL" "$EXTRA_CONF" <<'PYEOF'
import json, sys
repo, max_shards, parallel, extra = sys.argv[1:5]
conf = {"repo": repo, "task": "todo", "max_files_per_shard": 2, "max_shards": int(max_shards),
        "parallel_limit": int(parallel)}
if extra:
    try:
        more = json.loads(extra)
    except ValueError as exc:
        sys.exit(f"--conf is not valid JSON: {exc}")
    if not isinstance(more, dict):
        sys.exit("--conf must be a JSON object")
    conf.update(more)
print(json.dumps(conf))
PYEOF
)" || die "could not build the run's conf"
info "conf: $CONF"

start_api_server() {
  API_PORT="$(free_port)"
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$API_PORT/execution/"
  start_bg "api-server" "$SLOG/api_server.log" "${AIRFLOW[@]}" api-server --apps execution -H 127.0.0.1 -p "$API_PORT" -w 1
  local pid="$LAST_BG_PID" rc=0
  wait_http "http://127.0.0.1:$API_PORT/execution/health" 120 "$pid" || rc=$?
  if [ "$rc" -eq 0 ]; then
    success "airflow api-server (execution API for the task SDK) on 127.0.0.1:$API_PORT"
  else
    error "airflow api-server did not become healthy ($([ "$rc" -eq 2 ] && echo exited || echo timeout)): see $SLOG/api_server.log"
    log_tail "$SLOG/api_server.log"
    return 1
  fi
}

RUN_OK=0 RUN_ID=""
T_RUN="$(now)"
case "$MODE" in
  sequential)
    warning "sequential mode: airflow dags test runs the mapped shards one at a time, so they will not overlap"
    start_bg "dags-test" "$SLOG/dag_run.log" "${AIRFLOW[@]}" dags test "$DAG_ID" -c "$CONF"
    wait_run "$LAST_BG_PID" "airflow dags test" && RUN_OK=1 || true
    ;;
  executor)
    if start_api_server; then
      if [ "$DEFERRABLE" -eq 1 ]; then
        start_bg "triggerer" "$SLOG/triggerer.log" "${AIRFLOW[@]}" triggerer
        success "airflow triggerer started (deferred tasks)"
      fi
      info "airflow dags test --use-executor: LocalExecutor with $PARALLEL slots (dags test ignores the DAG's own limits)"
      start_bg "dags-test" "$SLOG/dag_run.log" "${AIRFLOW[@]}" dags test "$DAG_ID" -c "$CONF" --use-executor
      wait_run "$LAST_BG_PID" "airflow dags test --use-executor" && RUN_OK=1 || true
    fi
    ;;
  scheduler)
    if start_api_server; then
      start_bg "scheduler" "$SLOG/scheduler.log" "${AIRFLOW[@]}" scheduler
      start_bg "dag-processor" "$SLOG/dag_processor.log" "${AIRFLOW[@]}" dag-processor
      if [ "$DEFERRABLE" -eq 1 ]; then
        start_bg "triggerer" "$SLOG/triggerer.log" "${AIRFLOW[@]}" triggerer
      fi
      success "airflow scheduler$([ "$DEFERRABLE" -eq 1 ] && echo ", triggerer") and dag-processor started"
      af dags unpause "$DAG_ID" >"$SLOG/unpause.log" 2>&1 || error "airflow dags unpause $DAG_ID failed: see $SLOG/unpause.log"
      if TRIGGER_OUT="$(af dags trigger "$DAG_ID" -c "$CONF" -o json 2>"$SLOG/trigger.err")"; then
        RUN_ID="$(printf '%s' "$TRIGGER_OUT" | "$PY" -c 'import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[0]["dag_run_id"])' 2>/dev/null || true)"
      fi
      if [ -z "$RUN_ID" ]; then
        error "airflow dags trigger $DAG_ID failed:"; log_tail "$SLOG/trigger.err"
      else
        success "triggered run $RUN_ID"
        # Poll the metadata database with one long-lived Python (an airflow CLI call costs seconds).
        cat >"$SLOG/run_watcher.py" <<'PYEOF'
import sys, time
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
dag_id, run_id = sys.argv[1:3]
while True:
    with create_session() as session:
        dr = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        state = str(dr.state) if dr is not None else "missing"
    if state in ("success", "DagRunState.SUCCESS"):
        print("run state: success", flush=True); sys.exit(0)
    if state in ("failed", "DagRunState.FAILED"):
        print("run state: failed", flush=True); sys.exit(1)
    time.sleep(1)
PYEOF
        start_bg "run-watcher" "$SLOG/run_watcher.log" "$PY" "$SLOG/run_watcher.py" "$DAG_ID" "$RUN_ID"
        wait_run "$LAST_BG_PID" "scheduler run" && RUN_OK=1 || true
      fi
    fi
    ;;
esac
RUN_SECS="$(elapsed "$T_RUN" "$(now)")"
# The run id: from the trigger, else the newest run in the metadata database.
if [ -z "$RUN_ID" ]; then
  RUN_ID="$("$PY" - "$DAG_ID" 2>/dev/null <<'PYEOF' || true
import sys
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
with create_session() as session:
    dr = session.query(DagRun).filter(DagRun.dag_id == sys.argv[1]).order_by(DagRun.id.desc()).first()
    print(dr.run_id if dr else "")
PYEOF
)"
fi
# Task instances of the run: state and tries (a retried task is worth a warning even when it succeeded).
TI_REPORT="$SLOG/task_instances.txt"
"$PY" - "$DAG_ID" "$RUN_ID" >"$TI_REPORT" 2>&1 <<'PYEOF' || true
import sys
from airflow.models.taskinstance import TaskInstance as TI
from airflow.utils.session import create_session
dag_id, run_id = sys.argv[1:3]
with create_session() as session:
    for ti in session.query(TI).filter(TI.dag_id == dag_id, TI.run_id == run_id).order_by(TI.task_id, TI.map_index):
        print(f"{ti.task_id}|{ti.map_index}|{ti.state}|{ti.try_number}")
PYEOF
if [ "$RUN_OK" -eq 1 ]; then
  success "DAG run $RUN_ID succeeded in ${RUN_SECS}s"
else
  error "DAG run ${RUN_ID:-?} did not succeed (${RUN_SECS}s); the run's log: $SLOG/dag_run.log"
  [ -f "$SLOG/dag_run.log" ] && grep -a -E "Traceback|Error|error" "$SLOG/dag_run.log" | tail -n 3 | cut -c1-300 | indent || true
fi
if [ -s "$TI_REPORT" ] && grep -q '|' "$TI_REPORT"; then
  info "task instances: $(awk -F'|' '{print $3}' "$TI_REPORT" | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}' | sed 's/, $//')"
  bad="$(awk -F'|' '$3 != "success" && $3 != "TaskInstanceState.SUCCESS"' "$TI_REPORT")"
  if [ -n "$bad" ]; then
    error "task instances not successful; the error of each one's last attempt:"
    # One line per task instance: its last attempt's exception (from the JSON task log) and the log path.
    "$PY" - "$AIRFLOW_HOME/logs/dag_id=$DAG_ID" "$RUN_ID" "$bad" <<'PYEOF' 2>&1 | indent || true
import json, sys
from pathlib import Path
root, run_id, bad = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for line in bad.splitlines():
    task, idx, state, tries = line.split("|")
    sub = Path(f"task_id={task}") / (f"map_index={idx}" if idx != "-1" else "")
    logs = sorted((root / f"run_id={run_id}" / sub).glob("attempt=*.log"),
                  key=lambda p: int(p.stem.split("=")[1]))
    what = "no log"
    if logs:
        what = "no error in the log"
        for raw in logs[-1].read_text(errors="replace").splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            for d in rec.get("error_detail") or []:
                what = f"{d.get('exc_type')}: {d.get('exc_value')}"
    label = task if idx == "-1" else f"{task}[{idx}]"
    print(f"{label} {state} after {tries} tr{'y' if tries == '1' else 'ies'}: {what[:300]}")
    if logs:
        print(f"    {logs[-1]}")
PYEOF
  fi
  retried="$(awk -F'|' '$4 > 1 {print $1 "[" $2 "] try " $4}' "$TI_REPORT" | tr '\n' ' ')"
  [ -z "$retried" ] || warning "task instances that needed a retry: $retried"
fi
stop_if_failed

# =============================================================================================== verification
phase "Post-run verification"
RUN_SQL="$(printf '%s' "$RUN_ID" | sed "s/'/''/g")"
if [ ! -f "$SHARD_DB" ]; then
  error "no shard database at $SHARD_DB: the plan task never registered shards"
else
  TOTAL="$(sql "$SHARD_DB" "SELECT COUNT(*) FROM shard_status WHERE run_id = '$RUN_SQL';")"
  DONE="$(sql "$SHARD_DB" "SELECT COUNT(*) FROM shard_status WHERE run_id = '$RUN_SQL' AND status = 'completed';")"
  info "shard database $SHARD_DB: $(shard_counts)"
  if [ "$TOTAL" -ge 1 ] && [ "$DONE" -eq "$TOTAL" ]; then
    success "all $TOTAL shards completed"
  else
    error "$DONE of $TOTAL shards completed; the others:"
    sql "$SHARD_DB" "SELECT shard_id, status, error_message FROM shard_status WHERE run_id = '$RUN_SQL' AND status != 'completed';" | cut -c1-300 | indent
  fi
  if [ "$TOTAL" -lt "$PARALLEL" ]; then
    warning "only $TOTAL shards for a parallel limit of $PARALLEL: not enough to fill every slot"
  fi

  # Branches and commits recorded for each completed shard exist in the clone, and the branch is there.
  BAD_REFS=0 NO_COMMIT=0 CHECKED=0
  while IFS='|' read -r shard branch commit; do
    [ -n "$shard" ] || continue
    if [ -z "$commit" ]; then NO_COMMIT=$((NO_COMMIT + 1)); continue; fi
    CHECKED=$((CHECKED + 1))
    if ! git -C "$CLONE" rev-parse --verify -q "$commit^{commit}" >/dev/null; then
      error "shard $shard: commit $commit is not in the clone"; BAD_REFS=$((BAD_REFS + 1))
    elif ! tip="$(git -C "$CLONE" rev-parse --verify -q "refs/heads/$branch")"; then
      error "shard $shard: branch $branch is not in the clone"; BAD_REFS=$((BAD_REFS + 1))
    elif [ "$tip" != "$commit" ] && ! git -C "$CLONE" merge-base --is-ancestor "$commit" "$tip"; then
      error "shard $shard: commit $commit is not on branch $branch ($tip)"; BAD_REFS=$((BAD_REFS + 1))
    elif [ -n "$BASE_HEAD" ] && ! git -C "$CLONE" merge-base --is-ancestor "$BASE_HEAD" "$commit"; then
      error "shard $shard: commit $commit does not descend from the base $BASE_HEAD"; BAD_REFS=$((BAD_REFS + 1))
    fi
  done < <(sql "$SHARD_DB" "SELECT shard_id, COALESCE(branch, ''), COALESCE(commit_sha, '') FROM shard_status WHERE run_id = '$RUN_SQL' AND status = 'completed' ORDER BY shard_id;")
  if [ "$CHECKED" -gt 0 ] && [ "$BAD_REFS" -eq 0 ]; then
    success "every recorded branch and commit exists in the clone ($CHECKED checked with git rev-parse --verify)"
  elif [ "$CHECKED" -eq 0 ] && [ "$BAD_REFS" -eq 0 ] && [ "$DONE" -gt 0 ]; then
    error "no completed shard recorded a commit"
  fi
  [ "$NO_COMMIT" -eq 0 ] || warning "$NO_COMMIT completed shard(s) changed nothing and recorded no commit"
  BRANCHES="$(git -C "$CLONE" for-each-ref --format='%(refname:short)' refs/heads/worktree/ | wc -l | tr -d ' ')"
  info "the clone has $BRANCHES shard branch(es) under refs/heads/worktree/"

  # Overlap: the largest number of shards running at the same instant (from started_at/completed_at).
  OVERLAP="$(sql "$SHARD_DB" "SELECT COALESCE(MAX(c), 0) FROM (SELECT (SELECT COUNT(*) FROM shard_status b WHERE b.run_id = a.run_id AND b.started_at <= a.started_at AND b.completed_at > a.started_at) AS c FROM shard_status a WHERE a.run_id = '$RUN_SQL' AND a.started_at IS NOT NULL);")"
  SPAN="$(sql "$SHARD_DB" "SELECT printf('%.1f', (JULIANDAY(MAX(completed_at)) - JULIANDAY(MIN(started_at))) * 86400), printf('%.1f', SUM(JULIANDAY(completed_at) - JULIANDAY(started_at)) * 86400) FROM shard_status WHERE run_id = '$RUN_SQL';")"
  WALL="${SPAN%%|*}" BUSY="${SPAN##*|}"
  EXPECT=$(( TOTAL < PARALLEL ? TOTAL : PARALLEL ))
  if [ "$MODE" = "sequential" ]; then
    if [ "${OVERLAP:-0}" -ge 2 ]; then success "shards overlapped: up to $OVERLAP at once"
    else warning "shards did not overlap (max $OVERLAP at once): sequential mode runs one task at a time"; fi
  elif [ "${OVERLAP:-0}" -ge 2 ]; then
    success "shards ran in parallel: up to $OVERLAP at once (limit $PARALLEL); ${BUSY}s of shard work in ${WALL}s"
    [ "$OVERLAP" -le "$PARALLEL" ] || error "more shards ran at once ($OVERLAP) than the parallel limit $PARALLEL"
    [ "$OVERLAP" -ge $(( (EXPECT + 1) / 2 )) ] || warning "less overlap than expected (up to $OVERLAP of $EXPECT): the machine may be short of CPU"
  else
    error "shards did not overlap in time (max $OVERLAP at once): parallel execution is not working"
  fi
fi

# The source repository (the user's checkout, or the demo source) must be exactly as before.
fingerprint "$SOURCE_REPO" >"$SLOG/source_after.txt"
if cmp -s "$SLOG/source_before.txt" "$SLOG/source_after.txt"; then
  success "the source repository is untouched (HEAD, status, branches, worktrees, stashes): $SOURCE_REPO"
else
  error "the source repository changed during the run:"; diff "$SLOG/source_before.txt" "$SLOG/source_after.txt" | head -n 20 | indent || true
fi

# No worktree left: git knows only the main one and the worktree root holds nothing.
WT_COUNT="$(git -C "$CLONE" worktree list --porcelain | grep -c '^worktree ' || true)"
WT_ROOT="$AIRFLOW_HOME/worktrees"
LEFT=""
[ -d "$WT_ROOT" ] && LEFT="$(find "$WT_ROOT" -mindepth 1 -maxdepth 2 -not -name '.*' 2>/dev/null | head -n 10)"
if [ "$WT_COUNT" -eq 1 ] && [ -z "$LEFT" ]; then
  success "no worktree left: git worktree list shows only the clone, $WT_ROOT is empty"
else
  error "worktrees left behind (git worktree list: $WT_COUNT entries):"
  git -C "$CLONE" worktree list | indent; [ -z "$LEFT" ] || printf '%s\n' "$LEFT" | indent
fi

# The package's own view: status and report through airflow-worktree, and the DAG's Markdown report.
if [ -f "$SHARD_DB" ]; then
  STATUS_RC=0
  awt status --db "$SHARD_DB" --run-id "$RUN_ID" >"$SLOG/awt_status.txt" 2>&1 || STATUS_RC=$?
  if [ "$STATUS_RC" -eq 0 ]; then
    success "airflow-worktree status --db $SHARD_DB: no threshold crossed"
  elif [ "$STATUS_RC" -eq 1 ]; then
    warning "airflow-worktree status: a warning threshold is crossed"
  else
    error "airflow-worktree status exited $STATUS_RC"
  fi
  indent <"$SLOG/awt_status.txt"
  if awt report --db "$SHARD_DB" --run-id "$RUN_ID" >"$SLOG/awt_report.txt" 2>&1; then
    success "airflow-worktree report --db $SHARD_DB --run-id '$RUN_ID':"
    head -n 40 "$SLOG/awt_report.txt" | indent
  else
    error "airflow-worktree report failed:"; log_tail "$SLOG/awt_report.txt"
  fi
fi
REPORT_MD="$(ls -t "$AIRFLOW_HOME"/reports/*.md 2>/dev/null | head -n1 || true)"
if [ -n "$REPORT_MD" ]; then
  success "the DAG's report: $REPORT_MD"
  head -n 12 "$REPORT_MD" | indent
else
  error "the DAG's report task wrote no Markdown report under $AIRFLOW_HOME/reports"
fi

phase_end
printf '\n%s==> Inspect this run%s\n' "$C_BOLD" "$C_OFF"
cat <<EOF | indent
. $AIRFLOW_HOME/env.sh    # AIRFLOW_HOME, DAGs folder, metadata database, PATH of this run
airflow-worktree status --db \$AIRFLOW_HOME/shard_status.db
airflow-worktree report --db \$AIRFLOW_HOME/shard_status.db --run-id '$RUN_ID'
sqlite3 \$AIRFLOW_HOME/shard_status.db "SELECT shard_id, status, started_at, completed_at, branch FROM shard_status ORDER BY started_at;"
sqlite3 \$AIRFLOW_HOME/shard_status.db "SELECT status, COUNT(*) FROM shard_status GROUP BY status;"
git -C $CLONE branch --list 'worktree/*'
less $SLOG/dag_run.log $SLOG/scheduler.log   # whichever exists; task logs: \$AIRFLOW_HOME/logs/dag_id=$DAG_ID/
EOF
