"""`cvco-ipn console`: the operators' web console; `cvco-ipn console hash-password`: a password's hash for
`CVCO_CONSOLE_USERS`."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from aiohttp import web

from cli.logs import configure_logging
from cli.runner import port_number
from console.app import create_console_app
from console.passwords import hash_password, is_password_hash
from core.redis_connection import exit_if_credentials_refused
from schemas.settings import load_settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "console",
        help="run the operators' web console (its own port, never public)",
        description="Serve the operators' console: sign-in with CVCO_CONSOLE_USERS, the overview, payments "
        "and their timelines, parked jobs (replay, discard). `console hash-password` reads a password on "
        "stdin and prints its hash for CVCO_CONSOLE_USERS.",
    )
    parser.add_argument("action", nargs="?", choices=["hash-password"], help="print a password's hash")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8081, help="port to listen on (default 8081)")
    parser.set_defaults(handler=run)


def _hash_password() -> int:
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        sys.stderr.write("cvco-ipn console hash-password: the password is empty\n")
        return 2
    print(hash_password(password))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "hash-password":
        return _hash_password()
    settings = load_settings()  # the shops too: retrying a kept refusal runs the receiver's checks
    if not settings.console_users:
        sys.stderr.write("cvco-ipn: bad configuration: CVCO_CONSOLE_USERS names nobody who may sign in\n")
        return 2
    broken = sorted(name for name, stored in settings.console_users.items() if not is_password_hash(stored))
    if broken:
        sys.stderr.write(
            f"cvco-ipn: bad configuration: CVCO_CONSOLE_USERS[{broken[0]}] is not a hash printed by "
            "`cvco-ipn console hash-password`\n"
        )
        return 2
    exit_if_credentials_refused(settings)
    configure_logging()
    try:
        web.run_app(create_console_app(settings), host=args.host, port=args.port, access_log=None, print=None)
    except OSError as e:
        sys.stderr.write(f"cvco-ipn: cannot listen on {args.host}:{args.port}: {e.strerror or e}\n")
        return 2
    return 0
