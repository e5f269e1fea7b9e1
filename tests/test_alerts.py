"""Alert mails: recorded off the job's path, sent through a real SMTP server, folded per window."""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import Message

import pytest
from aiosmtpd.smtp import Envelope
from pydantic import SecretStr
from redis.asyncio import Redis

from core.keys import ALERT_OUTBOX, ALERT_SENDER_LEASE, ALERT_SENDING
from schemas.notification import InvalidNotification
from schemas.settings import Settings
from tests.conftest import SmtpServer, free_port, silent_server
from workers import failed_store
from workers.alerts import Alert, AlertKind, deliver_alerts, record_alert
from workers.context import WorkerContext
from workers.failures import park_job

FIELDS = {
    "vads_site_id": "12345678",
    "vads_ctx_mode": "TEST",
    "vads_order_id": "CMD-42",
    "vads_trans_id": "xyz789",
    "vads_trans_uuid": "0123456789abcdef0123456789abcdef",
    "vads_amount": "4500",
    "vads_trans_status": "AUTHORISED",
    "vads_hash": "hash-must-not-leak",
    "signature": "signature-must-not-leak",
}


def mail_settings(settings: Settings, url: str, window_s: int = 900) -> Settings:
    return settings.model_copy(
        update={"smtp_url": SecretStr(url), "alert_to": ["ops@example.com"], "alert_window_s": window_s}
    )


def parsed(envelope: Envelope) -> Message:
    assert isinstance(envelope.content, bytes)
    return email.message_from_bytes(envelope.content, policy=email.policy.default)


def body(envelope: Envelope) -> str:
    payload = parsed(envelope).get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8")


async def park(redis: Redis, settings: Settings, failed_id: str, trans_id: str = "xyz789") -> None:
    ctx: WorkerContext = {"redis": redis, "job_id": failed_id, "job_try": 1}
    error = InvalidNotification("vads_payment_seq", "is not valid JSON")
    # one notification per id, as the receiver queues them: each its own signature (and payment, if asked)
    fields = FIELDS | {"signature": f"signature-must-not-leak-{failed_id}", "vads_trans_id": trans_id}
    await park_job(ctx, settings, {"fields": fields, "request_id": "r"}, error, failed_id)


async def test_one_parked_job_gives_one_mail_with_the_commands(
    redis: Redis, settings: Settings, smtp_server: SmtpServer
) -> None:
    """The mail says what happened, the consequence, the exact commands and the notification summary; for an
    unparsable notification, that replaying cannot help and how to discard it."""
    settings = mail_settings(settings, smtp_server.url)
    await park(redis, settings, "ipn:one")
    assert await deliver_alerts(redis, settings) == 1
    assert len(smtp_server.mailbox.messages) == 1
    envelope = smtp_server.mailbox.messages[0]
    assert envelope.rcpt_tos == ["ops@example.com"]
    text = body(envelope)
    assert "Rejouer ne servira à rien" in text and "cvco-ipn replay" not in text
    assert 'cvco-ipn failed discard ipn:one --reason "..."' in text
    assert "cvco-ipn failed show ipn:one" in text
    assert "InvalidNotification" in text
    for shown in ("12345678", "CMD-42", "xyz789", "0123456789abcdef0123456789abcdef", "4500", "AUTHORISED"):
        assert shown in text
    assert "must-not-leak" not in envelope.content.decode("ascii", "replace") + text  # type: ignore[union-attr]  # bytes checked in body()
    assert await deliver_alerts(redis, settings) == 0
    assert len(smtp_server.mailbox.messages) == 1


async def test_fifty_parked_jobs_in_a_window_give_one_mail_then_a_count(
    redis: Redis, settings: Settings, smtp_server: SmtpServer
) -> None:
    """50 alerts of one kind and shop in a window: one mail, then one summary saying 49 were folded in."""
    settings = mail_settings(settings, smtp_server.url, window_s=1)
    for n in range(50):
        await park(redis, settings, f"ipn:burst-{n}", trans_id=f"t{n}")
    assert await deliver_alerts(redis, settings) == 1
    assert await deliver_alerts(redis, settings) == 0
    assert len(smtp_server.mailbox.messages) == 1
    await asyncio.sleep(1.2)
    assert await deliver_alerts(redis, settings) == 1
    assert len(smtp_server.mailbox.messages) == 2
    summary = body(smtp_server.mailbox.messages[1])
    assert "49 alertes de ce type regroupées" in summary
    assert "cvco-ipn failed discard ipn:burst-49" in summary
    await asyncio.sleep(1.2)
    assert await deliver_alerts(redis, settings) == 0


