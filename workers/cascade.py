"""Cascade reconciliation: what the legs of a payment add up to (seed guide §11.2), pure functions.

A cascade (`vads_card_brand=MULTI`, `vads_sequence_number=0`) is paid partly by Chèque-Vacances Connect
and the rest by another means; each leg is a transaction of its own, listed in `vads_payment_seq`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from schemas.errors import PermanentError
from schemas.notification import Notification
from workers.status import Phase, status_class, status_rank, transaction_phase


class MalformedCascade(PermanentError):
    """A `vads_payment_seq` that parses but cannot describe one payment (duplicate legs, foreign trans_id)."""


class UnknownStatus(PermanentError):
    """A `vads_trans_status` outside the form API's list: parked until someone says what it means."""


class Transaction(BaseModel):
    """One transaction of a payment as last seen: a single payment's, a cascade leg, or a refund."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trans_uuid: str | None
    sequence_number: int
    card_brand: str | None
    amount: int
    status: str
    auth_result: str | None
    operation_type: str
    source: str | None

    @property
    def slot(self) -> str:
        """Where the payment state files it: by trans_uuid, or by sequence when the platform sent none."""
        return self.trans_uuid or f"seq{self.sequence_number}"


@dataclass(frozen=True)
class Totals:
    """What the transactions of a payment add up to."""

    phase: Phase | None
    paid_amount: int
    cvco_amount: int
    refunded_amount: int


# When nothing is paid and nothing pending, the most telling leg names the outcome.
_UNPAID_PRIORITY: tuple[Phase, ...] = ("cancelled", "refused", "expired", "abandoned")


def _known(status: str, where: str) -> str:
    if status_class(status) is None:
        raise UnknownStatus(f"{where}: unknown transaction status {status!r}")
    return status


def cascade_transactions(note: Notification) -> list[Transaction]:
    """The legs of a cascade notification, checked; a leg that cannot belong to this payment is permanent."""
    seq = note.payment_seq
    if seq is None:
        raise MalformedCascade("vads_payment_seq: a cascade (MULTI, sequence 0) must list its transactions")
    if seq.trans_id.lower() != note.trans_id.lower():
        raise MalformedCascade(f"vads_payment_seq.trans_id {seq.trans_id!r} is not vads_trans_id")
    numbers = [leg.sequence_number for leg in seq.transactions]
    if len(set(numbers)) != len(numbers):
        raise MalformedCascade(f"vads_payment_seq: duplicate sequence numbers {sorted(numbers)}")
    uuids = [leg.trans_uuid.lower() for leg in seq.transactions]
    if len(set(uuids)) != len(uuids):
        raise MalformedCascade("vads_payment_seq: two transactions share one trans_uuid")
    legs = []
    for leg in seq.transactions:
        if leg.trans_id.lower() != note.trans_id.lower():
            raise MalformedCascade(
                f"vads_payment_seq: leg {leg.sequence_number} has trans_id {leg.trans_id!r}"
            )
        legs.append(
            Transaction(
                trans_uuid=leg.trans_uuid.lower(),
                sequence_number=leg.sequence_number,
                card_brand=leg.card_brand,
                amount=leg.amount,
                status=_known(leg.trans_status, f"vads_payment_seq leg {leg.sequence_number}"),
                auth_result=leg.auth_result,
                operation_type=leg.operation_type,
                source=note.url_check_src,
            )
        )
    return legs


def single_transaction(note: Notification) -> Transaction:
    """The one transaction a non-cascade notification describes (a payment, or a refund when CREDIT)."""
    amount = note.effective_amount if note.effective_amount is not None else note.amount
    return Transaction(
        trans_uuid=note.trans_uuid,
        sequence_number=note.sequence_number or 1,
        card_brand=note.card_brand,
        amount=amount or 0,
        status=_known(note.trans_status, "vads_trans_status"),
        auth_result=note.auth_result,
        operation_type=note.operation_type or "DEBIT",
        source=note.url_check_src,
    )


def merge_transaction(old: Transaction | None, new: Transaction) -> tuple[Transaction, bool]:
    """The transaction after `new` is seen, and whether `new` was stale (would have moved it backwards).

    Only a `MERCH_BO` cancellation cancels an accepted transaction, an accepted one is never refused
    afterwards, and otherwise the status only moves to a higher `status_rank`.
    """
    if old is None:
        return new, False
    if old.trans_uuid is not None and old.sequence_number != new.sequence_number:
        raise MalformedCascade(
            f"transaction {new.trans_uuid} was leg {old.sequence_number}, now leg {new.sequence_number}"
        )
    if new.status == old.status:
        return old, False
    if status_class(old.status) == "accepted":
        merchant_cancel = new.status == "CANCELLED" and new.source == "MERCH_BO"
        if status_class(new.status) == "cancelled" and not merchant_cancel:
            return old, True
        if new.status == "REFUSED":
            return old, True
    if status_rank(new.status) > status_rank(old.status):
        return new, False
    return old, True


def reconcile(
    legs: Iterable[Transaction], refunds: Iterable[Transaction], amount: int | None, *, cascade: bool
) -> Totals:
    """The phase and amounts of a payment from its transactions (None phase: no transaction yet).

    A cascade is accepted when the accepted legs cover the amount, partial when some are paid, none is
    pending and the amount is not covered, pending while a leg is pending, else refused/abandoned/...
    """
    debits = list(legs)
    accepted = [leg for leg in debits if status_class(leg.status) == "accepted"]
    paid = sum(leg.amount for leg in accepted)
    cvco = sum(leg.amount for leg in accepted if leg.card_brand == "CVCO")
    refunded = sum(tx.amount for tx in refunds if status_class(tx.status) == "accepted")
    phase: Phase | None
    if refunded:
        phase = "refunded"
    elif not debits:
        phase = None
    elif not cascade:
        latest = max(debits, key=lambda leg: (status_rank(leg.status), leg.slot))
        phase = transaction_phase(latest.status, latest.auth_result)
    else:
        phase = _cascade_phase(debits, accepted, paid, amount)
    return Totals(phase, paid, cvco, refunded)


def _cascade_phase(
    legs: list[Transaction], accepted: list[Transaction], paid: int, amount: int | None
) -> Phase:
    phases = {transaction_phase(leg.status, leg.auth_result) for leg in legs}
    if "pending" in phases:
        return "pending"
    if accepted:
        if amount is not None and paid < amount:
            return "partial"
        return "captured" if all(leg.status == "CAPTURED" for leg in accepted) else "accepted"
    return next((phase for phase in _UNPAID_PRIORITY if phase in phases), "refused")
