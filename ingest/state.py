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
    """Who sent the request, when, under which id, and how it ended (for the summary line and metrics)."""

    request_id: str
    client_ip: str
    received_at: datetime
    outcome: RequestOutcome | None = None


SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
JOB_WRITER = web.AppKey("job_writer", JobWriter)
METRICS = web.AppKey("metrics", ReceiverMetrics)
CONTEXT = web.RequestKey("context", RequestContext)
