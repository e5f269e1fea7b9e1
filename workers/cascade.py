"""The transactions one notification describes: its own, or the legs of a cascade (seed guide §11.2).

A cascade (`vads_card_brand=MULTI`, `vads_sequence_number=0`) is paid partly by Chèque-Vacances Connect
and the rest by another means; each leg is a transaction of its own, listed in `vads_payment_seq`. Some
platform versions give legs without `trans_uuid`: such a leg is filed by sequence number and trans_id,
as the platform's plugins do.
"""

from __future__ import annotations

from schemas.errors import PermanentError
from schemas.notification import Notification
from workers.payment import Transaction
from workers.status import status_class


class MalformedCascade(PermanentError):
    """A `vads_payment_seq` that parses but cannot describe one payment (duplicate legs, foreign trans_id)."""


class UnknownStatus(PermanentError):
    """A `vads_trans_status` outside the form API's list: parked until someone says what it means."""


def _known(status: str, where: str) -> str:
    if status_class(status) is None:
        raise UnknownStatus(f"{where}: unknown transaction status {status!r}")
    return status


def transactions_of(note: Notification) -> list[Transaction]:
    """The transactions of a notification, checked; what cannot belong to one payment is permanent."""
    return cascade_transactions(note) if note.is_cascade else [single_transaction(note)]


def cascade_transactions(note: Notification) -> list[Transaction]:
    """The legs of a cascade notification; legs that cannot be this payment's are a `MalformedCascade`."""
    seq = note.payment_seq
    if seq is None:
        raise MalformedCascade("vads_payment_seq: a cascade (MULTI, sequence 0) must list its transactions")
    if seq.trans_id.lower() != note.trans_id.lower():
        raise MalformedCascade(f"vads_payment_seq.trans_id {seq.trans_id!r} is not vads_trans_id")
    numbers = [leg.sequence_number for leg in seq.transactions]
    if len(set(numbers)) != len(numbers):
        raise MalformedCascade(f"vads_payment_seq: duplicate sequence numbers {sorted(numbers)}")
    uuids = [leg.trans_uuid.lower() for leg in seq.transactions if leg.trans_uuid]
    if len(set(uuids)) != len(uuids):
        raise MalformedCascade("vads_payment_seq: two transactions share one trans_uuid")
    paid = sum(leg.amount for leg in seq.transactions if status_class(leg.trans_status) == "accepted")
    if note.amount is not None and paid > note.amount:
        raise MalformedCascade(
            f"vads_payment_seq: accepted legs add up to {paid}, over vads_amount {note.amount}"
        )
    legs = []
    for leg in seq.transactions:
        if leg.trans_id.lower() != note.trans_id.lower():
            raise MalformedCascade(
                f"vads_payment_seq: leg {leg.sequence_number} has trans_id {leg.trans_id!r}"
            )
        legs.append(
            Transaction(
                trans_uuid=leg.trans_uuid.lower() if leg.trans_uuid else None,
                trans_id=leg.trans_id,
                sequence_number=leg.sequence_number,
                card_brand=leg.card_brand,
                amount=leg.amount,
                status=_known(leg.trans_status, f"vads_payment_seq leg {leg.sequence_number}"),
                auth_result=leg.auth_result,
                operation_type=leg.operation_type,
                presentation_date=leg.presentation_date,
            )
        )
    return legs


def single_transaction(note: Notification) -> Transaction:
    """The one transaction of a non-cascade notification (a payment attempt, or a refund when CREDIT).

    `vads_sequence_number` counts the attempts; it is absent on a cancelled or abandoned payment (0 here:
    the transaction's other versions, filed under the same `trans_uuid`, know it).
    """
    amount = note.effective_amount if note.effective_amount is not None else note.amount
    presentation = note.presentation_date
    return Transaction(
        trans_uuid=note.trans_uuid,
        trans_id=note.trans_id,
        sequence_number=note.sequence_number or 0,
        card_brand=note.card_brand,
        amount=amount or 0,
        status=_known(note.trans_status, "vads_trans_status"),
        auth_result=note.auth_result,
        operation_type=note.operation_type or "DEBIT",
        presentation_date=presentation.isoformat() if presentation else None,
    )
