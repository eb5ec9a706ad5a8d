"""``python -m airflow_provider_worktree.testing.forge github|gitlab``: serve an offline forge until stopped.

For the smoke run and for users without a forge: the repositories given with ``--repo NAME=PATH`` are created
(bare mirrors of the local repositories) under ``--root``; the connection to point ``github_default`` or
``gitlab_default`` at is written to ``--conn-file`` as JSON (``{"connection": <the AIRFLOW_CONN_... JSON>, "web_url": ..., "repositories":
[owner/name, ...]}``), once listening.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from airflow_provider_worktree.testing.forge import OfflineGitHub, OfflineGitLab

DESCRIPTION = ("Serve an OFFLINE TEST DOUBLE of GitHub's REST API (pull requests) or of GitLab's merge-request API on "
               "loopback, with git over smart HTTP. Nothing leaves this machine: for tests and the smoke run only.")


def _repo(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or "/" in name or not path:
        raise argparse.ArgumentTypeError(f"--repo {value!r}: give NAME=PATH, e.g. --repo demo=/srv/demo")
    if not Path(path, ".git").exists() and not Path(path, "HEAD").is_file():
        raise argparse.ArgumentTypeError(f"--repo {value!r}: {path} is not a git repository")
    return name, Path(path)


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, path)


def forge_web_url(forge: OfflineGitHub | OfflineGitLab) -> str:
    return forge.web_url if isinstance(forge, OfflineGitHub) else forge.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_worktree.testing.forge", description=DESCRIPTION)
    parser.add_argument("kind", choices=("github", "gitlab"))
    parser.add_argument("--root", required=True, help="directory for the bare repositories (created)")
    parser.add_argument("--repo", action="append", type=_repo, default=[], metavar="NAME=PATH",
                        help="a repository to create from a local one (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: any free one)")
    parser.add_argument("--request-log", help="write every request and response to this file, one JSON object a line")
    parser.add_argument("--conn-file", help="write the Airflow connection (JSON) here once listening (for scripts)")
    args = parser.parse_args(argv)

    cls = OfflineGitHub if args.kind == "github" else OfflineGitLab
    forge = cls(args.root, host=args.host, port=args.port, request_log=args.request_log)
    try:
        forge.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}; pick another --port (0 = any free "
              "port).", file=sys.stderr)
        return 2
    names = [(forge.create_repo if args.kind == "github" else forge.create_project)(name, path)
             for name, path in args.repo]
    host = forge.api_url if args.kind == "github" else forge.url
    conn = {"conn_type": args.kind, "host": host, "password": forge.token}
    if args.conn_file:
        _write(args.conn_file, json.dumps({"connection": conn, "web_url": forge_web_url(forge),
                                           "repositories": names}) + "\n")
    print(json.dumps({"url": host, "repositories": names}), flush=True)
    print(f"offline {args.kind} TEST DOUBLE serving; Ctrl-C or SIGTERM stops it", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        forge.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
