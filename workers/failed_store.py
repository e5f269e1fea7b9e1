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
entries the oldest are dropped; `park` returns their ids so the caller can log and alert.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

FAILED_PREFIX = "cvco:failed:"
FAILED_INDEX = "cvco:failed:index"
REPLAY_JOB_PREFIX = "replay:"
_SCAN_CHUNK = 500

# KEYS: entry hash, index. ARGV: id, now, failed_max, tries, entry prefix, then field/value pairs.
# Returns the ids dropped to keep the store within failed_max.
_PARK_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'first_failed_at', ARGV[2])
end
redis.call('HINCRBY', KEYS[1], 'tries', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'parks', 1)
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'last_failed_at', ARGV[2], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local dropped = {}
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do
    redis.call('DEL', ARGV[5] .. oldest[i])
    table.insert(dropped, oldest[i])
  end
end
return dropped
"""


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
    now: float | None = None,
) -> list[str]:
    """Keep (or update) the entry for a failed notification; returns the ids dropped to stay bounded."""
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
    dropped = await redis.eval(  # type: ignore[misc]  # redis-py types eval as Awaitable | value
        _PARK_SCRIPT,
        2,
        FAILED_PREFIX + failed_id,
        FAILED_INDEX,
        failed_id,
        repr(stamp),
        str(failed_max),
        str(tries),
        FAILED_PREFIX,
        *pairs,
    )
    return [item.decode() if isinstance(item, bytes) else str(item) for item in dropped]


async def resolve(redis: Redis, failed_id: str) -> bool:
    """Remove an entry once its notification was processed; True if there was one."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(FAILED_INDEX, failed_id)
        pipe.delete(FAILED_PREFIX + failed_id)
        removed, _ = await pipe.execute()
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


async def iter_failed(redis: Redis, *, since: float | None = None) -> AsyncIterator[FailedJob]:
    """Entries from the oldest failure to the newest, optionally only those that failed since `since`."""
    low: float | str = "-inf" if since is None else since
    start = 0
    while True:
        ids = await redis.zrangebyscore(FAILED_INDEX, low, "+inf", start=start, num=_SCAN_CHUNK)
        if not ids:
            return
        async with redis.pipeline(transaction=False) as pipe:
            for failed_id in ids:
                pipe.hgetall(FAILED_PREFIX + failed_id.decode())
            entries = await pipe.execute()
        for raw in entries:
            if raw:  # resolved between the two reads
                yield decode_entry(raw)
        start += len(ids)
