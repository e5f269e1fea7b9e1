"""The platform's retries make up for a receiver that refused while Redis was down: nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web
from redis.asyncio import Redis

from ingest.app import create_app
from schemas.job import notification_job_id
from schemas.settings import Settings
from simulator.deliver import DeliveryOutcome, RetryPolicy, play
from simulator.embedded_redis import EmbeddedRedis
from simulator.scenarios import build_scenario
from tests.conftest import SHOP_ID, free_port
from workers.worker import build_worker


@contextlib.asynccontextmanager
async def _receiver(settings: Settings) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/ipn"
    finally:
        await runner.cleanup()


async def test_a_notification_refused_while_redis_was_down_is_delivered_by_a_retry_and_processed(
    settings: Settings,
) -> None:
    """Redis stops: the receiver answers 503 and the simulator retries; Redis returns on the same port: the
    retry gets 200, the job is in the queue, and a worker turns it into the payment's one event."""
    seen: list[DeliveryOutcome] = []
    server = EmbeddedRedis()
    async with server as redis_url:
        own = settings.model_copy(update={"redis_url": redis_url, "redis_timeout_s": 0.5})
        shop = own.shops[SHOP_ID]
        deliveries = build_scenario("cvco-full", SHOP_ID, shop, "TEST", random.Random(1), datetime.now(UTC))
        async with _receiver(own) as url:
            await server.stop()
            sending = asyncio.create_task(
                play(
                    url,
                    deliveries,
                    policy=RetryPolicy(timeout_s=3, retries=8, interval_s=0.5),
                    on_outcome=seen.append,
                )
            )
            await asyncio.sleep(1.2)
            assert not sending.done()
            await server.start()  # same port, empty: nothing was claimed while it was down
            summary = await sending
        counts = summary.by_scenario["cvco-full"]
        assert (counts.accepted, counts.retried, counts.failed) == (1, 1, 0)
        statuses = [attempt.status for attempt in seen[0].attempts]
        assert statuses[-1] == 200 and set(statuses[:-1]) == {503} and len(statuses) >= 3
        redis = Redis.from_url(redis_url)
        try:
            assert await redis.zscore(own.queue_name, notification_job_id(deliveries[0].fields)) is not None
            worker = build_worker(own, burst=True, poll_delay=0, handle_signals=False)
            await worker.async_run()
            await worker.close()
            events = [json.loads(entry[b"event"]) for _, entry in await redis.xrange(own.stream)]
        finally:
            await redis.aclose()
    assert [(e["type"], e["order_id"]) for e in events] == [("payment.accepted", deliveries[0].order_id)]
