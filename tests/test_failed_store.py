"""The failed-job store on the real test Redis: durable, bounded, one entry per notification."""

from __future__ import annotations

import email
import email.policy

from pydantic import SecretStr
from redis.asyncio import Redis

from core.keys import FAILED_INDEX, FAILED_PREFIX
from schemas.settings import Settings
from tests.conftest import SmtpServer
from workers import failed_store
from workers.alerts import deliver_alerts
from workers.context import WorkerContext
from workers.failed_store import failed_id_for_job
from workers.failures import park_job

PAYLOAD = {"fields": {"vads_site_id": "12345678", "vads_order_id": "CMD-9", "vads_trans_uuid": "ab" * 16}}


async def put(redis: Redis, failed_id: str, *, now: float, failed_max: int = 100) -> list[str]:
    return await failed_store.park(
        redis,
        failed_id=failed_id,
        job_id=failed_id,
        payload=PAYLOAD,
        error=ValueError("boom"),
        traceback="Traceback ...",
        tries=1,
        failed_max=failed_max,
        now=now,
    )


async def test_entries_have_no_expiry_and_feed_the_metrics_index(redis: Redis) -> None:
    """An entry is a hash without TTL, indexed by last failure time in cvco:failed:index."""
    await put(redis, "ipn:a", now=1000.0)
    assert await redis.ttl(FAILED_PREFIX + "ipn:a") == -1
    assert await redis.zscore(FAILED_INDEX, "ipn:a") == 1000.0
    entry = await failed_store.get(redis, "ipn:a")
    assert entry is not None
    assert (entry.shop_id, entry.order_id, entry.trans_uuid) == ("12345678", "CMD-9", "ab" * 16)
    assert entry.fields() == PAYLOAD["fields"]


async def test_store_is_bounded_dropping_the_oldest(redis: Redis) -> None:
    """Beyond failed_max the oldest entries go, hash and index both, and their ids are returned."""
    for n in range(10):
        assert await put(redis, f"ipn:{n}", now=1000.0 + n, failed_max=10) == []
    assert await put(redis, "ipn:new", now=2000.0, failed_max=10) == ["ipn:0"]
    assert await failed_store.count(redis) == 10
    assert await redis.exists(FAILED_PREFIX + "ipn:0") == 0
    assert [e.id async for e in failed_store.iter_failed(redis)][0] == "ipn:1"


async def test_dropping_entries_raises_an_alert(
    redis: Redis, settings: Settings, smtp_server: SmtpServer
) -> None:
    """When the store overflows, the operators get a mail naming how many were dropped."""
    settings = settings.model_copy(
        update={"failed_max": 10, "smtp_url": SecretStr(smtp_server.url), "alert_to": ["ops@example.com"]}
    )
    for n in range(11):
        ctx: WorkerContext = {"redis": redis, "job_id": f"ipn:{n}", "job_try": 1}
        await park_job(ctx, settings, PAYLOAD, ValueError("boom"), f"ipn:{n}")
    assert await failed_store.count(redis) == 10
    assert await deliver_alerts(redis, settings) == 2  # one job_parked (the rest folded), one failed_dropped
    subjects = []
    for envelope in smtp_server.mailbox.messages:
        assert isinstance(envelope.content, bytes)
        subjects.append(
            str(email.message_from_bytes(envelope.content, policy=email.policy.default)["Subject"])
        )
    assert any("anciennes entrées supprimées" in subject for subject in subjects)


async def test_iteration_filters_by_time_and_resolve_removes(redis: Redis) -> None:
    """`since` keeps later failures only; `resolve` removes the entry and says whether it existed."""
    await put(redis, "ipn:old", now=1000.0)
    await put(redis, "ipn:new", now=5000.0)
    assert [e.id async for e in failed_store.iter_failed(redis, since=2000.0)] == ["ipn:new"]
    assert await failed_store.resolve(redis, "ipn:old") is True
    assert await failed_store.resolve(redis, "ipn:old") is False
    assert await failed_store.count(redis) == 1


def test_replay_job_ids_map_back_to_their_entry() -> None:
    """`replay:<id>:<n>` names entry <id> (ids may hold colons); any other job id is its own entry."""
    assert failed_id_for_job("replay:ipn:abc:3") == "ipn:abc"
    assert failed_id_for_job("ipn:abc") == "ipn:abc"
