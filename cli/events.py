"""`cvco-ipn events tail`: read the normalized event stream, as a table or JSON lines.

Without `--group` it reads with XRANGE/XREAD (nothing is acknowledged); with `--group G --consumer C` it
reads through a consumer group (created at the stream's start if missing) and XACKs what it printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from rich.console import Console
from rich.table import Table

from core.redis_connection import redis_client
from schemas.settings import Settings, load_settings

BLOCK_MS = 1000


def register(commands: argparse._SubParsersAction[Any]) -> None:
    events = commands.add_parser("events", help="read the normalized event stream")
    actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    tail = actions.add_parser("tail", help="print events as a table, or --json")
    tail.add_argument("--follow", action="store_true", help="keep printing new events until interrupted")
    tail.add_argument("--json", action="store_true", help="one JSON event per line")
    tail.add_argument("--count", type=int, default=20, metavar="N", help="last N events (default 20)")
    tail.add_argument("--group", metavar="G", help="read through this consumer group and XACK")
    tail.add_argument("--consumer", metavar="C", default="cli", help="consumer name in the group")
    tail.set_defaults(handler=run)


def _row(event: dict[str, Any]) -> list[str]:
    def euros(cents: object) -> str:
        return f"{int(cents) / 100:.2f}" if isinstance(cents, int) else "-"

    return [
        str(event.get("received_at", ""))[:19],
        str(event.get("type", "")),
        str(event.get("order_id") or "-"),
        str(event.get("trans_id", "")),
        euros(event.get("amount")),
        euros(event.get("paid_amount")),
        euros(event.get("cvco_amount")),
        str(event.get("status", "")),
        str((event.get("auth_result") or {}).get("code") or "-"),
        ",".join(event.get("flags") or []),
    ]


class _Printer:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # piped output keeps whole values rather than fitting an 80-column default
        self.console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

    def show(self, events: list[dict[str, Any]]) -> None:
        if self.as_json:
            for event in events:
                sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            return
        if not events:
            return
        table = Table(
            "received", "type", "order", "trans", "amount", "paid", "CVCO", "status", "auth", "flags"
        )
        for event in events:
            table.add_row(*_row(event))
        self.console.print(table)


def _decode(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[dict[str, Any]]:
    return [json.loads(fields[b"event"]) for _, fields in entries if b"event" in fields]


async def _plain(redis: Redis, settings: Settings, args: argparse.Namespace, printer: _Printer) -> None:
    latest = await redis.xrevrange(settings.stream, count=args.count)
    latest.reverse()
    printer.show(_decode(latest))
    last_id = latest[-1][0] if latest else b"$"
    while args.follow:
        answer = await redis.xread({settings.stream: last_id}, block=BLOCK_MS, count=100)
        for _, entries in answer:
            printer.show(_decode(entries))
            last_id = entries[-1][0]


async def _grouped(redis: Redis, settings: Settings, args: argparse.Namespace, printer: _Printer) -> None:
    try:
        await redis.xgroup_create(settings.stream, args.group, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    while True:
        answer = await redis.xreadgroup(
            args.group,
            args.consumer,
            {settings.stream: ">"},
            count=args.count,
            block=BLOCK_MS if args.follow else None,
        )
        entries = [entry for _, batch in answer for entry in batch]
        printer.show(_decode(entries))
        if entries:
            # acknowledged only once printed: a crash before this line leaves them pending for XAUTOCLAIM
            await redis.xack(settings.stream, args.group, *[entry_id for entry_id, _ in entries])
        if not args.follow:
            return


async def _tail(settings: Settings, args: argparse.Namespace) -> None:
    redis = redis_client(settings, socket_timeout_s=None)
    printer = _Printer(args.json)
    try:
        if args.group:
            await _grouped(redis, settings, args, printer)
        else:
            await _plain(redis, settings, args, printer)
    finally:
        await redis.aclose()


def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        sys.stderr.write("cvco-ipn events tail: --count must be at least 1\n")
        return 2
    settings = load_settings()
    try:
        asyncio.run(_tail(settings, args))
    except KeyboardInterrupt:
        return 0
    return 0
