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

    `notification` holds the notification's own ids (shop, order, transaction) once its body is parsed:
    the summary line names them explicitly, cheaper than binding four more context variables.
    """

    request_id: str
    client_ip: str
    received_at: datetime
    outcome: Outcome | None = None
    notification: dict[str, str | None] = field(default_factory=dict)


SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
JOB_WRITER = web.AppKey("job_writer", JobWriter)
METRICS = web.AppKey("metrics", ReceiverMetrics)
LOG = web.AppKey("log", FilteringBoundLogger)
"""The summary line's logger, bound once the app is made: through structlog's lazy proxy every line
paid about 1 us to find it again."""
CONTEXT = web.RequestKey("context", RequestContext)
