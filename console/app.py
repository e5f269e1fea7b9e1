"""The console's aiohttp application: `create_console_app(settings)`.

Pages are Jinja2 templates, autoescaped (every platform-supplied string shows as text), served with a
Content-Security-Policy that allows no script at all. Every page but `/login` and `/healthz` needs a
signed-in session; every action is a POST that carries the session's CSRF token and is audit-logged with
the user's name. The data comes from the functions the CLI uses: `workers.lookup`, `workers.failed_store`,
`workers.discarded_store`, `ingest.metrics.read_queue`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import get_args
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from arq.connections import ArqRedis
from arq.constants import health_check_key_suffix

from console import sessions
from console.passwords import verify_password
from console.sessions import Session
from core.keys import REJECTED_INDEX_PREFIX
from ingest.body import BodyError, parse_form_body
from ingest.enqueue import EnqueueUnavailable
from ingest.metrics import read_queue
from ingest.rejected_retry import job_writer, recheck, requeue
from ingest.rejected_store import get_rejected, newest_rejected
from ingest.rejections import KEPT_REASONS, Rejected
from schemas.event import EventType
from schemas.settings import Settings
from workers import discarded_store, failed_store
from workers.alerts import recent_alerts
from workers.event_stream import EventFilter, decode_event, latest_events
from workers.lookup import find_payments, published_today
from workers.worker import arq_client

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", ArqRedis)
SESSION_KEY = web.AppKey("session_key", bytes)
THROTTLE = web.AppKey("throttle", dict[str, tuple[int, float]])
"""Per sign-in name: wrong passwords in a row, and when the last one came."""
SESSION = web.RequestKey("session", Session)

PUBLIC_PATHS = frozenset({"/login", "/healthz"})
STATIC_PREFIX = "/static/"
SECRET_FIELDS = frozenset({"signature", "vads_hash"})
"""Shown masked in a raw notification: what the platform signs with, or could replay with."""
PAGE_SIZE = 50
BULK_MAX = 1000
"""A bulk action takes at most this many parked jobs, found among the `SCAN_MAX` newest."""
SCAN_MAX = 10_000
SINCE_CHOICES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
FAILURES_BEFORE_LOCK = 5
LOCK_S = 300
"""After this many wrong passwords for one name, that name is refused for this long."""

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

log = structlog.get_logger("cvco.console")


def euros(cents: int | None) -> str:
    """`12345` -> `123,45 €`, as a French operator reads an amount."""
    if cents is None:
        return "—"
    return f"{cents // 100:,}".replace(",", "\u202f") + f",{cents % 100:02d} €"


def when(epoch: float) -> str:
    return time.strftime("%d/%m/%Y %H:%M:%S", time.gmtime(epoch)) + " UTC"


def _see_other(location: str) -> web.Response:
    """303 to `location`: after a sign-in or an action, the browser loads that page with a GET."""
    return web.Response(status=303, headers={"Location": location})


def _session_of(request: web.Request) -> Session | None:
    value = request.cookies.get(sessions.COOKIE)
    if value is None:
        return None
    return sessions.decode(value, request.app[SESSION_KEY], request.app[SETTINGS].console_idle_s)


def _set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        sessions.COOKIE,
        sessions.encode(session, request.app[SESSION_KEY]),
        httponly=True,
        samesite="Strict",
        # behind an HTTPS proxy the console itself speaks HTTP: the proxy's header says how the browser came
        secure=request.secure or request.headers.get("X-Forwarded-Proto") == "https",
        path="/",
    )


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every answer; outside the public paths, a session (else to /login) and, on a
    POST, its CSRF token (else 403, nothing done). A used session's idle clock starts again."""
    session = None
    if request.path not in PUBLIC_PATHS and not request.path.startswith(STATIC_PREFIX):
        session = _session_of(request)
        if session is None:
            raise web.HTTPSeeOther("/login", headers=SECURITY_HEADERS)
        if request.method == "POST":
            form = await request.post()
            if not secrets.compare_digest(str(form.get("csrf", "")), session.csrf):
                log.warning("console_csrf_refused", user=session.user, path=request.path)
                raise web.HTTPForbidden(text="jeton CSRF manquant ou invalide", headers=SECURITY_HEADERS)
        session = Session(user=session.user, csrf=session.csrf, seen=time.time())
        request[SESSION] = session
    try:
        response = await handler(request)
    except web.HTTPException as answer:
        answer.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    if session is not None and sessions.COOKIE not in response.cookies:
        _set_cookie(request, response, session)
    return response


