"""What every ``airflow-worktree`` command shares: exit codes, the error users can fix, durations, and the
small formatters of ages, timestamps and sizes."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from airflow_provider_worktree.core.health import format_value, to_epoch

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



def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__



def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)



def _size(n: int | None) -> str:
    return "-" if n is None else format_value("db_size_bytes", n)



def _fmt_default(seconds: float) -> str:
    return f"{seconds / 86400:g}d" if seconds >= 86400 else f"{seconds / 3600:g}h"
