"""Discarded jobs: parked notifications an operator decided will never be processed, kept for audit.

`discard` moves an entry out of the failed-job store in one Lua call: its hash, as parked (raw
notification, error, traceback), plus `discarded_at` and `reason`, becomes `cvco:discarded:<id>`, and the
id moves from `cvco:failed:index` to `cvco:discarded:index` (sorted by discard time). The failed list,
the `cvco_ipn_failed_jobs` gauge and the `CvcoFailedJobs` alert stop counting it at once.

Bounded both ways: each record expires after `max_age_s`, and beyond `keep_max` records the oldest go.
While a record lives, the same notification failing again (a platform resend, a replay queued before the
discard) is not parked or mailed again: the workers ask `is_discarded` first.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from core.keys import DISCARDED_INDEX, DISCARDED_PREFIX, FAILED_INDEX, FAILED_PREFIX
from workers.failed_store import FailedJob, decode_entry, iter_index

# KEYS: failed entry, failed index, discarded record, discarded index.
# ARGV: id, now, reason, max age (s), keep max, discarded prefix. Returns 1 if the entry was parked.
_DISCARD = """
local parked = redis.call('HGETALL', KEYS[1])
if #parked == 0 then
  return 0
end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], unpack(parked))
redis.call('HSET', KEYS[3], 'discarded_at', ARGV[2], 'reason', ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[4])
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', cutoff)) do
  redis.call('DEL', ARGV[6] .. old)
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', cutoff)
local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[5])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[4], excess)
  for i = 1, #oldest, 2 do
    redis.call('DEL', ARGV[6] .. oldest[i])
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class DiscardedJob:
    """A discarded entry: the parked job as it was, when and why it was discarded."""

    job: FailedJob
    discarded_at: float
    reason: str


async def discard(
    redis: Redis,
    failed_id: str,
    reason: str,
    *,
    max_age_s: int,
    keep_max: int,
    now: float | None = None,
) -> bool:
    """Move a parked entry to the discarded records; False when no such entry is parked."""
    moved = await redis.eval(  # type: ignore[misc]  # redis-py types eval as Awaitable | value
        _DISCARD,
        4,
        FAILED_PREFIX + failed_id,
        FAILED_INDEX,
        DISCARDED_PREFIX + failed_id,
        DISCARDED_INDEX,
        failed_id,
        repr(time.time() if now is None else now),
        reason,
        str(max_age_s),
        str(keep_max),
        DISCARDED_PREFIX,
    )
    return bool(moved)


async def is_discarded(redis: Redis, failed_id: str) -> bool:
    """Whether an operator discarded this notification (and its record has not expired)."""
    return bool(await redis.exists(DISCARDED_PREFIX + failed_id))


async def get(redis: Redis, failed_id: str) -> DiscardedJob | None:
    """One record by id, or None (never discarded, or expired)."""
    raw = await redis.hgetall(DISCARDED_PREFIX + failed_id)  # type: ignore[misc]  # async client
    return _decode(raw) if raw else None


def _decode(raw: Mapping[bytes, bytes]) -> DiscardedJob:
    return DiscardedJob(
        job=decode_entry(raw),
        discarded_at=float(raw.get(b"discarded_at", b"0")),
        reason=raw.get(b"reason", b"").decode(),
    )


async def iter_discarded(redis: Redis, *, since: float | None = None) -> AsyncIterator[DiscardedJob]:
    """Records from the oldest discard to the newest, optionally only those discarded since `since`."""
    async for raw in iter_index(redis, DISCARDED_INDEX, DISCARDED_PREFIX, since=since):
        yield _decode(raw)
