"""The session-expiry sweep: a payment session whose deadline passed in silence becomes `payment.expired`.

The platform may never notify a session the buyer walked away from, so a cron looks at `cvco:sessions`
(score = deadline, set by the form builder or by a first pending notification) and publishes the expiry
through the workers' exactly-once path, `publish_session_expiry`, which leaves alone any payment that got
past pending; an expiry with money authorised (`expired_authorised`) is alerted. The session is unwatched only after that call returned: a worker dying in between makes
the next sweep call it again, and the exactly-once apply turns the second call into a duplicate. Several
workers sweeping at once therefore publish one event per session.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from redis.asyncio import Redis

from schemas.errors import TRANSIENT_ERRORS
from schemas.settings import Settings
from workers.apply import load_payment
from workers.flag_alerts import FLAG_ALERTS, alert_flags
from workers.jobs import publish_session_expiry
from workers.sessions import SESSIONS_KEY, end_watch, load_session

SWEEP_BATCH = 500
"""Sessions handled per sweep at most; the rest wait for the next run."""

log = structlog.get_logger(__name__)


async def sweep_expired_sessions(
    redis: Redis, settings: Settings, *, now: datetime | None = None, limit: int = SWEEP_BATCH
) -> int:
    """Publish the expiry of every watched session whose deadline has passed; returns events published."""
    current = now or datetime.now(UTC)
    due = await redis.zrangebyscore(SESSIONS_KEY, "-inf", current.timestamp(), start=0, num=limit)
    published = 0
    for member in due:
        key = member.decode() if isinstance(member, bytes) else str(member)
        try:
            pending = await load_session(redis, key)
            if pending is not None:
                outcome = await publish_session_expiry(redis, settings, pending, current)
                published += outcome.published
                if set(outcome.flags) & set(FLAG_ALERTS):
                    await _alert(redis, settings, key, outcome.flags)
            else:  # the watch ended meanwhile (another sweeper, or the payment moved on)
                log.info("session_already_settled", payment_key=key)
            await end_watch(redis, key)
        except TRANSIENT_ERRORS as e:  # left watched: the next sweep tries again
            log.warning("session_sweep_interrupted", payment_key=key, reason=f"{type(e).__name__}: {e}")
            break
        except Exception:  # a bug on one session must not stop the others; it stays watched and logged
            log.exception("session_expiry_failed", payment_key=key)
    if published:
        log.info("sessions_expired", count=published)
    return published


async def _alert(redis: Redis, settings: Settings, key: str, flags: tuple[str, ...]) -> None:
    """An expiry that left money authorised (a cascade's CVCO part) is a human's to look at."""
    state = await load_payment(redis, key)
    if state is not None:
        summary = {"boutique": state.shop_id, "commande": state.order_id or "", "trans_id": state.trans_id}
        await alert_flags(redis, settings, state, flags, summary)
