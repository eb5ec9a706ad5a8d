"""The smoke run's command line, parsed with ``argparse``; every bad option is one :class:`UsageError` line."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from smokerun.constants import METADATA_DBS, MODES, PROJECT, PUBLISH, TASKS, UsageError


def _positive_int(flag: str):
    def parse(value: str) -> int:
        if not re.fullmatch(r"[1-9][0-9]*", value or ""):
            raise UsageError(f"{flag} must be a positive integer, got '{value}'")
        return int(value)
    return parse


def _seconds(flag: str):
    def parse(value: str) -> float:
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value or ""):
            raise UsageError(f"{flag} must be a number of seconds, got '{value}'")
        return float(value)
    return parse


def _choice(flag: str, choices: tuple[str, ...], words: str):
    def parse(value: str) -> str:
        if value not in choices:
            raise UsageError(f"{flag} must be {words}, got '{value}'")
        return value
    return parse


def _percentage(value: str) -> float:
    pct = _seconds("--min-completed")(value)
    if pct > 100:
        raise UsageError(f"--min-completed is a percentage (0-100), got '{value}'")
    return pct


@dataclass
class Options:
    repo: str = ""
    modules: int = 30
    home: Path = PROJECT / ".smoke"
    mode: str = "scheduler"
    parallel: int = 10
    metadata_db: str = "auto"
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    keep_metadata_db: bool = False
    deferrable: bool = False
    batch: bool = False
    batch_delay: float = 5.0
    real_api: bool = False
    latency: float = 0.3
    max_shards: int = 20
    min_completed: float = 100.0
    timeout: int = 900
    keep_going: bool = False
    python: str = ""
    venv: str = ""
    conf_json: str = ""
    publish: str = ""  # "": the default (a draft on the offline GitHub, one run); github, gitlab, none
    repos: int = 1  # > 1: one campaign over that many demo repositories (the campaign_maintenance DAG)
    params: dict = field(default_factory=dict)  # Params given by their own flags

    def conf(self, repo: str) -> dict:
        """The run's conf: the smoke run's defaults, the Param flags, then --conf on top."""
        conf = {"repo": repo, "task": "todo", "max_files_per_shard": 2, "max_shards": self.max_shards,
                "parallel_limit": self.parallel, **self.params}
        if self.batch:
            conf.update(mode="batch", batch_poll_seconds=1)
        if self.conf_json:
            try:
                more = json.loads(self.conf_json)
            except ValueError as exc:
                raise UsageError(f"--conf is not valid JSON: {exc}") from None
            if not isinstance(more, dict):
                raise UsageError("--conf must be a JSON object, e.g. '{\"max_turns\": 10}'")
            conf.update(more)
        return conf


#: The run's Params that have a flag of their own: flag -> Param name (value parser or None for text).
_PARAM_FLAGS = {"--task": "task", "--lint-command": "lint_command", "--verify-command": "verify_command",
                "--prompt": "prompt", "--runner": "runner", "--model": "model", "--isolation": "isolation"}


class _Parser(argparse.ArgumentParser):
    """argparse with the smoke run's one-line errors (the usage text is the hand-written USAGE, shown by --help)."""

    def error(self, message: str):  # argparse's own errors: a missing value, an unknown option
        m = re.match(r"argument (\S+?)(?:/\S+)?: expected one argument", message)
        if m:
            raise UsageError(f"{m.group(1)} needs a value (see --help)")
        m = re.match(r"unrecognized arguments: (\S+)", message)
        raise UsageError(f"unknown option {m.group(1) if m else message} (see --help)")


def _value(flag: str):
    def parse(value: str) -> str:
        if value == "":
            raise UsageError(f"{flag} needs a value (see --help)")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="smoke_run.sh", add_help=False, allow_abbrev=False)
    add = p.add_argument
    add("-h", "--help", action="store_true")
    add("--repo", type=_value("--repo"))
    add("--modules", type=_positive_int("--modules"))
    add("--repos", type=_positive_int("--repos"))
    add("--home", type=Path, default=PROJECT / ".smoke")
    add("--mode", type=_choice("--mode", MODES, "scheduler, executor or sequential"), default="scheduler")
    add("--sequential", dest="mode", action="store_const", const="sequential")
    add("--parallel", type=_positive_int("--parallel"), default=10)
    add("--metadata-db", type=_choice("--metadata-db", METADATA_DBS, "auto, sqlite or postgres"), default="auto")
    add("--pg-dsn", type=_value("--pg-dsn"), default=Options.pg_dsn)
    add("--keep-metadata-db", action="store_true")
    add("--deferrable", action="store_true")
    add("--batch", action="store_true")
    add("--batch-delay", type=_seconds("--batch-delay"), default=5.0)
    add("--real-api", action="store_true")
    add("--latency", type=_seconds("--latency"), default=0.3)
    add("--max-shards", type=_positive_int("--max-shards"), default=20)
    add("--min-completed", type=_percentage, default=100.0)
    add("--timeout", type=_positive_int("--timeout"), default=900)
    add("--keep-going", action="store_true")
    add("--python", type=_value("--python"))
    add("--venv", type=_value("--venv"))
    add("--conf", dest="conf_json", type=_value("--conf"))
    add("--publish", type=_choice("--publish", PUBLISH, "github, gitlab or none"))
    for flag in _PARAM_FLAGS:
        add(flag, dest=f"param_{_PARAM_FLAGS[flag]}", type=_value(flag))
    add("--include", action="append", type=_value("--include"))
    add("--exclude", action="append", type=_value("--exclude"))
    add("--max-files", type=_positive_int("--max-files"))
    add("--max-cost-usd", type=_seconds("--max-cost-usd"))
    return p


