"""The payment state machine: what one notification (or a detected expiry) does to a payment. No I/O.

`decide(state, note, received_at)` and `decide_expiry(state, pending, now)` return a `Decision`: the new
state and, when the payment moved, the one event announcing it. `workers.apply` writes it atomically.
Duplicates are told by a fingerprint of the business content (trans_uuid, status, operation type,
amount, leg states), not by trans_uuid alone: a resend from the Back Office is a duplicate, a capture of
the same transaction is not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.event import PaymentEvent
from schemas.notification import Notification, payment_key
from schemas.session import PendingPayment
from workers.cascade import (
    Transaction,
    cascade_transactions,
    merge_transaction,
    reconcile,
    single_transaction,
)
from workers.events import Trigger, build_event
from workers.status import FINAL_PHASES, Phase

Result = Literal["published", "duplicate", "stale"]
SESSION_TIMEOUT = "SESSION_TIMEOUT"

# Outcome flags, for the alerts: seed rules broken (kept, not dropped) and states worth a human look.
CASCADE_PARTIAL = "cascade_partial"
ACCEPTED_AFTER_EXPIRY = "accepted_after_expiry"
NON_EUR_CVCO = "non_eur_cvco"
PARTIAL_REFUND = "partial_refund"
PARTIAL_CANCEL = "partial_cancel"


class PaymentState(BaseModel):
    """Everything cvco-ipn knows of one payment, stored as JSON under `cvco:payment:<payment key>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    shop_id: str
    mode: Literal["TEST", "PRODUCTION"]
    trans_id: str
    order_id: str | None
    amount: int | None
    currency: int | None
    cascade: bool
    legs: dict[str, Transaction] = Field(default_factory=dict)
    refunds: dict[str, Transaction] = Field(default_factory=dict)
    session_expired: bool = False
    phase: Phase | None = None
    paid_amount: int = 0
    cvco_amount: int = 0
    refunded_amount: int = 0
    seen: list[str] = Field(default_factory=list, description="fingerprints already applied, sorted")
    customer: dict[str, str] = Field(default_factory=dict)
    shipping: dict[str, str] = Field(default_factory=dict)
    products: list[dict[str, str]] = Field(default_factory=list)
    ext_info: dict[str, str] = Field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        """Captured, refunded, cancelled, refused, abandoned or expired by the platform.

        A session expiry cvco-ipn detected itself is not final: a later real notification still applies.
        """
        return self.phase in FINAL_PHASES and not (self.session_expired and self.phase == "expired")

    def business_fingerprint(self) -> str:
        """The state consumers see (phase and transaction statuses): same fingerprint, same event id."""
        content = [
            self.phase,
            self.session_expired,
            sorted((slot, tx.status) for slot, tx in self.legs.items()),
            sorted((slot, tx.status) for slot, tx in self.refunds.items()),
        ]
        return hashlib.sha256(orjson.dumps(content)).hexdigest()


@dataclass(frozen=True)
class Decision:
    """The new state (None: nothing to write), the event to publish (if any, as JSON data) and why."""

    result: Result
    state: PaymentState | None
    event_data: dict[str, Any] | None
    flags: tuple[str, ...] = ()
    reason: str = ""

    @cached_property
    def event(self) -> PaymentEvent | None:
        """The event as the typed, validated model (the worker itself publishes `event_data` as is)."""
        return None if self.event_data is None else PaymentEvent.model_validate(self.event_data)


def notification_fingerprint(note: Notification) -> str:
    """The business content of a notification; two notifications with it equal are one for the payment."""
    legs = [] if note.payment_seq is None else note.payment_seq.transactions
    content = [
        note.trans_uuid,
        note.trans_status,
        note.operation_type,
        note.effective_amount if note.effective_amount is not None else note.amount,
        sorted((leg.trans_uuid.lower(), leg.trans_status, leg.amount) for leg in legs),
    ]
    return hashlib.sha256(orjson.dumps(content)).hexdigest()


_PRODUCT = re.compile(r"vads_product_([a-z_]+?)(\d+)")
_ECHOED_PREFIXES = ("vads_cust_", "vads_ship_to_", "vads_ext_info_", "vads_product_")


def echoed_data(
    fields: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str], list[dict[str, str]], dict[str, str]]:
    """Customer, shipping, cart lines and ext_info, in one pass over the fields.

    The same as `note.group("cust_")`, `note.group("ship_to_")`, `note.products()` and
    `note.group("ext_info_")`, which each walk every field.
    """
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


def _new_state(note: Notification) -> PaymentState:
    return PaymentState(
        key=payment_key(note.site_id, note.ctx_mode, note.trans_date, note.trans_id),
        shop_id=note.site_id,
        mode=note.ctx_mode,
        trans_id=note.trans_id,
        order_id=note.order_id,
        amount=None,
        currency=note.currency,
        cascade=note.is_cascade,
    )


def _checks(note: Notification, base: PaymentState, incoming: list[Transaction]) -> list[str]:
    """Seed rules (§3, §12) broken by this notification: flagged and logged, never dropped."""
    brands = {tx.card_brand for tx in incoming} | {tx.card_brand for tx in base.legs.values()}
    if "CVCO" not in brands and note.fields.get("vads_payment_cards") != "CVCO":
        return []
    flags = []
    if note.currency is not None and note.currency != 978:
        flags.append(NON_EUR_CVCO)
    for tx in incoming:
        if tx.operation_type == "CREDIT":
            original = [leg for leg in base.legs.values() if leg.card_brand == (tx.card_brand or "CVCO")]
            if original and tx.amount not in {leg.amount for leg in original}:
                flags.append(PARTIAL_REFUND)
        elif note.url_check_src == "MERCH_BO":
            known = base.legs.get(tx.slot)
            if known is not None and known.card_brand == "CVCO" and tx.amount != known.amount:
                flags.append(PARTIAL_CANCEL)
    return flags


def decide(state: PaymentState | None, note: Notification, received_at: datetime) -> Decision:
    """Apply one notification to a payment's state; raises `PermanentError`s for malformed content."""
    fingerprint = notification_fingerprint(note)
    incoming = cascade_transactions(note) if note.is_cascade else [single_transaction(note)]
    base = state or _new_state(note)
    legs, refunds = dict(base.legs), dict(base.refunds)
    stale = False
    for tx in incoming:
        target = refunds if tx.operation_type == "CREDIT" else legs
        merged, was_stale = merge_transaction(target.get(tx.slot), tx)
        target[tx.slot] = merged
        stale = stale or was_stale
    if fingerprint in base.seen:
        # already applied once; when the payment has moved on since, this copy is also a stale one
        if stale:
            return Decision("stale", None, None, reason="already applied, and the payment has moved on")
        return Decision("duplicate", None, None, reason="same notification content already applied")
    is_debit = note.operation_type != "CREDIT"
    amount = base.amount if base.amount is not None or not is_debit else note.amount
    totals = reconcile(legs.values(), refunds.values(), amount, cascade=base.cascade or note.is_cascade)
    phase = totals.phase
    if base.session_expired and phase in (None, "pending"):
        phase = "expired"
    customer, shipping, products, ext_info = base.customer, base.shipping, base.products, base.ext_info
    if not (customer and shipping and products and ext_info):
        echoed = echoed_data(note.fields)
        customer, shipping = customer or echoed[0], shipping or echoed[1]
        products, ext_info = products or echoed[2], ext_info or echoed[3]
    new = base.model_copy(
        update={
            "legs": legs,
            "refunds": refunds,
            "phase": phase,
            "amount": amount,
            "order_id": base.order_id or note.order_id,
            "currency": base.currency if base.currency is not None else note.currency,
            "cascade": base.cascade or note.is_cascade,
            "paid_amount": totals.paid_amount,
            "cvco_amount": totals.cvco_amount,
            "refunded_amount": totals.refunded_amount,
            "seen": sorted({*base.seen, fingerprint}),
            "customer": customer,
            "shipping": shipping,
            "products": products,
            "ext_info": ext_info,
        }
    )
    new_fingerprint: str | None = None
    if state is None or new.phase != base.phase or new.refunded_amount != base.refunded_amount:
        moved = True
    elif new.phase in FINAL_PHASES:
        moved = False
    else:
        new_fingerprint = new.business_fingerprint()
        moved = new_fingerprint != base.business_fingerprint()
    if not moved:
        result: Result = "stale" if stale else "duplicate"
        reason = "would move the payment backwards" if stale else "payment state unchanged"
        return Decision(result, new, None, reason=reason)
    flags = _checks(note, base, incoming)
    if new.phase == "partial":
        flags.append(CASCADE_PARTIAL)
    if base.session_expired and new.phase in ("accepted", "captured", "partial"):
        flags.append(ACCEPTED_AFTER_EXPIRY)
    trigger = Trigger(
        trans_uuid=note.trans_uuid,
        status=note.trans_status,
        auth_result=note.auth_result,
        source=note.url_check_src,
        operation_type=note.operation_type,
        received_at=received_at,
    )
    event = build_event(new, trigger, flags, new_fingerprint)
    return Decision("published", new, event, tuple(flags))


def decide_expiry(state: PaymentState | None, pending: PendingPayment, now: datetime) -> Decision:
    """A session that ended without a conclusive notification: expired, unless the payment got further.

    Only a payment cvco-ipn has never heard of, or one still pending, expires; anything accepted, partial
    or final is left alone (result "stale").
    """
    if state is not None and SESSION_TIMEOUT in state.seen:
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
    new = base.model_copy(
        update={
            "session_expired": True,
            "phase": "expired",
            "amount": base.amount if base.amount is not None else pending.amount,
            "seen": sorted({*base.seen, SESSION_TIMEOUT}),
        }
    )
    trigger = Trigger(
        trans_uuid=None,
        status="EXPIRED",
        auth_result=None,
        source=SESSION_TIMEOUT,
        operation_type=None,
        received_at=now,
    )
    return Decision("published", new, build_event(new, trigger, []))
