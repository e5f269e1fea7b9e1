"""The stored payment record: one Redis string per payment holding its version, state and history.

`cvco:payment:<payment key>` (string), lines separated by `\\n`:

    <version>\\n<history entries dropped>\\n<index day>\\n<state>\\n<entry>\\n<entry>\\n...

- version: the write count the workers compare-and-set on (`workers.apply`);
- the count of the oldest history entries dropped to keep `HISTORY_CAP`;
- the day of the lookup index hashes naming the payment (`workers.history`; empty: none yet);
- the state: its facts as compact JSON (`encode_state`), without what the key already says or what
  follows from the rest; `decode_state` puts it back and derives the outcome again;
- the history (`workers.history`): one compact JSON entry a line, oldest first, each ending in `\\n`.

One key instead of a hash and a list saves the second key's overhead per payment; the history cannot
outlive the state, since it is the same key. Only the scripts of `workers.apply` write it.

A payment written by a release before this layout (a hash `v`/`s`/`hd` and a list
`cvco:history:<payment key>`) is still read (`read_record`, and `RECORD_LUA`'s `load`), and rewritten in
this layout by its next write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core.keys import HISTORY_PREFIX, PAYMENT_PREFIX
from schemas.notification import key_trans_id
from workers.payment import STATE_VERSION, PaymentState, derive

_IMPLIED = frozenset({"key", "shop_id", "mode"})
"""State fields the payment key holds already (`shop:mode:day:trans_id`)."""
_DERIVED = frozenset({"phase", "paid_amount", "cvco_amount", "refunded_amount", "flags"})
"""The outcome, which `derive` computes again from the transactions on read."""

RECORD_LUA = (
    """
local function load(key)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' and raw.err then
    -- a hash and a history list of the previous layout: rewritten as one string when saved
    local old = redis.call('HMGET', key, 'v', 's', 'hd')
    local history = '"""
    + HISTORY_PREFIX
    + """' .. string.sub(key, """
    + str(len(PAYMENT_PREFIX) + 1)
    + """)
    local lines = redis.call('LRANGE', history, 0, -1)
    local h = ''
    for _, line in ipairs(lines) do h = h .. line .. '\\n' end
    return {v = old[1] or '0', hd = tonumber(old[3] or '0'), s = old[2] or '', h = h, n = #lines,
      legacy = history}
  end
  if not raw then return nil end
  local a = string.find(raw, '\\n', 1, true)
  local b = string.find(raw, '\\n', a + 1, true)
  local c = string.find(raw, '\\n', b + 1, true)
  local d = string.find(raw, '\\n', c + 1, true)
  local h = string.sub(raw, d + 1)
  local _, n = string.gsub(h, '\\n', '')
  return {v = string.sub(raw, 1, a - 1), hd = tonumber(string.sub(raw, a + 1, b - 1)),
    day = tonumber(string.sub(raw, b + 1, c - 1)), s = string.sub(raw, c + 1, d - 1), h = h, n = n}
end

local function remember(rec, entry, cap)
  rec.h = rec.h .. entry .. '\\n'
  rec.n = rec.n + 1
  while rec.n > cap do
    rec.h = string.sub(rec.h, string.find(rec.h, '\\n', 1, true) + 1)
    rec.n = rec.n - 1
    rec.hd = rec.hd + 1
  end
end

local function save(key, rec, ttl)
  local raw = rec.v .. '\\n' .. rec.hd .. '\\n' .. (rec.day or '') .. '\\n' .. rec.s .. '\\n' .. rec.h
  if ttl then
    redis.call('SET', key, raw, 'EX', ttl)
  else
    redis.call('SET', key, raw, 'KEEPTTL')
  end
  if rec.legacy then
    redis.call('DEL', rec.legacy)
  end
end
"""
)
"""Lua: `load(key)` the record (nil when there is none) as a table `v`, `hd`, `day` (nil: none), `s`, `h`
(the entries, each ending in a newline) and `n` (their count); `remember(rec, entry, cap)` appends an entry, dropping the
oldest beyond `cap`; `save(key, rec, ttl)` writes it back, with a new TTL or (`ttl` false) the one it had."""


_STATE_NAMES = {
    "version": "v",
    "trans_id": "t",
    "order_id": "o",
    "amount": "a",
    "currency": "c",
    "cascade": "k",
    "legs": "L",
    "refunds": "R",
    "session_expired": "x",
    "phase": "ph",
    "paid_amount": "pa",
    "cvco_amount": "ca",
    "refunded_amount": "ra",
    "flags": "f",
    "customer": "cu",
    "shipping": "sh",
    "products": "pr",
    "ext_info": "ei",
}
_TRANSACTION_NAMES = {
    "trans_uuid": "u",
    "trans_id": "t",
    "sequence_number": "n",
    "card_brand": "b",
    "amount": "a",
    "original_amount": "oa",
    "status": "s",
    "auth_result": "r",
    "operation_type": "op",
    "presentation_date": "p",
}
"""Stored names, fixed for good: a field added later is stored under a name not taken here."""
_OPERATION = {"legs": "DEBIT", "refunds": "CREDIT"}
_EUR = 978


