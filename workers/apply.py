"""The one atomic write of the worker: payment state + applied fingerprint + event, or nothing.

Redis layout (all under `cvco:`):

- `cvco:payment:<payment key>` (hash): `v` = state version (compare-and-set), `s` = `PaymentState` JSON,
  whose `seen` list holds the fingerprints applied. Expires `PAYMENT_TTL_S` after its last change: a
  notification for a payment older than that is treated as new (its event keeps the same deterministic
  `event_id` when the state is the same, so consumers still deduplicate).
- `settings.stream` (stream): one entry per event, field `event` (JSON) plus `type`, `shop_id`,
  `event_id` for filtering, trimmed with `MAXLEN ~ settings.stream_maxlen`.
- `cvco:sessions` (sorted set, `workers.sessions`): a payment that got past pending leaves it here, so
  the expiry sweeper has nothing to do for it.

The worker decides in Python, then runs `_APPLY`, which writes only if the payment is still at the
version the decision was made on, and otherwise answers the current version and state: two workers on
the same payment cannot both win, and the loser decides again on what the winner wrote. The first
attempt assumes a new payment (version 0), so a payment's first notification costs one round trip.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from schemas.settings import Settings
from workers.decide import Decision, PaymentState
from workers.events import event_json
from workers.sessions import SESSIONS_KEY

PAYMENT_PREFIX = "cvco:payment:"
PAYMENT_TTL_S = 120 * 86400

# KEYS: payment hash, stream, sessions. ARGV: expected version, state JSON, ttl s, event JSON ('' = none),
# maxlen, type, shop id, event id, '1' to stop watching the session, payment key.
_APPLY = """
local current = redis.call('HGET', KEYS[1], 'v') or '0'
if current ~= ARGV[1] then
  return {0, current, redis.call('HGET', KEYS[1], 's') or ''}
end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(current) + 1), 's', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[9] == '1' then
  redis.call('ZREM', KEYS[3], ARGV[10])
end
if ARGV[4] == '' then
  return {1, ''}
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
  'event', ARGV[4], 'type', ARGV[6], 'shop_id', ARGV[7], 'event_id', ARGV[8])
return {1, id}
"""
_APPLY_SHA = hashlib.sha1(_APPLY.encode(), usedforsecurity=False).hexdigest()


class VersionConflict(Exception):
    """The payment is not at the version the decision was made on; carries what it is at instead."""

    def __init__(self, key: str, version: str, state: PaymentState | None) -> None:
        super().__init__(f"payment {key} is at version {version}")
        self.version = version
        self.state = state


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def load_versioned(redis: Redis, key: str) -> tuple[PaymentState | None, str]:
    """The payment's state and the version to compare against when writing (`"0"`: never written)."""
    version, raw = await redis.hmget(PAYMENT_PREFIX + key, ["v", "s"])  # type: ignore[misc]  # redis-py types it Awaitable | list
    if raw is None:
        return None, _text(version) if version is not None else "0"
    return PaymentState.model_validate_json(raw), _text(version)


async def load_payment(redis: Redis, key: str) -> PaymentState | None:
    """What cvco-ipn knows of a payment (by `payment_key`); `.is_final` / `.phase` tell where it stands."""
    state, _ = await load_versioned(redis, key)
    return state


async def apply_decision(redis: Redis, settings: Settings, version: str, decision: Decision) -> str | None:
    """Write the decision's state, and XADD its event, iff the payment is still at `version`.

    Returns the stream entry id (None when the decision has no event); raises `VersionConflict` with
    the current version and state, so the caller decides again without another read.
    """
    state = decision.state
    if state is None:
        raise ValueError("a decision without a new state has nothing to write")
    event = decision.event_data
    watch_done = state.phase not in (None, "pending")
    keys = [PAYMENT_PREFIX + state.key, settings.stream, SESSIONS_KEY]
    args: list[str] = [
        version,
        state.model_dump_json(),
        str(PAYMENT_TTL_S),
        event_json(event) if event else "",
        str(settings.stream_maxlen),
        event["type"] if event else "",
        state.shop_id,
        event["event_id"] if event else "",
        "1" if watch_done else "0",
        state.key,
    ]
    try:
        reply = await redis.evalsha(_APPLY_SHA, len(keys), *keys, *args)  # type: ignore[misc]  # redis-py types evalsha as Awaitable | value
    except NoScriptError:
        reply = await redis.eval(_APPLY, len(keys), *keys, *args)  # type: ignore[misc]  # as above
    if not int(reply[0]):
        raw = reply[2]
        current = PaymentState.model_validate_json(raw) if raw else None
        raise VersionConflict(state.key, _text(reply[1]), current)
    return _text(reply[1]) or None
