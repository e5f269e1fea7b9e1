"""Parked jobs: a page of them or those filters keep, one with its raw notification, replay, discard,
and the bulk actions behind a confirmation page."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web
from arq.connections import ArqRedis

from console.common import (
    PAGE_SIZE,
    REDIS,
    SESSION,
    SETTINGS,
    SINCE_CHOICES,
    log,
    masked,
    render,
    see_other,
    when,
)
from schemas.settings import Settings
from workers import discarded_store, failed_store

BULK_MAX = 1000
"""A bulk action takes at most this many parked jobs, found among the `SCAN_MAX` newest."""
SCAN_MAX = 10_000


async def _parked(redis: ArqRedis, failed_id: str) -> failed_store.FailedJob:
    entry = await failed_store.get(redis, failed_id)
    if entry is None:
        raise web.HTTPNotFound(text="tâche en échec inconnue")
    return entry


async def _discard(redis: ArqRedis, settings: Settings, failed_id: str, reason: str) -> bool:
    """Close a parked job with an audit record: False when no such job is parked."""
    return await discarded_store.discard(
        redis, failed_id, reason, max_age_s=settings.discarded_max_age_s, keep_max=settings.discarded_max
    )


def _failed_filter(values: Mapping[str, str]) -> failed_store.FailedFilter:
    since = SINCE_CHOICES.get(values.get("since", ""))
    return failed_store.FailedFilter(
        shop=values.get("shop") or None,
        error=values.get("error") or None,
        since=time.time() - since if since else None,
    )


def _filter_query(values: Mapping[str, str]) -> dict[str, str]:
    return {name: values[name] for name in ("shop", "error", "since") if values.get(name)}


async def failed(request: web.Request) -> web.Response:
    """Parked jobs, newest first: a page at a time, or those the filters keep among the newest."""
    query = request.query
    redis = request.app[REDIS]
    total = await failed_store.count(redis)
    filters = _filter_query(query)
    page = int(given) if (given := query.get("page", "0")).isdigit() else 0
    if filters:
        entries = await failed_store.newest_matching(
            redis, _failed_filter(query), limit=PAGE_SIZE, scan_max=SCAN_MAX
        )
        pages = 1
    else:
        entries = await failed_store.newest(redis, start=page * PAGE_SIZE, count=PAGE_SIZE)
        pages = max(1, -(-total // PAGE_SIZE))
    return render(
        request,
        "failed.html",
        entries=entries,
        total=total,
        page=page,
        pages=pages,
        filters=filters,
        filter_query=urlencode(filters),
        since_choices=SINCE_CHOICES,
        done=query.get("done"),
        count=query.get("n"),
        when=when,
    )


async def bulk_confirm(request: web.Request) -> web.Response:
    """What a bulk action would act on, and the button that does it: "replay these N jobs"."""
    action = request.query.get("action")
    if action not in ("replay", "discard"):
        raise web.HTTPBadRequest(text="action inconnue")
    wanted = _failed_filter(request.query)
    entries = await failed_store.newest_matching(
        request.app[REDIS], wanted, limit=BULK_MAX, scan_max=SCAN_MAX
    )
    return render(
        request, "bulk.html", action=action, entries=entries, filters=_filter_query(request.query), when=when
    )


async def bulk(request: web.Request) -> web.StreamResponse:
    """Replay or discard every parked job the filters keep, if they are still the number confirmed."""
    form = await request.post()
    values = {name: str(value) for name, value in form.items()}
    action, user = values.get("action"), request[SESSION].user
    redis, settings = request.app[REDIS], request.app[SETTINGS]
    entries = await failed_store.newest_matching(
        redis, _failed_filter(values), limit=BULK_MAX, scan_max=SCAN_MAX
    )
    if action not in ("replay", "discard") or str(len(entries)) != values.get("expected"):
        raise web.HTTPConflict(
            text=f"la sélection a changé ({len(entries)} tâches au lieu de {values.get('expected')}) : "
            "revoyez-la et confirmez à nouveau"
        )
    reason = values.get("reason", "").strip()
    if action == "discard" and not reason:
        raise web.HTTPBadRequest(text="une raison est nécessaire pour écarter des tâches")
    for entry in entries:
        if action == "replay":
            await failed_store.requeue(redis, entry, settings.queue_name)
        else:
            await _discard(redis, settings, entry.id, f"{reason} (par {user}, console, en lot)")
    log.info(
        "console_action", user=user, action=f"bulk_{action}", count=len(entries), **_filter_query(values)
    )
    return see_other("/failed?" + urlencode({"done": f"bulk-{action}", "n": str(len(entries))}))


async def failed_entry(request: web.Request) -> web.Response:
    """One parked job: its notification (secrets masked), the error and its traceback."""
    entry = await _parked(request.app[REDIS], request.match_info["id"])
    fields = json.loads(entry.payload).get("fields", {})
    return render(request, "failed_entry.html", entry=entry, fields=masked(fields), when=when)


async def replay(request: web.Request) -> web.StreamResponse:
    redis, settings, user = request.app[REDIS], request.app[SETTINGS], request[SESSION].user
    entry = await _parked(redis, request.match_info["id"])
    queued = await failed_store.requeue(redis, entry, settings.queue_name)
    log.info("console_action", user=user, action="replay", failed_id=entry.id, queued=queued)
    return see_other("/failed?done=replay")


async def discard(request: web.Request) -> web.StreamResponse:
    redis, settings, user = request.app[REDIS], request.app[SETTINGS], request[SESSION].user
    reason = str((await request.post()).get("reason", "")).strip()
    if not reason:
        raise web.HTTPBadRequest(text="une raison est nécessaire pour écarter une tâche")
    failed_id = request.match_info["id"]
    if not await _discard(redis, settings, failed_id, f"{reason} (par {user}, console)"):
        raise web.HTTPNotFound(text="tâche en échec inconnue")
    log.info("console_action", user=user, action="discard", failed_id=failed_id, reason=reason)
    return see_other("/failed?done=discard")
