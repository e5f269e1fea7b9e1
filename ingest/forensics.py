"""Keep the raw body of notifications whose signature did not match, bounded in count and age.

An operator investigating a key rotation or an attack reads them with
`XREVRANGE cvco:forensics:signature + - COUNT 20`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

FORENSICS_STREAM = "cvco:forensics:signature"

log = structlog.get_logger(__name__)


def oldest_kept_id(max_age_s: int) -> str:
    """The `MINID` that keeps a stream's entries younger than `max_age_s` (ids are Redis-clock ms)."""
    return f"{int((time.time() - max_age_s) * 1000)}-0"


async def trim_forensics(redis: Redis, max_age_s: int) -> int:
    """Drop the failures older than `max_age_s` (whole stream nodes, `MINID ~`); how many went."""
    return int(await redis.xtrim(FORENSICS_STREAM, minid=oldest_kept_id(max_age_s), approximate=True))


async def keep_signature_failure(
    redis: Redis,
    *,
    maxlen: int,
    max_age_s: int,
    timeout_s: float,
    shop_id: str,
    client_ip: str,
    request_id: str,
    received_at: datetime,
    body: bytes,
) -> bool:
    """Append the failure to the capped stream and trim what is too old; False when Redis did not answer.

    Best effort: the sender gets its 401 either way, so a Redis outage never turns it into a 503.
    """
    entry: dict[FieldT, EncodableT] = {
        "shop_id": shop_id,
        "client_ip": client_ip,
        "request_id": request_id,
        "received_at": received_at.isoformat(),
        "body": body,
    }
    try:
        async with redis.pipeline(transaction=True) as pipe:
            # XADD takes one trim strategy: MAXLEN bounds the count, the XTRIM MINID after it bounds the age
            pipe.xadd(FORENSICS_STREAM, entry, maxlen=maxlen, approximate=True)
            pipe.xtrim(FORENSICS_STREAM, minid=oldest_kept_id(max_age_s), approximate=True)
            await asyncio.wait_for(pipe.execute(), timeout_s)
    except (RedisError, OSError, TimeoutError) as e:
        log.warning(
            "forensics_not_kept",
            reason=type(e).__name__,
            request_id=request_id,
            client_ip=client_ip,
            shop_id=shop_id,
        )
        return False
    return True
