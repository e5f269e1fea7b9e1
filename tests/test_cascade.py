"""Cascade reconciliation: legs merged across notifications, paid/CVCO amounts, partial, malformed."""

from __future__ import annotations

import json

import pytest

from schemas.notification import InvalidNotification, parse_notification
from schemas.session import PendingPayment
from tests.conftest import SHOP_ID
from tests.notifications import RECEIVED_AT, TRANS_ID, UUID_CB, UUID_PAY, cascade, event_of, leg, notification
from workers.cascade import MalformedCascade
from workers.decide import Decision, decide, decide_expiry
from workers.payment import CASCADE_PARTIAL, EXPIRED_AUTHORISED, ConflictingTransaction, PaymentState


def run(*notes: dict[str, str]) -> tuple[PaymentState | None, list[Decision]]:
    state: PaymentState | None = None
    decisions = []
    for fields in notes:
        decision = decide(state, parse_notification(fields), RECEIVED_AT)
        state = decision.state or state
        decisions.append(decision)
    return state, decisions


def test_cvco_plus_card_covering_the_amount_is_accepted_with_its_cvco_part() -> None:
    """CVCO 6000 + CB 4000 of 10000: accepted, paid 10000, cvco 6000, two legs in sequence order."""
    _, [decision] = run(
        cascade([leg(2, "CB", 4000, "AUTHORISED", UUID_CB), leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY)])
    )
    event = event_of(decision)
    assert event.type == "payment.accepted"
    assert (event.amount, event.paid_amount, event.cvco_amount) == (10000, 10000, 6000)
    assert [(item.sequence_number, item.card_brand) for item in event.legs] == [(1, "CVCO"), (2, "CB")]
    assert not decision.flags


def test_a_refused_complement_leaves_the_cascade_partial_and_flagged() -> None:
    """CVCO paid, the card complement refused, nothing pending: payment.partial with cascade_partial."""
    _, [decision] = run(
        cascade([leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 4000, "REFUSED", UUID_CB, "05")])
    )
    assert event_of(decision).type == "payment.partial"
    assert event_of(decision).paid_amount == 6000 and decision.flags == (CASCADE_PARTIAL,)


def test_a_pending_leg_keeps_the_cascade_pending_until_a_later_notification_updates_it() -> None:
    """Legs merge by trans_uuid across notifications: pending complement, then authorised, then captured."""
    state, decisions = run(
        cascade(
            [
                leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY),
                leg(2, "CB", 4000, "WAITING_AUTHORISATION", UUID_CB),
            ]
        ),
        cascade([leg(2, "CB", 4000, "AUTHORISED", UUID_CB)]),
        cascade(
            [leg(1, "CVCO", 6000, "CAPTURED", UUID_PAY), leg(2, "CB", 4000, "CAPTURED", UUID_CB)],
            source="BATCH",
        ),
    )
    assert [event_of(d).type for d in decisions if d.event] == [
        "payment.pending",
        "payment.accepted",
        "payment.captured",
    ]
    assert state is not None and {tx.status for tx in state.legs.values()} == {"CAPTURED"}


def test_a_leg_never_moves_backwards() -> None:
    """A late notification showing a captured leg as pending is stale and changes nothing."""
    state, decisions = run(
        cascade([leg(1, "CVCO", 6000, "CAPTURED", UUID_PAY), leg(2, "CB", 4000, "CAPTURED", UUID_CB)]),
        cascade(
            [
                leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY),
                leg(2, "CB", 4000, "WAITING_AUTHORISATION", UUID_CB),
            ]
        ),
    )
    assert decisions[1].result == "stale"
    assert state is not None and state.phase == "captured"


@pytest.mark.parametrize(
    ("legs", "expected"),
    [
        ([leg(1, "CVCO", 6000, "REFUSED", UUID_PAY, "1216")], "payment.refused"),
        ([leg(1, "CVCO", 6000, "ABANDONED", UUID_PAY, "1012")], "payment.abandoned"),
        ([leg(1, "CVCO", 6000, "REFUSED", UUID_PAY, "1015")], "payment.expired"),
        (
            [leg(1, "CVCO", 6000, "CANCELLED", UUID_PAY), leg(2, "CB", 4000, "CANCELLED", UUID_CB)],
            "payment.cancelled",
        ),
    ],
)
def test_a_cascade_with_nothing_paid_and_nothing_pending_says_why(
    legs: list[dict[str, object]], expected: str
) -> None:
    """Refused, abandoned, expired or cancelled, from the leg statuses and auth codes."""
    _, [decision] = run(cascade(legs))
    assert event_of(decision).type == expected and event_of(decision).paid_amount == 0


def _seq(fields: dict[str, str], **change: object) -> dict[str, str]:
    data = json.loads(fields["vads_payment_seq"])
    data.update(change)
    return {**fields, "vads_payment_seq": json.dumps(data)}


def test_malformed_cascades_are_permanent_errors() -> None:
    """Duplicate sequence numbers or uuids, a foreign trans_id, or MULTI without legs cannot be applied."""
    good = cascade([leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 4000, "AUTHORISED", UUID_CB)])
    broken = [
        cascade([leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(1, "CB", 4000, "AUTHORISED", UUID_CB)]),
        cascade([leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 4000, "AUTHORISED", UUID_PAY)]),
        cascade([{**leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), "trans_id": "zzzzzz"}]),
        _seq(good, trans_id="zzzzzz"),
        {k: v for k, v in good.items() if k != "vads_payment_seq"},
    ]
    for fields in broken:
        with pytest.raises(MalformedCascade):
            run(fields)
    with pytest.raises(ConflictingTransaction):
        run(good, cascade([leg(3, "CB", 4000, "CAPTURED", UUID_CB)]))


def test_a_single_payment_notification_is_not_mistaken_for_a_cascade() -> None:
    """A CVCO notification with sequence number 1 has one leg and no payment_seq."""
    _, [decision] = run(notification("AUTHORISED"))
    assert event_of(decision) is not None and len(event_of(decision).legs) == 1


def test_legs_that_do_not_fit_the_payment_are_parked() -> None:
    """Amounts have the platform's bounds (n..12); accepted legs above the payment's amount are malformed."""
    huge = cascade(
        [leg(1, "CVCO", 2**63 - 1, "AUTHORISED", UUID_PAY), leg(2, "CB", 2**63 - 1, "AUTHORISED", UUID_CB)]
    )
    with pytest.raises(InvalidNotification, match="amount"):
        run(huge)
    over = cascade([leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 8000, "AUTHORISED", UUID_CB)])
    with pytest.raises(MalformedCascade, match="over vads_amount"):
        run(over)


def test_a_cascade_with_a_leg_authorised_and_the_rest_not_listed_waits_and_expires_flagged() -> None:
    """CVCO authorised, complement not yet known: pending; a detected expiry then says money is authorised."""
    state, [decision] = run(cascade([leg(1, "CVCO", 2000, "AUTHORISED", UUID_PAY)]))
    assert event_of(decision).type == "payment.pending"
    pending = PendingPayment(
        shop_id=SHOP_ID,
        mode="TEST",
        trans_id=TRANS_ID,
        trans_date=RECEIVED_AT,
        order_id="order-42",
        amount=10000,
        deadline=RECEIVED_AT,
        registered_by="notification",
    )
    expired = decide_expiry(state, pending, RECEIVED_AT)
    assert event_of(expired).type == "payment.expired"
    assert (event_of(expired).paid_amount, event_of(expired).flags) == (2000, [EXPIRED_AUTHORISED])
