"""The normalized event (contract.md) of a payment state: what consumers of the stream read.

Only echoed merchant data and masked platform data go in; never a key, signature, `vads_hash` or card number.

The event is a `schemas.event.PaymentEvent`, the one definition of its shape (and of its JSON Schema).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import orjson

from schemas.event import AuthResult, EventType, Leg, PaymentEvent
from schemas.settings import Mode
from workers.auth_codes import SESSION_EXPIRED, auth_message
from workers.payment import PaymentState, announced_transactions

# ISO 4217 numeric -> alpha, for the currencies the platform's shops commonly use; others stay numeric.
CURRENCIES = {
    36: "AUD",
    124: "CAD",
    156: "CNY",
    203: "CZK",
    208: "DKK",
    348: "HUF",
    392: "JPY",
    504: "MAD",
    578: "NOK",
    752: "SEK",
    756: "CHF",
    788: "TND",
    826: "GBP",
    840: "USD",
    946: "RON",
    949: "TRY",
    953: "XPF",
    978: "EUR",
    985: "PLN",
    986: "BRL",
}


def currency_alpha(numeric: int | None) -> str:
    """`978` -> `EUR`; an unlisted code stays as its number; none means EUR, the only CVCO currency."""
    if numeric is None:
        return "EUR"
    return CURRENCIES.get(numeric, str(numeric))


@dataclass(frozen=True)
class Trigger:
    """What made the payment move: a notification's own fields, or a detected session expiry."""

    trans_id: str
    trans_uuid: str | None
    status: str
    auth_result: str | None
    source: str | None
    operation_type: str | None
    received_at: datetime


def event_id(state: PaymentState) -> str:
    """Deterministic: the same outcome of the same payment (phase, amounts, flags) gives the same id.

    The outcome is a function of the set of notifications seen, so redeliveries and reorderings that
    reach it give this id again, and consumers deduplicate on it.
    """
    return outcome_event_id(
        state.key, state.phase, state.paid_amount, state.cvco_amount, state.refunded_amount, state.flags
    )


def outcome_event_id(
    key: str, phase: str | None, paid: int, cvco: int, refunded: int, flags: list[str]
) -> str:
    """`event_id` of payment `key` at this outcome (the history keeps the outcome, not the id)."""
    return hashlib.sha256(orjson.dumps([key, phase, paid, cvco, refunded, flags])).hexdigest()


def build_event(state: PaymentState, trigger: Trigger, event_type: EventType) -> PaymentEvent:
    """The event `event_type` announcing `state` (whose phase must be set), caused by `trigger`.

    `trans_id`, `trans_uuid`, `status`, `auth_result` and `source` are the trigger's, as received.
    """
    if state.phase is None:
        raise ValueError("a payment with no phase has nothing to announce")
    transactions = announced_transactions(state)
    legs = [
        Leg(
            sequence_number=tx.sequence_number,
            card_brand=tx.card_brand,
            amount=tx.amount,
            status=tx.status,
            auth_result=AuthResult(code=tx.auth_result, message=auth_message(tx.auth_result)),
            trans_uuid=tx.trans_uuid,
            operation_type=tx.operation_type,
        )
        for tx in transactions
    ]
    detected = trigger.source == "SESSION_TIMEOUT"
    message = SESSION_EXPIRED if detected else auth_message(trigger.auth_result)
    return PaymentEvent(
        event_id=event_id(state),
        type=event_type,
        shop_id=state.shop_id,
        mode=cast(Mode, state.mode),  # a PaymentState's mode is a notification's vads_ctx_mode, validated
        order_id=state.order_id,
        trans_id=trigger.trans_id,
        trans_uuid=trigger.trans_uuid,
        status=trigger.status,
        amount=state.amount or 0,
        currency=currency_alpha(state.currency),
        paid_amount=state.paid_amount,
        cvco_amount=state.cvco_amount,
        refunded_amount=state.refunded_amount,
        legs=legs,
        auth_result=AuthResult(code=trigger.auth_result, message=message),
        source=trigger.source,
        customer=state.customer,
        shipping=state.shipping,
        products=state.products,
        ext_info=state.ext_info,
        received_at=trigger.received_at.astimezone(UTC),
        payment_key=state.key,
        operation_type=trigger.operation_type,
        flags=state.flags,
    )
