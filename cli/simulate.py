"""`cvco-ipn simulate`: play the payment platform against a notification URL; a load generator too."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.redis_connection import redis_client
from core.sessions import track_session
from schemas.session import PendingPayment
from schemas.settings import Settings, ShopConfig, load_settings
from simulator.deliver import Attempt, RetryPolicy, Summary, play
from simulator.scenarios import ALL, SCENARIOS, Delivery, Platform

RetryWaitHook = Callable[[Delivery, int, Attempt], None]


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser("simulate", help="send signed platform-like notifications to a URL")
    parser.add_argument("--url", default="http://127.0.0.1:8080/ipn", help="notification URL")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, "all"],
        metavar="NAME",
        help=f"repeatable; one of: all, {', '.join(SCENARIOS)} (default all)",
    )
    parser.add_argument("--shop", help="vads_site_id from CVCO_SHOPS (default the first)")
    parser.add_argument("--mode", choices=("TEST", "PRODUCTION"), help="default the shop's first mode")
    parser.add_argument("--seed", type=int, help="same seed, same notifications (ids, amounts, buyers)")
    parser.add_argument("--count", type=_positive(int), default=1, help="play the scenarios N times")
    parser.add_argument("--rate", type=_positive(float), help="notifications per second (default no limit)")
    parser.add_argument("--concurrency", type=_positive(int), default=100, help="open connections at most")
    parser.add_argument("--timeout", type=_positive(float), default=10.0, help="seconds per attempt")
    parser.add_argument(
        "--retries",
        type=int,
        choices=range(0, 11),
        default=4,
        metavar="0-10",
        help="attempts after a notification that did not get its 200, as the platform makes (default 4)",
    )
    parser.add_argument(
        "--retry-interval",
        type=_positive(float),
        default=900.0,
        metavar="S",
        help="seconds between those attempts (default 900, the platform's 15 minutes)",
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--cacert", metavar="FILE", help="CA bundle that signed the URL's certificate (a test CA)"
    )
    tls.add_argument(
        "--insecure", action="store_true", help="do not verify the URL's TLS certificate (a test set-up only)"
    )
    parser.add_argument("--redis-url", help="where silent sessions are registered (default CVCO_REDIS_URL)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def chosen_scenarios(names: list[str] | None) -> list[str]:
    """The scenarios named, `all` expanded, in a stable order without repeats."""
    wanted = set(names or ["all"])
    if "all" in wanted:
        wanted.update(ALL)
    return [name for name in SCENARIOS if name in wanted]


def pick_shop(settings: Settings, shop_id: str | None, mode: str | None) -> tuple[str, ShopConfig, str]:
    """The shop and mode to sign with; a shop or mode the configuration lacks exits 2."""
    shop_id = shop_id or next(iter(settings.shops))
    shop = settings.shops.get(shop_id)
    if shop is None:
        sys.stderr.write(f"cvco-ipn simulate: --shop {shop_id} is not in CVCO_SHOPS\n")
        raise SystemExit(2)
    mode = mode or shop.modes[0]
    if mode not in shop.modes:
        sys.stderr.write(f"cvco-ipn simulate: shop {shop_id} does not accept mode {mode}\n")
        raise SystemExit(2)
    return shop_id, shop, mode


ORDERS_SHOWN = 20
"""Order ids listed after the table (all of them with --json)."""


def _tls(args: argparse.Namespace) -> ssl.SSLContext | bool:
    if args.insecure:
        return False
    if args.cacert is None:
        return True
    try:
        return ssl.create_default_context(cafile=args.cacert)
    except (OSError, ssl.SSLError) as e:
        sys.stderr.write(f"cvco-ipn simulate: --cacert {args.cacert}: {e}\n")
        raise SystemExit(2) from None


def print_summary(summary: Summary, console: Console) -> None:
    table = Table(title="Deliveries")
    for column in ("scenario", "sent", "accepted", "retried", "failed"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name, counts in sorted(summary.by_scenario.items()):
        table.add_row(name, str(counts.sent), str(counts.accepted), str(counts.retried), str(counts.failed))
    total = summary.total
    table.add_row("total", str(total.sent), str(total.accepted), str(total.retried), str(total.failed))
    console.print(table)
    p50, p99 = summary.percentile_ms(0.5), summary.percentile_ms(0.99)
    if p50 is not None and p99 is not None:
        rate = total.sent / summary.elapsed_s if summary.elapsed_s else 0.0
        console.print(f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; {summary.elapsed_s:.2f} s, {rate:.0f}/s")
    orders = list(summary.orders.items())
    console.print(Text(f"order ids ({len(orders)}):"))
    for order, scenario in orders[:ORDERS_SHOWN]:
        console.print(Text(f"  {order}  {scenario}"), soft_wrap=True)
    if len(orders) > ORDERS_SHOWN:
        console.print(Text(f"  and {len(orders) - ORDERS_SHOWN} more (--json lists them all)"))
    for outcome in summary.failures:
        answers = ", ".join(str(a.status or a.error) for a in outcome.attempts)
        console.print(
            Text("failed", style="red"),
            Text(f"{outcome.delivery.scenario} {outcome.delivery.order_id}: {answers}"),
        )


def _say_retry_wait(console: Console, interval_s: float, retries: int) -> RetryWaitHook:
    def say(delivery: Delivery, retry: int, failed: Attempt) -> None:
        answer = failed.status or failed.error
        console.print(
            Text(
                f"{delivery.order_id} ({delivery.scenario}): answered {answer}; retry {retry} of {retries} "
                f"in {interval_s:g} s (--retry-interval)"
            )
        )

    return say


async def simulate(
    args: argparse.Namespace, settings: Settings, on_retry_wait: RetryWaitHook | None = None
) -> Summary:
    shop_id, shop, mode = pick_shop(settings, args.shop, args.mode)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    platform = Platform(
        shop_id,
        shop,
        mode,
        rng,
        datetime.now(UTC),
        session_timeout_s=settings.session_timeout_s,
        session_grace_s=settings.session_grace_s,
        order_prefix=f"SIM{rng.randrange(16**4):04X}",
    )
    deliveries: list[Delivery] = []
    for _ in range(args.count):
        for name in chosen_scenarios(args.scenario):
            deliveries.extend(SCENARIOS[name](platform, name))
    policy = RetryPolicy(timeout_s=args.timeout, retries=args.retries, interval_s=args.retry_interval)
    target = settings.model_copy(update={"redis_url": args.redis_url}) if args.redis_url else settings
    redis = redis_client(target, socket_timeout_s=None)
    try:

        async def register_session(pending: PendingPayment) -> bool:
            try:
                await track_session(redis, pending)
            except RedisError:
                return False
            return True

        return await play(
            args.url,
            deliveries,
            policy=policy,
            rate=args.rate,
            concurrency=args.concurrency,
            register_session=register_session,
            on_retry_wait=on_retry_wait,
            ssl=_tls(args),
        )
    finally:
        await redis.aclose()


def run(args: argparse.Namespace) -> int:
    settings = load_settings(require_shops=True)
    console = Console()
    # on a terminal, a scheduled retry says what it waits for: the platform's interval is 15 minutes
    told = _say_retry_wait(console, args.retry_interval, args.retries) if console.is_terminal else None
    try:
        summary = asyncio.run(simulate(args, settings, told))
    except KeyboardInterrupt:
        sys.stderr.write("cvco-ipn simulate: interrupted; the notifications sent so far stay sent\n")
        return 130
    if args.json:
        sys.stdout.write(json.dumps(summary.as_json(), indent=2) + "\n")
    else:
        print_summary(summary, console)
    return 1 if summary.total.failed else 0
