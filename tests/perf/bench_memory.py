"""Memory benchmark (a script, not collected by pytest): what Redis holds per payment, per event and per
parked job once the transient keys are gone, by key family with its TTL, and what that makes per day.

The mix is the one the footprint issue measured: every payment authorised, a third also captured (BATCH)
and that capture resent once by the platform (RETRY: a duplicate, no event), one in ten a cascade
(CVCO + card). The notifications are the simulator's, signed; they are queued as the receiver queues
them and processed by real workers (in this process); `--parked` unparsable ones land in the failed store.

Run: .venv/bin/python -m tests.perf.bench_memory [--payments 10000] [--parked 200] [--redis-url URL]
Without --redis-url it starts a private redis-server (INFO memory is then this run's alone); with it, it
flushes that database first: never point it at a database holding anything of value.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from arq.connections import ArqRedis
from pydantic import SecretStr
from redis.asyncio import Redis

from schemas.job import PROCESS_NOTIFICATION, QueuedNotification, notification_job_id
from schemas.settings import Settings, ShopConfig
from simulator.embedded_redis import EmbeddedRedis
from simulator.fields import cascade_fields
from simulator.platform import Platform
from simulator.scenarios import SCENARIOS
from workers.worker import arq_client, build_worker

SHOP_ID = "12345678"
KEY = "1122334455667788"
TRANSIENT_TTL_S = 3600
"""Keys living at most this long (arq results, locks) are gone within the hour: not part of what a
payment costs once settled."""
DAY_S = 86400
_ID_PART = re.compile(r"^[0-9a-f]{16,}$|^\d+$|^ipn$|.*\d.*\d.*|^[A-Za-z0-9+/]{20,}={0,2}$")
"""A key part that is an id: hex, a number, or anything with two digits or more, or base64 (a signature)."""


@dataclass
class Family:
    """Keys of one pattern: how many, their bytes (MEMORY USAGE) and TTL range."""

    type: str
    count: int = 0
    bytes: int = 0
    min_ttl_s: float | None = None
    max_ttl_s: float | None = None

    def add(self, size: int, ttl_ms: int) -> None:
        self.count += 1
        self.bytes += size
        ttl_s = None if ttl_ms < 0 else ttl_ms / 1000
        if ttl_s is not None:
            self.min_ttl_s = ttl_s if self.min_ttl_s is None else min(self.min_ttl_s, ttl_s)
            self.max_ttl_s = ttl_s if self.max_ttl_s is None else max(self.max_ttl_s, ttl_s)

    def describe_ttl(self) -> str:
        if self.min_ttl_s is None or self.max_ttl_s is None:
            return "none"
        if self.transient:
            return f"{self.max_ttl_s:.0f} s (transient)"
        return f"{self.min_ttl_s / DAY_S:.2f}-{self.max_ttl_s / DAY_S:.2f} d"

    @property
    def transient(self) -> bool:
        return self.max_ttl_s is not None and self.max_ttl_s <= TRANSIENT_TTL_S


def family_of(key: str) -> str:
    """`cvco:payment:12345678:PRODUCTION:...` -> `cvco:payment:*`: the key with its id parts starred."""
    parts = key.split(":")
    for index, part in enumerate(parts):
        if index > 0 and _ID_PART.match(part):
            return ":".join(parts[:index]) + ":*"
    return key


async def families(redis: Redis) -> dict[str, Family]:
    found: dict[str, Family] = {}
    async for raw in redis.scan_iter(count=1000):
        key = raw.decode()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.memory_usage(key, samples=0)
            pipe.pttl(key)
            pipe.type(key)
            size, ttl_ms, kind = await pipe.execute()
        name = family_of(key)
        found.setdefault(name, Family(kind.decode())).add(size or 0, ttl_ms)
    return found


def deliveries(platform: Platform, payments: int, parked: int) -> tuple[list[list[Mapping[str, str]]], int]:
    """Notifications in waves (a later wave only once the earlier is processed); the events expected."""
    authorised: list[Mapping[str, str]] = []
    captured: list[Mapping[str, str]] = []
    resent: list[Mapping[str, str]] = []
    for index in range(payments):
        if index % 10 == 0:
            payment = platform.payment(platform.rng.randrange(3000, 60_000, 10))
            legs = platform.cascade_legs(payment, "AUTHORISED", "00")
            fields = cascade_fields(payment, legs, platform.rng, status="AUTHORISED", source="PAY")
            authorised.append(platform.send("memory", "cascade", payment, fields).fields)
            continue
        payment = platform.payment()
        authorised.append(
            platform.send("memory", "pay", payment, platform.single(payment, "AUTHORISED", "PAY")).fields
        )
        if index % 3 == 1:
            capture = platform.single(payment, "CAPTURED", "BATCH")
            captured.append(platform.send("memory", "capture", payment, capture).fields)
            retry = platform.single(payment, "CAPTURED", "RETRY")
            resent.append(platform.send("memory", "capture resent", payment, retry).fields)
    broken = [d.fields for _ in range(parked) for d in SCENARIOS["unparsable"](platform, "memory")]
    return [authorised + broken, captured, resent], len(authorised) + len(captured)


async def enqueue(pool: ArqRedis, settings: Settings, wave: list[Mapping[str, str]]) -> None:
    """Queue each notification's job as the receiver does (same function, argument, id and queue)."""
    received_at = datetime.now(UTC)

    async def one(fields: Mapping[str, str]) -> None:
        # a request id as the receiver mints one (32 hex digits): every history entry keeps it
        request_id = f"{random.getrandbits(128):032x}"
        job = QueuedNotification(
            fields=dict(fields), received_at=received_at, client_ip="192.0.2.1", request_id=request_id
        )
        await pool.enqueue_job(
            PROCESS_NOTIFICATION,
            job.model_dump(mode="json"),
            _job_id=notification_job_id(fields),
            _queue_name=settings.queue_name,
        )

    for start in range(0, len(wave), 200):
        await asyncio.gather(*(one(fields) for fields in wave[start : start + 200]))


