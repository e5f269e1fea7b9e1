"""POST /ipn end to end against the real Redis: from the HTTP request to the stored arq job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import deserialize_job
from redis.asyncio import Redis
from structlog.testing import LogCapture

from ingest import enqueue
from ingest.app import create_app
from ingest.signature import sign_fields
from schemas import job as job_schema
from schemas.job import PROCESS_NOTIFICATION, QueuedNotification, notification_job_id
from schemas.settings import Settings, ShopConfig
from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ReceiverClient = TestClient[web.Request, web.Application]


def notification(**extra: str) -> dict[str, str]:
    """The fields of a plausible CVCO notification, without its signature."""
    fields = {
        "vads_site_id": SHOP_ID,
        "vads_ctx_mode": "TEST",
        "vads_trans_id": "a1b2c3",
        "vads_trans_date": "20260301101500",
        "vads_trans_uuid": "0123456789abcdef0123456789abcdef",
        "vads_order_id": "order-42",
        "vads_amount": "5124",
        "vads_currency": "978",
        "vads_trans_status": "AUTHORISED",
        "vads_card_brand": "CVCO",
        "vads_url_check_src": "PAY",
        "vads_hash": "0f" * 32,
    }
    fields.update(extra)
    return fields


def signed(fields: Mapping[str, str], shop: ShopConfig) -> dict[str, str]:
    """The fields plus the `signature` the platform would add."""
    return {**fields, "signature": sign_fields(fields, shop, fields["vads_ctx_mode"])}


@asynccontextmanager
async def receiver(settings: Settings) -> AsyncIterator[ReceiverClient]:
    """The receiver app on a real local port, with a client talking to it."""
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


@contextmanager
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every structlog event, with the context-bound correlation ids merged in as in production."""
    capture = LogCapture()
    previous = structlog.get_config()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture], cache_logger_on_first_use=False
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**previous)


async def stored_job(redis: Redis, fields: Mapping[str, str]) -> tuple[Any, QueuedNotification]:
    """The arq job stored for these fields, decoded with arq's own deserializer, and its argument."""
    raw = await redis.get(job_key_prefix + notification_job_id(fields))
    assert raw is not None, "no job stored for these fields"
    job = deserialize_job(raw, deserializer=job_schema.loads)
    return job, QueuedNotification.model_validate(job.args[0])


async def test_valid_notification_is_stored_as_an_arq_job_before_ok(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A signed notification answers 200 OK, and Redis then holds arq's job for it, fields byte for byte."""
    fields = signed(
        notification(
            vads_order_id="a+b&c=d é",
            vads_cust_first_name="",
            vads_ext_info_note=" spaced %20 ",
            vads_cust_last_name="Müller-Ñúñez 😀",
        ),
        shop,
    )
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(fields), headers=FORM)
        assert response.status == 200
        assert await response.text() == "OK"
        request_id = response.headers["X-Request-Id"]
    job, queued = await stored_job(redis, fields)
    assert job.function == PROCESS_NOTIFICATION
    assert job.kwargs == {}
    assert job.job_try is None
    assert queued.fields == fields
    assert list(queued.fields) == list(fields)
    assert queued.request_id == request_id
    assert queued.client_ip == "127.0.0.1"
    assert queued.received_at.utcoffset() == timedelta(0)
    job_id = notification_job_id(fields)
    score = await redis.zscore(settings.queue_name, job_id)
    assert score == int(job.enqueue_time.timestamp() * 1000)
    assert 0 < await redis.pttl(job_key_prefix + job_id) <= 86_400_000


