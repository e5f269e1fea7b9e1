"""The one-command demo: Redis (embedded unless `CVCO_REDIS_URL` is set), the receiver and a worker in this
process's event loop, and every scenario played against them; then what reached the stream and the
failed list, checked against what each scenario should give.

`run_demo(...)` does it all and cleans up after itself; `cli.demo` prints the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from arq.constants import result_key_prefix
from arq.cron import CronJob
from pydantic import SecretStr
from redis.asyncio import Redis

from ingest.app import create_app
from ingest.redis_connection import redis_client
from schemas.job import notification_job_id
from schemas.session import PendingPayment
from schemas.settings import Settings, ShopConfig
from simulator.deliver import Outcome, RetryPolicy, Summary, play
from simulator.embedded_redis import EmbeddedRedis, free_port
from simulator.scenarios import ALL, SCENARIOS, Delivery, Platform
from workers import failed_store
from workers.jobs import publish_session_expiry
from workers.sessions import track_session
from workers.worker import build_worker

DEMO_SHOP_ID = "12345678"
DEMO_TEST_KEY = "1122334455667788"
"""The platform documentation's example TEST key: this shop only ever exists in a demo."""

SESSION_TIMEOUT_S = 2
SESSION_GRACE_S = 1
SETTLE_TIMEOUT_S = 10.0
EVENTS_TIMEOUT_S = 8.0
DEMO_STREAM_TTL_S = 3600
"""On a shared Redis the demo's own stream and queue are left for inspection, then expire."""


@dataclass
class DemoReport:
    """What the demo did and saw."""

    redis_url: str
    embedded: bool
    shop_id: str
    settings: Settings
    deliveries: list[Delivery] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    events: list[dict[str, Any]] = field(default_factory=list)
    failed: list[failed_store.FailedJob] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def demo_settings(redis_url: str, base: Settings, *, shared: bool) -> tuple[Settings, str]:
    """Settings for the demo run and the shop it signs for.

    On a shared Redis, the stream and queue get run-scoped names, so a real worker never sees demo jobs
    and consumers never see demo events; with no `CVCO_SHOPS` the demo shop is random there, so its
    payments cannot collide with an earlier run's.
    """
    run = secrets.token_hex(4)
    if base.shops:
        shop_id = next(iter(base.shops))
        shops = base.shops
    else:
        shop_id = f"{random.SystemRandom().randrange(10**7, 10**8)}" if shared else DEMO_SHOP_ID
        shops = {shop_id: ShopConfig(test_key=SecretStr(DEMO_TEST_KEY), modes=("TEST",))}
    scoped = {"stream": f"cvco:demo:{run}:events", "queue_name": f"cvco:demo:{run}:queue"} if shared else {}
    settings = base.model_copy(
        update={
            "redis_url": redis_url,
            "shops": shops,
            "session_timeout_s": SESSION_TIMEOUT_S,
            "session_grace_s": SESSION_GRACE_S,
            **scoped,
        }
    )
    return settings, shop_id


def every_second(job: CronJob) -> CronJob:
    """The same cron job, due every second: the demo cannot wait for a production schedule."""
    return dataclasses.replace(job, month=None, day=None, weekday=None, hour=None, minute=None, second=None)


@contextlib.asynccontextmanager
async def receiver(settings: Settings) -> AsyncIterator[str]:
    """The real receiver app on a free local port; yields its notification URL."""
    runner = web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=2)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}/ipn"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def worker(settings: Settings, *, crons: bool) -> AsyncIterator[None]:
    """The real arq worker in this loop, its cron jobs sped up (or none); stopped (tasks cancelled) at exit."""
    built = build_worker(settings, handle_signals=False, poll_delay=0.05, job_completion_wait=0)
    # the crons work on shared keys (every watched session, the alert outbox): only on a Redis of our own
    built.cron_jobs = [every_second(job) for job in built.cron_jobs] if crons else []
    task = asyncio.create_task(built.async_run(), name="cvco-demo-worker")
    try:
        yield
    finally:
        await built.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def expected_events(deliveries: list[Delivery]) -> dict[str, Counter[str]]:
    """Per order id, how many events of each type the run should add to the stream."""
    expected: dict[str, Counter[str]] = {}
    for delivery in deliveries:
        expected.setdefault(delivery.order_id, Counter()).update(delivery.expected)
    return expected


async def read_events(redis: Redis, stream: str, order_ids: set[str]) -> list[dict[str, Any]]:
    """The decoded events of these orders, in stream order."""
    events = []
    for _, entry in await redis.xrange(stream):
        raw = entry.get(b"event")
        event = json.loads(raw) if raw else {}
        if event.get("order_id") in order_ids:
            events.append(event)
    return events


