"""`cvco-ipn worker`: the arq worker that processes queued notifications."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser("worker", help="run a worker that processes queued notifications")
    parser.add_argument("--burst", action="store_true", help="drain the queue, then exit 0")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("cvco-ipn worker: not built yet")
