"""Signing in and out, and the middleware every request goes through: security headers, the session
(else to /login) and, on a POST, its CSRF token (else 403, nothing done)."""

from __future__ import annotations

import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from console import sessions
from console.common import SESSION, SESSION_KEY, SETTINGS, THROTTLE, log, render, see_other
from console.passwords import verify_password
from console.sessions import Session

PUBLIC_PATHS = frozenset({"/login", "/healthz"})
STATIC_PREFIX = "/static/"
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


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def login_form(request: web.Request) -> web.Response:
    return render(request, "login.html", error=None)


async def login(request: web.Request) -> web.StreamResponse:
    """Sign in; a name with `FAILURES_BEFORE_LOCK` wrong passwords is refused for `LOCK_S`."""
    form = await request.post()
    name, password = str(form.get("user", "")), str(form.get("password", ""))
    throttle: dict[str, tuple[int, float]] = request.app[THROTTLE]
    failures, since = throttle.get(name, (0, 0.0))
    if failures >= FAILURES_BEFORE_LOCK and time.monotonic() - since < LOCK_S:
        log.warning("console_sign_in_locked", user=name)
        response = render(request, "login.html", error="Trop d'essais : réessayez dans quelques minutes.")
        response.set_status(429)
        return response
    stored = request.app[SETTINGS].console_users.get(name)
    if stored is None or not verify_password(password, stored):
        throttle[name] = (failures + 1 if failures < FAILURES_BEFORE_LOCK else 1, time.monotonic())
        log.warning("console_sign_in_refused", user=name)
        response = render(request, "login.html", error="Nom ou mot de passe incorrect.")
        response.set_status(401)
        return response
    throttle.pop(name, None)
    log.info("console_signed_in", user=name)
    response = see_other("/")
    _set_cookie(request, response, sessions.new_session(name))
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    log.info("console_signed_out", user=request[SESSION].user)
    response = see_other("/login")
    response.del_cookie(sessions.COOKIE, path="/")
    return response
