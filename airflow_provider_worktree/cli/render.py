"""How a command's result is printed: ``-o table`` (the default; rich tables and colour, fitted to the terminal),
``json`` and ``yaml`` (the command's data, for scripts), ``plain`` (tab-separated rows without colour, for ``cut``
and ``awk``). ``--json`` is ``-o json``.

Colour: ``--color always``/``never``, or ``auto``: a terminal, ``NO_COLOR`` unset (https://no-color.org) and
``TERM`` not ``dumb``. Width: the terminal's on a terminal, else ``$COLUMNS`` when set, else unlimited (a file or
a pipe gets whole values).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from airflow_provider_worktree.core.health import CRITICAL, OK, WARNING, jsonable
from rich.console import Console
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "yaml", "plain")
_UNLIMITED = 100_000
_STATUS_STYLES = {"completed": "green", "failed": "red", "running": "yellow", "pending": "dim"}
_LEVEL_STYLES = {OK: "green", WARNING: "bold yellow", CRITICAL: "bold red"}

#: A table cell: its text, or ``(text, rich style)`` such as ``("failed", "red")``.
Cell = Any


def use_color(mode: str, stream: Any = None) -> bool:
    """``always``/``never``, or ``auto``: a TTY, ``NO_COLOR`` unset, ``TERM`` not dumb."""
    if mode in ("always", "never"):
        return mode == "always"
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def table_width(stream: Any = None) -> int | None:
    """Columns available: the terminal's on a TTY, else ``$COLUMNS`` when set, else None (no limit)."""
    stream = stream or sys.stdout
    if hasattr(stream, "isatty") and stream.isatty():
        return shutil.get_terminal_size().columns
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        return None


class Render:
    """Builds a command's text for one output format. Commands call :meth:`table`, :meth:`style`,
    :meth:`status` and :meth:`level`; with ``plain`` they give tab-separated rows and no colour."""

    def __init__(self, fmt: str = "table", color: str = "auto", stream: Any = None) -> None:
        self.fmt = fmt
        self.color = fmt == "table" and use_color(color, stream)
        self.width = table_width(stream)
        self._console = Console(file=io.StringIO(), width=self.width or _UNLIMITED, force_terminal=self.color,
                                no_color=not self.color, color_system="standard" if self.color else None,
                                highlight=False, markup=False, emoji=False, soft_wrap=False)

    def _capture(self, renderable: Any) -> str:
        with self._console.capture() as cap:
            self._console.print(renderable, end="")
        return cap.get()

    # -- words ------------------------------------------------------------------------------------------
    def style(self, text: str, *styles: str) -> str:
        """``text`` in the rich ``styles`` ("bold", "red", ...) when colour is on."""
        if not self.color or not styles or not text:
            return text
        return self._capture(Text(text, style=" ".join(styles)))

    def status(self, status: str) -> str:
        return self.style(status, *filter(None, [_STATUS_STYLES.get(status)]))

    def level(self, level: str) -> str:
        return self.style(level, *filter(None, [_LEVEL_STYLES.get(level.lower())]))

    @staticmethod
    def status_cell(status: str) -> Cell:
        return status, _STATUS_STYLES.get(status)

    @staticmethod
    def level_cell(level: str) -> Cell:
        return level, _LEVEL_STYLES.get(level)

    # -- tables -----------------------------------------------------------------------------------------
    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Cell]], right: Sequence[int] = ()) -> str:
        """Aligned columns (``right``: right-aligned figures) that fit the width; ``plain``: tab-separated, header
        first. rich draws the table and its colour; the widths are fitted here because rich cuts only at a cell's
        end and narrows figures too, where a branch or a path needs its head and tail and a figure must stay whole:
        the widest text columns give way first, never below their header or 6 characters, cut in the middle with
        ``…`` (``-o json`` keeps full values)."""
        texts = [[(c[0] if isinstance(c, tuple) else ("" if c is None else str(c))) for c in row] for row in rows]
        if self.fmt == "plain":
            return "\n".join("\t".join(cells) for cells in [list(headers), *texts])
        widths = _fit([max([len(h), *(len(cells[i]) for cells in texts)]) for i, h in enumerate(headers)],
                      headers, right, self.width)
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 1))
        for i, header in enumerate(headers):
            table.add_column(shorten_middle(header, widths[i]), justify="right" if i in right else "left",
                             width=widths[i], no_wrap=True)
        for raw, cells in zip(rows, texts):
            table.add_row(*(Text(shorten_middle(text, widths[i]),
                                 style=(cell[1] or "") if isinstance(cell, tuple) else "")
                            for i, (cell, text) in enumerate(zip(raw, cells))))
        total = sum(widths) + 2 * (len(widths) - 1)
        self._console.width = max(self.width or _UNLIMITED, total)
        return "\n".join(line.rstrip() for line in self._capture(table).splitlines())


def shorten_middle(text: str, width: int) -> str:
    """One line of at most ``width`` characters: the head and tail of ``text`` around ``…`` (branch names and
    paths differ at both ends)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = width // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def _fit(widths: list[int], headers: Sequence[str], right: Sequence[int], limit: int | None) -> list[int]:
    """Narrow the widest text columns (never below their header or 6 characters; figures not at all) until the
    row fits ``limit``."""
    widths = list(widths)
    if limit is None:
        return widths
    floor = [widths[i] if i in right else max(len(h), 6) for i, h in enumerate(headers)]
    while sum(widths) + 2 * (len(widths) - 1) > limit:
        i = max(range(len(widths)), key=lambda k: widths[k] - floor[k])
        if widths[i] <= floor[i]:
            break
        widths[i] -= 1
    return widths


def dump(data: Any, fmt: str) -> str:
    """The data of a command as ``json`` or ``yaml``."""
    safe = jsonable(data)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(safe, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")
    return json.dumps(safe, indent=2, sort_keys=False)
