"""The console's session: a cookie signed with HMAC-SHA-256, holding who signed in, when the session was
last used (an idle session ends) and its CSRF token. Nothing is stored server-side."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "cvco_console"


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    seen: float


def new_session(user: str, now: float | None = None) -> Session:
    return Session(user=user, csrf=secrets.token_urlsafe(24), seen=time.time() if now is None else now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(session: Session, key: bytes) -> str:
    """The cookie value: the session as JSON, then its signature."""
    body = _b64(json.dumps({"u": session.user, "c": session.csrf, "s": session.seen}).encode("utf-8"))
    return body + "." + _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())


def decode(value: str, key: bytes, idle_s: float, now: float | None = None) -> Session | None:
    """The session a cookie holds; None when it is forged, malformed or idle for longer than `idle_s`."""
    body, _, signature = value.partition(".")
    try:
        expected = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        data = json.loads(_unb64(body))
        session = Session(user=str(data["u"]), csrf=str(data["c"]), seen=float(data["s"]))
    except (ValueError, KeyError, TypeError, UnicodeError):
        return None
    current = time.time() if now is None else now
    return session if 0 <= current - session.seen <= idle_s else None
