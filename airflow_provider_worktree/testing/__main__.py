"""``python -m airflow_provider_worktree.testing``: serve the offline Messages API test double until stopped."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from airflow_provider_worktree.testing.ratelimits import RateLimits
from airflow_provider_worktree.testing.server import OfflineMessagesServer

DESCRIPTION = (
    "Serve an OFFLINE TEST DOUBLE of the Anthropic Messages API on loopback (POST /v1/messages, streaming "
    "included, POST /v1/messages/count_tokens, GET /v1/models, the Message Batches API). Its replies come from a deterministic rule-based stand-in, NOT from Claude: "
    "use it for the smoke run, tests and benchmarks only. Real maintenance needs an Anthropic API key and the real "
    "API. Point a client at it with base_url=<printed URL> and any non-empty API key."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_worktree.testing", description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one (default 8765)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each reply (default 0)")
    parser.add_argument("--batch-delay", type=float, default=0.0,
                        help="seconds a Message Batch takes to end after it is created (default 0)")
    parser.add_argument("--request-log", help="append every request (API keys redacted) to this file as JSON lines")
    parser.add_argument("--port-file", help="write the chosen port to this file once listening (for scripts)")
    for flag, what in (("--requests-per-minute", "requests"), ("--input-tokens-per-minute", "input tokens (cache "
                       "reads do not count)"), ("--output-tokens-per-minute", "output tokens")):
        parser.add_argument(flag, type=int, metavar="N", help=f"the organisation's limit of {what} per minute, "
                                                               "enforced like the API's (default: none)")
    parser.add_argument("--spend-cap", action="store_true",
                        help="answer every message 429 without retry-after, as when the spend limit is reached")
    args = parser.parse_args(argv)
    try:
        limits = RateLimits(args.requests_per_minute, args.input_tokens_per_minute, args.output_tokens_per_minute,
                            args.spend_cap)
    except ValueError as exc:
        parser.error(str(exc))

    server = OfflineMessagesServer(latency=args.latency, host=args.host, port=args.port, request_log=args.request_log,
                                   batch_delay=args.batch_delay, rate_limits=limits)
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}; pick another --port (0 = any free "
              "port).", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{server.port}\n")
        os.replace(tmp, args.port_file)
    print(server.base_url, flush=True)
    print("offline Messages API TEST DOUBLE (not Claude) serving; Ctrl-C or SIGTERM stops it", file=sys.stderr,
          flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
