"""`cvco-ipn simulate`: play the payment platform against a notification URL."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser("simulate", help="send signed platform-like notifications to a URL")
    parser.add_argument("--url", default="http://127.0.0.1:8080/ipn", help="notification URL")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("cvco-ipn simulate: not built yet")
