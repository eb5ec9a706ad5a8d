"""What the distributed run runs: the project, the DAG, its marker key and pool, its exception and log line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.processes import log

PROJECT = Path(__file__).resolve().parents[2]
DAG_ID = "parallel_maintenance_poc"
MARKER_KEY = "airflow-provider-worktree:distributed_run"
POOL = "claude_model_calls"


class CannotRun(Exception):
    """A prerequisite is missing (exit 2)."""




# ------------------------------------------------------------------------------------------- checks
@dataclass
class Scenario:
    name: str
    kill_worker: bool
    run_id: str = ""
    remote: Path | None = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(ok), detail))
        log(f"  [{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""))
        return bool(ok)

    def warn(self, name: str, ok: bool, detail: str = "") -> None:
        """A check that is reported but does not fail the run (a known issue outside this script)."""
        if ok:
            self.check(name, True, detail)
        else:
            self.warnings.append(f"{name}: {detail}")
            log(f"  [WARN] {name}: {detail}")

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)
