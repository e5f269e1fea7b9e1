"""The rejected requests: refused `POST /ipn` bodies kept for an operator, bounded by count and by age.

Kept: signature mismatches (401), unknown shops and refused modes (403), and signed messages that are
not notifications (a payment form or a browser return posted back, 400). A forgotten shop's
notifications can then be re-run once it is configured (`cvco-ipn rejected retry`).

- `cvco:rejected:<id>` (hash; the id is the request id): `reason`, `status`, `message`, `received_at`
  (ISO 8601), `client_ip`, `request_id`, `shop_id`, `order_id`, `body` (the raw bytes; for a signed
  non-notification only its signed fields, which is all a retry could use). It expires
  `max_age_s` after it was kept, so the store empties itself even when no new refusal arrives.
- `cvco:rejected:index:<reason>` (sorted set): id -> receipt time in ms, one per reason and each capped
  at `maxlen`, so a flood of unsigned junk (bad signatures) never pushes out a signed form or a
  forgotten shop's notifications. It expires with its newest entry.
- `cvco:forensics:signature` (stream): one entry per signature mismatch, no body; the workers count it
  for the signature-burst alert.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.keys import FORENSICS_STREAM, REJECTED_INDEX_PREFIX, REJECTED_PREFIX
from ingest.rejections import KEPT_REASONS, KeptReason

_READ_CHUNK = 200

log = structlog.get_logger(__name__)

# KEYS: entry hash, index. ARGV: id, now ms, maxlen, max age ms, entry prefix, then field/value pairs.
_KEEP_SCRIPT = """
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[4])))
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do
    redis.call('DEL', ARGV[5] .. oldest[i])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""


@dataclass(frozen=True, slots=True)
class RejectedRequest:
    """One kept refusal, as an operator sees it; its id is the request id of the refused request."""

    reason: KeptReason
    status: int
    message: str
    received_at: datetime
    client_ip: str
    request_id: str
    shop_id: str
    order_id: str
    body: bytes

    @property
    def id(self) -> str:
        return self.request_id


async def keep_rejected(
    redis: Redis, request: RejectedRequest, *, maxlen: int, max_age_s: int, timeout_s: float
) -> bool:
    """Keep a refused request; False when Redis did not answer in time.

    Best effort: the sender gets its refusal either way, so a Redis outage never turns it into a 503.
    """
    now_ms = int(time.time() * 1000)
    values: dict[str, str | bytes] = {
        "reason": request.reason,
        "status": str(request.status),
        "message": request.message,
        "received_at": request.received_at.isoformat(),
        "client_ip": request.client_ip,
        "request_id": request.request_id,
        "shop_id": request.shop_id,
        "order_id": request.order_id,
        "body": request.body,
    }
    pairs = [item for pair in values.items() for item in pair]
    try:
        async with redis.pipeline(transaction=True) as pipe:
            keys = (REJECTED_PREFIX + request.id, REJECTED_INDEX_PREFIX + request.reason)
            arguments = (request.id, now_ms, maxlen, max_age_s * 1000, REJECTED_PREFIX, *pairs)
            pipe.eval(_KEEP_SCRIPT, len(keys), *keys, *arguments)  # type: ignore[arg-type]  # redis-py types arguments as str; it encodes ints and bytes too
            if request.reason == "signature":
                pipe.xadd(FORENSICS_STREAM, {"shop_id": request.shop_id}, maxlen=maxlen, approximate=True)
                pipe.xtrim(FORENSICS_STREAM, minid=f"{now_ms - max_age_s * 1000}-0", approximate=True)
            await asyncio.wait_for(pipe.execute(), timeout_s)
    except (RedisError, OSError, TimeoutError) as e:
        log.warning(
            "rejected_not_kept",
            reason=type(e).__name__,
            request_id=request.request_id,
            client_ip=request.client_ip,
            shop_id=request.shop_id,
        )
        return False
    return True


def _decode(raw: dict[bytes, bytes]) -> RejectedRequest | None:
    text = {key.decode(): value.decode("utf-8", "replace") for key, value in raw.items() if key != b"body"}
    reason = text.get("reason", "")
    if reason not in KEPT_REASONS:
        return None
    return RejectedRequest(
        reason=reason,
        status=int(text.get("status", "0")),
        message=text.get("message", ""),
        received_at=datetime.fromisoformat(text["received_at"]),
        client_ip=text.get("client_ip", ""),
        request_id=text.get("request_id", ""),
        shop_id=text.get("shop_id", ""),
        order_id=text.get("order_id", ""),
        body=raw.get(b"body", b""),
    )


async def get_rejected(redis: Redis, rejected_id: str) -> RejectedRequest | None:
    """One kept request by id, or None (never kept, expired or retried)."""
    raw = await redis.hgetall(REJECTED_PREFIX + rejected_id)  # type: ignore[misc]  # async client
    return _decode(raw) if raw else None


async def list_rejected(
    redis: Redis, *, since: float | None = None, reasons: Iterable[KeptReason] = KEPT_REASONS
) -> list[RejectedRequest]:
    """Kept requests received since `since` (epoch seconds), oldest first, for the given reasons."""
    low: float | str = "-inf" if since is None else int(since * 1000)
    ids: list[str] = []
    for reason in reasons:
        ids += [
            raw.decode() for raw in await redis.zrangebyscore(REJECTED_INDEX_PREFIX + reason, low, "+inf")
        ]
    found: list[RejectedRequest] = []
    for start in range(0, len(ids), _READ_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for rejected_id in ids[start : start + _READ_CHUNK]:
                pipe.hgetall(REJECTED_PREFIX + rejected_id)
            entries = await pipe.execute()
        # an entry whose hash expired before its index entry was trimmed is simply gone
        found += [entry for raw in entries if raw and (entry := _decode(raw)) is not None]
    return sorted(found, key=lambda entry: entry.received_at)


async def newest_rejected(redis: Redis, count: int) -> list[RejectedRequest]:
    """The `count` most recent kept requests of every reason together, newest first: one page, read
    without loading the store."""
    newest: list[tuple[float, str]] = []
    for reason in KEPT_REASONS:
        found = await redis.zrevrange(REJECTED_INDEX_PREFIX + reason, 0, count - 1, withscores=True)
        newest += [(score, raw.decode()) for raw, score in found]
    ids = [rejected_id for _, rejected_id in sorted(newest, reverse=True)[:count]]
    async with redis.pipeline(transaction=False) as pipe:
        for rejected_id in ids:
            pipe.hgetall(REJECTED_PREFIX + rejected_id)
        entries = await pipe.execute()
    return [entry for raw in entries if raw and (entry := _decode(raw)) is not None]


async def remove_rejected(redis: Redis, entry: RejectedRequest) -> None:
    """Forget a kept request (it was retried and queued)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(REJECTED_INDEX_PREFIX + entry.reason, entry.id)
        pipe.delete(REJECTED_PREFIX + entry.id)
        await pipe.execute()
