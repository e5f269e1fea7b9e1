"""The failed-job store: notifications a worker could not process, kept until an operator replays them.

arq has no dead letter (a failed job's result key simply expires), so parked jobs live here instead:

- `cvco:failed:<id>` (hash): the raw job argument (`payload`, JSON), the error (`error_class`,
  `error_message`, `traceback`), `tries` (attempts over all parkings), `parks` (times parked),
  `first_failed_at` / `last_failed_at` (epoch seconds), and `shop_id`, `order_id`, `trans_id`,
  `trans_uuid` copied from the notification for listing. No TTL: entries survive restarts.
- `cvco:failed:index` (sorted set): id -> last failure time. The receiver's `/metrics` exports its
  ZCARD as `cvco_ipn_failed_jobs`.

The id is stable per notification (the arq job id of the original job), so parking the same notification
again updates `tries` and `last_failed_at` instead of adding an entry. Beyond `settings.failed_max`
entries or `settings.failed_max_bytes` bytes the oldest are dropped, and beyond `PER_PAYMENT_MAX` entries
of one payment or `PER_SIGNATURE_MAX` of one signature that group's oldest (`cvco:failed:group:*`, sorted
sets of ids; `cvco:failed:bytes` counts the bytes); `park` returns the dropped ids so the caller can log
and alert.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import Redis

from core.keys import FAILED_INDEX, FAILED_PREFIX
from schemas.job import PROCESS_NOTIFICATION

REPLAY_JOB_PREFIX = "replay:"
_SCAN_CHUNK = 500

PER_PAYMENT_MAX = 20
"""Entries one payment may hold; its oldest go first beyond: one payment cannot fill the store."""
PER_SIGNATURE_MAX = 3
"""Entries one signature may hold (copies of one signed message with fields renamed); its oldest go first."""
FAILED_BYTES = "cvco:failed:bytes"
GROUP_PREFIX = "cvco:failed:group:"

# Shared by park and resolve: forget an entry, its place in the index and its groups, and its bytes.
_REMOVE = """
local function remove(prefix, index, id)
  local key = prefix .. id
  local info = redis.call('HMGET', key, 'bytes', 'payment_group', 'signature_group')
  if info[1] then redis.call('DECRBY', KEYS[3], info[1]) end
  if info[2] and info[2] ~= '' then redis.call('ZREM', info[2], id) end
  if info[3] and info[3] ~= '' then redis.call('ZREM', info[3], id) end
  redis.call('ZREM', index, id)
  return redis.call('DEL', key)
end
"""
# KEYS: entry hash, index, bytes counter, payment group, signature group. ARGV: id, now, failed_max,
# tries, entry prefix, max bytes, per-payment max, per-signature max, then field/value pairs. Returns
# the ids dropped to keep the store within its bounds: first the group's own oldest, then the oldest.
_PARK_SCRIPT = (
    _REMOVE
    + """
local prefix, id = ARGV[5], ARGV[1]
local size = 0
for i = 10, #ARGV, 2 do size = size + #ARGV[i] end
local old = redis.call('HGET', KEYS[1], 'bytes')
if old then redis.call('DECRBY', KEYS[3], old) else
  redis.call('HSET', KEYS[1], 'first_failed_at', ARGV[2])
end
redis.call('INCRBY', KEYS[3], size)
redis.call('HINCRBY', KEYS[1], 'tries', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'parks', 1)
redis.call('HSET', KEYS[1], 'id', id, 'last_failed_at', ARGV[2], 'bytes', size,
  'payment_group', KEYS[4], 'signature_group', KEYS[5], unpack(ARGV, 9))
redis.call('ZADD', KEYS[2], ARGV[2], id)
local dropped = {}
for _, group in ipairs({{KEYS[4], ARGV[7]}, {KEYS[5], ARGV[8]}}) do
  local g, cap = group[1], tonumber(group[2])
  if g ~= '' then redis.call('ZADD', g, ARGV[2], id) end
  local excess = g ~= '' and redis.call('ZCARD', g) - cap or 0
  if excess > 0 then
    -- the group's oldest, never the entry just parked (another worker's clock may run behind)
    for _, old_id in ipairs(redis.call('ZRANGE', g, 0, excess)) do
      if excess > 0 and old_id ~= id then
        remove(prefix, KEYS[2], old_id)
        table.insert(dropped, old_id)
        excess = excess - 1
      end
    end
  end
