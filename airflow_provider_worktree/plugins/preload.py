"""Load the Anthropic SDK once per scheduler, not once per task.

Every maintenance task process imports the ``anthropic`` SDK (through the official provider's hook): about 0.9 s
of CPU per task, paid by every mapped task at once when ten start together on a small machine. The
LocalExecutor's workers, and the task processes they start, are forked from the scheduler: a module the scheduler
has imported before it starts its executor is already loaded in every task process, for free.

This listener does that import when a scheduler job starts (Airflow calls ``on_starting`` before the executor
forks its workers). It imports nothing in other processes (api-server, dag-processor, triggerer, ``airflow`` CLI
commands), and nothing when ``[worktree] preload_in_scheduler = False``. A failed import is logged and ignored: the
task imports the module itself, as it would without this listener.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

#: What a maintenance task process imports beyond Airflow itself, heaviest first.
PRELOAD_MODULES = (
    "airflow.providers.anthropic.hooks.anthropic",
    "airflow_provider_worktree.operators.maintenance",
)


def _is_scheduler_process(argv: list[str]) -> bool:
    """True for ``airflow scheduler ...`` (the LocalExecutor forks its workers from that process)."""
    return len(argv) >= 2 and argv[1] == "scheduler"


def _enabled() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("worktree", "preload_in_scheduler", fallback=True)


def preload(modules: tuple[str, ...] = PRELOAD_MODULES) -> list[str]:
    """Import ``modules``; return the ones that loaded. Failures are logged, never raised."""
    loaded = []
    for name in modules:
        t0 = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a preload must never stop a scheduler
            log.warning("worktree: could not preload %s (%s); task processes will import it themselves", name, exc)
            continue
        loaded.append(name)
        log.info("worktree: preloaded %s in %.2f s for the executor's task processes", name, time.perf_counter() - t0)
    return loaded


@hookimpl
def on_starting(component) -> None:  # noqa: ARG001 - the pluggy hook's signature
    """Airflow's lifecycle hook, called when a job (scheduler, triggerer, dag-processor) starts."""
    if _is_scheduler_process(sys.argv) and _enabled():
        preload()