def _render(request: web.Request, template: str, **context: object) -> web.Response:
    session = request.get(SESSION)
    return aiohttp_jinja2.render_template(
        template,
        request,
        {"user": session.user if session else None, "csrf": session.csrf if session else ""} | context,
    )


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def login_form(request: web.Request) -> web.Response:
    return _render(request, "login.html", error=None)


async def login(request: web.Request) -> web.StreamResponse:
    """Sign in; a name with `FAILURES_BEFORE_LOCK` wrong passwords is refused for `LOCK_S`."""
    form = await request.post()
    name, password = str(form.get("user", "")), str(form.get("password", ""))
    throttle: dict[str, tuple[int, float]] = request.app[THROTTLE]
    failures, since = throttle.get(name, (0, 0.0))
    if failures >= FAILURES_BEFORE_LOCK and time.monotonic() - since < LOCK_S:
        log.warning("console_sign_in_locked", user=name)
        response = _render(request, "login.html", error="Trop d'essais : réessayez dans quelques minutes.")
        response.set_status(429)
        return response
    stored = request.app[SETTINGS].console_users.get(name)
    if stored is None or not verify_password(password, stored):
        throttle[name] = (failures + 1 if failures < FAILURES_BEFORE_LOCK else 1, time.monotonic())
        log.warning("console_sign_in_refused", user=name)
        response = _render(request, "login.html", error="Nom ou mot de passe incorrect.")
        response.set_status(401)
        return response
    throttle.pop(name, None)
    log.info("console_signed_in", user=name)
    response = _see_other("/")
    _set_cookie(request, response, sessions.new_session(name))
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    log.info("console_signed_out", user=request[SESSION].user)
    response = _see_other("/login")
    response.del_cookie(sessions.COOKIE, path="/")
    return response


