"""Where watched payment sessions live in Redis, shared by the form builder, the worker and the sweeper.

- `cvco:sessions` (sorted set): member = payment key, score = deadline (epoch seconds).
- `cvco:session:<payment key>` (string): the `PendingPayment` as JSON.

Both go when the watch ends: the payment got past pending (the worker's state write, `workers.apply`), or
the sweep published its expiry (`end_watch`). The record's expiry, 30 days after the deadline, is only a
safety net: a sweeper down for days still finds every session it has to expire.
"""

from __future__ import annotations

from redis.asyncio import Redis

from core.keys import SESSION_RECORD_PREFIX, SESSIONS_KEY
from schemas.session import PendingPayment

RECORD_TTL_AFTER_DEADLINE_S = 30 * 86400


async def track_session(redis: Redis, pending: PendingPayment) -> bool:
    """Start watching a session; a session already watched keeps its first deadline. True if new."""
    record_key = SESSION_RECORD_PREFIX + pending.key
    deadline = pending.deadline.timestamp()
    ttl_ms = int((deadline - pending.trans_date.timestamp() + RECORD_TTL_AFTER_DEADLINE_S) * 1000)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(SESSIONS_KEY, {pending.key: deadline}, nx=True)
        pipe.set(record_key, pending.model_dump_json(), px=max(ttl_ms, 1000), nx=True)
        added, _ = await pipe.execute()
    return bool(added)


async def load_session(redis: Redis, key: str) -> PendingPayment | None:
    """The watched session for a payment key, if any."""
    raw = await redis.get(SESSION_RECORD_PREFIX + key)
    return PendingPayment.model_validate_json(raw) if raw else None


async def end_watch(redis: Redis, key: str) -> None:
    """Stop watching a payment's session: its member and its record go together."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(SESSIONS_KEY, key)
        pipe.delete(SESSION_RECORD_PREFIX + key)
        await pipe.execute()
