"""Silent sessions become `payment.expired` once, even with several sweepers; a late acceptance alerts."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from pydantic import SecretStr
from redis.asyncio import Redis

from core.keys import SESSION_RECORD_PREFIX, SESSIONS_KEY
from core.sessions import load_session, track_session
from schemas.session import PendingPayment
from schemas.settings import Settings, ShopConfig
from tests.conftest import SHOP_ID, TEST_REDIS_URL, SmtpServer
from tests.notifications import TRANS_ID, drain, enqueue_notification, notification, queued
from workers.alerts import deliver_alerts
from workers.expiry import sweep_expired_sessions


def pending(trans_id: str, *, trans_date: datetime, timeout_s: float = 1) -> PendingPayment:
    return PendingPayment(
        shop_id=SHOP_ID,
        mode="TEST",
        trans_id=trans_id,
        trans_date=trans_date,
        order_id=f"order-{trans_id}",
        amount=5000,
        deadline=trans_date + timedelta(seconds=timeout_s),
        registered_by="form",
    )


async def event_types(redis: Redis, stream: str) -> list[str]:
    return [json.loads(fields[b"event"])["type"] for _, fields in await redis.xrange(stream)]


async def test_session_not_yet_due_is_left_alone(redis: Redis, settings: Settings) -> None:
    """Before its deadline a session stays watched and nothing is published."""
    now = datetime.now(UTC)
    await track_session(redis, pending("AAA001", trans_date=now, timeout_s=600))
    assert await sweep_expired_sessions(redis, settings, now=now) == 0
    assert await redis.zcard(SESSIONS_KEY) == 1
    assert await redis.xlen(settings.stream) == 0


async def test_silent_payments_expire_once_with_two_sweepers_at_once(
    redis: Redis, settings: Settings
) -> None:
    """Two workers sweeping the same due sessions concurrently publish exactly one payment.expired each."""
    started = datetime.now(UTC)
    trans_ids = [f"EXP{n:03d}" for n in range(20)]
    for trans_id in trans_ids:
        await track_session(redis, pending(trans_id, trans_date=started, timeout_s=1))
    await asyncio.sleep(1.1)
    other = Redis.from_url(TEST_REDIS_URL)
    try:
        counts = await asyncio.gather(
            sweep_expired_sessions(redis, settings), sweep_expired_sessions(other, settings)
        )
    finally:
        await other.aclose()
    assert sum(counts) == 20
    assert await event_types(redis, settings.stream) == ["payment.expired"] * 20
    assert await redis.zcard(SESSIONS_KEY) == 0
    assert await sweep_expired_sessions(redis, settings) == 0
    _, fields = (await redis.xrange(settings.stream, count=1))[0]
    event = json.loads(fields[b"event"])
    assert (event["status"], event["source"], event["trans_uuid"]) == ("EXPIRED", "SESSION_TIMEOUT", None)


async def test_two_real_workers_running_the_sweep_cron_publish_one_expiry(
    redis: Redis, settings: Settings
) -> None:
    """The sweep is an arq cron run at worker start: two burst workers started together, one event."""
    started = datetime.now(UTC) - timedelta(seconds=5)
    await track_session(redis, pending("CRON01", trans_date=started, timeout_s=1))
    await asyncio.gather(drain(settings), drain(settings))
    assert await event_types(redis, settings.stream) == ["payment.expired"]
    assert await redis.zcard(SESSIONS_KEY) == 0


async def test_payment_accepted_before_the_deadline_is_not_expired(
    redis: Redis, pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    """A session whose payment was accepted is unwatched by the sweep without a payment.expired."""
    await enqueue_notification(pool, settings, queued(notification("AUTHORISED"), shop))
    await drain(settings)
    trans_date = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    await track_session(redis, pending(TRANS_ID, trans_date=trans_date))
    assert await sweep_expired_sessions(redis, settings) == 0
    assert await event_types(redis, settings.stream) == ["payment.accepted"]
    assert await redis.zcard(SESSIONS_KEY) == 0


async def test_late_acceptance_after_expiry_is_applied_and_alerted(
    redis: Redis, pool: ArqRedis, settings: Settings, shop: ShopConfig, smtp_server: SmtpServer
) -> None:
    """Expired in silence, then AUTHORISED arrives: payment.accepted is published and a mail says so."""
    settings = settings.model_copy(
        update={"smtp_url": SecretStr(smtp_server.url), "alert_to": ["ops@example.com"]}
    )
    trans_date = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # the fixed date of tests.notifications
    await track_session(redis, pending(TRANS_ID, trans_date=trans_date))
    assert await sweep_expired_sessions(redis, settings) == 1

    await enqueue_notification(pool, settings, queued(notification("AUTHORISED"), shop))
    await drain(settings)
    assert await event_types(redis, settings.stream) == ["payment.expired", "payment.accepted"]

    assert await deliver_alerts(redis, settings) == 1
    (envelope,) = smtp_server.mailbox.messages
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert "accepté après expiration" in str(message["Subject"])
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode("utf-8")
    assert "payment.accepted" in text and "order-42" in text and TRANS_ID in text


async def test_a_watch_ends_with_its_record_whichever_way_it_ends(
    redis: Redis, pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    """A watched session's record is kept until its watch ends (a sweeper down for days still finds it),
    then goes with it: when the payment got past pending, and when the sweep expired it."""
    trans_date = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    watched = pending(TRANS_ID, trans_date=trans_date)
    await track_session(redis, watched)
    assert await redis.pttl(SESSION_RECORD_PREFIX + watched.key) > 29 * 86400 * 1000
    await enqueue_notification(pool, settings, queued(notification("AUTHORISED"), shop))
    await drain(settings)
    assert await load_session(redis, watched.key) is None
    assert await redis.zcard(SESSIONS_KEY) == 0

    silent = pending("SIL001", trans_date=datetime.now(UTC) - timedelta(days=3))
    await track_session(redis, silent)
    assert await sweep_expired_sessions(redis, settings) == 1
    assert await load_session(redis, silent.key) is None
    assert await redis.zcard(SESSIONS_KEY) == 0
