"""What Redis keeps, bounded: stream retention by age (the worker's sweep), forensics trimmed by age with no
new failure arriving, and arq results that hold the job's outcome, never the notification."""

from __future__ import annotations

import time

from arq.connections import ArqRedis
from arq.constants import result_key_prefix
from arq.jobs import Job
from redis.asyncio import Redis

from ingest.rejected_store import FORENSICS_STREAM
from schemas.job import loads
from schemas.settings import Settings, ShopConfig
from tests.notifications import drain, enqueue_notification, notification, queued
from workers.retention import sweep_retention
from workers.watch import scheduled_jobs

OLD, RECENT = 500, 20


async def _fill(redis: Redis, stream: str, age_s: int) -> None:
    """OLD entries `age_s` old (explicit ids: Redis-clock ms), then RECENT ones from now."""
    old_ms = int((time.time() - age_s) * 1000)
    for index in range(OLD):
        await redis.xadd(stream, {"n": index}, id=f"{old_ms}-{index}")
    for index in range(RECENT):
        await redis.xadd(stream, {"n": OLD + index})


async def _ages_kept(redis: Redis, stream: str, max_age_s: int) -> tuple[int, int]:
    """(entries older than max_age_s, entries younger) left on the stream."""
    boundary_ms = (time.time() - max_age_s) * 1000
    entries = await redis.xrange(stream)
    old = sum(1 for entry_id, _ in entries if int(entry_id.split(b"-")[0]) < boundary_ms)
    return old, len(entries) - old


async def test_the_sweep_trims_events_and_forensics_past_their_age(redis: Redis, settings: Settings) -> None:
    await _fill(redis, settings.stream, settings.stream_retention_s + 3600)
    await _fill(redis, FORENSICS_STREAM, settings.forensics_max_age_s + 3600)
    dropped = await sweep_retention(redis, settings)
    for stream, max_age_s, name in (
        (settings.stream, settings.stream_retention_s, "events"),
        (FORENSICS_STREAM, settings.forensics_max_age_s, "forensics"),
    ):
        old, recent = await _ages_kept(redis, stream, max_age_s)
        assert recent == RECENT
        # approximate (whole nodes of 100 entries): at most the node holding the boundary survives
        assert old < 100
        assert dropped[name] == OLD - old
    assert await sweep_retention(redis, settings) == {"events": 0, "forensics": 0}


def test_the_sweep_is_a_worker_cron(settings: Settings) -> None:
    assert "cvco_retention" in {job.name for job in scheduled_jobs(settings)}


async def test_an_arq_result_holds_the_outcome_not_the_notification(
    redis: Redis, pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    job = queued(notification("AUTHORISED"), shop)
    job_id = await enqueue_notification(pool, settings, job)
    assert await drain(settings) == 0
    stored = await redis.get(result_key_prefix + job_id)
    assert stored is not None
    assert job.fields["signature"].encode() not in stored
    assert job.fields["vads_trans_uuid"].encode() not in stored
    result = await Job(job_id, pool, _deserializer=loads).result_info()
    assert result is not None and result.success and result.result["result"] == "published"
    assert not result.args and not result.kwargs