end
while redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[3])
    or tonumber(redis.call('GET', KEYS[3]) or '0') > tonumber(ARGV[6]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #oldest == 0 or oldest[1] == id then break end
  remove(prefix, KEYS[2], oldest[1])
  table.insert(dropped, oldest[1])
end
return dropped
"""
)
# KEYS: entry hash (unused), index, bytes counter. ARGV: entry prefix, id. Returns 1 if there was one.
_RESOLVE_SCRIPT = _REMOVE + "return remove(ARGV[1], KEYS[2], ARGV[2])"


@dataclass(frozen=True, slots=True)
class FailedJob:
    """One parked notification job, as an operator sees it."""

    id: str
    payload: str
    error_class: str
    error_message: str
    traceback: str
    tries: int
    parks: int
    first_failed_at: float
    last_failed_at: float
    shop_id: str
    order_id: str
    trans_id: str
    trans_uuid: str
    job_id: str

    @property
    def replay_job_id(self) -> str:
        """The arq job id a replay uses: new after each parking, the same while a replay is pending."""
        return f"{REPLAY_JOB_PREFIX}{self.id}:{self.parks}"

    def fields(self) -> dict[str, str]:
        """The notification fields of the payload, or {} when the payload is not a notification."""
        try:
            data: Any = json.loads(self.payload)
        except json.JSONDecodeError:
            return {}
        raw = data.get("fields") if isinstance(data, dict) else None
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def failed_id_for_job(job_id: str) -> str:
    """The store id of an arq job: its own id, or for a replay the id of the entry it replays."""
    if job_id.startswith(REPLAY_JOB_PREFIX):
        return job_id.removeprefix(REPLAY_JOB_PREFIX).rsplit(":", 1)[0]
    return job_id


def _summary(payload: Any) -> dict[str, str]:
    raw = payload.get("fields") if isinstance(payload, Mapping) else None
    fields: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return {
        name: str(fields.get("vads_" + name, ""))
        for name in ("site_id", "order_id", "trans_id", "trans_uuid")
    }


def _groups(payload: Any) -> tuple[str, str]:
    """The keys of the payment's and the signature's groups of a parked job; "" for none (not signed)."""
    raw = payload.get("fields") if isinstance(payload, Mapping) else None
    fields: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    signature = str(fields.get("signature", ""))
    if not signature:
        return "", ""
    # a trans_id is unique per shop per UTC day, case-insensitively: the day and the id name the payment
    payment = (
        str(fields.get("vads_site_id", "")),
        str(fields.get("vads_ctx_mode", "")),
        str(fields.get("vads_trans_date", ""))[:8],
        str(fields.get("vads_trans_id", "")).lower(),
    )
    return f"{GROUP_PREFIX}payment:{':'.join(payment)}", f"{GROUP_PREFIX}signature:{signature}"


async def park(
    redis: Redis,
    *,
    failed_id: str,
    job_id: str,
    payload: Any,
    error: BaseException,
    traceback: str,
    tries: int,
    failed_max: int,
    failed_max_bytes: int = 512 * 1024 * 1024,
    now: float | None = None,
) -> list[str]:
    """Keep (or update) the entry for a failed notification; returns the ids dropped to stay bounded.

    Bounded three ways: `failed_max` entries and `failed_max_bytes` bytes (the oldest go first), and
    per payment and per signature (that group's oldest go first), so a flood of one payment's or one
    signature's copies only ever pushes out its own entries.
    """
    summary = _summary(payload)
    values = {
        "payload": json.dumps(payload, separators=(",", ":"), default=str),
        "error_class": type(error).__name__,
        "error_message": str(error),
        "traceback": traceback,
        "shop_id": summary["site_id"],
        "order_id": summary["order_id"],
        "trans_id": summary["trans_id"],
        "trans_uuid": summary["trans_uuid"],
        "job_id": job_id,
    }
    pairs = [item for pair in values.items() for item in pair]
    stamp = time.time() if now is None else now
    payment_group, signature_group = _groups(payload)
    dropped = await redis.eval(  # type: ignore[misc]  # redis-py types eval as Awaitable | value
        _PARK_SCRIPT,
        5,
        FAILED_PREFIX + failed_id,
        FAILED_INDEX,
        FAILED_BYTES,
        payment_group,
        signature_group,
        failed_id,
        repr(stamp),
        str(failed_max),
        str(tries),
        FAILED_PREFIX,
        str(failed_max_bytes),
        str(PER_PAYMENT_MAX),
        str(PER_SIGNATURE_MAX),
        *pairs,
    )
    return [item.decode() if isinstance(item, bytes) else str(item) for item in dropped]


async def resolve(redis: Redis, failed_id: str) -> bool:
    """Remove an entry once its notification was processed; True if there was one."""
    removed = await redis.eval(  # type: ignore[misc]  # redis-py types eval as Awaitable | value
        _RESOLVE_SCRIPT, 3, FAILED_PREFIX + failed_id, FAILED_INDEX, FAILED_BYTES, FAILED_PREFIX, failed_id
    )
    return bool(removed)


def decode_entry(raw: Mapping[bytes, bytes]) -> FailedJob:
    """An entry from its hash, as `HGETALL` returns it."""
    data = {key.decode(): value.decode() for key, value in raw.items()}
    return FailedJob(
        id=data.get("id", ""),
        payload=data.get("payload", ""),
        error_class=data.get("error_class", ""),
        error_message=data.get("error_message", ""),
        traceback=data.get("traceback", ""),
        tries=int(data.get("tries", "0")),
        parks=int(data.get("parks", "0")),
        first_failed_at=float(data.get("first_failed_at", "0")),
        last_failed_at=float(data.get("last_failed_at", "0")),
        shop_id=data.get("shop_id", ""),
        order_id=data.get("order_id", ""),
        trans_id=data.get("trans_id", ""),
        trans_uuid=data.get("trans_uuid", ""),
        job_id=data.get("job_id", ""),
    )


async def get(redis: Redis, failed_id: str) -> FailedJob | None:
    """One entry by id, or None."""
    raw = await redis.hgetall(FAILED_PREFIX + failed_id)  # type: ignore[misc]  # async client
    return decode_entry(raw) if raw else None


async def count(redis: Redis) -> int:
    """How many jobs are parked."""
    return int(await redis.zcard(FAILED_INDEX))


async def iter_index(
    redis: Redis, index: str, prefix: str, *, since: float | None = None
) -> AsyncIterator[dict[bytes, bytes]]:
    """The hashes an index (id -> time) names, oldest first, optionally only from `since` on; a hash that
    went away between the two reads is skipped."""
    low: float | str = "-inf" if since is None else since
    start = 0
    while True:
        ids = await redis.zrangebyscore(index, low, "+inf", start=start, num=_SCAN_CHUNK)
        if not ids:
            return
        async with redis.pipeline(transaction=False) as pipe:
            for member in ids:
                pipe.hgetall(prefix + member.decode())
            hashes = await pipe.execute()
        for raw in hashes:
            if raw:
                yield raw
        start += len(ids)


@dataclass(frozen=True)
class FailedFilter:
    """Parked jobs of this shop, whose error class contains this text (any case), last failed since then."""

    shop: str | None = None
    error: str | None = None
    since: float | None = None

    def matches(self, entry: FailedJob) -> bool:
        return (
            (not self.shop or entry.shop_id == self.shop)
            and (self.error or "").lower() in entry.error_class.lower()
            and (self.since is None or entry.last_failed_at >= self.since)
        )


async def newest_matching(
    redis: Redis, wanted: FailedFilter, *, limit: int, scan_max: int
) -> list[FailedJob]:
    """Up to `limit` entries that `wanted` keeps, newest first, looking at the `scan_max` newest at most."""
    found: list[FailedJob] = []
    for start in range(0, scan_max, _SCAN_CHUNK):
        chunk = await newest(redis, start=start, count=min(_SCAN_CHUNK, scan_max - start))
        found += [entry for entry in chunk if wanted.matches(entry)]
        if len(found) >= limit or len(chunk) < _SCAN_CHUNK:
            break
    return found[:limit]


async def newest(redis: Redis, *, start: int, count: int) -> list[FailedJob]:
    """`count` entries from the `start`-th newest on: a page of the store, never the whole of it."""
    ids = await redis.zrevrange(FAILED_INDEX, start, start + count - 1)
    async with redis.pipeline(transaction=False) as pipe:
        for member in ids:
            pipe.hgetall(FAILED_PREFIX + member.decode())
        hashes = await pipe.execute()
    return [decode_entry(raw) for raw in hashes if raw]


async def iter_failed(redis: Redis, *, since: float | None = None) -> AsyncIterator[FailedJob]:
    """Entries from the oldest failure to the newest, optionally only those that failed since `since`."""
    async for raw in iter_index(redis, FAILED_INDEX, FAILED_PREFIX, since=since):
        yield decode_entry(raw)


async def requeue(redis: ArqRedis, entry: FailedJob, queue_name: str) -> bool:
    """Queue a parked notification again as the job `entry.replay_job_id` (same payload), for a worker to
    run: True when queued, False when that replay is queued already (replaying twice is harmless)."""
    job = await redis.enqueue_job(
        PROCESS_NOTIFICATION, json.loads(entry.payload), _job_id=entry.replay_job_id, _queue_name=queue_name
    )
    return job is not None
