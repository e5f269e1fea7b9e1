"""The payment statuses of the form API (form-api.md §2), their classes, order and meaning. Pure data.

Every status the platform documents for `vads_trans_status` (its reference page, its SDK's success list)
is classed here; an unknown one is parked by the parser of transactions, never guessed.
`PARTIALLY_AUTHORISED` is among the SDK's success statuses: the transaction is authorised for its
effective amount (the rest is paid by another means), so it counts as accepted for that amount.
"""

from __future__ import annotations

from typing import Literal

StatusClass = Literal["accepted", "pending", "failed", "cancelled"]
Phase = Literal[
    "accepted",
    "captured",
    "pending",
    "refused",
    "abandoned",
    "expired",
    "cancelled",
    "refunded",
    "partial",
]
"""Where a payment stands, derived from its transactions (`workers.payment.derive`)."""

ACCEPTED_STATUSES = frozenset({"AUTHORISED", "CAPTURED", "ACCEPTED", "PARTIALLY_AUTHORISED"})
PENDING_STATUSES = frozenset(
    {
        "AUTHORISED_TO_VALIDATE",
        "WAITING_AUTHORISATION",
        "WAITING_AUTHORISATION_TO_VALIDATE",
        "UNDER_VERIFICATION",
        "INITIAL",
        "PRE_AUTHORISED",
        "WAITING_FOR_PAYMENT",
        "CAPTURE_PENDING",
        "PENDING",
        "SUSPENDED",
        "REFUND_TO_RETRY",
    }
)
FAILED_STATUSES = frozenset({"REFUSED", "EXPIRED", "CAPTURE_FAILED"})
CANCELLED_STATUSES = frozenset({"CANCELLED", "ABANDONED", "NOT_CREATED"})
KNOWN_STATUSES = ACCEPTED_STATUSES | PENDING_STATUSES | FAILED_STATUSES | CANCELLED_STATUSES
_CLASSES: dict[str, StatusClass] = {
    **dict.fromkeys(ACCEPTED_STATUSES, "accepted"),
    **dict.fromkeys(PENDING_STATUSES, "pending"),
    **dict.fromkeys(FAILED_STATUSES, "failed"),
    **dict.fromkeys(CANCELLED_STATUSES, "cancelled"),
}

STATUS_RANK: dict[str, int] = {
    **dict.fromkeys(PENDING_STATUSES, 0),
    **dict.fromkeys(("REFUSED", "ABANDONED", "NOT_CREATED"), 1),
    **dict.fromkeys(("AUTHORISED", "ACCEPTED", "PARTIALLY_AUTHORISED"), 2),
    **dict.fromkeys(("CANCELLED", "EXPIRED", "CAPTURE_FAILED"), 3),
    "CAPTURED": 4,
}
"""The order one transaction moves in; it never goes to a lower rank, whichever source delivers what.

Pending, then refused/abandoned (never after an authorisation), then authorised, then what may end an
authorised transaction (cancel, expiry, failed capture), then captured: a capture is never undone.
"""

EXPIRED_AUTH_CODES = frozenset({"1015"})
ABANDONED_AUTH_CODES = frozenset({"1012", "1013", "1020"})


def status_class(status: str) -> StatusClass | None:
    """The class of a `vads_trans_status` (accepted / pending / failed / cancelled); None if unknown."""
    return _CLASSES.get(status)


def transaction_phase(status: str, auth_result: str | None) -> Phase:
    """What one DEBIT transaction in this status means for the payment; the status must be known.

    For a transaction that was not accepted, an authorisation code saying expired (1015) or abandoned
    (1012, 1013, 1020) wins over the status: the code tells why, the status only that it failed.
    """
    if status == "CAPTURED":
        return "captured"
    if status in ACCEPTED_STATUSES:
        return "accepted"
    if status in PENDING_STATUSES:
        return "pending"
    if auth_result in EXPIRED_AUTH_CODES or status == "EXPIRED":
        return "expired"
    if auth_result in ABANDONED_AUTH_CODES or status in ("ABANDONED", "NOT_CREATED"):
        return "abandoned"
    if status == "CANCELLED":
        return "cancelled"
    return "refused"