async def test_smtp_down_keeps_the_alert_and_sends_it_once_smtp_is_back(
    redis: Redis, settings: Settings, smtp_server: SmtpServer
) -> None:
    """Nothing listening on the SMTP port: parking works, delivery fails softly; later the mail goes once."""
    down = mail_settings(settings, f"smtp://127.0.0.1:{free_port()}")
    await park(redis, down, "ipn:while-down")
    assert await failed_store.get(redis, "ipn:while-down") is not None
    assert await deliver_alerts(redis, down) == 0
    assert await deliver_alerts(redis, down) == 0
    assert await redis.llen(ALERT_OUTBOX) == 1  # type: ignore[misc]  # async client
    up = mail_settings(settings, smtp_server.url)
    assert await deliver_alerts(redis, up) == 1
    assert await deliver_alerts(redis, up) == 0
    assert len(smtp_server.mailbox.messages) == 1
    assert "cvco-ipn failed discard ipn:while-down" in body(smtp_server.mailbox.messages[0])


async def test_alerts_of_different_shops_or_kinds_are_not_folded_together(
    redis: Redis, settings: Settings, smtp_server: SmtpServer
) -> None:
    """The window is per alert kind and per shop: three distinct groups give three mails."""
    settings = mail_settings(settings, smtp_server.url)
    groups: tuple[tuple[AlertKind, str], ...] = (
        ("job_parked", "11111111"),
        ("job_parked", "22222222"),
        ("queue_stale", "11111111"),
    )
    for kind, shop in groups:
        alert = Alert(
            kind=kind, shop_id=shop, happened="h", consequence="c", actions=("cvco-ipn failed list",)
        )
        await record_alert(redis, settings, alert)
    assert await deliver_alerts(redis, settings) == 3
    subjects = sorted(str(parsed(m)["Subject"]) for m in smtp_server.mailbox.messages)
    assert sum("11111111" in s for s in subjects) == 2


async def test_without_smtp_url_alerts_are_logged_only(redis: Redis, settings: Settings) -> None:
    """No CVCO_SMTP_URL: the alert is logged and nothing piles up in Redis."""
    await park(redis, settings, "ipn:no-mail")
    assert await redis.llen(ALERT_OUTBOX) == 0  # type: ignore[misc]  # async client
    assert await deliver_alerts(redis, settings) == 0


async def test_an_alert_left_by_a_sender_killed_mid_send_is_mailed_by_the_next(
    redis: Redis, settings: Settings, smtp_server: SmtpServer
) -> None:
    """A sender killed between taking an alert and mailing it leaves it in `sending` and its lease behind:
    nobody sends while the lease lasts; then the next sender mails it first, and nothing stays behind."""
    settings = mail_settings(settings, smtp_server.url)
    await park(redis, settings, "ipn:orphan")
    # what the killed sender did before dying: took the lease (here a short one) and the alert
    await redis.set(ALERT_SENDER_LEASE, "dead-sender", px=300)
    assert await redis.lmove(ALERT_OUTBOX, ALERT_SENDING, "RIGHT", "LEFT") is not None
    assert await deliver_alerts(redis, settings) == 0
    assert await redis.llen(ALERT_SENDING) == 1  # type: ignore[misc]  # async client
    await asyncio.sleep(0.4)
    assert await deliver_alerts(redis, settings) == 1
    assert "cvco-ipn failed discard ipn:orphan" in body(smtp_server.mailbox.messages[0])
    assert await redis.llen(ALERT_SENDING) == 0  # type: ignore[misc]  # async client
    assert await redis.llen(ALERT_OUTBOX) == 0  # type: ignore[misc]  # async client
    assert await redis.exists(ALERT_SENDER_LEASE) == 0


async def test_a_summary_cut_short_mid_send_keeps_its_count_for_the_next_sender(
    redis: Redis, settings: Settings, smtp_server: SmtpServer
) -> None:
    """The sender is cancelled (as at its cron's timeout) while an SMTP server that never answers holds
    its summary mail: the folded count and the latest alert stay, and the next run mails them."""
    settings = mail_settings(settings, smtp_server.url, window_s=1)
    for n in range(3):
        await park(redis, settings, f"ipn:fold-{n}", trans_id=f"t{n}")
    assert await deliver_alerts(redis, settings) == 1
    await asyncio.sleep(1.2)
    async with silent_server() as port:
        hung = mail_settings(settings, f"smtp://127.0.0.1:{port}", window_s=1)
        sender = asyncio.create_task(deliver_alerts(redis, hung))
        await asyncio.sleep(0.3)
        sender.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sender
    assert await redis.exists(ALERT_SENDER_LEASE) == 0
    assert await deliver_alerts(redis, settings) == 1
    summary = body(smtp_server.mailbox.messages[1])
    assert "2 alertes de ce type regroupées" in summary
    assert "cvco-ipn failed discard ipn:fold-2" in summary
