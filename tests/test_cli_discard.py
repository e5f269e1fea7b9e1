"""`cvco-ipn failed discard` and `failed list --discarded`, through the real CLI, the real worker and SMTP."""

from __future__ import annotations

import email
import email.policy
import json

import pytest
from arq.connections import ArqRedis
from arq.constants import result_key_prefix
from pydantic import SecretStr
from redis.asyncio import Redis

from core import keys
from schemas.settings import Settings, ShopConfig
from tests.cli_process import run_cli
from tests.conftest import SHOP_ID, SmtpServer
from tests.notifications import cascade, drain, enqueue_notification, leg, queued
from workers import discarded_store, failed_store
from workers.alerts import deliver_alerts


async def park_unparsable(pool: ArqRedis, settings: Settings, shop: ShopConfig) -> str:
    """A signed cascade whose vads_payment_seq is not JSON: parked at once as InvalidNotification."""
    fields = cascade([leg(1, "CVCO", 10000, "AUTHORISED", "a" * 32)])
    fields["vads_payment_seq"] = fields["vads_payment_seq"][:-5]
    job_id = await enqueue_notification(pool, settings, queued(fields, shop))
    await drain(settings)
    return job_id


def mail_bodies(smtp_server: SmtpServer) -> list[str]:
    bodies = []
    for envelope in smtp_server.mailbox.messages:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        bodies.append(message.get_body().get_content())  # type: ignore[union-attr]  # a text mail has a body
    return bodies


async def test_discard_closes_an_unparsable_job_for_good(
    pool: ArqRedis, settings: Settings, shop: ShopConfig, smtp_server: SmtpServer
) -> None:
    """The mail says replaying cannot help and names discard; discarding by a prefix empties the failed list
    (and the gauge's count), keeps an audit record with the raw notification, and the same notification
    failing again is neither parked nor mailed."""
    settings = settings.model_copy(
        update={"smtp_url": SecretStr(smtp_server.url), "alert_to": ["ops@example.com"]}
    )
    failed_id = await park_unparsable(pool, settings, shop)
    await deliver_alerts(pool, settings)
    (body,) = mail_bodies(smtp_server)
    assert "Rejouer ne servira à rien" in body
    assert f"cvco-ipn failed discard {failed_id} --reason" in body

    ran = run_cli("failed", "discard", failed_id[:12], "--reason", "platform sent a truncated cascade")
    assert ran.status == 0, ran.err
    assert f"discarded {failed_id} (shop {SHOP_ID}" in ran.out
    assert await failed_store.count(pool) == 0  # what cvco_ipn_failed_jobs exports
    assert run_cli("failed", "list").out == ""

    listing = run_cli("failed", "list", "--discarded")
    (line,) = listing.out.splitlines()
    assert line.split("\t")[0] == failed_id
    assert line.split("\t")[4:] == ["InvalidNotification", "platform sent a truncated cascade"]
    (record,) = json.loads(run_cli("failed", "list", "--discarded", "--json").out)
    assert record["reason"] == "platform sent a truncated cascade"
    assert record["notification"]["fields"]["vads_site_id"] == SHOP_ID
    assert record["discarded_at"] >= record["failed_at"]
    shown = run_cli("failed", "show", failed_id[:10])
    assert shown.status == 0 and "reason: platform sent a truncated cascade" in shown.out

    await pool.delete(result_key_prefix + failed_id)  # the platform resends it, hours later
    mails_before = len(smtp_server.mailbox.messages)
    await park_unparsable(pool, settings, shop)
    assert await failed_store.count(pool) == 0
    assert await pool.llen(keys.ALERT_OUTBOX) == 0  # type: ignore[misc]  # async client
    await deliver_alerts(pool, settings)
    assert len(smtp_server.mailbox.messages) == mails_before


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (("failed", "discard", "ipn:nope", "--reason", "x"), "not in the failed list"),
        (("failed", "discard", "ipn:", "--reason", "x"), "names 2 jobs"),
        (("failed", "discard", "ipn:a"), "the following arguments are required: --reason"),
        (("failed", "discard", "ipn:a", "--reason", "  "), "--reason must say why"),
        (("failed", "show", "ipn:"), "names 2 jobs"),
        (("replay", "ipn:"), "names 2 jobs"),
    ],
)
async def test_bad_discard_arguments_exit_2_with_one_line(
    redis: Redis, argv: tuple[str, ...], reason: str
) -> None:
    """Unknown id, ambiguous prefix, missing or blank reason: exit 2, one line, nothing discarded."""
    for failed_id in ("ipn:" + "a" * 64, "ipn:" + "b" * 64):
        await failed_store.park(
            redis,
            failed_id=failed_id,
            job_id=failed_id,
            payload={"fields": {}},
            error=ValueError("x"),
            traceback="",
            tries=1,
            failed_max=100,
        )
    ran = run_cli(*argv)
    assert ran.status == 2
    assert len(ran.err_lines) == 1 and reason in ran.err, ran.err
    assert await failed_store.count(redis) == 2


async def test_discarded_records_are_bounded_by_count_and_age(redis: Redis) -> None:
    """Beyond keep_max the oldest records go; a record older than max_age_s is trimmed at the next discard
    and expires on its own meanwhile."""
    for n in range(12):
        failed_id = f"ipn:{n:064x}"
        await failed_store.park(
            redis,
            failed_id=failed_id,
            job_id=failed_id,
            payload={"fields": {}},
            error=ValueError("x"),
            traceback="",
            tries=1,
            failed_max=100,
        )
        assert await discarded_store.discard(
            redis, failed_id, "test", max_age_s=86400, keep_max=10, now=1_000_000.0 + n
        )
    kept = [record.job.id async for record in discarded_store.iter_discarded(redis)]
    assert kept == [f"ipn:{n:064x}" for n in range(2, 12)]
    assert 0 < await redis.ttl(keys.DISCARDED_PREFIX + kept[0]) <= 86400
    await failed_store.park(
        redis,
        failed_id="ipn:late",
        job_id="ipn:late",
        payload={},
        error=ValueError("x"),
        traceback="",
        tries=1,
        failed_max=100,
    )
    await discarded_store.discard(
        redis, "ipn:late", "test", max_age_s=86400, keep_max=10, now=1_000_000.0 + 86400 + 11
    )
    assert [record.job.id async for record in discarded_store.iter_discarded(redis)] == ["ipn:late"]
    assert await redis.exists(keys.DISCARDED_PREFIX + kept[-1]) == 0
    assert not await discarded_store.discard(redis, "ipn:late", "again", max_age_s=86400, keep_max=10)
