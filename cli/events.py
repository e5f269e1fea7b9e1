"""`cvco-ipn events tail`: read the normalized event stream."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    events = commands.add_parser("events", help="read the normalized event stream")
    actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    tail = actions.add_parser("tail", help="print events as a table, or --json")
    tail.add_argument("--follow", action="store_true")
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("cvco-ipn events: not built yet")
