"""Find payments by what a support question names, with their history: `cvco-ipn payment show` and the console.

`find_payments(redis, ref, shop=None)` takes an order id, a `vads_trans_uuid` (of the payment or of any of
its transactions), a `vads_trans_id` or a payment key, and returns one `PaymentRecord` per match, read
from the indexes and history `workers.apply` writes with the state (`workers.history`). No shop list is
needed: the indexes hold payment keys of every shop and mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from core.keys import DAILY_PREFIX, REF_PREFIX, REFS_PREFIX
from workers.apply import PAYMENT_TTL_S
from workers.history import REINDEX_AFTER_DAYS, index_buckets, key_of_index_name, read_entry
from workers.payment import PAID_PHASES, PaymentState
from workers.record import decode_state, read_record, text

_NAMES = {"at": "received_at", "src": "source", "st": "status", "uuid": "trans_uuid", "tid": "trans_id"}


@dataclass(frozen=True)
class PaymentRecord:
    """A payment as the lookup shows it: its state, the notifications received, the events published."""

    payment_key: str
    state: dict[str, Any]
    notifications: list[dict[str, Any]]
    events: list[dict[str, Any]]
    dropped: int

    def as_json(self) -> dict[str, Any]:
        return {
            "payment_key": self.payment_key,
            "state": self.state,
            "notifications": self.notifications,
            "events": self.events,
            "history_dropped": self.dropped,
        }


def _stream_time(stream_id: str) -> str:
    """When an event was published: the millisecond part of its stream entry id."""
    millis = int(stream_id.split("-", 1)[0])
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


def _split(state: PaymentState, raw: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The history's entries as notifications (what the worker did with each) and events published."""
    notifications: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for line in raw:
        entry = read_entry(state, line)
        if entry.get("k") == "n":
            notifications.append(
                {
                    **{name: entry.get(short) for short, name in _NAMES.items()},
                    "request_id": entry.get("rid"),
                    "result": entry.get("did"),
                    **({"error": entry["err"]} if "err" in entry else {}),
                }
            )
        if entry.get("eid"):
            sid = entry.get("sid")
            events.append(
                {
                    "event_id": entry["eid"],
                    "type": entry.get("ev"),
                    "time": _stream_time(sid) if sid else entry.get("at"),
                    "stream_id": sid,
                    "source": entry.get("src"),
                }
            )
    return notifications, events


def _glob(value: str) -> str:
    """`value` as a Redis MATCH pattern matching itself only."""
    return "".join(f"\\{char}" if char in "\\*?[]" else char for char in value)


async def indexed_keys(redis: Redis, value: str, now: float | None = None) -> set[str]:
    """The payment keys the index names for `value` exactly, over every index day still kept."""
    today = int((time.time() if now is None else now) // 86400)
    days = PAYMENT_TTL_S // 86400 + REINDEX_AFTER_DAYS + 1
    hashes = index_buckets(value)
    buckets = [f"{REFS_PREFIX}{day}:{bucket}" for day in range(today - days, today + 1) for bucket in hashes]
    pattern = _glob(value) + "*"
    async with redis.pipeline(transaction=False) as pipe:
        pipe.smembers(REF_PREFIX + value)  # the previous release's index
        for bucket in buckets:
            pipe.hscan(bucket, 0, match=pattern, count=1000)
        members, *scanned = await pipe.execute()
    keys = {text(member) for member in members}
    for bucket, (cursor, found) in zip(buckets, scanned, strict=True):
        fields = dict(found)
        while cursor:  # a hash too big to be a listpack answers in several parts
            cursor, more = await redis.hscan(bucket, cursor, match=pattern, count=1000)
            fields.update(more)
        for field, key in fields.items():
            name = text(field)
            if name == value or name.startswith(f"{value}\n"):
                keys.add(key_of_index_name(text(key)))
    return keys


async def candidate_keys(redis: Redis, ref: str) -> list[str]:
    """Payment keys `ref` may name: itself, and what its index names (as given and lower-cased)."""
    refs = list(dict.fromkeys((ref, ref.lower())))
    keys: set[str] = set(refs)
    for value in refs:
        keys.update(await indexed_keys(redis, value))
    return sorted(keys)


async def paid_payment_of(redis: Redis, shop_id: str, mode: str, order_id: str) -> str | None:
    """The key of the order's payment that was paid (a refund of the order joins it), None if none is.

    Of several, one still paid before one refunded already, then the latest payment key."""
    paid: list[tuple[bool, str]] = []
    for key in await indexed_keys(redis, order_id):
        if not key.startswith(f"{shop_id}:{mode}:"):
            continue
        record = await read_record(redis, key)
        state = decode_state(key, record.state) if record is not None else None
        if state is not None and state.order_id == order_id and state.paid_amount > 0:
            paid.append((state.phase in PAID_PHASES, key))
    return max(paid)[1] if paid else None


async def load_record(redis: Redis, key: str) -> PaymentRecord | None:
    """The payment under `key` with its history, read in one round trip; None when there is none."""
    record = await read_record(redis, key)
    if record is None:
        return None
    state = decode_state(key, record.state)
    notifications, events = _split(state, record.entries)
    return PaymentRecord(key, state.model_dump(mode="json"), notifications, events, record.dropped)


async def find_payments(redis: Redis, ref: str, shop: str | None = None) -> list[PaymentRecord]:
    """Every payment `ref` names (optionally of one shop), ordered by payment key."""
    found = []
    for key in await candidate_keys(redis, ref):
        if shop is not None and not key.startswith(f"{shop}:"):
            continue
        record = await load_record(redis, key)
        if record is not None:
            found.append(record)
    return found


async def published_today(redis: Redis, now: float | None = None) -> dict[str, tuple[int, int]]:
    """The events published since midnight UTC, by type: how many, and their paid amounts in cents."""
    day = int((time.time() if now is None else now) // 86400)
    counted: dict[bytes, bytes] = await redis.hgetall(f"{DAILY_PREFIX}{day}")  # type: ignore[misc]  # async client
    raw = {text(name): int(value) for name, value in counted.items()}
    return {name: (count, raw.get(f"{name}:paid", 0)) for name, count in raw.items() if ":" not in name}
