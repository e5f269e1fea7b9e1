"""Retention by age, applied by a periodic sweep: what a store would otherwise trim only on its next write.

- the event stream: entries older than `CVCO_STREAM_RETENTION_S` (beside its count cap, `XADD MAXLEN ~`
  at each write), so a consumer knows how long it may lag: the stream's ids are Redis-clock milliseconds;
- the signature-failure stream the burst alert counts: older than `CVCO_FORENSICS_MAX_AGE_S`, also when
  no failure comes (the rejected requests themselves expire by their own TTL).

Both use `XTRIM MINID ~`: whole radix-tree nodes only, so a sweep costs about nothing when there is little
to drop. The failed-job store has no age limit (a parked job waits for an operator), only its caps.
"""

from __future__ import annotations

import time

import structlog
from redis.asyncio import Redis

from core.keys import FORENSICS_STREAM
from schemas.settings import Settings
from workers.context import WorkerContext

RETENTION_SECOND = 45
"""Second of each minute when the sweep runs (away from the other crons' ticks at 0, 10, 20...)."""

log = structlog.get_logger(__name__)


def oldest_kept_id(max_age_s: int) -> str:
    """The `MINID` that keeps a stream's entries younger than `max_age_s` (ids are Redis-clock ms)."""
    return f"{int((time.time() - max_age_s) * 1000)}-0"


async def _trim(redis: Redis, stream: str, max_age_s: int) -> int:
    return int(await redis.xtrim(stream, minid=oldest_kept_id(max_age_s), approximate=True))


async def sweep_retention(redis: Redis, settings: Settings) -> dict[str, int]:
    """Trim every store past its age limit; the entries dropped, per store."""
    dropped = {
        "events": await _trim(redis, settings.stream, settings.stream_retention_s),
        "forensics": await _trim(redis, FORENSICS_STREAM, settings.forensics_max_age_s),
    }
    if any(dropped.values()):
        log.info("retention_swept", **dropped)
    return dropped


async def retention_cron(ctx: WorkerContext) -> dict[str, int]:
    return await sweep_retention(ctx["redis"], ctx["settings"])
