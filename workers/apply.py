"""The one atomic write of the worker: payment state + history + event (+ lookup index), or nothing.

Redis layout (all under `cvco:`):

- `cvco:payment:<payment key>` (string, `workers.record`): the write count (compare-and-set), the
  `PaymentState` and the payment's history (`workers.history`). Expires `PAYMENT_TTL_S` after its last
  change: a notification for a payment older than that is treated as new (its event keeps the same
  deterministic `event_id` for the same outcome, so consumers still deduplicate).
- `cvco:refs:<day>:<bucket>`: the lookup indexes (`workers.history`), written by the same script; a
  refund that carries its own trans_id (Back Office refunds) finds its order's paid payment there.
- `settings.stream` (stream): one entry per event, field `event` (JSON) plus `type`, `shop_id`,
  `event_id` for filtering, trimmed with `MAXLEN ~ settings.stream_maxlen`.
- `cvco:sessions` (sorted set) and `cvco:session:<payment key>` (`core.sessions`): a payment that got
  past pending leaves the watch (member and record), so the expiry sweeper has nothing to do for it. The
  record's key is built in the script from the payment key (one Redis, no Cluster: arq has none either).

The worker decides in Python, then runs `_APPLY`, which writes only if the payment is still at the
version the decision was made on, and otherwise answers the current version and state: two workers on
the same payment cannot both win, and the loser decides again on what the winner wrote. The first
attempt assumes a new payment (version 0), so a payment's first notification costs one round trip,
shared with the other jobs applying at the same moment (`StateWriter`: one EVAL in flight at a time).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from core.keys import (
    DAILY_KEPT_S,
    DAILY_PREFIX,
    PAYMENT_PREFIX,
    REFS_PREFIX,
    SESSION_RECORD_PREFIX,
    SESSIONS_KEY,
)
from schemas.job import QueuedNotification
from schemas.notification import payment_key
from schemas.settings import Settings
from workers.batches import Batcher
from workers.decide import Decision
from workers.history import (
    FIRST_FILL,
    HISTORY_CAP,
    REINDEX_AFTER_DAYS,
    entry_json,
    index_name,
    parked_entry,
    refs_of,
)
from workers.payment import PaymentState
from workers.record import RECORD_LUA, decode_state, encode_state, read_record, text

PAYMENT_TTL_S = 120 * 86400


# KEYS: stream, sessions, then the record of each item. ARGV: maxlen, ttl s, history cap, then 11 per
# item: expected version, state ('' = the state stays: only the history entry is written), event JSON
# ('' = none), type, shop id, event id, '1' to stop watching the session, payment key, history entry
# JSON ('' = none), index values (one a line, each after its two buckets, `workers.history.refs_of`),
# the payment's index name. Items are applied in
# order: a later item on the same payment sees the earlier one's write. An event published also counts
# in the day's figures (`cvco:daily:<day>`, core.keys).
# Returns, per item, {1, stream id or ''} or {0, current version, current state}.
_APPLY = (
    RECORD_LUA
    + """