def _renamed(data: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names.get(name, name): value for name, value in data.items()}


def encode_state(state: PaymentState) -> str:
    """The state as the record stores it: one JSON line of short names, without what the key says, the
    derived outcome, defaults (EUR, not a cascade), or what a transaction repeats of its slot, its
    payment's trans_id and its kind."""
    data: dict[str, Any] = state.model_dump(
        mode="json", exclude=set(_IMPLIED | _DERIVED), exclude_defaults=True
    )
    data = {"version": state.version, **data}  # kept explicit: a newer release's default may differ
    for name, implied in (("cascade", False), ("currency", _EUR), ("trans_id", key_trans_id(state.key))):
        if data[name] == implied:
            del data[name]
    for kind, operation in _OPERATION.items():
        if kind not in data:
            continue
        for slot, tx in data[kind].items():
            tx.setdefault("trans_id", None)  # absent means the payment's, not none
            for name, implied in (
                ("trans_uuid", slot),
                ("trans_id", state.trans_id),
                ("operation_type", operation),
            ):
                if tx[name] == implied:
                    del tx[name]
        data[kind] = {slot: _renamed(tx, _TRANSACTION_NAMES) for slot, tx in data[kind].items()}
    return orjson.dumps(_renamed(data, _STATE_NAMES)).decode()


_STATE_FIELDS = {short: name for name, short in _STATE_NAMES.items()}
_TRANSACTION_FIELDS = {short: name for name, short in _TRANSACTION_NAMES.items()}


def decode_state(key: str, raw: str | bytes) -> PaymentState:
    """The state of payment `key` from its stored JSON (this layout's, or a full state of the previous one)."""
    data = _renamed(orjson.loads(raw), _STATE_FIELDS)
    shop_id, mode, _ = key.split(":", 2)
    data.setdefault("key", key)
    data.setdefault("shop_id", shop_id)
    data.setdefault("mode", mode)
    data.setdefault("version", STATE_VERSION)
    data.setdefault("cascade", False)
    data.setdefault("currency", _EUR)
    data.setdefault("trans_id", key_trans_id(key))
    for kind, operation in _OPERATION.items():
        transactions = {}
        for slot, stored in data.get(kind, {}).items():
            tx = _renamed(stored, _TRANSACTION_FIELDS)
            tx.setdefault("trans_uuid", slot)
            tx.setdefault("trans_id", data.get("trans_id"))
            tx.setdefault("operation_type", operation)
            transactions[slot] = tx
        data[kind] = transactions
    state = PaymentState.model_validate(data)
    # a full state of the previous layout keeps the outcome it announced
    return state if _DERIVED & data.keys() else derive(state)


@dataclass(frozen=True)
class StoredRecord:
    """What `read_record` found: the raw parts of a payment's record."""

    version: str
    dropped: int
    index_day: str
    state: str
    entries: list[str]

    def encoded(self) -> str:
        """The record as stored (the scripts write it; tests and tools may too)."""
        entries = "".join(f"{entry}\n" for entry in self.entries)
        return f"{self.version}\n{self.dropped}\n{self.index_day}\n{self.state}\n{entries}"


def text(value: bytes | str) -> str:
    """A Redis reply as str: redis-py answers bytes unless the client decodes."""
    return value.decode() if isinstance(value, bytes) else value


def parse_record(raw: bytes | str) -> StoredRecord:
    version, dropped, day, state, history = text(raw).split("\n", 4)
    return StoredRecord(version, int(dropped), day, state, history.split("\n")[:-1])


async def read_record(redis: Redis, key: str) -> StoredRecord | None:
    """The record of payment `key` (by `payment_key`), None when there is none; one round trip."""
    try:
        raw = await redis.get(PAYMENT_PREFIX + key)
    except ResponseError as e:
        if "WRONGTYPE" not in str(e):
            raise
        return await _read_legacy(redis, key)
    return None if raw is None else parse_record(raw)


async def _read_legacy(redis: Redis, key: str) -> StoredRecord | None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hmget(PAYMENT_PREFIX + key, ["v", "s", "hd"])
        pipe.lrange(HISTORY_PREFIX + key, 0, -1)
        (version, state, dropped), history = await pipe.execute()
    if state is None:
        return None
    entries = [text(entry) for entry in history]
    return StoredRecord(text(version or b"0"), int(dropped or 0), "", text(state), entries)
