"""`cvco-ipn demo`: the whole system on one machine, with simulated platform traffic."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.logs import configure_logging
from cli.runner import cannot_reach
from cli.text import cell
from core.redis_connection import redis_client
from schemas.settings import load_settings
from simulator.deliver import DeliveryOutcome
from simulator.demo import DEMO_TEST_KEY, DemoReport, run_demo


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "demo",
        help="run receiver, worker and simulated traffic on an embedded Redis; print what happened",
        description="Run the whole system on this machine: an embedded Redis when CVCO_REDIS_URL is unset "
        "(that Redis otherwise, deleting nothing), a receiver, a worker and every simulated platform scenario; "
        "print the events and the failed list. Exits 0 when each scenario gave exactly its events.",
    )
    parser.add_argument("--seed", type=int, help="same seed, same simulated notifications")
    parser.set_defaults(handler=run)


def _euros(cents: object) -> str:
    return f"{cents / 100:.2f}" if isinstance(cents, int) else "-"


def print_start(report: DemoReport, console: Console) -> None:
    where = "embedded Redis (temporary, no persistence)" if report.embedded else "CVCO_REDIS_URL"
    console.print(f"[bold]cvco-ipn demo[/bold]: {where} at {report.redis_url}")
    shop = report.settings.shops[report.shop_id]
    key = DEMO_TEST_KEY if shop.key_for("TEST") == DEMO_TEST_KEY else "from CVCO_SHOPS"
    console.print(f"demo shop {report.shop_id}, {shop.modes[0]} key {key}; stream {report.settings.stream}")
    console.print(
        f"receiver + worker in this process; {len(report.deliveries)} platform actions over "
        f"{len({d.scenario for d in report.deliveries})} scenarios; sessions time out after "
        f"{report.settings.session_timeout_s} s + {report.settings.session_grace_s} s grace"
    )
    if not report.embedded:
        console.print(
            "[yellow]shared Redis: nothing is deleted; the demo's stream and queue are run-scoped and expire "
            "in 1 h, its payments use a shop of its own, its silent session is expired by the demo itself (no "
            "cron runs), and its parked job joins the shared failed list (cvco-ipn failed list)[/yellow]"
        )


def print_events(report: DemoReport, console: Console) -> None:
    scenario_of = {d.order_id: d.scenario for d in report.deliveries}
    table = Table(title=f"Events on {report.settings.stream}")
    for column in ("type", "scenario", "order", "amount €", "CVCO €", "status", "source"):
        table.add_column(column, justify="right" if "€" in column else "left", no_wrap=True, min_width=6)
    table.add_column("auth result", no_wrap=True, max_width=36, overflow="ellipsis")
    for event in report.events:
        auth = event.get("auth_result") or {}
        values = (
            event["type"],
            scenario_of.get(event.get("order_id") or "", "?"),
            event.get("order_id") or "-",
            _euros(event.get("amount")),
            _euros(event.get("cvco_amount")),
            str(event.get("status")),
            str(event.get("source")),
            f"{auth.get('code') or ''} {auth.get('message') or ''}".strip(),
        )
        table.add_row(*map(cell, values))
    console.print(table)


def print_failed(report: DemoReport, console: Console) -> None:
    table = Table(title="Failed (parked) jobs")
    table.add_column("id", no_wrap=True, min_width=68)
    table.add_column("shop", no_wrap=True, min_width=8)
    table.add_column("order", no_wrap=True, min_width=16)
    table.add_column("error", no_wrap=True, max_width=60, overflow="ellipsis")
    for job in report.failed:
        # the whole id: `cvco-ipn failed show` and `replay` take it as printed
        table.add_row(
            *map(cell, (job.id, job.shop_id, job.order_id, f"{job.error_class}: {job.error_message}"))
        )
    console.print(table)
    console.print(
        "The parked job is the deliberately broken notification: correctly signed, so the receiver answered "
        "200 and kept it,\nbut its vads_payment_seq is not JSON. An operator sees it with "
        "`cvco-ipn failed list`; replaying cannot fix it, so it is closed with\n"
        "`cvco-ipn failed discard ID --reason TEXT` (kept for audit in `cvco-ipn failed list --discarded`)."
    )


def print_outcome(report: DemoReport, console: Console) -> None:
    total = report.summary.total
    p50, p99 = report.summary.percentile_ms(0.5), report.summary.percentile_ms(0.99)
    console.print(
        f"{total.sent} actions, {total.accepted} delivered, {total.retried} retried, {total.failed} failed; "
        f"HTTP latency p50 {p50 or 0:.1f} ms, p99 {p99 or 0:.1f} ms; "
        f"{len(report.events)} events, {len(report.failed)} parked; {report.elapsed_s:.1f} s"
    )
    if report.problems:
        console.print("[red bold]MISSING OR UNEXPECTED:[/red bold]")
        for problem in report.problems:
            console.print(cell(f"  {problem}"), style="red")
    else:
        console.print("[green bold]every scenario gave exactly the events it should[/green bold]")
    if report.embedded:
        console.print(
            f"The embedded Redis at {report.redis_url} is gone now the demo has ended, with its events and "
            "parked job: point CVCO_REDIS_URL at a Redis of yours to keep them for `cvco-ipn failed` and "
            "`cvco-ipn events tail`."
        )


async def _demo(args: argparse.Namespace, console: Console) -> DemoReport:
    base = load_settings()
    redis_url = os.environ.get("CVCO_REDIS_URL") or None
    if redis_url is not None:  # a shared Redis that does not answer: say so before any traffic
        async with redis_client(base, socket_timeout_s=base.redis_timeout_s) as redis:
            await redis.ping()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    task_id = progress.add_task("platform → receiver", total=None)

    def started(report: DemoReport) -> None:
        print_start(report, console)
        progress.update(task_id, total=len(report.deliveries))
        progress.start()

    def delivered(outcome: DeliveryOutcome) -> None:
        progress.update(task_id, advance=1, description=f"{outcome.delivery.scenario:<27}")

    try:
        return await run_demo(
            base, redis_url=redis_url, seed=args.seed, on_start=started, on_outcome=delivered
        )
    finally:
        progress.stop()


def run(args: argparse.Namespace) -> int:
    configure_logging("ERROR")
    console = Console()
    if not console.is_terminal:  # a pipe or a log file: wide enough for the tables, never wrapped
        console = Console(width=170)
    try:
        report = asyncio.run(_demo(args, console))
    except (RedisError, OSError) as e:  # CVCO_REDIS_URL names a Redis that does not answer
        sys.stderr.write(cannot_reach(load_settings(), e) + "\n")
        return 1
    print_events(report, console)
    print_failed(report, console)
    print_outcome(report, console)
    return 1 if report.problems else 0
