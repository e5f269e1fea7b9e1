"""The notification job, and the exactly-once path a detected session expiry shares with it.

Entry points for the rest of the project:

- `process_notification(ctx, payload)`: the arq job (re-validate the queued JSON, `handle_notification`,
  one summary line).
- `handle_notification(redis, settings, queued) -> JobOutcome`: authenticate, decide, apply.
  Raises a `PermanentError` for what retrying cannot fix (`core.signature.NotAuthentic` against this
  worker's settings, `InvalidNotification`, malformed cascade, unknown status); lets Redis
  errors (transient) and `StateContention` (a `TimeoutError`) propagate so the caller retries.
  A Back Office refund seen before its payment is paid comes back as `waiting` (see `_payment_of`).
- `publish_session_expiry(redis, settings, pending, now) -> JobOutcome`: a `payment.expired` event (status
  `EXPIRED`, source `SESSION_TIMEOUT`, trans_uuid null) unless the payment got past pending; two workers
  or a restart publish it once.
- `workers.apply.load_payment(redis, key)`: the stored `PaymentState` (`.phase`, amounts, `.flags`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import structlog
from arq.connections import ArqRedis
from redis.asyncio import Redis

from core.keys import PAYMENT_PREFIX
from core.sessions import track_session
from core.signature import authenticate
from schemas.job import PROCESS_NOTIFICATION, QueuedNotification
from schemas.notification import Notification, parse_notification, payment_key, platform_reserved
from schemas.session import PendingPayment, session_deadline
from schemas.settings import Settings
from workers.apply import StateWriter, VersionConflict, apply_decision
from workers.context import WorkerContext
from workers.decide import Decision, Result, decide, decide_expiry
from workers.history import expiry_entry, notification_entry
from workers.lookup import paid_payment_of
from workers.payment import PaymentState

log = structlog.get_logger("cvco.worker")
MAX_ATTEMPTS = 50
WAIT_SUFFIX = ":wait-"
"""A waiting refund's job id: the notification's job id, this, and when it was queued again."""


class StateContention(TimeoutError):
    """Other workers kept changing the payment: retry later, like a timeout (a transient error)."""


@dataclass(frozen=True)
class JobOutcome:
    """What a notification or an expiry did: `result` is published, duplicate or stale (ignored), or
    waiting (a refund whose payment is not known yet: queued again, see `_payment_of`).

    `flags` (only when published) name what the alerts watch (`workers.payment`'s flags).
    """

    result: Result | Literal["waiting"]
    payment_key: str
    event_type: str | None = None
    event_id: str | None = None
    phase: str | None = None
    flags: tuple[str, ...] = ()
    reason: str = ""

    @property
    def published(self) -> bool:
        return self.result == "published"


async def _apply_until_settled(
    writer: StateWriter,
    key: str,
    decide_on: Callable[[PaymentState | None], Decision],
    received: datetime,
    entry: dict[str, Any],
) -> Decision:
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
        if decision.state is None and (state is None or "k" in entry):  # "k": an expiry
            return decision  # a payment never seen, or an expiry that is no news: nothing to write
        try:
            await apply_decision(writer, version, decision, order, entry, key, current=state)
            return decision
        except VersionConflict as conflict:
            state, version = conflict.state, conflict.version
    raise StateContention(f"payment {key} changed under {MAX_ATTEMPTS} attempts in a row")


def _outcome(key: str, decision: Decision) -> JobOutcome:
    event = decision.event
    phase = decision.state.phase if decision.state else None
    return JobOutcome(
        result=decision.result,
        payment_key=key,
        event_type=event.type if event else None,
        event_id=event.event_id if event else None,
        phase=phase,
        flags=decision.flags,
        reason=decision.reason,
    )


async def _payment_of(redis: Redis, note: Notification) -> str | None:
    """The payment a notification belongs to: its own key, or for a refund the paid payment of its order;
    None for a Back Office refund whose order has no paid payment yet.

    A refund made in the Back Office carries its own trans_id (from the platform's reserved range) and
    date; the platform's guidance is to attach it to the order (`vads_order_id`). A refund whose own key
    holds a payment stays with it, even when the order has other payments. Only refunds pay these reads.
    """
    own = payment_key(note.site_id, note.ctx_mode, note.trans_date, note.trans_id)
    if note.operation_type != "CREDIT" or note.order_id is None:
        return own
    reserved = platform_reserved(note.trans_id)
    if not reserved and await redis.exists(PAYMENT_PREFIX + own):
        return own
    target = await paid_payment_of(redis, note.site_id, note.ctx_mode, note.order_id)
    if target is None:
        return None if reserved else own
    return target


async def handle_notification(
    redis: Redis, settings: Settings, queued: QueuedNotification, writer: StateWriter | None = None
) -> JobOutcome:
    """Authenticate, decide and apply one queued notification, exactly once (see the module docstring).

    `writer`: the worker's, shared by its jobs so their writes go together; by default one of its own.
    """
    authenticate(queued.fields, settings)  # what the receiver checked, against this worker's own settings
    note = parse_notification(queued.fields)
    key = await _payment_of(redis, note)
    if key is None:
        own = payment_key(note.site_id, note.ctx_mode, note.trans_date, note.trans_id)
        if datetime.now(UTC) - queued.received_at < timedelta(seconds=settings.refund_wait_s):
            # its payment's notifications may still be on their way (the platform retries for an hour)
            return JobOutcome(result="waiting", payment_key=own)
        key = own  # past the wait: published on its own, flagged refund_unattached and alerted
    decision = await _apply_until_settled(
        writer or StateWriter.for_settings(redis, settings),
        key,
        lambda state: decide(state, note, queued.received_at, key),
        queued.received_at,
        notification_entry(queued),
    )
    outcome = _outcome(key, decision)
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
) -> JobOutcome:
    """Publish `payment.expired` for a silent session, once, unless the payment got past pending."""
    decision = await _apply_until_settled(
        StateWriter.for_settings(redis, settings),
        pending.key,
        lambda state: decide_expiry(state, pending, now),
        now,
        expiry_entry(now),
    )
    outcome = _outcome(pending.key, decision)
    _log(outcome)
    return outcome


def _log(outcome: JobOutcome) -> None:
    if outcome.result == "stale":
        log.warning(
            "notification ignored", result="stale", reason=outcome.reason, payment_key=outcome.payment_key
        )
    for flag in outcome.flags:
        log.warning("payment flagged", flag=flag, payment_key=outcome.payment_key, event_id=outcome.event_id)


async def process_notification(ctx: WorkerContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The arq job (registered by workers/worker.py): re-validate the queued JSON, `handle_notification`.

    Returns `{"result": "published"|"duplicate"|"stale", "payment_key": ..., "flags": [...]}`, which the
    alert hook reads instead of loading the payment again.

    One summary line per job; `trans_uuid`, `order_id` and `shop_id` are bound for every line it logs.
    """
    started = time.perf_counter()
    queued = QueuedNotification.model_validate(payload)
    fields = queued.fields
    structlog.contextvars.bind_contextvars(
        trans_uuid=fields.get("vads_trans_uuid"),
        order_id=fields.get("vads_order_id"),
        shop_id=fields.get("vads_site_id"),
    )
    try:
        outcome = await handle_notification(ctx["redis"], ctx["settings"], queued, ctx["state_writer"])
        if outcome.result == "waiting":
            await _look_again_later(ctx, payload)
    except Exception as e:
        log.warning(
            "job failed",
            error=f"{type(e).__name__}: {e}",
            job_try=ctx.get("job_try"),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        raise
    seconds = time.perf_counter() - started
    ctx["metrics"].count_job(outcome.result, seconds, outcome.event_type)
    log.info(
        "job done",
        result=outcome.result,
        event_type=outcome.event_type,
        event_id=outcome.event_id,
        phase=outcome.phase,
        flags=list(outcome.flags),
        ms=round(seconds * 1000, 1),
    )
    return {"result": outcome.result, "payment_key": outcome.payment_key, "flags": list(outcome.flags)}


async def _look_again_later(ctx: WorkerContext, payload: dict[str, Any]) -> None:
    """Queue a waiting refund again as a job of its own, `refund_retry_s` from now (its tries start afresh).

    The queue holds it meanwhile, as durable as any job; once its order has a paid payment it attaches
    to it, and once `refund_wait_s` has passed since it was received it is published unattached.
    """
    settings = ctx["settings"]
    base = str(ctx["job_id"]).split(WAIT_SUFFIX)[0]
    job_id = f"{base}{WAIT_SUFFIX}{time.time_ns()}"
    await cast(ArqRedis, ctx["redis"]).enqueue_job(  # the worker's redis is arq's ArqRedis
        PROCESS_NOTIFICATION,
        payload,
        _job_id=job_id,
        _queue_name=settings.queue_name,
        _defer_by=settings.refund_retry_s,
    )
    log.info("refund_waiting", job_id=job_id, retry_in_s=settings.refund_retry_s)
