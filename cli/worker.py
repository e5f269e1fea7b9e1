"""`cvco-ipn worker`: the arq worker that processes queued notifications."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import uvloop

from cli.logs import configure_logging
from schemas.settings import load_settings
from workers.worker import build_worker


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser("worker", help="run a worker that processes queued notifications")
    parser.add_argument("--burst", action="store_true", help="drain the queue, then exit 0")
    parser.set_defaults(handler=run)


class _NoJobArguments(logging.Filter):
    """Drop arq's per-job start line: it prints the job's arguments, which carry the signature."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "→" not in str(record.msg)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(require_shops=True)
    configure_logging()
    logging.getLogger("arq.worker").addFilter(_NoJobArguments())
    # arq takes the current loop when built: make it uvloop's, as the receiver does
    asyncio.set_event_loop(uvloop.new_event_loop())
    build_worker(settings, burst=args.burst).run()
    return 0
