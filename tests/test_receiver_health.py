"""Health, readiness and metrics; and a Redis that is down or silent gives a fast 503, never a 200."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

from redis.asyncio import Redis

from schemas.settings import Settings, ShopConfig
from tests.conftest import free_port, silent_server
from tests.test_receiver import FORM, notification, receiver, signed


@asynccontextmanager
async def silent_redis() -> AsyncIterator[str]:
    """A Redis hung mid-way: it accepts connections and never answers. Yields its URL."""
    async with silent_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


async def test_redis_unreachable_gives_503_fast_and_nothing_claimed(
    settings: Settings, shop: ShopConfig
) -> None:
    """With nothing listening on the Redis port, POST /ipn answers a one-line 503 and counts it."""
    settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(signed(notification(), shop)), headers=FORM)
        text = await response.text()
        metrics = await (await client.get("/metrics")).text()
    assert response.status == 503
    assert "\n" not in text and text
    assert 'cvco_ipn_requests_total{outcome="unavailable"} 1.0' in metrics


async def test_silent_redis_gives_503_after_the_timeout_never_200(
    settings: Settings, shop: ShopConfig
) -> None:
    """A Redis that accepts but never answers: every concurrent request waits out the timeout, then 503."""
    async with silent_redis() as url, receiver(settings.model_copy(update={"redis_url": url})) as client:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(
                client.post(
                    "/ipn", data=urlencode(signed(notification(vads_trans_id=f"{n:06d}"), shop)), headers=FORM
                )
                for n in range(5)
            )
        )
        elapsed = time.monotonic() - started
    assert [response.status for response in responses] == [503] * 5
    assert elapsed >= settings.redis_timeout_s


async def test_readyz_follows_redis_while_healthz_stays_up(settings: Settings, redis: Redis) -> None:
    """/readyz is 200 when Redis answers PING and 503 when it does not; /healthz is 200 either way."""
    async with receiver(settings) as client:
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/healthz")).status == 200
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with receiver(down) as client:
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert "\n" not in await ready.text()
        assert (await client.get("/healthz")).status == 200


async def test_readyz_is_503_when_redis_is_silent(settings: Settings) -> None:
    """A hung Redis makes /readyz answer 503 once the timeout is out, rather than hang."""
    async with silent_redis() as url, receiver(settings.model_copy(update={"redis_url": url})) as client:
        assert (await client.get("/readyz")).status == 503


async def test_metrics_report_queue_depth_age_and_parked_jobs_from_redis(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Queue depth, the oldest job's age and the failed-job count are read from Redis at scrape time."""
    await redis.zadd("cvco:failed:index", {"job-a": 1.0, "job-b": 2.0, "job-c": 3.0})
    await redis.zadd(settings.queue_name, {"older": time.time() * 1000 - 30_000})
    async with receiver(settings) as client:
        assert (
            await client.post("/ipn", data=urlencode(signed(notification(), shop)), headers=FORM)
        ).status == 200
        response = await client.get("/metrics")
        text = await response.text()
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and line[0] != "#"
    }
    assert samples["cvco_ipn_queue_depth"] == 2
    assert 29 <= samples["cvco_ipn_queue_oldest_age_seconds"] < 40
    assert samples["cvco_ipn_failed_jobs"] == 3
    assert samples['cvco_ipn_requests_total{outcome="ok"}'] == 1
    assert samples["cvco_ipn_enqueued_total"] == 1
    assert samples["cvco_ipn_enqueue_seconds_count"] == 1
    assert samples["cvco_ipn_request_seconds_count"] == 1


async def test_metrics_without_redis_still_answer_and_omit_the_queue_gauges(settings: Settings) -> None:
    """When Redis is down the scrape still succeeds, without stale queue gauges."""
    settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with receiver(settings) as client:
        response = await client.get("/metrics")
        text = await response.text()
    assert response.status == 200
    assert "cvco_ipn_requests_total" in text
    assert "cvco_ipn_queue_depth" not in text
    assert "cvco_ipn_failed_jobs" not in text


async def test_two_apps_in_one_process_keep_separate_metrics(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Each app has its own registry: one app's requests do not show in the other's scrape."""
    async with receiver(settings) as first, receiver(settings) as second:
        assert (
            await first.post("/ipn", data=urlencode(signed(notification(), shop)), headers=FORM)
        ).status == 200
        assert 'cvco_ipn_requests_total{outcome="ok"} 1.0' in await (await first.get("/metrics")).text()
        assert 'cvco_ipn_requests_total{outcome="ok"} 0.0' in await (await second.get("/metrics")).text()


async def test_request_behind_a_stuck_batch_gets_503_at_its_own_deadline(
    settings: Settings, shop: ShopConfig
) -> None:
    """A request queued while an earlier batch hangs on a silent Redis is refused at ITS deadline, not the
    earlier batch's deadline plus a round trip of its own: it ends about when the first one does, not a
    whole timeout later."""
    timeout_s = 2.0
    first_batch_sent = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answered
        if await reader.read(1):
            first_batch_sent.set()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    hung = settings.model_copy(update={"redis_timeout_s": timeout_s, "redis_url": url})
    try:
        async with receiver(hung) as client:

            async def post(n: int) -> tuple[int, float]:
                body = urlencode(signed(notification(vads_trans_id=f"{n:06d}"), shop))
                response = await client.post("/ipn", data=body, headers=FORM)
                return response.status, time.monotonic()

            first = asyncio.create_task(post(1))
            await first_batch_sent.wait()  # the first batch is now waiting on the silent Redis
            second_status, second_done = await post(2)
            first_status, first_done = await first
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert (first_status, second_status) == (503, 503)
    # at its own deadline it ends just after the first; behind the first batch, a whole timeout after it
    assert second_done - first_done < timeout_s / 2
