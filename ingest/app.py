"""The receiver's aiohttp application: `create_app(settings)`.

Resources are `cleanup_ctx` generators (Redis client, then the job-writing task); every refusal is mapped
to HTTP in `answer_middleware`, which also gives each request its `RequestContext` (ids, what the
notification named), times the request, counts its outcome and writes the one summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from core.redis_connection import redis_client
from ingest import forms_api, handlers
from ingest.body import BodyError
from ingest.enqueue import EnqueueUnavailable, JobWriter
from ingest.metrics import ReceiverMetrics, RequestOutcome
from ingest.network import client_address
from ingest.rejections import Rejected
from ingest.state import CONTEXT, JOB_WRITER, METRICS, REDIS, SETTINGS, RequestContext
from schemas.settings import Settings

MAX_BODY_BYTES = 64 * 1024
IPN_PATH = "/ipn"

_INTERNAL_ERROR: tuple[int, RequestOutcome, str] = (500, "unavailable", "internal error")

log = structlog.get_logger(__name__)


def _refusal(error: Exception) -> tuple[int, RequestOutcome, str] | None:
    """Status, outcome and one-line reason for a refusal a handler raised; None for a bug."""
    match error:
        case Rejected():
            return error.status, error.outcome, error.reason
        case BodyError():
            return 400, "bad_request", str(error)
        case ConnectionResetError():
            # aiohttp's word for a client that went away mid-body; nobody reads the answer (499, as nginx)
            return 499, "client_gone", "client closed the connection"
        case EnqueueUnavailable():
            return 503, "unavailable", "notification not stored, try again later"
        case web.HTTPRequestEntityTooLarge():
            return 413, "too_large", f"body over {MAX_BODY_BYTES // 1024} KiB"
        case web.HTTPException():
            # aiohttp's own refusals (404, 405, ...): same one-line plain text as ours
            return error.status, "bad_request", error.reason
    return None


class OneLineServerErrors(logging.Filter):
    """aiohttp's own error lines as one line naming the error, without traceback or request bytes.

    aiohttp logs a malformed request with its exception, whose message quotes the raw bytes it choked
    on (a `signature=` among them); a client gone mid-request is no error of ours at all.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return True
        status = getattr(error, "code", None)
        detail = f"{type(error).__name__}{f' {status}' if isinstance(status, int) else ''}"
        record.msg, record.args = f"{record.getMessage()}: {detail}", ()
        record.exc_info = record.exc_text = record.stack_info = None
        record.levelno = logging.INFO if isinstance(error, ConnectionError) else logging.WARNING
        record.levelname = logging.getLevelName(record.levelno)
        return True


_SERVER_ERRORS = OneLineServerErrors()


@web.middleware
async def answer_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its context, run the handler, map refusals to one-line answers, count and log the
    request; its lines carry the context's fields (`RequestContext.log_fields`)."""
    started = time.perf_counter()
    app = request.app
    method, path = request.method, request.path
    context = RequestContext(
        request_id=f"{random.getrandbits(128):032x}",  # a correlation id, not a secret: no system call
        client_ip=client_address(
            request.remote, request.headers.getall("X-Forwarded-For", ()), app[SETTINGS].trusted_proxies
        ),
        received_at=datetime.now(UTC),
    )
    request[CONTEXT] = context
    try:
        response = await handler(request)
    except Exception as error:  # the one place where every failure becomes an HTTP answer
        refusal = _refusal(error)
        if refusal is None:
            log.exception("request_failed", method=method, path=path, **context.log_fields())
            refusal = _INTERNAL_ERROR
        status, context.outcome, reason = refusal
        response = web.Response(status=status, text=reason)
    response.headers["X-Request-Id"] = context.request_id
    latency_s = time.perf_counter() - started
    is_ipn = path == IPN_PATH and method == "POST"
    if is_ipn and context.outcome is not None:
        app[METRICS].count_request(context.outcome, latency_s)
    (log.info if is_ipn else log.debug)(
        "request",
        method=method,
        path=path,
        status=response.status,
        outcome=context.outcome,
        latency_ms=round(latency_s * 1000, 2),
        **context.log_fields(),
    )
    return response


async def _redis_client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = redis_client(settings, socket_timeout_s=settings.redis_timeout_s)
    app[REDIS] = redis
    yield
    await redis.aclose(close_connection_pool=True)


async def _job_writer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    writer = JobWriter(
        app[REDIS], settings.queue_name, settings.redis_timeout_s, min_replicas=settings.redis_min_replicas
    )
    app[JOB_WRITER] = writer
    task = asyncio.create_task(writer.run(), name="cvco-job-writer")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings) -> web.Application:
    """The receiver: `POST /ipn`, `GET /healthz`, `GET /readyz`, `GET /metrics`."""
    logging.getLogger("aiohttp.server").addFilter(_SERVER_ERRORS)  # one filter however many apps
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[answer_middleware])
    app[SETTINGS] = settings
    app[METRICS] = ReceiverMetrics()
    app.cleanup_ctx.append(_redis_client)
    app.cleanup_ctx.append(_job_writer)
    app.router.add_post(IPN_PATH, handlers.receive_notification)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    forms_api.add_form_routes(app, settings)
    return app
