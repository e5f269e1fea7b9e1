"""What every console module shares: the typed keys on the app and the request, rendering a page,
and how amounts, times and secrets are shown."""

from __future__ import annotations

import time

import aiohttp_jinja2
import structlog
from aiohttp import web
from arq.connections import ArqRedis

from console.sessions import Session
from schemas.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", ArqRedis)
SESSION_KEY = web.AppKey("session_key", bytes)
THROTTLE = web.AppKey("throttle", dict[str, tuple[int, float]])
"""Per sign-in name: wrong passwords in a row, and when the last one came."""
SESSION = web.RequestKey("session", Session)

SECRET_FIELDS = frozenset({"signature", "vads_hash"})
"""Shown masked in a raw notification: what the platform signs with, or could replay with."""
PAGE_SIZE = 50
SINCE_CHOICES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
log = structlog.get_logger("cvco.console")


def euros(cents: int | None) -> str:
    """`12345` -> `123,45 €`, as a French operator reads an amount."""
    if cents is None:
        return "—"
    return f"{cents // 100:,}".replace(",", "\u202f") + f",{cents % 100:02d} €"


def when(epoch: float) -> str:
    return time.strftime("%d/%m/%Y %H:%M:%S", time.gmtime(epoch)) + " UTC"


def see_other(location: str) -> web.Response:
    """303 to `location`: after a sign-in or an action, the browser loads that page with a GET."""
    return web.Response(status=303, headers={"Location": location})


def render(request: web.Request, template: str, **context: object) -> web.Response:
    session = request.get(SESSION)
    return aiohttp_jinja2.render_template(
        template,
        request,
        {"user": session.user if session else None, "csrf": session.csrf if session else ""} | context,
    )


def masked(fields: dict[str, str]) -> list[tuple[str, str]]:
    """Notification fields, in order, with `SECRET_FIELDS` masked."""
    return [(name, "••••••" if name in SECRET_FIELDS else str(value)) for name, value in fields.items()]
