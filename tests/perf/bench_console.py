"""Console pages at a small and a large store, in the same run: a page's cost must grow with what it shows,
not with the size of the stores (issue 19: the ratio under 1.5).

    .venv/bin/python -m tests.perf.bench_console [--small 1000] [--large 100000] [--parked 100,10000]
        [--requests 40] [--redis-url URL]

A private redis-server unless --redis-url (whose database it flushes). Real records: one payment applied
by the worker's code and one parked job are copied (DUMP/RESTORE) under new keys until each store has its
size (the lookup index names the real payment only), and its event is published once a payment. Each page is asked --requests times through one signed-in client; the median
latency at each size and their ratio are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from console.app import create_console_app  # noqa: E402  # the project root is put on sys.path just above
from core.keys import FAILED_INDEX, FAILED_PREFIX, PAYMENT_PREFIX  # noqa: E402
from schemas.settings import Settings, ShopConfig  # noqa: E402
from simulator.embedded_redis import EmbeddedRedis  # noqa: E402
from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY  # noqa: E402
from tests.notifications import notification, queued  # noqa: E402
from tests.test_alerts import park  # noqa: E402
from tests.test_console import PASSWORD, USERS  # noqa: E402
from workers.payment_updates import handle_notification  # noqa: E402

BATCH = 2000


async def copies(redis: Redis, source: str, make_key: str, count: int, index: str | None = None) -> None:
    """`count` copies of key `source` as `make_key.format(n)` (and members of `index`, scored by n)."""
    dumped = await redis.dump(source)
    ttl = max(0, await redis.pttl(source))
    for start in range(0, count, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(count, start + BATCH)):
                key = make_key.format(n)
                pipe.restore(key, ttl, dumped, replace=True)
                if index is not None:
                    pipe.zadd(index, {key.removeprefix(FAILED_PREFIX): n})
            await pipe.execute()


async def fill(redis: Redis, settings: Settings, payments: int, parked: int) -> tuple[str, str]:
    """Stores of this size; the key of one real payment and the id of one real parked job."""
    await redis.flushdb()
    shop = settings.shops[SHOP_ID]
    outcome = await handle_notification(redis, settings, queued(notification("AUTHORISED"), shop))
    key = outcome.payment_key
    await copies(redis, PAYMENT_PREFIX + key, PAYMENT_PREFIX + "bench:{}", payments - 1)
    [(_, event)] = await redis.xrange(settings.stream)
    for start in range(0, payments - 1, BATCH):  # the stream as long as one event a payment
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(start, min(payments - 1, start + BATCH)):
                pipe.xadd(settings.stream, event)
            await pipe.execute()
    await park(redis, settings, "ipn:bench-real", trans_id="b00000")
    await copies(
        redis, FAILED_PREFIX + "ipn:bench-real", FAILED_PREFIX + "ipn:bench-{}", parked - 1, FAILED_INDEX
    )
    return key, "ipn:bench-real"


async def time_pages(settings: Settings, paths: list[str], requests: int) -> dict[str, float]:
    app = create_console_app(settings.model_copy(update={"console_users": USERS}))
    async with TestClient(TestServer(app)) as client:
        await client.post("/login", data={"user": "ops", "password": PASSWORD})
        medians = {}
        for path in paths:
            took = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.get(path)
                await response.read()
                took.append(time.perf_counter() - started)
                assert response.status == 200, (path, response.status)
            medians[path] = statistics.median(took)
        return medians


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--parked", default="100,10000", help="parked jobs at the small and the large size")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    parked_small, parked_large = (int(n) for n in args.parked.split(","))
    embedded = None if args.redis_url else EmbeddedRedis()
    if embedded is not None:
        await embedded.start()
    url = args.redis_url or embedded.url  # type: ignore[union-attr]  # one of the two is set
    try:
        shop = ShopConfig(test_key=TEST_KEY, production_key=PRODUCTION_KEY)  # type: ignore[arg-type]  # pydantic coerces str
        settings = Settings(redis_url=url, shops={SHOP_ID: shop}, stream="cvco:bench-events")
        redis = Redis.from_url(url)
        results = {}
        for payments, parked in ((args.small, parked_small), (args.large, parked_large)):
            started = time.monotonic()
            key, failed_id = await fill(redis, settings, payments, parked)
            paths = [
                "/",
                "/payments?q=order-42",
                f"/payments/{key}",
                "/failed",
                f"/failed/{failed_id}",
                "/events",
            ]
            results[payments] = await time_pages(settings, paths, args.requests)
            print(f"{payments} payments, {parked} parked: filled in {time.monotonic() - started:.1f} s")
        await redis.aclose()
    finally:
        if embedded is not None:
            await embedded.close()
    small, large = results[args.small], results[args.large]
    print(f"{'page':32} {'small ms':>9} {'large ms':>9} {'ratio':>6}")
    worst = 0.0
    for (path, fast), slow in zip(small.items(), large.values(), strict=True):
        ratio = slow / fast
        worst = max(worst, ratio)
        shown = path.split("/payments/")[0] + "/payments/KEY" if "/payments/" in path else path
        print(f"{shown:32} {fast * 1000:9.2f} {slow * 1000:9.2f} {ratio:6.2f}")
    print(f"worst ratio {worst:.2f} (target < 1.5)")
    return 0 if worst < 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
