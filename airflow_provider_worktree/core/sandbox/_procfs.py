"""The process table from ``/proc``: one parser for :mod:`~airflow_provider_worktree.core.sandbox.proc` and the box's
reaper (which imports this file by path, so it stays standard-library only)."""

from __future__ import annotations

import os
from collections.abc import Iterator


def proc_stats() -> Iterator[tuple[int, bytes, int, int]]:
    """``(pid, state, ppid, pgrp)`` of every process ``/proc`` shows now (vanishing ones skipped).

    Raises :class:`OSError` when there is no ``/proc``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ")".
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) >= 3:
            yield int(entry), fields[0], int(fields[1]), int(fields[2])
