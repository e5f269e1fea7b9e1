"""`cvco-ipn`: the entry point. Each command module registers its sub-command and handler."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from cli import console, demo, events, failed, form, payment, rejected, replay, serve, simulate, worker
from core.redis_connection import exit_if_credentials_refused
from schemas.settings import load_settings

COMMAND_MODULES = (serve, worker, console, demo, simulate, form, failed, replay, events, rejected, payment)
REDIS_COMMANDS = frozenset({"form", "failed", "replay", "events", "rejected", "payment"})
"""The one-shot commands on the deployment's Redis: credentials it refuses exit 2 before they start, as
`serve` and `worker` do (which check at their own start)."""


class _Parser(argparse.ArgumentParser):
    """argparse that keeps its usage error to one line (exit 2), as the contract asks."""

    def error(self, message: str) -> None:  # type: ignore[override]  # argparse declares NoReturn
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _version() -> str:
    try:
        return version("cvco-ipn")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cvco-ipn",
        description="Chèque-Vacances Connect payment notifications: receive, process, inspect, replay.",
    )
    parser.add_argument("--version", action="version", version=f"cvco-ipn {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in REDIS_COMMANDS:
        exit_if_credentials_refused(load_settings(without_shops=True))
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
