"""The pages that show: the overview, payments and their timelines, the event stream."""

from __future__ import annotations

import time
from typing import get_args

from aiohttp import web
from arq.constants import health_check_key_suffix

from console.common import PAGE_SIZE, REDIS, SETTINGS, SINCE_CHOICES, euros, render
from core.keys import REJECTED_INDEX_PREFIX
from ingest.metrics import read_queue
from ingest.rejections import KEPT_REASONS
from schemas.event import EventType
from workers.alerts import recent_alerts
from workers.event_stream import EventFilter, decode_event, latest_events
from workers.lookup import find_payments, published_today


async def overview(request: web.Request) -> web.Response:
    """Today's events by type with their amounts, the queue, parked jobs, kept refusals by reason, whether
    a worker is alive, the latest alert mails; the page reloads itself every 30 s (no script)."""
    redis, settings = request.app[REDIS], request.app[SETTINGS]
    queue = await read_queue(redis, settings.queue_name)
    rejected = {reason: await redis.zcard(REJECTED_INDEX_PREFIX + reason) for reason in KEPT_REASONS}
    worker_alive = bool(await redis.exists(settings.queue_name + health_check_key_suffix))
    today = await published_today(redis)
    return render(
        request,
        "overview.html",
        queue=queue,
        rejected=rejected,
        worker_alive=worker_alive,
        today=[(name, *today[name]) for name in get_args(EventType) if name in today],
        alerts=await recent_alerts(redis),
        euros=euros,
    )


async def payments(request: web.Request) -> web.Response:
    """The search of `cvco-ipn payment show`: an order id, a trans_uuid, a trans_id or a payment key."""
    query = request.query.get("q", "").strip()
    found = await find_payments(request.app[REDIS], query) if query else []
    return render(request, "payments.html", query=query, found=found, euros=euros)


async def payment(request: web.Request) -> web.Response:
    """One payment's timeline: its state, each notification and what the worker did, each event."""
    key = request.match_info["key"]
    records = [record for record in await find_payments(request.app[REDIS], key) if record.payment_key == key]
    if not records:
        raise web.HTTPNotFound(text="paiement inconnu")
    return render(request, "payment.html", record=records[0], euros=euros)


async def events(request: web.Request) -> web.Response:
    """The newest events of the stream, by type, shop, order and age (as `cvco-ipn events tail`)."""
    query = request.query
    wanted = EventFilter(
        shop=query.get("shop") or None, type=query.get("type") or None, order=query.get("order") or None
    )
    settings = request.app[SETTINGS]
    since = SINCE_CHOICES.get(query.get("since", ""))
    low = f"{int((time.time() - since) * 1000)}-0" if since else "-"
    found = await latest_events(request.app[REDIS], settings.stream, PAGE_SIZE, wanted, low=low)
    shown = [(entry[0].decode(), event) for entry in reversed(found) if (event := decode_event(entry))]
    return render(
        request,
        "events.html",
        events=shown,
        wanted=wanted,
        since=query.get("since", ""),
        since_choices=SINCE_CHOICES,
        types=get_args(EventType),
        euros=euros,
    )
