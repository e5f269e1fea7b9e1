"""A Back Office refund (its own reserved trans_id) seen before its payment waits for it, on real Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from arq.connections import ArqRedis
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from core.keys import PAYMENT_PREFIX
from schemas.job import PROCESS_NOTIFICATION, QueuedNotification
from schemas.settings import Settings, ShopConfig
from tests.notifications import UUID_REFUND, notification, signed
from tests.test_worker import events
from workers.apply import StateWriter, load_payment
from workers.metrics import WorkerMetrics
from workers.payment import REFUND_UNATTACHED
from workers.payment_updates import WAIT_SUFFIX, handle_notification, process_notification

PAYMENT = [notification("AUTHORISED"), notification("CAPTURED", source="BATCH")]
BO_REFUND = notification(
    "CAPTURED",
    uuid=UUID_REFUND,
    operation="CREDIT",
    source="MERCH_BO",
    trans_id="912345",
    extra={"vads_trans_date": "20240503093000"},
)


def now_queued(fields: dict[str, str], shop: ShopConfig) -> QueuedNotification:
    """The job argument of a notification received just now (the wait counts from its reception)."""
    return QueuedNotification(
        fields=signed(fields, shop), received_at=datetime.now(UTC), client_ip="127.0.0.1", request_id="t"
    )


async def final_state_and_events(
    redis: Redis, settings: Settings, shop: ShopConfig, notes: list[dict[str, str]]
) -> tuple[dict[str, Any], list[str]]:
    """Apply `notes` in order, the refund once more after the others (as its wait does); the payment's
    final state and the types of the events published, then flush the database for the next order."""
    for fields in [*notes, BO_REFUND]:
        await handle_notification(redis, settings, now_queued(fields, shop))
    keys = cast(list[bytes], await redis.keys(PAYMENT_PREFIX + "*"))
    assert len(keys) == 1, f"one payment, the refund attached to it: {keys}"
    state = await load_payment(redis, keys[0].decode().removeprefix(PAYMENT_PREFIX))
    assert state is not None
    types = [event["type"] for event in await events(redis, settings)]
    await redis.flushdb()
    return state.model_dump(), types


async def test_a_bo_refund_first_waits_and_ends_as_if_it_came_last(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    early = await handle_notification(redis, settings, now_queued(BO_REFUND, shop))
    assert early.result == "waiting"
    assert await redis.keys(PAYMENT_PREFIX + "*") == [] and await events(redis, settings) == []

    refund_first = await final_state_and_events(redis, settings, shop, [BO_REFUND, *PAYMENT])
    refund_last = await final_state_and_events(redis, settings, shop, PAYMENT)
    assert refund_first == refund_last
    state, types = refund_first
    assert (state["phase"], state["refunded_amount"], state["flags"]) == ("refunded", 5000, [])
    assert types == ["payment.accepted", "payment.captured", "payment.refunded"]


async def test_a_bo_refund_past_its_wait_is_published_unattached(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    patient = await handle_notification(redis, settings, now_queued(BO_REFUND, shop))
    assert patient.result == "waiting"
    no_wait = settings.model_copy(update={"refund_wait_s": 0})
    alone = await handle_notification(redis, no_wait, now_queued(BO_REFUND, shop))
    assert (alone.result, alone.event_type, alone.flags) == (
        "published",
        "payment.refunded",
        (REFUND_UNATTACHED,),
    )


async def test_the_waiting_refund_job_is_queued_again_for_later(
    settings: Settings, shop: ShopConfig, pool: ArqRedis
) -> None:
    """The job ends, and a job of its own (same notification, tries afresh) is deferred by refund_retry_s."""
    payload = now_queued(BO_REFUND, shop).model_dump(mode="json")
    ctx: Any = {
        "redis": pool,
        "settings": settings,
        "metrics": WorkerMetrics(),
        "state_writer": StateWriter.for_settings(pool, settings),
        "job_id": "ipn:abc",
        "job_try": 1,
    }
    before_ms = timestamp_ms()
    assert (await process_notification(ctx, payload))["result"] == "waiting"
    after_ms = timestamp_ms()
    [(job_id, score)] = await pool.zrange(settings.queue_name, 0, -1, withscores=True)
    assert job_id.decode().startswith("ipn:abc" + WAIT_SUFFIX)
    retry_ms = settings.refund_retry_s * 1000  # due that long after it was queued again, in arq's clock
    assert before_ms + retry_ms <= score <= after_ms + retry_ms
    [queued] = await pool.queued_jobs(queue_name=settings.queue_name)
    assert (queued.function, list(queued.args)) == (PROCESS_NOTIFICATION, [payload])

    ctx["job_id"] = job_id.decode()  # waiting again keeps one suffix: the notification's id, then when
    await process_notification(ctx, payload)
    ids = [member.decode() for member in await pool.zrange(settings.queue_name, 0, -1)]
    assert len(ids) == 2 and all(i.count(WAIT_SUFFIX) == 1 for i in ids)
