"""Kept refusals of `POST /ipn`: the newest, one with its fields, and a retry through the receiver's
checks with the console's configuration."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from console.common import PAGE_SIZE, REDIS, SESSION, SETTINGS, log, masked, render, see_other
from ingest.body import BodyError, parse_form_body
from ingest.enqueue import EnqueueUnavailable
from ingest.rejected_retry import job_writer, recheck, requeue
from ingest.rejected_store import get_rejected, newest_rejected
from ingest.rejections import Rejected


async def rejected(request: web.Request) -> web.Response:
    """The most recent kept refusals (401, 403, signed non-notifications), every reason together."""
    entries = await newest_rejected(request.app[REDIS], PAGE_SIZE)
    return render(
        request,
        "rejected.html",
        entries=entries,
        done=request.query.get("done"),
        why=request.query.get("why"),
    )


async def rejected_entry(request: web.Request) -> web.Response:
    """One kept refusal: why, from where, and its fields (secrets masked)."""
    entry = await get_rejected(request.app[REDIS], request.match_info["id"])
    if entry is None:
        raise web.HTTPNotFound(text="requête refusée inconnue (expirée ou déjà rejouée)")
    try:
        fields = masked(parse_form_body(entry.body))
    except BodyError as e:
        fields = [("(corps illisible)", str(e))]
    return render(request, "rejected_entry.html", entry=entry, fields=fields)


async def retry_rejected(request: web.Request) -> web.StreamResponse:
    """Run a kept refusal through the receiver's checks now: queued if it passes, else said why."""
    redis, settings, user = request.app[REDIS], request.app[SETTINGS], request[SESSION].user
    entry = await get_rejected(redis, request.match_info["id"])
    if entry is None:
        raise web.HTTPNotFound(text="requête refusée inconnue (expirée ou déjà rejouée)")
    try:
        job = recheck(entry, settings)
    except (Rejected, BodyError) as e:
        log.info("console_action", user=user, action="retry_rejected", rejected_id=entry.id, refused=str(e))
        return see_other("/rejected?" + urlencode({"done": "refused", "why": str(e)}))
    try:
        async with job_writer(redis, settings) as writer:
            await requeue(redis, writer, entry, job)
    except EnqueueUnavailable as e:
        raise web.HTTPServiceUnavailable(text=f"Redis n'a pas pris la notification : {e}") from None
    log.info("console_action", user=user, action="retry_rejected", rejected_id=entry.id, job_id=job.job_id)
    return see_other("/rejected?done=retry")