local cap = tonumber(ARGV[3])
local today = math.floor(tonumber(redis.call('TIME')[1]) / 86400)
local replies = {}
for i = 3, #KEYS do
  local a = (i - 3) * 11 + 3
  local key = KEYS[i]
  local rec = load(key)
  local current = rec and rec.v or '0'
  if current ~= ARGV[a + 1] then
    replies[i - 2] = {0, current, rec and rec.s or ''}
  else
    local sid = ''
    local ttl = false
    if ARGV[a + 2] ~= '' then
      local payment = ARGV[a + 8]
      rec = rec or {hd = 0, h = '', n = 0}
      rec.v = tostring(tonumber(current) + 1)
      rec.s = ARGV[a + 2]
      ttl = ARGV[2]
      if ARGV[a + 7] == '1' then
        redis.call('ZREM', KEYS[2], payment)
        redis.call('DEL', '"""
    + SESSION_RECORD_PREFIX
    + """' .. payment)
      end
      if not rec.day or today - rec.day > """
    + str(REINDEX_AFTER_DAYS)
    + """ then
        rec.day = today
      end
      local kept_until = (rec.day + """
    + str(REINDEX_AFTER_DAYS + 1)
    + """) * 86400 + tonumber(ttl)
      local named = ARGV[a + 11]
      for line in string.gmatch(ARGV[a + 10], '[^\\n]+') do
        local day = '"""
    + REFS_PREFIX
    + """' .. rec.day .. ':'
        local bucket, value = day .. string.sub(line, 1, 4), string.sub(line, 11)
        -- the value's first hash while it has room (or already names this payment), else its overflow one
        local found = redis.call('HGET', bucket, value)
        if found ~= named and redis.call('HLEN', bucket) >= """
    + str(FIRST_FILL)
    + """ then
          bucket = day .. string.sub(line, 6, 9)
          found = redis.call('HGET', bucket, value)
        end
        if not found then
          redis.call('HSET', bucket, value, named)
        elseif found ~= named then
          -- another payment of the same value: its own field, so a write never walks the others
          local field = value .. '\\n' .. string.sub(redis.sha1hex(named), 1, 8)
          local other = redis.call('HGET', bucket, field)
          if other and other ~= named then
            field = value .. '\\n' .. named
            other = redis.call('HGET', bucket, field)
          end
          if not other then
            redis.call('HSET', bucket, field, named)
          end
        end
        redis.call('EXPIREAT', bucket, kept_until)
      end
      if ARGV[a + 3] ~= '' then
        sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
          'event', ARGV[a + 3], 'type', ARGV[a + 4], 'shop_id', ARGV[a + 5], 'event_id', ARGV[a + 6])
        local day = '"""
    + DAILY_PREFIX
    + """' .. today
        redis.call('HINCRBY', day, ARGV[a + 4], 1)
        redis.call('HINCRBY', day, ARGV[a + 4] .. ':paid', cjson.decode(ARGV[a + 3]).paid_amount)
        redis.call('EXPIRE', day, """
    + str(DAILY_KEPT_S)
    + """)
      end
    end
    local entry = ARGV[a + 9]
    if rec and entry ~= '' then
      if sid ~= '' then
        entry = string.sub(entry, 1, -2) .. ',"sid":"' .. sid .. '"}'
      end
      remember(rec, entry, cap)
    end
    if rec and (ttl or entry ~= '') then
      save(key, rec, ttl)
    end
    replies[i - 2] = {1, sid}
  end
end
return replies
"""
)
_APPLY_SHA = hashlib.sha1(_APPLY.encode(), usedforsecurity=False).hexdigest()


# KEYS: the payment's record. ARGV: entry JSON, cap. The entry joins an existing payment only.
_PARKED = (
    RECORD_LUA
    + """
local rec = load(KEYS[1])
if rec then
  remember(rec, ARGV[1], tonumber(ARGV[2]))
  save(KEYS[1], rec, false)
end
"""
)


