"""`cvco-ipn demo`: the whole system on one machine, with simulated platform traffic."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "demo", help="run receiver, worker and simulated traffic on an embedded Redis; print what happened"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("cvco-ipn demo: not built yet")
