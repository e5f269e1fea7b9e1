"""`cvco-ipn events tail`: read the normalized event stream, as a table, lines or JSON lines.

Without `--group` it reads with XREVRANGE/XREAD (nothing is acknowledged), newest N first found, shown
oldest first; `--shop`, `--type`, `--order` and `--since` keep only matching events. With `--group G
--consumer C` it reads through a consumer group (created at the stream's start if missing): first the
entries this consumer was handed before and never acknowledged, then new ones, and XACKs each entry
once it is printed. Filters are refused there: an entry a consumer skips would stay pending forever.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Iterable
from typing import Any, get_args

from arq.connections import ArqRedis
from redis.exceptions import ResponseError
from rich.table import Table

from cli.runner import UsageError, parse_since, run_with_redis
from cli.text import cell, console, is_terminal, json_text, literal
from schemas.event import EventType
from schemas.settings import Settings
from workers.event_stream import Entry, EventFilter, decode_event, latest_events

BLOCK_MS = 1000
COLUMNS = (
    "received", "type", "shop", "mode", "order", "trans", "amount", "paid", "CVCO", "status", "auth", "flags",
)  # fmt: skip
WIDTHS = (19, 18, 8, 10, 16, 6, 9, 9, 9, 12, 4, 0)
"""Column widths of `--follow` lines on a terminal: one line per event, aligned, never a redrawn table."""


def register(commands: argparse._SubParsersAction[Any]) -> None:
    events = commands.add_parser("events", help="read the normalized event stream")
    actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    tail = actions.add_parser(
        "tail",
        help="print events as a table, lines or --json",
        description="Print the last events (a table on a terminal, tab-separated lines on a pipe, or JSON "
        "lines); --follow then prints one line per new event until interrupted.",
    )
    tail.add_argument("--follow", action="store_true", help="keep printing new events until interrupted")
    tail.add_argument("--json", action="store_true", help="one JSON event per line")
    tail.add_argument("--count", type=int, default=20, metavar="N", help="last N events (default 20)")
    tail.add_argument("--shop", metavar="ID", help="only this shop (vads_site_id)")
    tail.add_argument("--type", choices=get_args(EventType), metavar="TYPE", help="only this event type")
    tail.add_argument("--order", metavar="REF", help="only this order id (vads_order_id)")
    tail.add_argument("--since", help="only events since: a duration (2h, 30m, 1d) or an ISO date")
    tail.add_argument("--group", metavar="G", help="read through this consumer group and XACK")
    tail.add_argument("--consumer", metavar="C", help="consumer name in the group (default cli)")
    tail.set_defaults(handler=run)


def _euros(cents: object) -> str:
    return f"{cents / 100:.2f}" if isinstance(cents, int) and not isinstance(cents, bool) else "-"


def row(event: dict[str, Any]) -> list[str]:
    """The columns of one event, each made literal (one line, nothing a terminal obeys)."""
    auth = event.get("auth_result")
    flags = event.get("flags")
    values = [
        str(event.get("received_at", ""))[:19],
        event.get("type", ""),
        event.get("shop_id", ""),
        event.get("mode", ""),
        event.get("order_id") or "-",
        event.get("trans_id", ""),
        _euros(event.get("amount")),
        _euros(event.get("paid_amount")),
        _euros(event.get("cvco_amount")),
        event.get("status", ""),
        (auth.get("code") if isinstance(auth, dict) else None) or "-",
        ",".join(map(str, flags)) if isinstance(flags, list) else "",
    ]
    return [literal(value) for value in values]


class Printer:
    """Prints batches of events: a table once, then (following) one line per event."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.terminal = is_terminal()
        self.header_done = False
        self.console = console()

    def table(self, events: list[dict[str, Any]]) -> None:
        if self.as_json or not self.terminal:
            self.lines(events)
            return
        if events:
            table = Table(*COLUMNS)
            for event in events:
                table.add_row(*map(cell, row(event)))
            self.console.print(table)
            self.header_done = True

    def lines(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            sys.stdout.write(self._line(event) + "\n")
        sys.stdout.flush()

    def _line(self, event: dict[str, Any]) -> str:
        if self.as_json:
            return json_text(event)
        if not self.terminal:
            return "\t".join(row(event))
        text = "  ".join(value.ljust(width) for value, width in zip(row(event), WIDTHS, strict=True))
        if not self.header_done:
            self.header_done = True
            header = "  ".join(name.ljust(width) for name, width in zip(COLUMNS, WIDTHS, strict=True))
            return header.rstrip() + "\n" + text.rstrip()
        return text.rstrip()


def _decode(entry: Entry) -> dict[str, Any] | None:
    event = decode_event(entry)
    if event is None:
        sys.stderr.write(f"cvco-ipn: stream entry {entry[0].decode()} holds no readable event\n")
    return event


def _wanted(args: argparse.Namespace) -> EventFilter:
    return EventFilter(shop=args.shop, type=args.type, order=args.order)


async def _plain(
    redis: ArqRedis, settings: Settings, args: argparse.Namespace, printer: Printer, stop: asyncio.Event
) -> None:
    low = f"{int(parse_since(args.since) * 1000)}-0" if args.since else "-"
    # the newest entry first, matching or not: what --follow then reads is all new, nothing skipped
    newest = await redis.xrevrange(settings.stream, count=1)
    last_id = newest[0][0].decode() if newest else "0-0"
    latest = await latest_events(
        redis, settings.stream, args.count, _wanted(args), low=low, high=last_id, decode=_decode
    )
    printer.table([event for entry in latest if (event := _decode(entry)) is not None])
    if not args.follow:
        return
    while not stop.is_set():
        answer = await redis.xread({settings.stream: last_id}, block=BLOCK_MS, count=100)
        for _, entries in answer:
            events = (_decode(entry) for entry in entries)
            printer.lines(event for event in events if event is not None and _wanted(args).matches(event))
            last_id = entries[-1][0].decode()


async def _grouped(
    redis: ArqRedis, settings: Settings, args: argparse.Namespace, printer: Printer, stop: asyncio.Event
) -> None:
    try:
        await redis.xgroup_create(settings.stream, args.group, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    consumer = args.consumer or "cli"
    # first what this consumer was handed before and never acknowledged (from id 0), then new entries
    backlog: str | None = "0"
    left = None if args.follow else args.count
    while (left is None or left > 0) and not stop.is_set():
        batch = args.count if left is None else min(left, args.count)
        answer = await redis.xreadgroup(
            args.group,
            consumer,
            {settings.stream: backlog or ">"},
            count=batch,
            block=None if backlog or not args.follow else BLOCK_MS,
        )
        entries = [entry for _, part in answer for entry in part]
        for entry in entries:
            event = _decode(entry)
            if event is None:
                continue  # left pending: it was not delivered
            printer.lines([event])
            # acknowledged only once printed: a crash before leaves it pending, handed again next time
            await redis.xack(settings.stream, args.group, entry[0])
            if left is not None:
                left -= 1
        if backlog is not None:
            backlog = entries[-1][0].decode() if len(entries) == batch else None
        elif not args.follow:
            return


async def _tail(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    printer = Printer(args.json)
    stop = asyncio.Event()
    # Ctrl-C ends a read at its next turn (within BLOCK_MS), never between a print and its XACK; a
    # cancelled blocking read may not end at all (redis-py 5.3 can swallow the cancellation)
    if args.follow:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    if args.group:
        await _grouped(redis, settings, args, printer, stop)
    else:
        await _plain(redis, settings, args, printer, stop)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        sys.stderr.write("cvco-ipn events tail: --count must be at least 1\n")
        return 2
    if args.consumer and not args.group:
        sys.stderr.write("cvco-ipn events tail: --consumer names a consumer of a --group; give --group too\n")
        return 2
    if args.group and (args.shop or args.type or args.order or args.since):
        sys.stderr.write(
            "cvco-ipn events tail: --shop, --type, --order and --since cannot go with --group "
            "(an entry a consumer skips stays pending)\n"
        )
        return 2
    if args.since:
        try:
            parse_since(args.since)
        except UsageError as e:
            sys.stderr.write(f"cvco-ipn events tail: {e}\n")
            return 2
    return run_with_redis(_tail, args, interrupted=0)