async def overview(request: web.Request) -> web.Response:
    """Today's events by type with their amounts, the queue, parked jobs, kept refusals by reason, whether
    a worker is alive, the latest alert mails; the page reloads itself every 30 s (no script)."""
    redis, settings = request.app[REDIS], request.app[SETTINGS]
    queue = await read_queue(redis, settings.queue_name)
    rejected = {reason: await redis.zcard(REJECTED_INDEX_PREFIX + reason) for reason in KEPT_REASONS}
    worker_alive = bool(await redis.exists(settings.queue_name + health_check_key_suffix))
    today = await published_today(redis)
    return _render(
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
    return _render(request, "payments.html", query=query, found=found, euros=euros)


async def payment(request: web.Request) -> web.Response:
    """One payment's timeline: its state, each notification and what the worker did, each event."""
    key = request.match_info["key"]
    records = [record for record in await find_payments(request.app[REDIS], key) if record.payment_key == key]
    if not records:
        raise web.HTTPNotFound(text="paiement inconnu")
    return _render(request, "payment.html", record=records[0], euros=euros)


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
    return _render(
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
    return _render(
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
            await discarded_store.discard(
                redis,
                entry.id,
                f"{reason} (par {user}, console, en lot)",
                max_age_s=settings.discarded_max_age_s,
                keep_max=settings.discarded_max,
            )
    log.info(
        "console_action", user=user, action=f"bulk_{action}", count=len(entries), **_filter_query(values)
    )
    return _see_other("/failed?" + urlencode({"done": f"bulk-{action}", "n": str(len(entries))}))


def masked(fields: dict[str, str]) -> list[tuple[str, str]]:
    """Notification fields, in order, with `SECRET_FIELDS` masked."""
    return [(name, "••••••" if name in SECRET_FIELDS else str(value)) for name, value in fields.items()]


async def failed_entry(request: web.Request) -> web.Response:
    """One parked job: its notification (secrets masked), the error and its traceback."""
    entry = await failed_store.get(request.app[REDIS], request.match_info["id"])
    if entry is None:
        raise web.HTTPNotFound(text="tâche en échec inconnue")
    fields = json.loads(entry.payload).get("fields", {})
    return _render(request, "failed_entry.html", entry=entry, fields=masked(fields), when=when)


async def replay(request: web.Request) -> web.StreamResponse:
    redis, settings, user = request.app[REDIS], request.app[SETTINGS], request[SESSION].user
    entry = await failed_store.get(redis, request.match_info["id"])
    if entry is None:
        raise web.HTTPNotFound(text="tâche en échec inconnue")
    queued = await failed_store.requeue(redis, entry, settings.queue_name)
    log.info("console_action", user=user, action="replay", failed_id=entry.id, queued=queued)
    return _see_other("/failed?done=replay")


async def discard(request: web.Request) -> web.StreamResponse:
    redis, settings, user = request.app[REDIS], request.app[SETTINGS], request[SESSION].user
    reason = str((await request.post()).get("reason", "")).strip()
    if not reason:
        raise web.HTTPBadRequest(text="une raison est nécessaire pour écarter une tâche")
    failed_id = request.match_info["id"]
    moved = await discarded_store.discard(
        redis,
        failed_id,
        f"{reason} (par {user}, console)",
        max_age_s=settings.discarded_max_age_s,
        keep_max=settings.discarded_max,
    )
    if not moved:
        raise web.HTTPNotFound(text="tâche en échec inconnue")
    log.info("console_action", user=user, action="discard", failed_id=failed_id, reason=reason)
    return _see_other("/failed?done=discard")


async def rejected(request: web.Request) -> web.Response:
    """The most recent kept refusals (401, 403, signed non-notifications), every reason together."""
    entries = await newest_rejected(request.app[REDIS], PAGE_SIZE)
    return _render(
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
    return _render(request, "rejected_entry.html", entry=entry, fields=fields)


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
        return _see_other("/rejected?" + urlencode({"done": "refused", "why": str(e)}))
    try:
        async with job_writer(redis, settings) as writer:
            await requeue(redis, writer, entry, job)
    except EnqueueUnavailable as e:
        raise web.HTTPServiceUnavailable(text=f"Redis n'a pas pris la notification : {e}") from None
    log.info("console_action", user=user, action="retry_rejected", rejected_id=entry.id, job_id=job.job_id)
    return _see_other("/rejected?done=retry")


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
    return _render(
        request,
        "events.html",
        events=shown,
        wanted=wanted,
        since=query.get("since", ""),
        since_choices=SINCE_CHOICES,
        types=get_args(EventType),
        euros=euros,
    )


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[REDIS] = arq_client(settings, socket_timeout_s=settings.redis_timeout_s * 5)
    yield
    await app[REDIS].aclose(close_connection_pool=True)


def create_console_app(settings: Settings) -> web.Application:
    """The console: sign-in, overview, payments, parked jobs, kept refusals, events."""
    app = web.Application(middlewares=[console_middleware], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    secret = settings.console_secret
    app[SESSION_KEY] = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
    app[THROTTLE] = {}
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    app.cleanup_ctx.append(_redis)
    app.router.add_static(STATIC_PREFIX, Path(__file__).with_name("static"))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", overview)
    app.router.add_get("/payments", payments)
    app.router.add_get("/payments/{key}", payment)
    app.router.add_get("/failed", failed)
    app.router.add_get("/failed/bulk", bulk_confirm)
    app.router.add_post("/failed/bulk", bulk)
    app.router.add_get("/failed/{id}", failed_entry)
    app.router.add_post("/failed/{id}/replay", replay)
    app.router.add_post("/failed/{id}/discard", discard)
    app.router.add_get("/events", events)
    app.router.add_get("/rejected", rejected)
    app.router.add_get("/rejected/{id}", rejected_entry)
    app.router.add_post("/rejected/{id}/retry", retry_rejected)
    return app
