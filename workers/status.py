"""The payment statuses of the form API (form-api.md §2), their classes and the event each one means.

Pure data and functions: the state machine (`workers.decide`) and the cascade reconciler build on them.
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
"""Where a payment stands; `payment.<phase>` is the type of the event that announces it."""

ACCEPTED_STATUSES = frozenset({"AUTHORISED", "CAPTURED", "ACCEPTED"})
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

FINAL_PHASES: frozenset[Phase] = frozenset(
    {"captured", "refunded", "cancelled", "refused", "abandoned", "expired"}
)
"""Phases a payment leaves only by an explicit later operation (cancel, refund, capture)."""

EXPIRED_AUTH_CODES = frozenset({"1015"})
ABANDONED_AUTH_CODES = frozenset({"1012", "1013", "1020"})


def status_class(status: str) -> StatusClass | None:
    """The class of a `vads_trans_status` (accepted / pending / failed / cancelled); None if unknown."""
    if status in ACCEPTED_STATUSES:
        return "accepted"
    if status in PENDING_STATUSES:
        return "pending"
    if status in FAILED_STATUSES:
        return "failed"
    if status in CANCELLED_STATUSES:
        return "cancelled"
    return None


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


def status_rank(status: str) -> int:
    """How far along a transaction is; a transaction never moves to a lower rank.

    pending 0 < authorised/accepted 1 < captured and every failed or cancelled status 2.
    """
    if status in PENDING_STATUSES:
        return 0
    if status in ("AUTHORISED", "ACCEPTED"):
        return 1
    return 2
