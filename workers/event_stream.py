"""Reading the event stream back: the newest events that match a filter, for `cvco-ipn events tail` and
the console. A scan goes back chunk by chunk and stops at `count` matches or at `low`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

Entry = tuple[bytes, dict[bytes, bytes]]
SCAN_CHUNK = 500


def decode_event(entry: Entry) -> dict[str, Any] | None:
    """The event a stream entry holds (its `event` field, JSON); None when it holds no readable one."""
    raw = entry[1].get(b"event")
    try:
        event = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


@dataclass(frozen=True)
class EventFilter:
    """Events of this shop, of this type, of this order: None matches any."""

    shop: str | None = None
    type: str | None = None
    order: str | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        return (
            (self.shop is None or event.get("shop_id") == self.shop)
            and (self.type is None or event.get("type") == self.type)
            and (self.order is None or event.get("order_id") == self.order)
        )


async def latest_events(
    redis: Redis,
    stream: str,
    count: int,
    wanted: EventFilter,
    *,
    low: str = "-",
    high: str = "+",
    decode: Callable[[Entry], dict[str, Any] | None] = decode_event,
) -> list[Entry]:
    """The newest `count` entries whose event matches `wanted`, oldest first, scanning back from `high`
    (a stream id, `+` the newest) to `low`."""
    found: list[Entry] = []
    while len(found) < count:
        chunk = await redis.xrevrange(stream, max=high, min=low, count=SCAN_CHUNK)
        for entry in chunk:
            event = decode(entry)
            if event is not None and wanted.matches(event):
                found.append(entry)
                if len(found) == count:
                    break
        if len(chunk) < SCAN_CHUNK:
            break
        high = "(" + chunk[-1][0].decode()
    found.reverse()
    return found