def compare(expected: dict[str, Counter[str]], events: list[dict[str, Any]]) -> list[str]:
    """One line per order whose events differ from what its scenario should give."""
    seen: dict[str, Counter[str]] = {order: Counter() for order in expected}
    for event in events:
        seen[event["order_id"]][event["type"]] += 1
    problems = []
    for order, wanted in expected.items():
        if seen[order] != wanted:
            problems.append(
                f"{order}: expected {dict(wanted) or 'no event'}, got {dict(seen[order]) or 'none'}"
            )
    return problems


async def wait_for_events(
    redis: Redis, stream: str, expected: dict[str, Counter[str]], timeout_s: float
) -> list[dict[str, Any]]:
    """Poll the stream until each order has exactly its expected events, or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = await read_events(redis, stream, set(expected))
        if not compare(expected, events) or time.monotonic() > deadline:
            await asyncio.sleep(0.3)  # an event published twice by mistake has a moment to show up
            return await read_events(redis, stream, set(expected))
        await asyncio.sleep(0.1)


def job_settler(redis: Redis) -> Callable[[Delivery], Awaitable[None]]:
    """Waits until the worker has run the job of a delivered notification (its arq result exists)."""

    async def settle(delivery: Delivery) -> None:
        result_key = result_key_prefix + notification_job_id(delivery.fields)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SETTLE_TIMEOUT_S):
                while not await redis.exists(result_key):  # noqa: ASYNC110  # polling Redis: no in-process event to await
                    await asyncio.sleep(0.02)

    return settle


async def expire_when_due(redis: Redis, settings: Settings, pending: PendingPayment) -> None:
    """What the sweeper does for one session, through the same exactly-once path, at its deadline."""
    await asyncio.sleep(max(0.0, pending.deadline.timestamp() - time.time()))
    await publish_session_expiry(redis, settings, pending, datetime.now(UTC))


def build_deliveries(settings: Settings, shop_id: str, seed: int | None) -> list[Delivery]:
    shop = settings.shops[shop_id]
    rng = random.Random(seed)
    platform = Platform(
        shop_id,
        shop,
        shop.modes[0],
        rng,
        datetime.now(UTC),
        session_timeout_s=settings.session_timeout_s,
        session_grace_s=settings.session_grace_s,
        order_prefix=f"DEMO{rng.randrange(16**4):04X}",
    )
    return [delivery for name in (*ALL, "unparsable") for delivery in SCENARIOS[name](platform, name)]


async def run_demo(
    base: Settings,
    *,
    redis_url: str | None,
    seed: int | None = None,
    on_start: Callable[[DemoReport], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> DemoReport:
    """Run everything; `redis_url=None` starts an embedded Redis, removed at the end."""
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        shared = redis_url is not None
        url = redis_url if redis_url is not None else await stack.enter_async_context(EmbeddedRedis())
        settings, shop_id = demo_settings(url, base, shared=shared)
        report = DemoReport(url, not shared, shop_id, settings)
        report.deliveries = build_deliveries(settings, shop_id, seed)
        if on_start:
            on_start(report)
        redis = redis_client(settings, socket_timeout_s=None)
        stack.push_async_callback(redis.aclose)
        notification_url = await stack.enter_async_context(receiver(settings))
        await stack.enter_async_context(worker(settings, crons=not shared))
        own_sessions: list[PendingPayment] = []

        async def register(pending: PendingPayment) -> bool:
            if (
                shared
            ):  # kept off the shared watch list, where a real sweeper would expire it into the real stream
                own_sessions.append(pending)
            else:
                await track_session(redis, pending)
            return True

        report.summary = await play(
            notification_url,
            report.deliveries,
            policy=RetryPolicy(timeout_s=5, retries=2, interval_s=0.5),
            register_session=register,
            on_outcome=on_outcome,
            settle=job_settler(redis),
        )
        for pending in own_sessions:
            await expire_when_due(redis, settings, pending)
        expected = expected_events(report.deliveries)
        report.events = await wait_for_events(redis, settings.stream, expected, EVENTS_TIMEOUT_S)
        report.problems = compare(expected, report.events)
        parked_orders = {d.order_id for d in report.deliveries if d.parks}
        report.failed = [
            job async for job in failed_store.iter_failed(redis) if job.order_id in parked_orders
        ]
        if len(report.failed) < len(parked_orders):
            report.problems.append(
                f"{len(parked_orders)} unparsable notification(s) expected in the failed list"
            )
        report.problems += [f"{o.delivery.order_id}: not delivered" for o in report.summary.failures]
        if shared:
            for key in (settings.stream, settings.queue_name):
                await redis.expire(key, DEMO_STREAM_TTL_S)
    report.elapsed_s = time.monotonic() - started
    return report
