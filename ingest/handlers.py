"""The receiver's routes, on the happy path: every refusal is raised and turned into HTTP by the middleware."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from ingest.body import parse_form_body, read_body, signed_fields
from ingest.checks import check_notification
from ingest.enqueue import build_job
from ingest.network import is_allowed
from ingest.rejected_store import RejectedRequest, keep_rejected
from ingest.rejections import KeptReason, Rejected
from ingest.state import CONTEXT, JOB_WRITER, METRICS, REDIS, SETTINGS

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def _check_form_content_type(content_type: str) -> None:
    # parsed here, not with request.content_type: aiohttp raises IndexError on a parameter like "q*"
    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() != FORM_CONTENT_TYPE:
        raise Rejected(400, "bad_request", f"content type must be {FORM_CONTENT_TYPE}")
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower().replace("_", "-")
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise Rejected(400, "bad_request", "charset must be UTF-8")


async def receive_notification(request: web.Request) -> web.Response:
    """`POST /ipn`: authenticate the notification and answer 200 only once its job is in Redis."""
    context = request[CONTEXT]
    app = request.app
    settings = app[SETTINGS]
    if not is_allowed(context.client_ip, settings.ipn_allowlist):
        raise Rejected(403, "forbidden", "address not allowed")
    content_type = request.headers.get("Content-Type", "")
    if content_type != FORM_CONTENT_TYPE:  # the usual header needs no parsing
        _check_form_content_type(content_type)
    raw = await read_body(request, settings.body_timeout_s)
    fields = parse_form_body(raw)
    shop_id = fields.get("vads_site_id")
    context.shop_id, context.order_id = shop_id, fields.get("vads_order_id")
    context.trans_uuid, context.trans_id = fields.get("vads_trans_uuid"), fields.get("vads_trans_id")
    metrics = app[METRICS]
    try:
        check_notification(fields, settings)
    except Rejected as refusal:
        if refusal.kept == "signature":
            metrics.signature_failures[shop_id or ""] += 1
        if refusal.kept is not None:
            await _keep(request, refusal, refusal.kept, fields, raw)
        raise
    job = build_job(signed_fields(raw, fields), context.received_at, context.client_ip, context.request_id)
    started = time.perf_counter()
    written: bool | None = None
    try:
        written = await app[JOB_WRITER].enqueue(job)
    finally:
        # timed also when Redis did not answer, as Histogram.time() would
        metrics.count_enqueue(time.perf_counter() - started, written)
    context.outcome = "ok" if written else "duplicate"
    return web.Response(body=b"OK", content_type="text/plain")


async def _keep(
    request: web.Request, refusal: Rejected, reason: KeptReason, fields: dict[str, str], raw: bytes
) -> None:
    context = request[CONTEXT]
    settings = request.app[SETTINGS]
    kept = RejectedRequest(
        reason=reason,
        status=refusal.status,
        message=refusal.reason,
        received_at=context.received_at,
        client_ip=context.client_ip,
        request_id=context.request_id,
        shop_id=fields.get("vads_site_id", ""),
        order_id=fields.get("vads_order_id", ""),
        # a signed form or browser return can never pass: its signed part is enough, and padded copies of
        # one form then take a few hundred bytes each, not 64 KiB
        body=urlencode(signed_fields(raw, fields)).encode() if reason == "not_notification" else raw,
    )
    await keep_rejected(
        request.app[REDIS],
        kept,
        maxlen=settings.forensics_maxlen,
        max_age_s=settings.forensics_max_age_s,
        timeout_s=settings.redis_timeout_s,
    )


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: 200 while the process runs."""
    return web.Response(text="OK")


async def readyz(request: web.Request) -> web.Response:
    """`GET /readyz`: 200 when Redis answers PING in time (and, with `CVCO_REDIS_MIN_REPLICAS`, has that
    many replicas connected), else 503."""
    settings = request.app[SETTINGS]
    redis = request.app[REDIS]
    try:
        if not settings.redis_min_replicas:
            await asyncio.wait_for(redis.ping(), settings.redis_timeout_s)
            return web.Response(text="OK")
        replication = await asyncio.wait_for(redis.info("replication"), settings.redis_timeout_s)
    except (RedisError, OSError, TimeoutError):
        return web.Response(status=503, text="Redis is not answering")
    online = sum(
        1
        for name, value in replication.items()
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )
    if online < settings.redis_min_replicas:
        return web.Response(
            status=503, text=f"{online} of {settings.redis_min_replicas} Redis replicas connected"
        )
    return web.Response(text="OK")


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: Prometheus text format."""
    settings = request.app[SETTINGS]
    body = await request.app[METRICS].render(
        request.app[REDIS], settings.queue_name, settings.redis_timeout_s
    )
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
