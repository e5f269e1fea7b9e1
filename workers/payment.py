"""A payment as the set of its transactions, and what that set adds up to: pure functions, no I/O.

Each transaction (an attempt, a cascade leg, a refund) is filed under its own identity and only moves
forward in its own status order (`status.STATUS_RANK`); `merge` is a join (commutative, associative,
idempotent), so the state after any arrival order and any number of redeliveries of the same
notifications is the same. The outcome (phase, amounts, flags) is `derive`d from the transactions, never
updated step by step: the latest attempt decides, the legs of a cascade add up, refunds attach.

The state is stored as JSON for 120 days and read by workers of the previous and the next release
during a rolling deploy: models keep fields they do not know as they are (a newer release's, written back
untouched) and carry `version`, the newest format that wrote to the state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.errors import PermanentError
from schemas.notification import platform_reserved
from workers.status import STATUS_RANK, Phase, status_class, transaction_phase

STATE_VERSION = 2
"""1: the first release (fingerprints in `seen`); 2: transactions merged as a set, outcome derived."""

# Outcome flags: seed rules broken (kept, not dropped) and states worth a human look.
CASCADE_PARTIAL = "cascade_partial"
ACCEPTED_AFTER_EXPIRY = "accepted_after_expiry"
NON_EUR_CVCO = "non_eur_cvco"
PARTIAL_REFUND = "partial_refund"
PARTIAL_CANCEL = "partial_cancel"
EXPIRED_AUTHORISED = "expired_authorised"
REFUND_UNATTACHED = "refund_unattached"

_AUTHORISED_RANK = STATUS_RANK["AUTHORISED"]
_UNNUMBERED = 1 << 30
PAID_PHASES: frozenset[Phase] = frozenset({"accepted", "captured", "partial"})
_UNPAID_PRIORITY: tuple[Phase, ...] = ("cancelled", "refused", "expired", "abandoned")
_PHASE_RANK: dict[Phase | None, int] = {
    None: 0,
    "pending": 1,
    "refused": 2,
    "abandoned": 2,
    "expired": 2,
    "partial": 3,
    "accepted": 4,
    "cancelled": 5,
    "captured": 5,
    "refunded": 6,
}


class Transaction(BaseModel):
    """One transaction of a payment as far as it got: a single payment's attempt, a leg, or a refund."""

    model_config = ConfigDict(frozen=True, extra="allow")

    trans_uuid: str | None
    trans_id: str | None = None
    sequence_number: int
    card_brand: str | None
    amount: int
    original_amount: int | None = Field(None, description="highest amount seen: a lower one was cancelled")
    status: str
    auth_result: str | None
    operation_type: str
    presentation_date: str | None = None

    @property
    def slot(self) -> str:
        """Where the payment files it: `trans_uuid`, or sequence number and trans_id when the platform gave none."""
        return self.trans_uuid or f"{(self.trans_id or '').lower()}#{self.sequence_number}"

    @property
    def highest_amount(self) -> int:
        return max(self.amount, self.original_amount or 0)


def _order(tx: Transaction) -> tuple[int, str, int, str, str, str, str, str]:
    # further in the status order wins; at the same status the lower amount (an amount only goes down)
    return (
        STATUS_RANK.get(tx.status, -1),
        tx.status,
        -tx.amount,
        tx.presentation_date or "",
        tx.auth_result or "",
        tx.card_brand or "",
        tx.trans_id or "",
        tx.operation_type,
    )


class ConflictingTransaction(PermanentError):
    """One transaction (one trans_uuid) given two different sequence numbers: not one payment's."""


def merge_transaction(old: Transaction | None, new: Transaction) -> Transaction:
    """The join of two versions of one transaction: the one further along, knowing what both knew."""
    if old is None or old == new:
        return new
    if old.sequence_number and new.sequence_number and old.sequence_number != new.sequence_number:
        raise ConflictingTransaction(
            f"transaction {new.slot} was number {old.sequence_number}, now {new.sequence_number}"
        )
    winner, other = (new, old) if _order(new) > _order(old) else (old, new)
    sequence = max(old.sequence_number, new.sequence_number)
    highest = max(old.highest_amount, new.highest_amount)
    original = highest if highest != winner.amount else None
    unknown = {
        name: value
        for name, value in (other.model_extra or {}).items()
        if name not in (winner.model_extra or {})
    }
    if sequence == winner.sequence_number and original == winner.original_amount and not unknown:
        return winner
    # what a newer release knew of the transaction stays with it
    return winner.model_copy(update={"sequence_number": sequence, "original_amount": original, **unknown})


