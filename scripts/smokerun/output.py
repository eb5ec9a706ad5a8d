"""The smoke run's console output: [SUCCESS]/[INFO]/[WARNING]/[ERROR] lines, phases and the summary."""

from __future__ import annotations

import time
from pathlib import Path


class Out:
    """Coloured [SUCCESS]/[INFO]/[WARNING]/[ERROR] lines, phases with their timings, the summary."""

    def __init__(self, color: bool) -> None:
        c = (lambda code: code) if color else (lambda code: "")
        self.green, self.blue, self.yellow = c("\033[0;32m"), c("\033[0;34m"), c("\033[1;33m")
        self.red, self.bold, self.off = c("\033[0;31m"), c("\033[1m"), c("\033[0m")
        self.failures = self.warnings = 0
        self.t_start = time.monotonic()
        self.phases: list[tuple[str, float, str]] = []
        self.phase_name = ""
        self.phase_start = 0.0
        self.phase_failures = 0

    def _line(self, color: str, tag: str, msg: str) -> None:
        print(f"{color}[{tag}]{self.off} {msg}", flush=True)

    def success(self, msg: str) -> None:
        self._line(self.green, "SUCCESS", msg)

    def info(self, msg: str) -> None:
        self._line(self.blue, "INFO", msg)

    def warning(self, msg: str) -> None:
        self.warnings += 1
        self._line(self.yellow, "WARNING", msg)

    def error(self, msg: str) -> None:
        self.failures += 1
        self._line(self.red, "ERROR", msg)

    def indent(self, text: str, limit: int | None = None, rest: str = "") -> None:
        """``text`` indented; at most ``limit`` lines, then a line saying how many more there are (``rest``: where)."""
        lines = text.rstrip("\n").splitlines()
        for line in lines[:limit] if limit else lines:
            print(f"    {line}", flush=True)
        if limit and len(lines) > limit:
            print(f"    ... {len(lines) - limit} more line(s){': ' + rest if rest else ''}", flush=True)

    def tail(self, path: Path, n: int = 25) -> None:
        if path.is_file():
            self.indent("\n".join(path.read_text(errors="replace").splitlines()[-n:]))

    def heading(self, title: str) -> None:
        print(f"\n{self.bold}==> {title}{self.off}", flush=True)

    def phase(self, name: str) -> None:
        self.phase_end()
        self.phase_name, self.phase_start, self.phase_failures = name, time.monotonic(), self.failures
        self.heading(name)

    def phase_failed(self) -> bool:
        return self.failures > self.phase_failures

    def phase_end(self) -> None:
        if not self.phase_name:
            return
        secs = time.monotonic() - self.phase_start
        self.phases.append((self.phase_name, secs, "FAILED" if self.phase_failed() else "ok"))
        self.info(f"{self.phase_name} took {secs:.1f}s")
        self.phase_name = ""

    def summary(self, rc: int, home: Path | None) -> int:
        total = time.monotonic() - self.t_start
        self.heading("Summary")
        for name, secs, state in self.phases:
            print(f"    {name:<42} {secs:7.1f}s  {state}")
        print(f"    {'total':<42} {total:7.1f}s")
        if home is not None and home.is_dir():
            self.info(f"smoke home kept for inspection: {home} (wiped by the next run)")
        if rc == 0 and self.failures == 0:
            print(f"{self.green}[SUCCESS]{self.off} smoke run passed in {total:.1f}s ({self.warnings} warning(s))")
            return 0
        print(f"{self.red}[ERROR]{self.off} smoke run FAILED ({self.failures} failed check(s), "
              f"{self.warnings} warning(s)) after {total:.1f}s")
        return rc or 1
