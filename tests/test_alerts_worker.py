"""Alerts raised around the real worker: partial cascades, SMTP outages, stale queue, signature bursts."""

from __future__ import annotations

import email
import email.policy
import json
import time

from arq.connections import ArqRedis
from pydantic import SecretStr

from ingest.rejected_store import FORENSICS_STREAM
from schemas.settings import Settings, ShopConfig
from tests.conftest import SmtpServer, free_port
from tests.notifications import (
    UUID_CB,
    UUID_PAY,
    cascade,
    drain,
    enqueue_notification,
    leg,
    notification,
    queued,
)
from workers import failed_store
from workers.alerts import OUTBOX, deliver_alerts
from workers.watch import check_queue_age, check_signature_bursts


def with_mail(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"smtp_url": SecretStr(url), "alert_to": ["ops@example.com"]})


def subjects(smtp_server: SmtpServer) -> list[str]:
    out = []
    for envelope in smtp_server.mailbox.messages:
        assert isinstance(envelope.content, bytes)
        out.append(str(email.message_from_bytes(envelope.content, policy=email.policy.default)["Subject"]))
    return out


async def test_partial_cascade_is_published_and_mailed_once(
    pool: ArqRedis, settings: Settings, shop: ShopConfig, smtp_server: SmtpServer
) -> None:
    """CVCO paid, card complement refused: payment.partial on the stream and one cascade_partial mail."""
    settings = with_mail(settings, smtp_server.url)
    fields = cascade(
        [leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 4000, "REFUSED", UUID_CB, "05")]
    )
    await enqueue_notification(pool, settings, queued(fields, shop))
    await drain(settings)
    [(_, entry)] = await pool.xrange(settings.stream)
    assert json.loads(entry[b"event"])["type"] == "payment.partial"
    await deliver_alerts(pool, settings)  # the worker's own sender cron may have mailed it already
    [subject] = subjects(smtp_server)
    assert "cascade resté partiel" in subject


async def test_smtp_down_does_not_stop_processing_and_the_alert_follows_later(
    pool: ArqRedis, settings: Settings, shop: ShopConfig, smtp_server: SmtpServer
) -> None:
    """Nothing listens on the SMTP port: the worker still publishes and parks; the mail goes out once back."""
    down = with_mail(settings, f"smtp://127.0.0.1:{free_port()}").model_copy(update={"shops": {}})
    parked_id = await enqueue_notification(pool, down, queued(notification("AUTHORISED"), shop))
    await drain(down)
    assert await failed_store.get(pool, parked_id) is not None
    assert await deliver_alerts(pool, down) == 0
    assert await pool.llen(OUTBOX) == 1  # type: ignore[misc]  # async client

    good = with_mail(settings, f"smtp://127.0.0.1:{free_port()}")
    await enqueue_notification(pool, good, queued(notification("AUTHORISED", trans_id="Zz99Yy"), shop))
    await drain(good)
    assert await pool.xlen(settings.stream) == 1

    up = with_mail(settings, smtp_server.url)
    assert await deliver_alerts(pool, up) == 1
    assert await deliver_alerts(pool, up) == 0
    [subject] = subjects(smtp_server)
    assert "mise de côté" in subject


async def test_oldest_queued_job_past_the_limit_raises_a_queue_alert(
    pool: ArqRedis, settings: Settings, shop: ShopConfig, smtp_server: SmtpServer
) -> None:
    """With no worker running, a job queued longer than queue_age_alert_s raises one queue_stale alert."""
    settings = with_mail(settings, smtp_server.url).model_copy(update={"queue_age_alert_s": 60})
    await enqueue_notification(pool, settings, queued(notification("AUTHORISED"), shop))
    young = await check_queue_age(pool, settings)
    assert young is not None and young < 5
    assert await pool.llen(OUTBOX) == 0  # type: ignore[misc]  # async client
    old = await check_queue_age(pool, settings, now=time.time() + 120)
    assert old is not None and old > 60
    assert await deliver_alerts(pool, settings) == 1
    assert "en attente depuis trop longtemps" in subjects(smtp_server)[0]


async def test_signature_failure_burst_raises_an_alert_for_that_shop(
    pool: ArqRedis, settings: Settings, smtp_server: SmtpServer
) -> None:
    """Failures at the threshold within the window alert for their shop only; older ones do not count."""
    settings = with_mail(settings, smtp_server.url).model_copy(
        update={"sigfail_alert_threshold": 5, "sigfail_alert_window_s": 60}
    )
    old_ms = int((time.time() - 600) * 1000)
    for n in range(10):
        await pool.xadd(FORENSICS_STREAM, {"shop_id": "11111111", "body": "x"}, id=f"{old_ms}-{n}")
    for _ in range(5):
        await pool.xadd(FORENSICS_STREAM, {"shop_id": "22222222", "body": "x"})
    for _ in range(4):
        await pool.xadd(FORENSICS_STREAM, {"shop_id": "33333333", "body": "x"})
    assert await check_signature_bursts(pool, settings) == {"22222222": 5}
    assert await deliver_alerts(pool, settings) == 1
    [subject] = subjects(smtp_server)
    assert "signatures invalides" in subject and "22222222" in subject
