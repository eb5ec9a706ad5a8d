"""``airflow-worktree``: the runbook's procedures as one command.

Subcommands: ``status``, ``stale``, ``reset-stale``, ``report``, ``prune``, ``check``, ``thresholds``,
``db backup|restore|integrity|archive|vacuum|upgrade`` and ``example-dags``. The same commands run as
``airflow worktree ...`` (the provider's ``cli`` entry). Read-only commands (status, stale, report, check,
thresholds, db integrity, db backup) create, migrate and write nothing.
Each takes ``--json`` and ``--db PATH`` or ``--conn-id ID``. With ``--db`` nothing here imports Airflow;
``--conn-id`` (and the default, the ``shard_status_default`` connection when it exists, else
``$AIRFLOW_HOME/shard_status.db``) imports it lazily.

Exit codes (Nagios-style, so cron and monitoring can alert on them):

- 0: done; every evaluated threshold is ok.
- 1: ``check`` only: a warning threshold is crossed.
- 2: a critical threshold is crossed (``status``, ``stale`` and ``check`` evaluate thresholds).
- 2: also ``db integrity`` finding damage.
- 3: could not run: no database, a file that is not the shard database, a damaged or read-only database, a
  bad connection, bad arguments. Always one line on stderr, never a traceback
  (``AIRFLOW_WORKTREE_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from airflow_provider_worktree.core.errors import WorktreeProviderError
from airflow_provider_worktree.core.health import (
    CRITICAL,
    METRICS,
    OK,
    WARNING,
    Thresholds,
    collect_metrics,
    evaluate,
    format_value,
    jsonable,
    to_epoch,
    worst_level,
)

EXIT_OK = 0
EXIT_WARNING = 1
EXIT_CRITICAL = 2
EXIT_ERROR = 3

PROG = "airflow-worktree"
DEFAULT_CONN_ID = "shard_status_default"
RECENT_FAILURES = 10


class CliError(Exception):
    """A problem the user can fix; printed without a traceback, exit code 3."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------------------