async def test_same_body_twice_gives_one_job_and_two_oks(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """An exact duplicate delivery is answered 200 OK but collapses into the job already queued."""
    body = urlencode(signed(notification(), shop))
    async with receiver(settings) as client:
        first = await client.post("/ipn", data=body, headers=FORM)
        second = await client.post("/ipn", data=body, headers=FORM)
        assert (first.status, await first.text()) == (200, "OK")
        assert (second.status, await second.text()) == (200, "OK")
        metrics = await (await client.get("/metrics")).text()
    assert await redis.zcard(settings.queue_name) == 1
    assert "cvco_ipn_enqueued_total 1.0" in metrics
    assert "cvco_ipn_duplicates_total 1.0" in metrics
    assert 'cvco_ipn_requests_total{outcome="duplicate"} 1.0' in metrics


async def test_a_redis_that_forgot_the_enqueue_script_still_gets_the_job(
    settings: Settings, shop: ShopConfig, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EVALSHA answered NOSCRIPT (as after a Redis restart or SCRIPT FLUSH): the script goes whole, 200."""
    monkeypatch.setattr(enqueue, "ENQUEUE_SCRIPT_SHA", "0" * 40)  # a script no Redis holds
    fields = signed(notification(), shop)
    async with receiver(settings) as client:
        for _ in range(2):  # the connection stays usable after the refused EVALSHA
            response = await client.post("/ipn", data=urlencode(fields), headers=FORM)
            assert (response.status, await response.text()) == (200, "OK")
    await stored_job(redis, fields)
    assert await redis.zcard(settings.queue_name) == 1


async def test_the_job_writers_connection_closed_by_redis_costs_no_503(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Redis closing the writer's idle connection (a restart, its `timeout` setting): the next
    notification is still stored and answered 200, on a fresh connection."""
    first, second = (signed(notification(vads_trans_id=f"00000{n}"), shop) for n in (1, 2))
    async with receiver(settings) as client:
        assert (await client.post("/ipn", data=urlencode(first), headers=FORM)).status == 200
        db = redis.connection_pool.connection_kwargs["db"]
        writers = [c for c in await redis.client_list() if int(c["db"]) == db and c["cmd"] == "evalsha"]
        assert len(writers) == 1
        await redis.client_kill_filter(_id=writers[0]["id"])
        response = await client.post("/ipn", data=urlencode(second), headers=FORM)
        assert (response.status, await response.text()) == (200, "OK")
    await stored_job(redis, second)


async def test_notification_whose_result_is_kept_is_not_queued_again(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Like arq's enqueue_job, a job whose result key exists (already processed) is not re-created."""
    fields = signed(notification(), shop)
    await redis.set(result_key_prefix + notification_job_id(fields), b"done")
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(fields), headers=FORM)
        assert response.status == 200
    assert await redis.zcard(settings.queue_name) == 0


async def test_valid_signature_with_unparsable_content_is_still_queued(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Bad JSON or a bad amount is the worker's to park: the receiver answers 200 and queues it raw."""
    fields = signed(notification(vads_payment_seq="{not json", vads_amount="12,5"), shop)
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(fields), headers=FORM)
        assert response.status == 200
    _, queued = await stored_job(redis, fields)
    assert queued.fields["vads_payment_seq"] == "{not json"


async def test_production_mode_uses_the_production_key(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A PRODUCTION notification signed with the production key is accepted; the TEST key does not sign it."""
    fields = signed(notification(vads_ctx_mode="PRODUCTION"), shop)
    assert TEST_KEY != PRODUCTION_KEY
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(fields), headers=FORM)
        assert response.status == 200
    assert await redis.zcard(settings.queue_name) == 1


async def test_concurrent_notifications_each_get_their_own_job(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Requests batched into one Redis round trip are each answered only for their own, written job."""
    bodies = [signed(notification(vads_trans_id=f"{n:06d}"), shop) for n in range(60)]
    async with receiver(settings) as client:
        responses = await asyncio.gather(
            *(client.post("/ipn", data=urlencode(fields), headers=FORM) for fields in bodies)
        )
        assert [response.status for response in responses] == [200] * 60
    assert await redis.zcard(settings.queue_name) == 60
    for fields in bodies:
        _, queued = await stored_job(redis, fields)
        assert queued.fields == fields


async def test_a_real_arq_worker_runs_the_stored_job(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """arq's Worker, with the project's serializer and queue, calls process_notification with the payload."""
    from arq import Worker, func
    from arq.connections import ArqRedis

    received: list[dict[str, Any]] = []

    async def process_notification(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
        received.append(payload)

    fields = signed(notification(), shop)
    async with receiver(settings) as client:
        assert (await client.post("/ipn", data=urlencode(fields), headers=FORM)).status == 200
    pool = ArqRedis(connection_pool=redis.connection_pool)
    worker = Worker(
        functions=[func(process_notification, name=PROCESS_NOTIFICATION)],
        redis_pool=pool,
        queue_name=settings.queue_name,
        job_serializer=job_schema.dumps,
        job_deserializer=job_schema.loads,
        burst=True,
        poll_delay=0,
        handle_signals=False,
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    assert len(received) == 1
    assert QueuedNotification.model_validate(received[0]).fields == fields


async def test_logs_never_hold_the_signature_or_a_key(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """The summary line names shop, order and transaction, but no signature (good or bad) and no key."""
    good = signed(notification(), shop)
    bad = {**good, "vads_amount": "1"}
    with captured_logs() as logs:
        async with receiver(settings) as client:
            assert (await client.post("/ipn", data=urlencode(good), headers=FORM)).status == 200
            assert (await client.post("/ipn", data=urlencode(bad), headers=FORM)).status == 401
    summaries = [entry for entry in logs if entry["event"] == "request"]
    assert [entry["status"] for entry in summaries] == [200, 401]
    assert summaries[0]["order_id"] == "order-42"
    assert summaries[0]["trans_uuid"] == good["vads_trans_uuid"]
    assert summaries[0]["trans_id"] == "a1b2c3"
    assert summaries[0]["shop_id"] == SHOP_ID
    assert summaries[0]["outcome"] == "ok"
    assert summaries[0]["latency_ms"] >= 0
    text = repr(logs)
    for secret in (good["signature"], TEST_KEY, PRODUCTION_KEY):
        assert secret not in text