#: --repos N: modules in the first demo repository when --modules is not given (2 more in each next one).
CAMPAIGN_MODULES = 8
#: What the campaign DAG has no Param for: refused with --repos N (flag -> how it shows in the options).
_NOT_FOR_CAMPAIGN = (("--include", "include"), ("--exclude", "exclude"), ("--lint-command", "lint_command"),
                     ("--verify-command", "verify_command"), ("--runner", "runner"), ("--model", "model"),
                     ("--isolation", "isolation"), ("--max-cost-usd", "max_cost_usd"))


def _given(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def _campaign_problem(o: Options, ns: argparse.Namespace, argv: list[str]) -> None:
    """--repos N: refuse what cannot go with it, naming the fix."""
    if ns.repo:
        raise UsageError(f"--repos {o.repos} and --repo {ns.repo} cannot go together: --repos generates its demo "
                         "repositories; give --repo PATH alone (one repository) or --repos N alone (a campaign)")
    if o.repos == 1:
        return  # one repository: today's run
    if o.publish == "none":
        raise UsageError(f"--repos {o.repos} publishes one pull request per repository: --publish none cannot go "
                         "with it; leave --publish out (the offline GitHub) or give github or gitlab")
    if o.batch:
        raise UsageError(f"--repos {o.repos}: the campaign DAG has no batch mode; leave --batch out")
    for flag in ("--min-completed", "--max-shards"):
        if _given(argv, flag):
            raise UsageError(f"--repos {o.repos}: {flag} does not apply to the campaign DAG (it fails when any "
                             "repository fails, and splits the shard budget itself); leave it out")
    for flag, name in _NOT_FOR_CAMPAIGN:
        if name in o.params:
            raise UsageError(f"--repos {o.repos}: the campaign DAG has no Param for {flag}; leave it out (its "
                             "Params: task, prompt, max_files_per_shard, parallel_limit; more with --conf)")


def parse_args(argv: list[str]) -> Options | None:
    """The options, or None for --help. Raises UsageError naming the bad option."""
    if any(a in ("-h", "--help") for a in argv):
        return None
    ns = build_parser().parse_args(list(argv))
    params = {name: getattr(ns, f"param_{name}") for name in _PARAM_FLAGS.values()
              if getattr(ns, f"param_{name}") is not None}
    for key in ("include", "exclude"):
        if getattr(ns, key):
            params[key] = getattr(ns, key)
    if ns.max_files is not None:
        params["max_files_per_shard"] = ns.max_files
    if ns.max_cost_usd is not None:
        params["max_cost_usd"] = ns.max_cost_usd
    fields = {f: getattr(ns, f) for f in Options.__dataclass_fields__ if f not in ("params", "modules", "repos")}
    o = Options(**{f: ("" if v is None else v) for f, v in fields.items()}, params=params, repos=ns.repos or 1)
    o.modules = ns.modules or (CAMPAIGN_MODULES if o.repos > 1 else Options.modules)
    if ns.repos is not None:
        _campaign_problem(o, ns, argv)
    if o.params.get("task", "todo") not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, got '{o.params['task']}'")
    if o.repos > 1 and o.params.get("task") == "lint":
        raise UsageError(f"--repos {o.repos}: the campaign DAG has no lint_command Param, so --task lint cannot run "
                         "there; use todo, docstrings, tests or custom")
    if o.params.get("isolation", "auto") not in ("auto", "bwrap", "none"):
        raise UsageError(f"--isolation must be auto, bwrap or none, got '{o.params['isolation']}'")
    if o.params.get("runner", "api") not in ("api", "claude_code"):
        raise UsageError(f"--runner must be api or claude_code, got '{o.params['runner']}'")
    if o.params.get("task") == "lint" and "lint_command" not in o.params and "lint_command" not in o.conf_json:
        raise UsageError("--task lint needs --lint-command, e.g. --lint-command 'ruff check --output-format=concise'")
    if o.params.get("task") == "custom" and "prompt" not in o.params and "prompt" not in o.conf_json:
        raise UsageError("--task custom needs --prompt, e.g. --prompt 'Replace print calls with logging'")
    o.conf("")  # a bad --conf is a usage error before anything starts
    return o
