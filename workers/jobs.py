"""What a notification job does, and the exactly-once path a detected session expiry shares with it.

Entry points for the rest of the project:

- `handle_notification(redis, settings, queued) -> Outcome`: everything `process_notification` does.
  Raises a `PermanentError` for what retrying cannot fix (unknown shop or mode, signature no longer valid
  against this worker's settings, `InvalidNotification`, malformed cascade, unknown status); lets Redis
  errors (transient) and `StateContention` (a `TimeoutError`) propagate so the caller retries.
- `publish_session_expiry(redis, settings, pending, now) -> Outcome`: a `payment.expired` event (status
  `EXPIRED`, source `SESSION_TIMEOUT`, trans_uuid null) unless the payment got past pending; two workers
  or a restart publish it once.
- `workers.apply.load_payment(redis, key)`: the stored `PaymentState` (`.phase`, amounts, `.flags`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from redis.asyncio import Redis

from ingest.signature import verify_signature
from schemas.errors import PermanentError
from schemas.job import QueuedNotification
from schemas.notification import Notification, parse_notification, payment_key
from schemas.session import PendingPayment, session_deadline
from schemas.settings import Settings
from workers.apply import PAYMENT_PREFIX, VersionConflict, apply_decision, refund_target_key
from workers.decide import Decision, Result, decide, decide_expiry
from workers.history import expiry_entry, notification_entry
from workers.payment import PaymentState, platform_reserved
from workers.sessions import track_session

log = structlog.get_logger("cvco.worker")
MAX_ATTEMPTS = 50


class UnknownShop(PermanentError):
    """The notification names a shop (or a mode of it) this worker's settings do not accept."""


class SignatureNoLongerValid(PermanentError):
    """The signature does not verify against this worker's keys (keys rotated since it was queued?)."""


class StateContention(TimeoutError):
    """Other workers kept changing the payment: retry later, like a timeout (a transient error)."""


@dataclass(frozen=True)
class Outcome:
    """What a notification or an expiry did: `result` is published, duplicate or stale (ignored).

    `flags` (only when published) name what the alerts watch (`workers.payment`'s flags).
    """

    result: Result
    payment_key: str
    event_type: str | None = None
    event_id: str | None = None
    stream_id: str | None = None
    phase: str | None = None
    flags: tuple[str, ...] = ()
    reason: str = ""

    @property
    def published(self) -> bool:
        return self.result == "published"


def authenticate(settings: Settings, queued: QueuedNotification) -> Notification:
    """Re-check what the receiver checked, against this worker's own settings: never trust the queue."""
    fields = queued.fields
    shop_id = fields.get("vads_site_id", "")
    shop = settings.shops.get(shop_id)
    if shop is None:
        raise UnknownShop(f"vads_site_id {shop_id!r} is not a configured shop")
    mode = fields.get("vads_ctx_mode", "")
    if mode not in shop.modes:
        raise UnknownShop(f"shop {shop_id} does not accept vads_ctx_mode {mode!r}")
    verdict = verify_signature(fields, fields.get("signature", ""), shop)
    if verdict != "valid":
        raise SignatureNoLongerValid(f"signature check for shop {shop_id} {mode}: {verdict}")
    return parse_notification(fields)


async def _apply_until_settled(
    redis: Redis,
    settings: Settings,
    key: str,
    decide_on: Callable[[PaymentState | None], Decision],
    received: datetime,
    entry: dict[str, Any],
) -> tuple[Decision, str | None]:
    """Decide, compare-and-set; on a conflict, decide again on the state the conflict reports.

    `entry` goes to the payment's history with what was decided, in the same write; a decision that
    writes no state writes a notification's entry alone, still at the version it was decided on; an
    expiry that changes nothing leaves no entry (the history lists notifications and events).

    The first decision assumes a payment never seen (most notifications are a payment's first); a
    wrong guess costs nothing but the CPU of that decision, since the conflict brings the real state.
    """
    state: PaymentState | None = None
    version = "0"
    order = received.timestamp()
    for _ in range(MAX_ATTEMPTS):
        decision = decide_on(state)
        if decision.state is None and (state is None or entry["k"] != "n"):
            return decision, None  # a payment never seen, or an expiry that is no news: nothing to write
        try:
            return decision, await apply_decision(redis, settings, version, decision, order, entry, key)
        except VersionConflict as conflict:
            state, version = conflict.state, conflict.version
    raise StateContention(f"payment {key} changed under {MAX_ATTEMPTS} attempts in a row")


def _outcome(key: str, decision: Decision, stream_id: str | None) -> Outcome:
    event = decision.event_data
    phase = decision.state.phase if decision.state else None
    return Outcome(
        result=decision.result,
        payment_key=key,
        event_type=event["type"] if event else None,
        event_id=event["event_id"] if event else None,
        stream_id=stream_id,
        phase=phase,
        flags=decision.flags,
        reason=decision.reason,
    )


async def _payment_of(redis: Redis, note: Notification) -> str:
    """The payment a notification belongs to: its own key, or for a refund the paid payment of its order.

    A refund made in the Back Office may carry its own trans_id (from the platform's reserved range) and
    date; the platform's guidance is to attach it to the order (`vads_order_id`). A refund whose own key
    holds a payment stays with it, even when the order has other payments. Only refunds pay these reads.
    """
    own = payment_key(note.site_id, note.ctx_mode, note.trans_date, note.trans_id)
    if note.operation_type != "CREDIT" or note.order_id is None:
        return own
    if not platform_reserved(note.trans_id) and await redis.exists(PAYMENT_PREFIX + own):
        return own
    target = await redis.get(refund_target_key(note.site_id, note.ctx_mode, note.order_id))
    if target is None:
        return own
    return target.decode() if isinstance(target, bytes) else str(target)


async def handle_notification(redis: Redis, settings: Settings, queued: QueuedNotification) -> Outcome:
    """Authenticate, decide and apply one queued notification, exactly once (see the module docstring)."""
    note = authenticate(settings, queued)
    key = await _payment_of(redis, note)
    decision, stream_id = await _apply_until_settled(
        redis,
        settings,
        key,
        lambda state: decide(state, note, queued.received_at, key),
        queued.received_at,
        notification_entry(queued),
    )
    outcome = _outcome(key, decision, stream_id)
    if outcome.phase == "pending" and outcome.published:
        await track_session(
            redis,
            PendingPayment(
                shop_id=note.site_id,
                mode=note.ctx_mode,
                trans_id=note.trans_id,
                trans_date=note.trans_date,
                order_id=note.order_id,
                amount=note.amount or 0,
                deadline=session_deadline(note.trans_date, settings),
                registered_by="notification",
            ),
        )
    _log(outcome)
    return outcome


async def publish_session_expiry(
    redis: Redis, settings: Settings, pending: PendingPayment, now: datetime
) -> Outcome:
    """Publish `payment.expired` for a silent session, once, unless the payment got past pending."""
    decision, stream_id = await _apply_until_settled(
        redis, settings, pending.key, lambda state: decide_expiry(state, pending, now), now, expiry_entry(now)
    )
    outcome = _outcome(pending.key, decision, stream_id)
    _log(outcome)
    return outcome


def _log(outcome: Outcome) -> None:
    if outcome.result == "stale":
        log.warning(
            "notification ignored", result="stale", reason=outcome.reason, payment_key=outcome.payment_key
        )
    for flag in outcome.flags:
        log.warning("payment flagged", flag=flag, payment_key=outcome.payment_key, event_id=outcome.event_id)
