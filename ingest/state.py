"""Every typed key the receiver keeps on its `web.Application` and on each request, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from redis.asyncio import Redis

from ingest.enqueue import JobWriter
from ingest.metrics import ReceiverMetrics, RequestOutcome
from schemas.settings import Settings


@dataclass(slots=True)
class RequestContext:
    """Who sent the request, when, under which id, what it named and how it ended: the request's log
    fields and its metrics. A new one per request, so nothing of one request reaches the next one's lines."""

    request_id: str
    client_ip: str
    received_at: datetime
    outcome: RequestOutcome | None = None
    shop_id: str | None = None
    order_id: str | None = None
    trans_uuid: str | None = None
    trans_id: str | None = None

    def log_fields(self) -> dict[str, str]:
        """The correlation fields of the request's log lines: its ids, and what the notification named."""
        named = {
            "shop_id": self.shop_id,
            "order_id": self.order_id,
            "trans_uuid": self.trans_uuid,
            "trans_id": self.trans_id,
        }
        ids = {"request_id": self.request_id, "client_ip": self.client_ip}
        return ids | {name: value for name, value in named.items() if value is not None}


SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
JOB_WRITER = web.AppKey("job_writer", JobWriter)
METRICS = web.AppKey("metrics", ReceiverMetrics)
CONTEXT = web.RequestKey("context", RequestContext)