async def record_parked(redis: Redis, payload: Any, error: BaseException) -> None:
    """Note a parked notification in the history of its payment, when that payment is known.

    Parking writes no state, so this is a write of its own; a notification that cannot be read, or whose
    payment cvco-ipn never saw, is only in the failed list.
    """
    try:
        queued = QueuedNotification.model_validate(payload)
        fields = queued.fields
        day = datetime.strptime(fields["vads_trans_date"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        key = payment_key(fields["vads_site_id"], fields["vads_ctx_mode"], day, fields["vads_trans_id"])
    except (ValueError, KeyError, TypeError):
        return
    entry = parked_entry(queued, error)
    await redis.eval(_PARKED, 1, PAYMENT_PREFIX + key, entry, str(HISTORY_CAP))  # type: ignore[misc]  # redis-py types eval as Awaitable | value


class VersionConflict(Exception):
    """The payment is not at the version the decision was made on; carries what it is at instead."""

    def __init__(self, key: str, version: str, state: PaymentState | None) -> None:
        super().__init__(f"payment {key} is at version {version}")
        self.version = version
        self.state = state


async def load_versioned(redis: Redis, key: str) -> tuple[PaymentState | None, str]:
    """The payment's state and the version to compare against when writing (`"0"`: never written)."""
    record = await read_record(redis, key)
    if record is None:
        return None, "0"
    return decode_state(key, record.state), record.version


async def load_payment(redis: Redis, key: str) -> PaymentState | None:
    """What cvco-ipn knows of a payment (by `payment_key`); `.phase` and `.flags` tell where it stands."""
    state, _ = await load_versioned(redis, key)
    return state


async def apply_decision(
    writer: StateWriter,
    version: str,
    decision: Decision,
    received: float = 0.0,
    entry: dict[str, Any] | None = None,
    key: str = "",
    current: PaymentState | None = None,
) -> str | None:
    """Write the decision's state, XADD its event and append `entry` to the history, iff the payment is
    still at `version`.

    A decision without a new state (duplicate, stale) writes only `entry` on payment `key` (whose state
    the decision was made on is `current`), at the same version check, so the history says "duplicate"
    only of the state that made it one. Returns the stream entry id (None when the decision has no
    event); raises `VersionConflict` with the current version and state, so the caller decides again
    without another read. The write goes with those of the other jobs applying
    through the same `writer` in the same event-loop turn, in one EVAL.
    """
    state = decision.state
    written = state.key if state is not None else key
    history = entry_json(entry, decision, written, state or current) if entry is not None else ""
    if state is None:
        if entry is None or not key:
            raise ValueError("a decision without a new state or a history entry has nothing to write")
        item: _Item = (PAYMENT_PREFIX + key, version, "", "", "", "", "", "", key, history, "", "")
    else:
        event = decision.event
        watch_done = state.phase not in (None, "pending")
        item = (
            PAYMENT_PREFIX + state.key,
            version,
            encode_state(state),
            event.model_dump_json() if event else "",
            event.type if event else "",
            state.shop_id,
            event.event_id if event else "",
            "1" if watch_done else "0",
            state.key,
            history,
            refs_of(state, entry or {}),
            index_name(state.key),
        )
    reply = await writer.submit(item, received)
    if not int(reply[0]):
        raw = reply[2]
        current = decode_state(written, raw) if raw else None
        raise VersionConflict(written, text(reply[1]), current)
    return text(reply[1]) or None


_Item = tuple[str, str, str, str, str, str, str, str, str, str, str, str]
"""The record's key, then the script's 11 arguments of one compare-and-set."""


class StateWriter:
    """The compare-and-sets of the jobs running at once, in one EVAL in flight at a time (`Batcher`).

    A worker makes one at start-up and its jobs share it (`ctx["state_writer"]`). A batch is applied in
    order of receipt time; a conflict is answered per item, so its job decides again as it would alone.
    """

    def __init__(self, redis: Redis, stream: str, maxlen: int) -> None:
        """A writer on this client (a batch goes over one of its connections) to this stream."""
        self._redis = redis
        self._head = [stream, SESSIONS_KEY]
        self._shared = [str(maxlen), str(PAYMENT_TTL_S), str(HISTORY_CAP)]
        self._batches: Batcher[tuple[float, _Item], list[Any]] = Batcher(self._write, order=itemgetter(0))

    @classmethod
    def for_settings(cls, redis: Redis, settings: Settings) -> StateWriter:
        """The writer to `settings.stream`, capped at `settings.stream_maxlen`."""
        return cls(redis, settings.stream, settings.stream_maxlen)

    async def submit(self, item: _Item, received: float) -> list[Any]:
        """Write `item` with the others of its batch; the script's reply for it."""
        return await self._batches.submit((received, item))

    async def _write(self, batch: list[tuple[float, _Item]]) -> list[list[Any]]:
        keys = [*self._head, *(item[0] for _, item in batch)]
        args = [*self._shared, *(arg for _, item in batch for arg in item[1:])]
        try:
            replies = await self._redis.evalsha(_APPLY_SHA, len(keys), *keys, *args)  # type: ignore[misc]  # redis-py types evalsha as Awaitable | value
        except NoScriptError:
            replies = await self._redis.eval(_APPLY, len(keys), *keys, *args)  # type: ignore[misc]  # as above
        return list(replies)
