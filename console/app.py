"""The console's aiohttp application: `create_console_app(settings)`.

Pages are Jinja2 templates, autoescaped (every platform-supplied string shows as text), served with a
Content-Security-Policy that allows no script at all. Every page but `/login` and `/healthz` needs a
signed-in session; every action is a POST that carries the session's CSRF token and is audit-logged with
the user's name. The data comes from the functions the CLI uses: `workers.lookup`, `workers.failed_store`,
`workers.discarded_store`, `ingest.metrics.read_queue`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from console import auth, failed_pages, pages, rejected_pages
from console.auth import STATIC_PREFIX, console_middleware
from console.common import REDIS, SESSION_KEY, SETTINGS, THROTTLE
from schemas.settings import Settings
from workers.worker import arq_client


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
    app.router.add_get("/healthz", auth.healthz)
    app.router.add_get("/login", auth.login_form)
    app.router.add_post("/login", auth.login)
    app.router.add_post("/logout", auth.logout)
    app.router.add_get("/", pages.overview)
    app.router.add_get("/payments", pages.payments)
    app.router.add_get("/payments/{key}", pages.payment)
    app.router.add_get("/failed", failed_pages.failed)
    app.router.add_get("/failed/bulk", failed_pages.bulk_confirm)
    app.router.add_post("/failed/bulk", failed_pages.bulk)
    app.router.add_get("/failed/{id}", failed_pages.failed_entry)
    app.router.add_post("/failed/{id}/replay", failed_pages.replay)
    app.router.add_post("/failed/{id}/discard", failed_pages.discard)
    app.router.add_get("/events", pages.events)
    app.router.add_get("/rejected", rejected_pages.rejected)
    app.router.add_get("/rejected/{id}", rejected_pages.rejected_entry)
    app.router.add_post("/rejected/{id}/retry", rejected_pages.retry_rejected)
    return app