@contextlib.asynccontextmanager
async def redis_url(given: str | None) -> AsyncIterator[str]:
    if given:
        yield given
        return
    async with EmbeddedRedis() as url:
        yield url


async def run(args: argparse.Namespace) -> None:
    async with redis_url(args.redis_url) as url:
        shop = ShopConfig(test_key=SecretStr(KEY), production_key=SecretStr(KEY[::-1]))
        settings = Settings(redis_url=url, shops={SHOP_ID: shop})
        redis = Redis.from_url(url)
        await redis.flushdb()
        before = (await redis.info("memory"))["used_memory"]
        platform = Platform(SHOP_ID, shop, "PRODUCTION", random.Random(args.seed), datetime.now(UTC))
        waves, expected_events = deliveries(platform, args.payments, args.parked)
        pool = arq_client(settings, socket_timeout_s=None)
        for wave in waves:
            await enqueue(pool, settings, wave)
            workers = [
                build_worker(settings, burst=True, poll_delay=0, handle_signals=False, cron_jobs=[])
                for _ in range(2)
            ]
            await asyncio.gather(*(worker.main() for worker in workers))
            for worker in workers:
                await worker.close()
        await pool.aclose()
        events = await redis.xlen(settings.stream)
        found = await families(redis)
        after = (await redis.info("memory"))["used_memory"]
        await redis.aclose()
    report(args, settings, found, events, expected_events, after - before)


def report(
    args: argparse.Namespace,
    settings: Settings,
    found: dict[str, Family],
    events: int,
    expected: int,
    used: int,
) -> None:
    print(f"{args.payments} payments, {events} events (expected {expected}), {args.parked} parked\n")
    print(f"{'key family':<34} {'type':<7} {'keys':>7} {'bytes':>11} {'per key':>8}  TTL")
    for name, family in sorted(found.items(), key=lambda item: -item[1].bytes):
        ttl = family.describe_ttl()
        print(
            f"{name:<34} {family.type:<7} {family.count:>7} {family.bytes:>11,} {family.bytes // family.count:>8}  {ttl}"
        )
    stream = found.get(settings.stream, Family("stream")).bytes
    parked = sum(f.bytes for n, f in found.items() if n.startswith("cvco:failed:"))
    settled = sum(
        f.bytes
        for n, f in found.items()
        if not f.transient and n != settings.stream and not n.startswith("cvco:failed:")
    )
    per_payment, per_event = settled / args.payments, stream / max(events, 1)
    per_parked = parked / max(args.parked, 1)
    print(
        f"\nper settled payment: {per_payment:,.0f} bytes (state, history, indexes; transient keys left out)"
        f"\nper event on the stream: {per_event:,.0f} bytes"
        f"\nper parked job: {per_parked:,.0f} bytes"
        f"\nINFO used_memory grew by {used:,} bytes ({used / args.payments:,.0f} per payment, everything included)"
    )
    events_per_payment = events / args.payments
    print("\nprojected with the defaults (states 120 days; stream: the lower of its age and count caps):")
    for per_day in (10_000, 200_000):
        states = per_day * 120 * per_payment
        kept_events = min(
            per_day * events_per_payment * settings.stream_retention_s / DAY_S, settings.stream_maxlen
        )
        total = states + kept_events * per_event
        print(
            f"  {per_day:>7,}/day: states {states / 1e9:5.2f} GB + {kept_events:>9,.0f} events {kept_events * per_event / 1e9:5.2f} GB"
            f" = {total / 1e9:5.2f} GB"
        )
    print(
        f"  failed store at its cap ({settings.failed_max:,} parked jobs like these): {settings.failed_max * per_parked / 1e9:.2f} GB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument(
        "--parked", type=int, default=200, help="unparsable notifications parked in the failed store"
    )
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument(
        "--redis-url", help="an existing database (flushed first) instead of a private redis-server"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