# Durations, colour, tables
# ---------------------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", re.IGNORECASE)
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"1h30m"`` or a plain number of seconds -> seconds."""
    raw = str(text).strip()
    pos, total, matched = 0, 0.0, False
    for m in _DURATION_RE.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2).lower()]
        pos, matched = m.end(), True
    if not matched or pos != len(raw):
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number with a unit, like 90s, 30m, 1h, 2d or 1h30m"
        )
    return total


def _threshold_override(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"invalid threshold {text!r}: use KEY=VALUE, like stale_locks_warning=2")
    try:
        return key.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid threshold {text!r}: {value!r} is not a number") from None


class Style:
    CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "cyan": "36"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text:
            return text
        codes = ";".join(self.CODES[s] for s in styles)
        return f"\033[{codes}m{text}\033[0m"

    def status(self, status: str) -> str:
        return self(status, *{"completed": ("green",), "failed": ("red",), "running": ("yellow",),
                              "pending": ("dim",)}.get(status, ()))

    def level(self, level: str) -> str:
        return self(level, *{OK: ("green",), WARNING: ("yellow", "bold"), CRITICAL: ("red", "bold")}.get(level, ()))


def use_color(mode: str, stream=None) -> bool:
    """``always``/``never``, or ``auto``: a TTY, ``NO_COLOR`` unset (https://no-color.org), ``TERM`` not dumb."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


Cell = Any  # str, or (str, styler) where styler(text) -> coloured text


def shorten_middle(text: str, width: int) -> str:
    """One line of at most ``width`` characters: the head and tail of ``text`` around ``…``
    (branch names and paths differ at both ends). ``--json`` keeps full values."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1 + 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def table_width() -> int | None:
    """Columns available: the terminal's on a TTY, else ``$COLUMNS`` when set, else no limit (files, pipes)."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        return None


def _fit(widths: list[int], headers: Sequence[str], limit: int | None) -> list[int]:
    """Narrow the widest columns (never below their header or 6 characters) until the row fits ``limit``."""
    widths = list(widths)
    if limit is None:
        return widths
    floor = [max(len(h), 6) for h in headers]
    while sum(widths) + 2 * (len(widths) - 1) > limit:
        i = max(range(len(widths)), key=lambda k: widths[k] - floor[k])
        if widths[i] <= floor[i]:
            break
        widths[i] -= 1
    return widths


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], style: Style,
                 right: Sequence[int] = (), width: int | None = -1) -> str:
    """Columns aligned on the plain text; colour applied after padding so ANSI codes never skew widths.

    Rows fit ``width`` columns (default :func:`table_width`): long cells are shortened in the middle."""
    plain = [[c[0] if isinstance(c, tuple) else ("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in plain:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    widths = _fit(widths, headers, table_width() if width == -1 else width)
    plain = [[shorten_middle(cell, widths[i]) for i, cell in enumerate(row)] for row in plain]
    out = ["  ".join(style(h.ljust(w) if i < len(headers) - 1 else h, "bold")
                     for i, (h, w) in enumerate(zip(headers, widths))).rstrip()]
    for raw, row in zip(rows, plain):
        cells = []
        for i, (cell, text) in enumerate(zip(raw, row)):
            last = i == len(row) - 1
            padded = text.rjust(widths[i]) if i in right else (text if last else text.ljust(widths[i]))
            if isinstance(cell, tuple) and cell[1] is not None:
                padded = padded.replace(text, cell[1](text), 1) if text else padded
            cells.append(padded)
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _short(text: Any, width: int = 70) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _ts(value: Any) -> str:
    epoch = to_epoch(value)
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


# ---------------------------------------------------------------------------------------------------------
# The database
# ---------------------------------------------------------------------------------------------------------

def _sqlite_path_of(target: str) -> str | None:
    """The file of an SQLite target (a path or ``sqlite:///...``); ``None`` for a server URL."""
    if target.startswith("sqlite:"):
        rest = target[len("sqlite:"):]
        return rest[2:] if rest.startswith("///") else rest.lstrip("/") or None
    if "://" in target:
        return None
    return target


def check_sqlite_file(path: str, *, write: bool = False) -> None:
    """Refuse, with a message naming the fix, a missing file or one that is not the shard database; with
    ``write``, also a file or directory this user cannot write.

    Never creates or changes anything (the file is opened read-only, see ``sqlite_read_only_uri``)."""
    from airflow_provider_worktree.core.store import describe_db_error, sqlite_read_only_uri

    p = Path(path)
    if not p.parent.is_dir():
        raise CliError(f"no directory {p.parent} for the shard database: check the path passed with --db")
    if not p.exists():
        raise CliError(f"no shard database at {p}: run the DAG first or pass --db")
    if p.is_dir():
        raise CliError(f"{p} is a directory, not a shard database: pass the database file with --db")
    try:
        with open(p, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise CliError(f"cannot read {p}: {exc.strerror}; check its permissions (run as its owner)") from None
    if header != b"SQLite format 3\x00":
        what = "an empty file" if not header else "not an SQLite database"
        raise CliError(f"{p} is {what}: pass the shard database file with --db")
    try:
        conn = sqlite3.connect(sqlite_read_only_uri(str(p)), uri=True)
        try:
            row = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='shard_status'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CliError(describe_db_error(exc, str(p))) from None
    if row is None:
        raise CliError(
            f"{p} is an SQLite database without a shard_status table, so not a shard database: "
            f"pass the right file with --db"
        )
    if write:
        check_writable(p)


def check_writable(p: Path) -> None:
    """A command that writes needs the file and its directory (SQLite's journal) writable."""
    if not os.access(p, os.W_OK):
        raise CliError(f"{p} is read-only for this user: run this command as the owner of the file "
                       f"(ls -l {p}) or make it writable (chmod u+w); read-only commands (status, stale, "
                       "report, check) work as they are")
    if not os.access(p.parent, os.W_OK):
        raise CliError(f"the directory {p.parent} is not writable for this user, and SQLite writes its journal "
                       f"there: run this command as the directory's owner or grant write access to it")


def _default_sqlite_path() -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, "shard_status.db")


def resolve_target(args: argparse.Namespace, *, write: bool = False) -> tuple[str, str]:
    """``(store target, description for humans)`` from ``--db`` / ``--conn-id`` / the default."""
    db = getattr(args, "db", None)
    conn_id = getattr(args, "conn_id", None)
    if db:
        target = os.path.abspath(os.path.expanduser(db)) if "://" not in db else db
    else:
        try:
            # Imports Airflow: only for --conn-id and the default resolution.
            from airflow_provider_worktree.hooks.shard_status import resolve_store_target
        except ImportError as exc:
            if conn_id:
                raise CliError(
                    f"--conn-id needs Apache Airflow ({exc}); install it or pass the SQLite file with --db"
                ) from None
            target = _default_sqlite_path()
        else:
            try:
                target = str(resolve_store_target(conn_id=conn_id, db_path=None, create_home=False))
            except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException, ConfigurationError, ...
                name = conn_id or DEFAULT_CONN_ID
                raise CliError(f"cannot use connection {name!r}: {_one_line(exc)}") from None
    sqlite_path = _sqlite_path_of(target)
    if sqlite_path:
        check_sqlite_file(sqlite_path, write=write)
        return target, sqlite_path
    return target, _redact(target)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_store(args: argparse.Namespace, *, write: bool = False):
    """The shard store of ``--db``/``--conn-id``. Read-only unless ``write``: nothing is created, migrated or
    left behind (an older SQLite schema is read through an upgraded in-memory copy). SQLite files pass
    ``PRAGMA quick_check`` first, so a damaged page is reported whichever rows the command reads."""
    target, desc = resolve_target(args, write=write)
    from airflow_provider_worktree.core.store import maintenance as dbmaint
    from airflow_provider_worktree.core.store import ShardStore

    try:
        if _sqlite_path_of(target):
            problems = dbmaint.integrity_check(target, quick=True, max_errors=1)
            if not dbmaint.is_ok(problems):
                raise CliError(f"the shard database {desc} is corrupted ({problems[0]}): restore it from a "
                               f"backup with `{PROG} db restore BACKUP --db {desc}` (see `{PROG} db integrity`)")
        store = ShardStore.open(target, read_only=not write)
    except WorktreeProviderError as exc:  # the store's messages name the database and the fix
        raise CliError(str(exc)) from None
    if store.upgraded_from is not None:
        print(f"{PROG}: note: {desc} has schema version {store.upgraded_from} (older than this package's); "
              f"read through an upgraded in-memory copy, the file is unchanged. Upgrade it with: "
              f"{PROG} db upgrade --db {desc}", file=sys.stderr)
    return store, desc


def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()


def _thresholds(args: argparse.Namespace) -> Thresholds:
    overrides = dict(getattr(args, "threshold", None) or [])
    try:
        return Thresholds.from_dict(overrides)
    except WorktreeProviderError as exc:
        raise CliError(str(exc)) from None


# ---------------------------------------------------------------------------------------------------------
# Commands: each returns (data for --json, text for humans, exit code)
# ---------------------------------------------------------------------------------------------------------

def _shard_age(shard: dict, key: str, now: float) -> float | None:
    epoch = to_epoch(shard.get(key))
    return None if epoch is None else now - epoch


def _heartbeat(shard: dict) -> Any:
    for key in ("heartbeat_at", "last_heartbeat", "heartbeat"):
        if shard.get(key):
            return shard[key]
    return None


def _alerts_block(alerts: list, style: Style) -> list[str]:
    problems = [a for a in alerts if a.level != OK]
    if not problems:
        return []
    lines = ["", style("Alerts", "bold")]
    for a in problems:
        lines.append(f"  {style.level(a.level.upper())} {a.message}")
    return lines


def cmd_status(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    store, desc = open_store(args)
    try:
        shards = store.list_shards(run_id=args.run_id)
        metrics = collect_metrics(store, run_id=args.run_id, stale_after_s=args.stale_after)
    finally:
        _close(store)
    now = time.time()
    order = ["pending", "running", "completed", "failed"]
    counts: dict[str, int] = {s: 0 for s in order}
    durations: dict[str, list[float]] = {}
    for s in shards:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
        start, end = to_epoch(s.get("started_at")), to_epoch(s.get("completed_at"))
        if start is not None and end is not None:
            durations.setdefault(s["status"], []).append(end - start)
    running = sorted((s for s in shards if s["status"] == "running"), key=lambda s: str(s.get("started_at")))
    failed = sorted((s for s in shards if s["status"] == "failed"), key=lambda s: str(s.get("updated_at")),
                    reverse=True)[:RECENT_FAILURES]
    alerts = evaluate(metrics, _thresholds(args))
    level = worst_level(alerts)
    data = {
        "database": desc,
        "run_id": args.run_id,
        "total": len(shards),
        "counts": counts,
        "avg_duration_s": {k: sum(v) / len(v) for k, v in durations.items()},
        "running": [
            {"run_id": s.get("run_id"), "shard_id": s["shard_id"], "worker_id": s.get("worker_id"),
             "started_at": s.get("started_at"), "age_s": _shard_age(s, "started_at", now),
             "heartbeat_age_s": (now - to_epoch(_heartbeat(s))) if _heartbeat(s) else None}
            for s in running
        ],
        "recent_failures": [
            {"run_id": s.get("run_id"), "shard_id": s["shard_id"], "updated_at": s.get("updated_at"),
             "error_message": s.get("error_message")}
            for s in failed
        ],
        "alerts": [a.to_dict() for a in alerts],
        "level": level,
    }
    lines = [f"{style('Shard database', 'bold')}: {desc}" + (f"  (run {args.run_id})" if args.run_id else "")]
    rows = []
    for status, n in counts.items():
        avg = data["avg_duration_s"].get(status)
        rows.append([(status, style.status), str(n), "" if avg is None else format_value("task_duration_s", avg)])
    rows.append([("total", lambda t: style(t, "bold")), str(len(shards)), ""])
    lines += ["", render_table(["STATUS", "COUNT", "AVG DURATION"], rows, style, right=(1,))]
    if running:
        lines += ["", style(f"Running shards ({len(running)})", "bold")]
        lines.append(render_table(
            ["RUN", "SHARD", "WORKER", "STARTED (UTC)", "AGE", "HEARTBEAT"],
            [[r["run_id"] or "-", r["shard_id"], r["worker_id"] or "-", _ts(r["started_at"]), _age(r["age_s"]),
              _age(r["heartbeat_age_s"]) + (" ago" if r["heartbeat_age_s"] is not None else "")]
             for r in data["running"]],
            style, right=(4,),
        ))
    if failed:
        lines += ["", style(f"Recent failures ({len(failed)} of {counts.get('failed', 0)})", "bold")]
        lines.append(render_table(
            ["RUN", "SHARD", "UPDATED (UTC)", "ERROR"],
            [[f["run_id"] or "-", (f["shard_id"], lambda t: style(t, "red")), _ts(f["updated_at"]),
              _short(f["error_message"])] for f in data["recent_failures"]],
            style,
        ))
    lines += _alerts_block(alerts, style)
    return data, "\n".join(lines), EXIT_CRITICAL if level == CRITICAL else EXIT_OK


def _stale_rows(stale: list[dict], now: float) -> list[list[str]]:
    return [[s.get("run_id") or "-", s["shard_id"], s.get("worker_id") or "-", _ts(s.get("started_at")),
             _age(_shard_age(s, "started_at", now)),
             _age(now - to_epoch(_heartbeat(s))) + " ago" if _heartbeat(s) else "-"] for s in stale]


_STALE_HEADERS = ["RUN", "SHARD", "WORKER", "STARTED (UTC)", "AGE", "HEARTBEAT"]


def cmd_stale(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    store, desc = open_store(args)
    try:
        stale = store.stale_leases(args.older_than, run_id=args.run_id)
    finally:
        _close(store)
    alerts = evaluate({"stale_locks": len(stale)}, _thresholds(args))
    level = worst_level(alerts)
    data = {"database": desc, "run_id": args.run_id, "older_than_s": args.older_than, "count": len(stale),
            "stale": stale, "alerts": [a.to_dict() for a in alerts], "level": level}
    if not stale:
        text = f"No stale locks (running shards without a heartbeat for {_age(args.older_than)}) in {desc}."
    else:
        text = "\n".join([
            style(f"{len(stale)} stale lock(s)", "bold") + f" (no heartbeat for {_age(args.older_than)}) in {desc}",
            "",
            render_table(_STALE_HEADERS, _stale_rows(stale, time.time()), style, right=(4,)),
            "",
            f"Put them back to pending with: {PROG} reset-stale --older-than {_age(args.older_than)}"
            + (f" --run-id {args.run_id}" if args.run_id else ""),
        ] + _alerts_block(alerts, style))
    return data, text, EXIT_CRITICAL if level == CRITICAL else EXIT_OK


def cmd_reset_stale(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    store, desc = open_store(args, write=not args.dry_run)
    try:
        if args.dry_run:
            shards = store.stale_leases(args.older_than, run_id=args.run_id)
        else:
            shards = store.reset_stale(args.older_than, run_id=args.run_id)
    finally:
        _close(store)
    data = {"database": desc, "run_id": args.run_id, "older_than_s": args.older_than, "dry_run": args.dry_run,
            "count": len(shards), "reset": shards}
    verb = "Would reset" if args.dry_run else "Reset"
    if not shards:
        text = f"No stale locks older than {_age(args.older_than)} in {desc}; nothing to reset."
    else:
        text = "\n".join([
            f"{verb} {len(shards)} stale shard(s) to pending in {desc}"
            + (style(" (dry run: nothing changed)", "yellow") if args.dry_run else ""),
            "",
            render_table(_STALE_HEADERS, _stale_rows(shards, time.time()), style, right=(4,)),
        ])
    return data, text, EXIT_OK


def _run_ids(store: Any) -> list[str]:
    """Run ids, newest run first."""
    return [r["run_id"] for r in store.runs()]


def cmd_report(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.health.report import build_report

    store, desc = open_store(args)
    try:
        runs = [args.run_id] if args.run_id else _run_ids(store)
        reports = [build_report(store, run) for run in runs]
    finally:
        _close(store)
    data = {"database": desc, "runs": reports}
    if not reports:
        return data, f"No runs in {desc}.", EXIT_OK
    lines: list[str] = []
    for rep in reports:
        t = rep["totals"]
        by_status = ", ".join(f"{n} {s}" for s, n in sorted(t["by_status"].items())) or "no shards"
        dur = ""
        if t.get("avg_duration_s") is not None:
            dur = (f"; duration avg {format_value('task_duration_s', t['avg_duration_s'])}, "
                   f"max {format_value('task_duration_s', t['max_duration_s'])}")
        lines += [
            style(f"Run {rep['run_id']}", "bold"),
            f"  shards: {t['shards']} ({by_status}){dur}",
            f"  tokens: {t['input_tokens']} in, {t['output_tokens']} out, {t['cache_read_tokens']} cache read, "
            f"{t['cache_write_tokens']} cache write; cost ${t['cost_usd']:.4f}; files changed {t['files_changed']}",
            "",
        ]
        rows = [[s["shard_id"], (s["status"], style.status), s["branch"] or "-", (s["commit_sha"] or "-")[:10],
                 _age(s["duration_s"]) if s["duration_s"] is not None else "-",
                 f"{s['input_tokens']}/{s['output_tokens']}", f"${s['cost_usd']:.4f}"] for s in rep["shards"]]
        if rows:
            lines.append(render_table(["SHARD", "STATUS", "BRANCH", "COMMIT", "DURATION", "TOKENS IN/OUT", "COST"],
                                      rows, style, right=(4, 5, 6)))
        for f in rep["failed"]:
            room = (table_width() or 10**6) - len(f"  failed {f['shard_id']}: ")
            lines.append(f"  {style('failed', 'red')} {f['shard_id']}: {_short(f['error'], max(20, min(100, room)))}")
        lines.append("")
    return data, "\n".join(lines).rstrip(), EXIT_OK


def cmd_batches(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    store, desc = open_store(args)
    try:
        runs = [args.run_id] if args.run_id else _run_ids(store)
        states = [st for st in (store.batch_state(run) for run in runs) if st["parts"] or st["entries"]]
    finally:
        _close(store)
    data = {"database": desc, "runs": states}
    if not states:
        return data, f"No batch-mode run in {desc}" + (f" for run {args.run_id}." if args.run_id else "."), EXIT_OK
    lines: list[str] = []
    for st in states:
        entries = ", ".join(f"{n} {s}" for s, n in sorted(st["entries"].items()))
        lines += [style(f"Run {st['run_id']}", "bold") + ("" if st["collected"] else " (waiting for the batch)"),
                  f"  entries: {entries}; batch cost ${st['cost_usd']:.4f}"]
        for key, what in (("interactive", "run interactively"), ("over_budget", "not sent, over the budget")):
            if st[key]:
                lines.append(f"  {what}: {', '.join(st[key][:10])}" + (" ..." if len(st[key]) > 10 else ""))
        rows = [[str(p["part"]), p["batch_id"] or "(not recorded)", p["status"], str(p["requests"]),
                 " ".join(f"{k}={v}" for k, v in p["request_counts"].items() if v) or "-"] for p in st["parts"]]
        if rows:
            lines.append(render_table(["PART", "BATCH", "STATUS", "REQUESTS", "COUNTS"], rows, style, right=(0, 3)))
        lines.append("")
    return data, "\n".join(lines).rstrip(), EXIT_OK


def _manager(repo: str, worktree_root: str | None):
    from airflow_provider_worktree.core.worktrees.manager import WorktreeManager

    repo_path = os.path.abspath(os.path.expanduser(repo))
    if not os.path.isdir(repo_path):
        raise CliError(f"no repository at {repo_path}: pass the repository with --repo")
    try:
        return WorktreeManager(repo_path, worktree_root=worktree_root)
    except WorktreeProviderError as exc:
        raise CliError(f"cannot use the repository {repo_path}: {exc}") from None


def cmd_prune(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    manager = _manager(args.repo, args.worktree_root)
    try:
        report = manager.prune(older_than=args.older_than, dry_run=args.dry_run)
    except WorktreeProviderError as exc:
        raise CliError(f"prune failed: {exc}") from None
    data = {"repo": manager.repo, "worktree_root": manager.worktree_root, "older_than_s": args.older_than,
            **jsonable(report.to_dict())}
    data["dry_run"] = args.dry_run
    lines = [f"{style('Prune', 'bold')} {manager.repo}: worktrees under {manager.worktree_root} older than "
             f"{_age(args.older_than)}" + (style(" (dry run: nothing changed)", "yellow") if args.dry_run else "")]
    actions = data.get("actions") or []
    if actions:
        lines += [""] + [f"  {'would ' if args.dry_run else ''}{a}" for a in actions]
    else:
        lines += ["", "  nothing to prune"]
    for s in data.get("salvaged") or []:
        lines.append(f"  {style('salvaged', 'yellow')} uncommitted work of {s.get('path')} to branch {s.get('branch')}")
    for s in data.get("skipped") or []:
        lines.append(f"  {style('skipped', 'dim')} {s.get('path')}: {s.get('reason')}")
    for e in data.get("errors") or []:
        lines.append(f"  {style('error', 'red')} {e.get('path')}: {e.get('error')}")
    lines += ["", f"removed {len(data.get('removed') or [])}, orphans removed "
                  f"{len(data.get('orphans_removed') or [])}, salvaged {len(data.get('salvaged') or [])}, "
                  f"skipped {len(data.get('skipped') or [])}, errors {len(data.get('errors') or [])}"]
    return data, "\n".join(lines), EXIT_ERROR if data.get("errors") else EXIT_OK


def cmd_check(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    thresholds = _thresholds(args)
    store, desc = open_store(args)
    manager = _manager(args.repo, args.worktree_root) if args.repo else None
    try:
        metrics = collect_metrics(store, run_id=args.run_id, worktree_root=args.worktree_root, manager=manager,
                                  stale_after_s=args.stale_after)
    finally:
        _close(store)
    alerts = evaluate(metrics, thresholds)
    level = worst_level(alerts)
    data = {"database": desc, "run_id": args.run_id, "level": level,
            "metrics": {k: v for k, v in metrics.items() if k in METRICS},
            "alerts": [a.to_dict() for a in alerts]}
    rows = []
    for a in alerts:
        spec = METRICS[a.metric]
        warn, crit = thresholds.levels(a.metric)
        sign = ">" if spec.direction == "above" else "<"
        rows.append([spec.label, format_value(a.metric, a.value), f"{sign} {format_value(a.metric, warn)}",
                     f"{sign} {format_value(a.metric, crit)}", (a.level, style.level), a.action or "-"])
    skipped = [METRICS[m].label for m in METRICS if m not in {a.metric for a in alerts}]
    lines = [f"{style('Health check', 'bold')}: {desc}" + (f"  (run {args.run_id})" if args.run_id else ""), "",
             render_table(["METRIC", "VALUE", "WARNING", "CRITICAL", "LEVEL", "ACTION"], rows, style, right=(1,))]
    if skipped:
        lines += ["", style(f"Not measured: {', '.join(skipped)}"
                            + (" (pass --repo or --worktree-root)" if not (args.repo or args.worktree_root)
                               else ""), "dim")]
    lines += ["", f"Overall: {style.level(level.upper())}"]
    code = {OK: EXIT_OK, WARNING: EXIT_WARNING, CRITICAL: EXIT_CRITICAL}[level]
    if args.quiet and level == OK:  # cron mails whatever a job prints: nothing when all is well
        return data, None, code
    return data, "\n".join(lines), code


def cmd_thresholds(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    thresholds = _thresholds(args)
    data = {"thresholds": thresholds.to_dict(), "metrics": {
        name: {"label": spec.label, "direction": spec.direction, "unit": spec.unit, "action": spec.action,
               "warning": thresholds.levels(name)[0], "critical": thresholds.levels(name)[1]}
        for name, spec in METRICS.items()}}
    rows = []
    for name, spec in METRICS.items():
        warn, crit = thresholds.levels(name)
        sign = ">" if spec.direction == "above" else "<"
        rows.append([spec.label, name, f"{sign} {format_value(name, warn)}", f"{sign} {format_value(name, crit)}",
                     spec.action])
    text = render_table(["METRIC", "KEY", "WARNING", "CRITICAL", "ACTION"], rows, style)
    return data, text, EXIT_OK


# ---------------------------------------------------------------------------------------------------------
# db: the runbook's database procedures (core.dbmaint)
# ---------------------------------------------------------------------------------------------------------

def _size(n: int | None) -> str:
    return "-" if n is None else format_value("db_size_bytes", n)


def cmd_db_backup(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    target, desc = resolve_target(args)
    data = dbmaint.backup(target, args.dest, overwrite=args.overwrite)
    return data, (f"Backed up {desc} to {data['backup']} ({_size(data['bytes'])}, integrity ok).\n"
                  f"Restore it with: {PROG} db restore {data['backup']} --db {desc}"), EXIT_OK


def cmd_db_restore(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    db = getattr(args, "db", None)
    target = (os.path.abspath(os.path.expanduser(db)) if db and "://" not in db else db) or resolve_target(args)[0]
    data = dbmaint.restore(target, args.source)
    aside = f"; the replaced file is kept as {data['moved_aside']}" if data["moved_aside"] else ""
    return data, f"Restored {data['database']} from {data['restored_from']}{aside}.", EXIT_OK


def cmd_db_integrity(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    db = getattr(args, "db", None)
    if db and "://" not in db:  # a damaged file may not even pass the shard-database checks: check it as it is
        target = desc = os.path.abspath(os.path.expanduser(db))
        if not os.path.isfile(target):
            raise CliError(f"no database file at {target}: pass the shard database with --db")
    else:
        target, desc = resolve_target(args)
    problems = dbmaint.integrity_check(target, quick=args.quick)
    ok = dbmaint.is_ok(problems)
    data = {"database": desc, "check": "quick_check" if args.quick else "integrity_check", "ok": ok,
            "problems": [] if ok else problems}
    if ok:
        return data, f"{desc}: integrity {style.level('ok')} ({data['check']})", EXIT_OK
    lines = [f"{desc}: {style.level(CRITICAL.upper())} the database is damaged ({len(problems)} problem(s)):"]
    lines += [f"  {p}" for p in problems[:10]]
    lines += ["", f"Restore it from a backup: {PROG} db restore BACKUP --db {desc} (pause the DAGs first)"]
    return data, "\n".join(lines), EXIT_CRITICAL


def cmd_db_archive(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    target, desc = resolve_target(args, write=not args.dry_run)
    data = dbmaint.archive(target, args.older_than, archive_path=args.to, dry_run=args.dry_run)
    if args.vacuum and not args.dry_run and data["rows"]:
        data["vacuum"] = dbmaint.vacuum(target)
    verb = "Would move" if args.dry_run else "Moved"
    text = (f"{verb} {data['rows']} shard row(s) of {len(data['runs'])} finished run(s) that ended before "
            f"{data['cutoff']} UTC from {desc} to {data['archive']}"
            + (style(" (dry run: nothing changed)", "yellow") if args.dry_run else "."))
    if data.get("vacuum"):
        text += (f"\nVacuumed: {_size(data['vacuum']['bytes_before'])} -> {_size(data['vacuum']['bytes_after'])}")
    elif data["rows"] and not args.dry_run:
        text += f"\nThe file shrinks after: {PROG} db vacuum --db {desc}"
    return data, text, EXIT_OK


def cmd_db_vacuum(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    target, desc = resolve_target(args, write=True)
    data = dbmaint.vacuum(target)
    return data, f"Vacuumed {desc}: {_size(data['bytes_before'])} -> {_size(data['bytes_after'])}", EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    from airflow_provider_worktree.core.store import maintenance as dbmaint

    db = getattr(args, "db", None)
    if db and "://" not in db:  # upgrade may create the tables in a new file: no shard-database checks
        target = desc = os.path.abspath(os.path.expanduser(db))
        if os.path.exists(target):
            check_writable(Path(target))
    else:
        target, desc = resolve_target(args, write=True)
    data = dbmaint.upgrade(target, backup_first=not args.no_backup)
    if data["from_version"] == data["to_version"]:
        text = f"{desc} is at schema version {data['to_version']}, the current one: nothing to do."
    else:
        text = f"Upgraded {desc} from schema version {data['from_version']} to {data['to_version']}."
        if data["backup"]:
            text += f" The previous file is saved as {data['backup']}."
    return data, text, EXIT_OK


def cmd_example_dags(args: argparse.Namespace, style: Style) -> tuple[Any, str, int]:
    """Copy the package's example DAGs (package data) into a dags folder."""
    import importlib.resources

    dest = Path(os.path.expanduser(args.dest)).absolute()
    if dest.exists() and not dest.is_dir():
        raise CliError(f"{dest} is a file: pass the dags folder (a directory) to copy the example DAGs into")
    source = importlib.resources.files("airflow_provider_worktree") / "example_dags"
    names = sorted(p.name for p in source.iterdir() if p.name.endswith(".py") and not p.name.startswith("_"))
    clash = [n for n in names if (dest / n).exists()]
    if clash and not args.overwrite:
        raise CliError(f"{', '.join(str(dest / n) for n in clash)} exist(s): pass --overwrite to replace them")
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dest / name).write_bytes((source / name).read_bytes())
    data = {"dest": str(dest), "dags": [str(dest / n) for n in names]}
    return data, "\n".join([f"Copied {len(names)} example DAG(s) into {dest}:"] + [f"  {n}" for n in names]
                           + ["", "Point Airflow's [core] dags_folder at it (or copy them into yours)."]), EXIT_OK


# ---------------------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 3 (2 means "critical" here)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(sub: argparse.ArgumentParser) -> None:
    """Options every subcommand takes (``--db``/``--conn-id`` are ignored by ``prune`` and ``thresholds``)."""
    sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                     help="machine-readable output on stdout")
    sub.add_argument("--color", choices=("auto", "always", "never"), default=argparse.SUPPRESS,
                     help="colour: auto (a TTY without NO_COLOR), always, never")
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                       help="the shard database file (SQLite); no Airflow needed")
    group.add_argument("--conn-id", metavar="ID", default=argparse.SUPPRESS,
                       help=f"Airflow connection of the shard database (default: {DEFAULT_CONN_ID} if it "
                            f"exists, else $AIRFLOW_HOME/shard_status.db)")


def _thresholds_arg(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--threshold", metavar="KEY=VALUE", action="append", type=_threshold_override,
                     help="override a threshold, e.g. stale_locks_warning=2 (see `thresholds`); repeatable")


def _older_than_arg(sub: argparse.ArgumentParser, default: float, what: str) -> None:
    sub.add_argument("--older-than", type=parse_duration, default=default, metavar="DURATION",
                     help=f"{what}, like 90s, 30m, 1h, 2d (default {_fmt_default(default)})")


def _fmt_default(seconds: float) -> str:
    return f"{seconds / 86400:g}d" if seconds >= 86400 else f"{seconds / 3600:g}h"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Operate the shard status database and worktrees of airflow-provider-worktree "
                    "(the runbook's procedures).",
        epilog="Exit codes: 0 ok; 1 a warning threshold (check); 2 a critical threshold (status, stale, check); "
               "3 could not run (no database, not a shard database, bad connection or arguments).",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour: auto (a TTY without NO_COLOR), always, never")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--db", metavar="PATH", help="the shard database file (SQLite); no Airflow needed")
    group.add_argument("--conn-id", metavar="ID", help="Airflow connection of the shard database")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs.required = True

    p = subs.add_parser("status", help="shards per status, running shards with their age, recent failures")
    _common(p)
    p.add_argument("--run-id", help="only this run")
    p.add_argument("--stale-after", type=parse_duration, default=3600.0, metavar="DURATION",
                   help="lease age counted as a stale lock for the thresholds (default 1h)")
    _thresholds_arg(p)
    p.set_defaults(func=cmd_status)

    p = subs.add_parser("stale", help="running shards whose lease is older than --older-than (stale locks)")
    _common(p)
    _older_than_arg(p, 3600.0, "lease age counted as stale (the runbook's 1h)")
    p.add_argument("--run-id", help="only this run")
    _thresholds_arg(p)
    p.set_defaults(func=cmd_stale)

    p = subs.add_parser("reset-stale", help="put stale shards back to pending so another worker claims them")
    _common(p)
    _older_than_arg(p, 3600.0, "lease age counted as stale")
    p.add_argument("--run-id", help="only this run")
    p.add_argument("--dry-run", action="store_true", help="list what would be reset; change nothing")
    p.set_defaults(func=cmd_reset_stale)

    p = subs.add_parser("report", help="per run: shards, durations, tokens, cost, branches")
    _common(p)
    p.add_argument("--run-id", help="only this run (default: every run in the database)")
    p.set_defaults(func=cmd_report)

    p = subs.add_parser("batches", help="batch mode: each run's Message Batches and what became of each shard")
    _common(p)
    p.add_argument("--run-id", help="only this run (default: every run in the database)")
    p.set_defaults(func=cmd_batches)

    p = subs.add_parser("prune", help="remove leftover shard worktrees older than --older-than")
    _common(p)
    p.add_argument("--repo", default=".", metavar="PATH", help="the repository (default: the current directory)")
    p.add_argument("--worktree-root", metavar="DIR", help="where shard worktrees live (default: the manager's)")
    _older_than_arg(p, 86400.0, "worktree age before it may be pruned (the runbook's 24h)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; change nothing")
    p.set_defaults(func=cmd_prune)

    p = subs.add_parser("check", help="evaluate the runbook's alert thresholds (exit 0 ok, 1 warning, 2 critical)")
    _common(p)
    p.add_argument("--run-id", help="only this run (default: the whole database)")
    p.add_argument("--stale-after", type=parse_duration, default=3600.0, metavar="DURATION",
                   help="lease age counted as a stale lock (default 1h)")
    p.add_argument("--repo", metavar="PATH", help="also count the repository's active worktrees")
    p.add_argument("--worktree-root", metavar="DIR", help="also measure free disk space (and worktrees) there")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing when every threshold is ok (for cron: mail only when something is wrong)")
    _thresholds_arg(p)
    p.set_defaults(func=cmd_check)

    p = subs.add_parser("thresholds", help="print the alert thresholds in force (runbook defaults + overrides)")
    _common(p)
    _thresholds_arg(p)
    p.set_defaults(func=cmd_thresholds)

    db = subs.add_parser("db", help="database maintenance: backup, restore, integrity, archive, vacuum, upgrade")
    dbs = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", parser_class=_Parser)
    dbs.required = True
    p = dbs.add_parser("backup", help="copy the SQLite database with the online backup API (safe while it runs)")
    _common(p)
    p.add_argument("dest", metavar="DEST", help="backup file to create, or a directory (gets <name>.<UTC>.bak)")
    p.add_argument("--overwrite", action="store_true", help="replace DEST if it exists")
    p.set_defaults(func=cmd_db_backup)
    p = dbs.add_parser("restore", help="replace the SQLite database with a checked copy of a backup "
                                       "(the replaced file is kept aside); pause the DAGs first")
    _common(p)
    p.add_argument("source", metavar="BACKUP", help="a file written by `db backup`")
    p.set_defaults(func=cmd_db_restore)
    p = dbs.add_parser("integrity", help="PRAGMA integrity_check (exit 0 ok, 2 damaged)")
    _common(p)
    p.add_argument("--quick", action="store_true", help="PRAGMA quick_check: faster, skips index cross-checks")
    p.set_defaults(func=cmd_db_integrity)
    p = dbs.add_parser("archive", help="move shards of finished runs older than --older-than into an archive, "
                                       "then delete them")
    _common(p)
    p.add_argument("--older-than", type=parse_duration, required=True, metavar="DURATION",
                   help="archive shards that ended longer ago than this, like 30d or 12w")
    p.add_argument("--to", metavar="PATH", help="SQLite archive file (default: <db>.archive.db beside the database;"
                                                " PostgreSQL: shard_status_archive table)")
    p.add_argument("--dry-run", action="store_true", help="count what would move; change nothing")
    p.add_argument("--vacuum", action="store_true", help="vacuum afterwards so the file shrinks")
    p.set_defaults(func=cmd_db_archive)
    p = dbs.add_parser("vacuum", help="return free pages to the file system (SQLite VACUUM; PostgreSQL VACUUM "
                                      "ANALYZE)")
    _common(p)
    p.set_defaults(func=cmd_db_vacuum)
    p = dbs.add_parser("upgrade", help="apply schema migrations (creates the tables in an empty database); "
                                       "SQLite files are backed up first")
    _common(p)
    p.add_argument("--no-backup", action="store_true", help="do not back the SQLite file up first")
    p.set_defaults(func=cmd_db_upgrade)

    p = subs.add_parser("example-dags", help="copy the example DAGs (parallel_maintenance_poc, worktree_health) "
                                              "into a dags folder")
    _common(p)
    p.add_argument("dest", metavar="DEST", help="the dags folder (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace DAG files of the same name")
    p.set_defaults(func=cmd_example_dags)
    return parser


def _describe_unexpected(exc: BaseException) -> str:
    """One line for an error no command anticipated (driver, file system, ...): cause first, then the fix."""
    from airflow_provider_worktree.core.store.dialects import _is_driver_error, describe_db_error

    if _is_driver_error(exc):
        return describe_db_error(exc, "in use")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or exc}{where}: check the path, its permissions and free space"
    return (f"unexpected {type(exc).__name__}: {_one_line(exc)} (set AIRFLOW_WORKTREE_DEBUG=1 for the traceback "
            "and report it)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.db and args.conn_id:
        parser.error("argument --conn-id: not allowed with argument --db")
    style = Style(use_color(args.color))
    err_style = Style(use_color(args.color, sys.stderr))
    try:
        data, text, code = args.func(args, style)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - every failure is one line and exit 3, never a traceback
        if os.environ.get("AIRFLOW_WORKTREE_DEBUG"):
            raise
        code = exc.code if isinstance(exc, CliError) else EXIT_ERROR
        message = str(exc) if isinstance(exc, WorktreeProviderError | CliError) else _describe_unexpected(exc)
        print(f"{PROG}: {err_style('error', 'red', 'bold')}: {' '.join(message.split())}", file=sys.stderr)
        return code
    try:
        if args.json:
            print(json.dumps(jsonable(data), indent=2, sort_keys=False))
        elif text is not None:
            print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `airflow-worktree status | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return code


# ---------------------------------------------------------------------------------------------------------
# `airflow worktree ...`: the same commands inside Airflow's CLI (the provider's "cli" entry)
# ---------------------------------------------------------------------------------------------------------

def _airflow_worktree(args: argparse.Namespace) -> None:
    code = main(list(args.worktree_args))
    if code:
        sys.exit(code)


def get_provider_cli_commands() -> list:
    """Airflow's ``cli`` provider entry: ``airflow worktree COMMAND ...`` runs ``airflow-worktree COMMAND ...``."""
    from airflow.cli.cli_config import ActionCommand, Arg

    return [ActionCommand(
        name="worktree",
        help="Shard database and worktrees of airflow-provider-worktree (same as the airflow-worktree command)",
        description="Runs airflow-worktree with the arguments that follow, e.g. `airflow worktree status`, "
                    "`airflow worktree db backup /backups`. Commands: status, stale, reset-stale, report, prune, "
                    "check, thresholds, db, example-dags; `airflow worktree COMMAND --help` shows their options.",
        func=_airflow_worktree,
        args=(Arg(("worktree_args",), nargs=argparse.REMAINDER, metavar="COMMAND ...",
                  help="an airflow-worktree command and its options"),),
    )]


if __name__ == "__main__":
    sys.exit(main())