def is_behind(old: Transaction | None, new: Transaction) -> bool:
    """Whether `new` is an older version of a transaction already known further along (a stale copy)."""
    return old is not None and _order(new) < _order(old)


class PaymentState(BaseModel):
    """Everything cvco-ipn knows of one payment, stored in its record `cvco:payment:<payment key>`.

    `legs` and `refunds` are the facts; `phase`, the amounts and `flags` are `derive`d from them (again
    when read back: `workers.record` stores the facts).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    version: int = STATE_VERSION
    """Kept when higher: a newer release's fields may be in the state (kept as extra fields)."""
    key: str
    shop_id: str
    mode: str
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
    flags: list[str] = Field(default_factory=list)
    customer: dict[str, str] = Field(default_factory=dict)
    shipping: dict[str, str] = Field(default_factory=dict)
    products: list[dict[str, str]] = Field(default_factory=list)
    ext_info: dict[str, str] = Field(default_factory=dict)

    def facts(self) -> tuple[object, ...]:
        """What the payment knows, without what is derived from it: two states equal here are one.

        The echoed data is no fact of the payment: a redelivery that differs only there is a duplicate."""
        return (
            self.amount,
            self.order_id,
            self.currency,
            self.cascade,
            self.legs,
            self.refunds,
            self.session_expired,
        )

    def as_kept(self) -> PaymentState:
        """The state to store: the echoed data only while the payment is unsettled.

        Every notification echoes it, so a later event takes it from its own notification; only a
        detected expiry (no notification) announces a pending payment from the stored copy.
        """
        if self.phase in (None, "pending"):
            return self
        return self.model_copy(update={"customer": {}, "shipping": {}, "products": [], "ext_info": {}})


@dataclass(frozen=True)
class Outcome:
    """What a payment's transactions add up to; an event is published when this changes."""

    phase: Phase | None
    paid_amount: int
    cvco_amount: int
    refunded_amount: int
    flags: tuple[str, ...]
    progress: tuple[int, int, int]
    """(transactions known, phase rank, refunded amount): never lower in a later event."""


def outcome_of(state: PaymentState) -> Outcome:
    """The outcome stored in a state (as `derive` wrote it)."""
    return Outcome(
        state.phase,
        state.paid_amount,
        state.cvco_amount,
        state.refunded_amount,
        tuple(state.flags),
        _progress(state, state.phase),
    )


def _progress(state: PaymentState, phase: Phase | None) -> tuple[int, int, int]:
    # a new attempt (or leg) is forward even when it starts pending again after a refusal
    return (len(state.legs), _PHASE_RANK[phase], state.refunded_amount)


def derive(state: PaymentState) -> PaymentState:
    """The state with its phase, amounts and flags computed from its transactions."""
    debits = list(state.legs.values())
    accepted = [tx for tx in debits if status_class(tx.status) == "accepted"]
    paid = sum(tx.amount for tx in accepted)
    cvco = sum(tx.amount for tx in accepted if tx.card_brand == "CVCO")
    credits = [tx for tx in state.refunds.values() if status_class(tx.status) == "accepted"]
    refunded = sum(tx.amount for tx in credits)
    phase: Phase | None
    if not debits:
        phase = "refunded" if refunded and _unattachable(state) else None
    elif state.cascade:
        phase = _cascade_phase(debits, accepted, paid, state.amount)
    else:
        latest = _latest_attempt(debits)
        phase = transaction_phase(latest.status, latest.auth_result)
    if state.session_expired and phase in (None, "pending", "abandoned", "expired"):
        phase = "expired"  # the platform's late word on an ended session is the same fact
    if refunded and phase in PAID_PHASES:
        phase = "refunded"
    flags = _flags(state, phase, paid, debits, credits)
    return state.model_copy(
        update={
            "phase": phase,
            "paid_amount": paid,
            "cvco_amount": cvco,
            "refunded_amount": refunded,
            "flags": flags,
        }
    )


