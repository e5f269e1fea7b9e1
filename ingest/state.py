"""Every typed key the receiver keeps on its `web.Application` and on each request, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web
from redis.asyncio import Redis
from structlog.typing import FilteringBoundLogger

from ingest.enqueue import JobWriter
from ingest.metrics import Outcome, ReceiverMetrics
from schemas.settings import Settings


@dataclass(slots=True)
class RequestContext:
    """Who sent the request, when, under which id, and how it ended (for the summary line and metrics).

    `log_ids` are the correlation ids its log lines name explicitly (cheaper than context variables):
    the request's own, then the notification's (shop, order, transaction) once its body is parsed.
    """

    request_id: str
    client_ip: str
    received_at: datetime
    outcome: Outcome | None = None
    log_ids: dict[str, str | None] = field(init=False)

    def __post_init__(self) -> None:
        self.log_ids = {"request_id": self.request_id, "client_ip": self.client_ip}


SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
JOB_WRITER = web.AppKey("job_writer", JobWriter)
METRICS = web.AppKey("metrics", ReceiverMetrics)
LOG = web.AppKey("log", FilteringBoundLogger)
"""The summary line's logger, bound once the app is made: through structlog's lazy proxy every line
paid about 1 us to find it again."""
CONTEXT = web.RequestKey("context", RequestContext)
