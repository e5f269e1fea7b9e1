"""Retention by age, applied by a periodic sweep: what a store would otherwise trim only on its next write.

- the event stream: entries older than `CVCO_STREAM_RETENTION_S` (beside its count cap, `XADD MAXLEN ~`
  at each write), so a consumer knows how long it may lag: the stream's ids are Redis-clock milliseconds;
- the signature-failure forensics: older than `CVCO_FORENSICS_MAX_AGE_S`, also when no failure comes.

Both use `XTRIM MINID ~`: whole radix-tree nodes only, so a sweep costs about nothing when there is little
to drop. The failed-job store has no age limit (a parked job waits for an operator), only its count cap.
"""

from __future__ import annotations

from typing import Any

import structlog
from redis.asyncio import Redis

from ingest.forensics import oldest_kept_id, trim_forensics
from schemas.settings import Settings

RETENTION_SECOND = 45
"""Second of each minute when the sweep runs (away from the other crons' ticks at 0, 10, 20...)."""

log = structlog.get_logger(__name__)


async def sweep_retention(redis: Redis, settings: Settings) -> dict[str, int]:
    """Trim every store past its age limit; the entries dropped, per store."""
    dropped = {
        "events": int(
            await redis.xtrim(
                settings.stream, minid=oldest_kept_id(settings.stream_retention_s), approximate=True
            )
        ),
        "forensics": await trim_forensics(redis, settings.forensics_max_age_s),
    }
    if any(dropped.values()):
        log.info("retention_swept", **dropped)
    return dropped


async def retention_cron(ctx: dict[str, Any]) -> dict[str, int]:
    return await sweep_retention(ctx["redis"], ctx["settings"])
