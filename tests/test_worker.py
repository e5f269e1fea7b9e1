"""The arq worker end to end: receiver POST or queued job -> burst worker -> one event on the stream."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from aiohttp import test_utils
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis

from ingest.app import IPN_PATH, create_app
from schemas.job import PROCESS_NOTIFICATION, dumps, loads
from schemas.settings import Settings, ShopConfig
from tests.conftest import SHOP_ID, TEST_KEY, TEST_REDIS_URL
from tests.notifications import (
    UUID_CB,
    UUID_PAY,
    UUID_REFUND,
    cascade,
    drain,
    enqueue_notification,
    leg,
    notification,
    queued,
    signed,
)
from workers import failed_store
from workers.auth_codes import AUTH_RESULTS


async def enqueue(pool: ArqRedis, settings: Settings, shop: ShopConfig, fields: dict[str, str]) -> None:
    await enqueue_notification(pool, settings, queued(fields, shop))


async def events(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(fields[b"event"]) for _, fields in await redis.xrange(settings.stream)]


async def test_a_full_cvco_payment_posted_to_the_receiver_reaches_the_stream(
    redis: Redis, settings: Settings, shop: ShopConfig
) -> None:
    """POST /ipn (pending, authorised, captured, plus a resend) -> worker -> three events, in order."""
    posts = [
        notification("WAITING_AUTHORISATION", auth=None),
        notification("AUTHORISED"),
        notification("AUTHORISED", source="BO"),
        notification("CAPTURED", source="BATCH"),
    ]
    async with test_utils.TestClient(test_utils.TestServer(create_app(settings))) as client:
        for fields in posts:
            response = await client.post(IPN_PATH, data=signed(fields, shop))
            assert response.status == 200
    assert await drain(settings) == 0
    got = await events(redis, settings)
    assert [event["type"] for event in got] == ["payment.pending", "payment.accepted", "payment.captured"]
    captured = got[-1]
    assert (captured["amount"], captured["paid_amount"], captured["cvco_amount"], captured["currency"]) == (
        5000,
        5000,
        5000,
        "EUR",
    )
    assert captured["auth_result"] == {"code": "0", "message": "Paiement accepté"}
    assert "signature" not in json.dumps(got) and TEST_KEY not in json.dumps(got)


async def test_cascades_accepted_and_partial(
    redis: Redis, settings: Settings, shop: ShopConfig, pool: ArqRedis
) -> None:
    """CVCO + CB covering the amount is accepted; a refused complement leaves it partial and flagged."""
    await enqueue(
        pool,
        settings,
        shop,
        cascade([leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 4000, "AUTHORISED", UUID_CB)]),
    )
    partial = cascade(
        [leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 4000, "REFUSED", UUID_CB, "05")]
    )
    partial["vads_trans_id"] = "Pp0001"
    partial["vads_payment_seq"] = partial["vads_payment_seq"].replace('"Ab12Cd"', '"Pp0001"')
    await enqueue(pool, settings, shop, partial)
    assert await drain(settings) == 0
    by_trans = {event["trans_id"]: event for event in await events(redis, settings)}
    assert by_trans["Ab12Cd"]["type"] == "payment.accepted" and by_trans["Ab12Cd"]["cvco_amount"] == 6000
    assert by_trans["Pp0001"]["type"] == "payment.partial" and by_trans["Pp0001"]["flags"] == [
        "cascade_partial"
    ]
    assert by_trans["Pp0001"]["paid_amount"] == 6000 and len(by_trans["Pp0001"]["legs"]) == 2


async def test_each_cvco_refusal_code_and_an_abandon_give_their_event(
    redis: Redis, settings: Settings, shop: ShopConfig, pool: ArqRedis
) -> None:
    """Every non-zero seed code: refused, except 1015 expired and 1012/1013/1020 abandoned; ABANDONED too."""
    codes = sorted(code for code in AUTH_RESULTS if code != "0")
    for index, code in enumerate(codes):
        await enqueue(pool, settings, shop, notification("REFUSED", auth=code, trans_id=f"R{index:05d}"))
    await enqueue(
        pool, settings, shop, notification("ABANDONED", auth=None, operation=None, trans_id="Ab0000")
    )
    assert await drain(settings) == 0
    got = {event["trans_id"]: event for event in await events(redis, settings)}
    assert len(got) == len(codes) + 1
    for index, code in enumerate(codes):
        event = got[f"R{index:05d}"]
        expected = {"1015": "payment.expired", "1012": "payment.abandoned", "1013": "payment.abandoned"}
        expected["1020"] = "payment.abandoned"
        assert event["type"] == expected.get(code, "payment.refused"), code
        assert event["auth_result"] == {"code": code, "message": AUTH_RESULTS[code]}
    assert got["Ab0000"]["type"] == "payment.abandoned" and got["Ab0000"]["paid_amount"] == 0


async def test_merchant_cancel_after_acceptance_and_a_refund(
    redis: Redis, settings: Settings, shop: ShopConfig, pool: ArqRedis
) -> None:
    """MERCH_BO cancel of an accepted payment -> payment.cancelled; a CREDIT -> payment.refunded."""
    # the refunded payment has an order of its own: a refund joins its order's paid payment, and with two
    # paid payments on one order which one it joined would depend on the order the jobs ran in
    other_order = {"vads_order_id": "order-43"}
    await enqueue(pool, settings, shop, notification("AUTHORISED"))
    await enqueue(pool, settings, shop, notification("CAPTURED", trans_id="Rf0001", extra=other_order))
    assert await drain(settings) == 0
    await enqueue(pool, settings, shop, notification("CANCELLED", source="MERCH_BO", auth=None))
    refund = notification(
        "CAPTURED",
        trans_id="Rf0001",
        uuid=UUID_REFUND,
        operation="CREDIT",
        source="MERCH_BO",
        extra=other_order,
    )
    await enqueue(pool, settings, shop, refund)
    await enqueue(pool, settings, shop, notification("AUTHORISED", source="RETRY"))
    assert await drain(settings) == 0
    got = [(event["trans_id"], event["type"]) for event in await events(redis, settings)]
    assert sorted(got) == [
        ("Ab12Cd", "payment.accepted"),
        ("Ab12Cd", "payment.cancelled"),
        ("Rf0001", "payment.captured"),
        ("Rf0001", "payment.refunded"),
    ]


async def test_two_arq_workers_on_one_queue_publish_each_event_once(
    redis: Redis, settings: Settings, shop: ShopConfig, pool: ArqRedis
) -> None:
    """Resends of the same state (distinct job ids) spread over two workers: one event per payment."""
    for index in range(30):
        for source in ("PAY", "BO", "RETRY"):
            await enqueue(
                pool, settings, shop, notification("AUTHORISED", source=source, trans_id=f"W{index:05d}")
            )
    assert await drain(settings, workers=2) == 0
    got = await events(redis, settings)
    assert len(got) == 30 and len({event["event_id"] for event in got}) == 30


async def test_the_worker_rechecks_shop_and_signature_and_publishes_nothing_for_a_forgery(
    redis: Redis, settings: Settings, shop: ShopConfig, pool: ArqRedis
) -> None:
    """A job whose signature no longer verifies, or whose shop is unknown, is parked; no event is published."""
    forged = queued(notification("AUTHORISED"), shop).model_dump(mode="json")
    forged["fields"]["vads_amount"] = "1"
    unknown = queued(notification("AUTHORISED", trans_id="Un0001"), shop).model_dump(mode="json")
    unknown["fields"]["vads_site_id"] = "99999999"
    for payload in (forged, unknown):
        await pool.enqueue_job(PROCESS_NOTIFICATION, payload, _queue_name=settings.queue_name)
    await drain(settings)
    assert await failed_store.count(redis) == 2
    assert await redis.xlen(settings.stream) == 0


def test_cli_worker_burst_drains_the_queue_and_exits_0(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """`cvco-ipn worker --burst` processes what is queued, then exits 0."""

    async def prepare() -> None:
        arq_pool = await create_pool(
            RedisSettings.from_dsn(TEST_REDIS_URL), job_serializer=dumps, job_deserializer=loads
        )
        await enqueue(arq_pool, settings, shop, notification("AUTHORISED"))
        await arq_pool.aclose()

    asyncio.run(prepare())
    env = {
        **os.environ,
        "CVCO_REDIS_URL": TEST_REDIS_URL,
        "CVCO_STREAM": settings.stream,
        "CVCO_SHOPS": json.dumps({SHOP_ID: {"test_key": TEST_KEY, "production_key": "x" * 16}}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker", "--burst"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "job done" in done.stderr
    assert "signature" not in done.stderr

    async def count() -> int:
        client = Redis.from_url(TEST_REDIS_URL)
        try:
            return int(await client.xlen(settings.stream))
        finally:
            await client.aclose()

    assert asyncio.run(count()) == 1