def _latest_attempt(debits: Iterable[Transaction]) -> Transaction:
    """The attempt that decides a single payment: one that got authorised (new attempts follow only a
    refusal), else the highest attempt number; a cancel or abandon without `vads_sequence_number`
    (the platform leaves it out there) counts as the latest.
    """
    return max(
        debits,
        key=lambda tx: (
            STATUS_RANK.get(tx.status, -1) >= _AUTHORISED_RANK,
            tx.sequence_number or _UNNUMBERED,
            STATUS_RANK.get(tx.status, -1),
            tx.slot,
        ),
    )


def announced_transactions(state: PaymentState) -> list[Transaction]:
    """The transactions an event lists: every leg of a cascade, or the deciding attempt; accepted refunds.

    Earlier attempts and pending or failed refunds stay in the state, not in the event: they do not make
    the outcome, so an event lists the same transactions whatever order they arrived in.
    """
    debits = list(state.legs.values())
    if state.cascade:
        listed = sorted(debits, key=lambda tx: (tx.sequence_number, tx.slot))
    else:
        listed = [_latest_attempt(debits)] if debits else []
    refunds = [tx for tx in state.refunds.values() if status_class(tx.status) == "accepted"]
    return listed + sorted(refunds, key=lambda tx: tx.slot)


def _unattachable(state: PaymentState) -> bool:
    """A refund alone that no payment will ever join: no order id to find it by, or the platform's own id."""
    return state.order_id is None or platform_reserved(state.trans_id)


def _cascade_phase(
    legs: list[Transaction], accepted: list[Transaction], paid: int, amount: int | None
) -> Phase:
    """Accepted when the paid legs cover the amount; pending while a leg is pending, or paid legs wait for
    a complement not listed yet; partial when some is paid and the rest failed."""
    phases = {transaction_phase(leg.status, leg.auth_result) for leg in legs}
    listed = sum(leg.highest_amount for leg in legs)
    if "pending" in phases or (accepted and amount is not None and listed < amount):
        return "pending"
    if accepted:
        if amount is not None and paid < amount:
            return "partial"
        return "captured" if all(leg.status == "CAPTURED" for leg in accepted) else "accepted"
    return next((phase for phase in _UNPAID_PRIORITY if phase in phases), "refused")


def _flags(
    state: PaymentState, phase: Phase | None, paid: int, debits: list[Transaction], credits: list[Transaction]
) -> list[str]:
    """Seed rules the payment breaks (§3, §12) and states worth a look, from its transactions alone."""
    flags = []
    brands = {tx.card_brand for tx in debits} | {tx.card_brand for tx in state.refunds.values()}
    if "CVCO" in brands:
        if state.currency is not None and state.currency != 978:
            flags.append(NON_EUR_CVCO)
        cvco_debits = {tx.highest_amount for tx in debits if tx.card_brand == "CVCO"}
        if any(tx.card_brand in ("CVCO", None) and tx.amount not in cvco_debits for tx in credits) and debits:
            flags.append(PARTIAL_REFUND)
        if any(tx.card_brand == "CVCO" and tx.amount < tx.highest_amount for tx in debits):
            flags.append(PARTIAL_CANCEL)
    if phase == "partial":
        flags.append(CASCADE_PARTIAL)
    if state.session_expired and phase in ("accepted", "captured", "partial", "refunded"):
        flags.append(ACCEPTED_AFTER_EXPIRY)
    if state.session_expired and phase == "expired" and paid:
        flags.append(EXPIRED_AUTHORISED)
    if not debits and credits and _unattachable(state):
        flags.append(REFUND_UNATTACHED)
    return flags


def merge(state: PaymentState, incoming: Iterable[Transaction]) -> dict[str, dict[str, Transaction]]:
    """The `legs` and `refunds` of the state once `incoming` transactions are known too."""
    legs, refunds = dict(state.legs), dict(state.refunds)
    for tx in incoming:
        target = refunds if tx.operation_type == "CREDIT" else legs
        target[tx.slot] = merge_transaction(target.get(tx.slot), tx)
    return {"legs": legs, "refunds": refunds}


Echoed = TypeVar("Echoed", dict[str, str], list[dict[str, str]])


def pick(old: Echoed, new: Echoed) -> Echoed:
    """The join of two copies of echoed data (customer, cart lines...): the same whichever came first."""
    if old == new or not new:
        return old
    if not old:
        return new
    return max(old, new, key=lambda data: orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
