"""`cvco-ipn failed list|show` and `cvco-ipn replay`: the operator's view of parked jobs."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    failed = commands.add_parser("failed", help="inspect parked (failed) notification jobs")
    actions = failed.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="parked jobs, one a line")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run)
    show = actions.add_parser("show", help="the raw notification and the whole error")
    show.add_argument("id")
    show.set_defaults(handler=run)
    replay = commands.add_parser("replay", help="re-queue parked jobs")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true")
    replay.add_argument("--dry-run", action="store_true")
    replay.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("cvco-ipn failed/replay: not built yet")
