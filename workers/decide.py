"""What one notification (or a detected expiry) does to a payment: the new state and its event. No I/O.

`decide(state, note, received_at)` and `decide_expiry(state, pending, now)` return a `Decision`;
`workers.apply` writes it atomically. The state is the join of the transactions seen
(`workers.payment`), so any arrival order and any redelivery reach the same state; `what_changed` is the
one definition of a change, used for the dedupe (nothing new: duplicate or stale, nothing written) and
for the event alike (the derived outcome moved: its event type). The delivery source (`RETRY`, `BO`,
...) is metadata on the event, never a reason to accept or ignore a status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from schemas.event import EventType, PaymentEvent
from schemas.notification import Notification, payment_key
from schemas.session import PendingPayment
from workers.cascade import transactions_of
from workers.events import Trigger, build_event
from workers.payment import (
    Outcome,
    PaymentState,
    derive,
    is_behind,
    merge,
    outcome_of,
    pick,
)

Result = Literal["published", "duplicate", "stale"]
SESSION_TIMEOUT = "SESSION_TIMEOUT"


@dataclass(frozen=True)
class Decision:
    """The new state (None: nothing to write), the event to publish (if any) and why."""

    result: Result
    state: PaymentState | None
    event: PaymentEvent | None
    flags: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class Change:
    """What a new state is to the old one: whether to write it, and the event type it announces."""

    recorded: bool
    event_type: EventType | None
    reason: str
    backwards: bool = False


def what_changed(old: PaymentState | None, new: PaymentState) -> Change:
    """The one definition of a change: new facts are recorded; a moved outcome is an event.

    An outcome that would go backwards (not reachable by joins, kept as a guard) is recorded without an
    event. The event type is `event_type(outcome)`, decided apart from the phase machine.
    """
    if old is not None and old.facts() == new.facts():
        return Change(False, None, "nothing new for this payment")
    after = outcome_of(new)
    before = outcome_of(old) if old is not None else None
    if after.phase is None:
        return Change(True, None, "recorded; the payment itself is not known yet")
    if before is not None and _visible(before) == _visible(after):
        return Change(True, None, "recorded; the payment's outcome is unchanged")
    if before is not None and after.progress < before.progress:
        return Change(True, None, "recorded; would move the payment backwards", backwards=True)
    return Change(True, event_type(after), "")


def event_type(outcome: Outcome) -> EventType:
    """The type of the event announcing an outcome: a function of the outcome alone, never of the path.

    So the last event of a payment is the same whatever order its notifications came in; a new kind of
    fact (a capture date moved, say) becomes a new type here without touching the phase derivation.
    """
    return cast(EventType, f"payment.{outcome.phase}")  # a phase is one of the types' suffixes


def _visible(outcome: Outcome) -> tuple[object, ...]:
    return (outcome.phase, outcome.paid_amount, outcome.cvco_amount, outcome.refunded_amount, outcome.flags)


def settle(
    old: PaymentState | None, facts: PaymentState, trigger: Trigger, *, behind: bool = False
) -> Decision:
    """The decision for a state that now knows `facts`; `behind`: the notification was an older copy."""
    new = derive(facts)
    change = what_changed(old, new)
    if change.event_type is None:
        result: Result = "stale" if behind or change.backwards else "duplicate"
        return Decision(result, new.as_kept() if change.recorded else None, None, reason=change.reason)
    event = build_event(new, trigger, change.event_type)
    return Decision("published", new.as_kept(), event, tuple(new.flags))


_PRODUCT = re.compile(r"vads_product_([a-z_]+?)(\d+)")
_ECHOED_PREFIXES = ("vads_cust_", "vads_ship_to_", "vads_ext_info_", "vads_product_")


def echoed_data(
    fields: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str], list[dict[str, str]], dict[str, str]]:
    """Customer, shipping, cart lines (`vads_product_<attr>N`, in index order) and ext_info, each keyed by
    what follows its prefix, in one pass over the fields."""
    customer: dict[str, str] = {}
    shipping: dict[str, str] = {}
    ext_info: dict[str, str] = {}
    lines: dict[int, dict[str, str]] = {}
    for name, value in fields.items():
        if not name.startswith(_ECHOED_PREFIXES):
            continue
        if name.startswith("vads_cust_"):
            customer[name[10:]] = value
        elif name.startswith("vads_ship_to_"):
            shipping[name[13:]] = value
        elif name.startswith("vads_ext_info_"):
            ext_info[name[14:]] = value
        elif name.startswith("vads_product_"):
            match = _PRODUCT.fullmatch(name)
            if match:
                lines.setdefault(int(match.group(2)), {})[match.group(1)] = value
    return customer, shipping, [lines[index] for index in sorted(lines)], ext_info


def _new_state(note: Notification, key: str) -> PaymentState:
    return PaymentState(
        key=key,
        shop_id=note.site_id,
        mode=note.ctx_mode,
        trans_id=note.trans_id,
        order_id=None,
        amount=None,
        currency=None,
        cascade=False,
    )


def _least(old: Any, new: Any) -> Any:
    """The join of an optional value seen twice: the same whichever came first."""
    return new if old is None else old if new is None else min(old, new)


def _absorb(base: PaymentState, note: Notification, own: bool) -> dict[str, Any]:
    """The payment-level facts of a notification joined with the state's (transactions apart).

    `own`: the notification carries the payment's own trans_id (not a refund attached by order id).
    """
    customer, shipping, products, ext_info = echoed_data(note.fields)
    debit = note.operation_type != "CREDIT"
    amount = base.amount
    if debit and note.amount is not None:
        amount = note.amount if amount is None else max(amount, note.amount)
    return {
        "trans_id": min(base.trans_id, note.trans_id) if own else base.trans_id,
        "order_id": _least(base.order_id, note.order_id),
        "amount": amount,
        "currency": _least(base.currency, note.currency),
        "cascade": base.cascade or note.is_cascade,
        "customer": pick(base.customer, customer),
        "shipping": pick(base.shipping, shipping),
        "products": pick(base.products, products),
        "ext_info": pick(base.ext_info, ext_info),
    }


def decide(
    state: PaymentState | None, note: Notification, received_at: datetime, key: str | None = None
) -> Decision:
    """Apply one notification to a payment's state; raises `PermanentError`s for malformed content.

    `key` is the payment the notification belongs to when it is not its own (a refund with its own
    trans_id, attached by order id).
    """
    incoming = transactions_of(note)
    own = payment_key(note.site_id, note.ctx_mode, note.trans_date, note.trans_id)
    base = state or _new_state(note, key or own)
    behind = any(
        is_behind((base.refunds if tx.operation_type == "CREDIT" else base.legs).get(tx.slot), tx)
        for tx in incoming
    )
    facts = base.model_copy(update={**_absorb(base, note, base.key == own), **merge(base, incoming)})
    trigger = Trigger(
        trans_id=note.trans_id,
        trans_uuid=note.trans_uuid,
        status=note.trans_status,
        auth_result=note.auth_result,
        source=note.url_check_src,
        operation_type=note.operation_type,
        received_at=received_at,
    )
    return settle(state, facts, trigger, behind=behind)


def decide_expiry(state: PaymentState | None, pending: PendingPayment, now: datetime) -> Decision:
    """A session that ended without a conclusive notification: expired, unless the payment got further.

    Only a payment cvco-ipn has never heard of, or one still pending (a cascade with a leg authorised and
    another pending included: flagged `expired_authorised`), expires; anything else is left alone.
    """
    if state is not None and state.session_expired:
        return Decision("duplicate", None, None, reason="session expiry already applied")
    if state is not None and state.phase not in (None, "pending"):
        return Decision("stale", None, None, reason=f"payment already {state.phase}")
    base = state or PaymentState(
        key=pending.key,
        shop_id=pending.shop_id,
        mode=pending.mode,
        trans_id=pending.trans_id,
        order_id=pending.order_id,
        amount=pending.amount,
        currency=978,
        cascade=False,
    )
    facts = base.model_copy(
        update={
            "session_expired": True,
            "amount": base.amount if base.amount is not None else pending.amount,
        }
    )
    trigger = Trigger(
        trans_id=base.trans_id,
        trans_uuid=None,
        status="EXPIRED",
        auth_result=None,
        source=SESSION_TIMEOUT,
        operation_type=None,
        received_at=now,
    )
    return settle(state, facts, trigger)
