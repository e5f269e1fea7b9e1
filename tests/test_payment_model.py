"""The pure payment core over generated life cycles: any order, any redelivery, one final state and event.

No Redis: `decide` applied notification after notification, as the workers do, on every permutation
and duplication hypothesis draws of a life cycle the platform really sends.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from schemas.notification import parse_notification
from tests.notifications import RECEIVED_AT, UUID_CB, UUID_PAY, UUID_REFUND, cascade, leg, notification
from workers.decide import decide
from workers.payment import PaymentState, outcome_of

UUID_RETRY = "d" * 32
Life = list[dict[str, str]]


def _single(draw: st.DrawFn) -> Life:
    attempts = draw(st.booleans())
    uuid = UUID_RETRY if attempts else UUID_PAY
    seq = {"vads_sequence_number": "2"} if attempts else {}
    life = [notification("REFUSED", auth="1016")] if attempts else []
    if draw(st.booleans()):
        life.append(notification("WAITING_AUTHORISATION", uuid=uuid, auth=None, extra=seq))
    life.append(notification("AUTHORISED", uuid=uuid, extra=seq))
    end = draw(st.sampled_from(["none", "capture", "cancel", "partial_cancel"]))
    if end == "capture":
        life.append(notification("CAPTURED", uuid=uuid, source="BATCH", extra=seq))
        refund = draw(st.sampled_from([None, 5000, 2000]))
        if refund:
            life.append(
                notification(
                    "CAPTURED", amount=refund, uuid=UUID_REFUND, operation="CREDIT", source="MERCH_BO"
                )
            )
    elif end == "cancel":
        life.append(notification("CANCELLED", uuid=uuid, source="MERCH_BO", auth=None, operation=None))
    elif end == "partial_cancel":
        life.append(notification("AUTHORISED", amount=3000, uuid=uuid, source="MERCH_BO", extra=seq))
    return life


def _cascade(draw: st.DrawFn) -> Life:
    cb_end = draw(st.sampled_from(["AUTHORISED", "REFUSED"]))
    bare = draw(st.booleans())  # legs without trans_uuid, as some platform versions send them
    life = [
        cascade(
            [
                leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY),
                leg(2, "CB", 4000, "WAITING_AUTHORISATION", UUID_CB),
            ]
        ),
        cascade(
            [leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 4000, cb_end, UUID_CB, auth="05")]
        ),
    ]
    if cb_end == "AUTHORISED" and draw(st.booleans()):
        first = [leg(1, "CVCO", 6000, "CAPTURED", UUID_PAY), leg(2, "CB", 4000, "AUTHORISED", UUID_CB)]
        life.append(cascade(first, source="BATCH"))
        both = [leg(1, "CVCO", 6000, "CAPTURED", UUID_PAY), leg(2, "CB", 4000, "CAPTURED", UUID_CB)]
        life.append(cascade(both, source="BATCH"))
    if bare:
        return [_without_leg_uuids(fields) for fields in life]
    return life


def _without_leg_uuids(fields: dict[str, str]) -> dict[str, str]:
    seq = json.loads(fields["vads_payment_seq"])
    for item in seq["transactions"]:
        del item["trans_uuid"]
    return {**fields, "vads_payment_seq": json.dumps(seq)}


@st.composite
def lives(draw: st.DrawFn) -> Life:
    """A life cycle, then redeliveries of some of its notifications by RETRY or BO."""
    life = draw(st.sampled_from([_single, _cascade]))(draw)
    redelivered = draw(st.lists(st.sampled_from(life), max_size=2))
    sources = st.sampled_from(["RETRY", "BO"])
    return life + [{**fields, "vads_url_check_src": draw(sources)} for fields in redelivered]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[Life, Life]:
    """A life cycle and one arrival of it: any permutation, some notifications twice."""
    life = draw(lives())
    arrival = draw(st.permutations(life)) + draw(st.lists(st.sampled_from(life), max_size=3))
    return life, arrival


def run(notes: Life) -> tuple[PaymentState | None, list[dict[str, Any]]]:
    """The final state and every event published, applying the notifications in this order."""
    state: PaymentState | None = None
    events = []
    for fields in notes:
        decision = decide(state, parse_notification(fields), RECEIVED_AT)
        state = decision.state or state
        if decision.event is not None:
            events.append(decision.event.model_dump(mode="json"))
    return state, events


def business(event: dict[str, Any]) -> tuple[object, ...]:
    """What an event says of the payment, apart from the notification that happened to produce it."""
    keys = (
        "event_id",
        "type",
        "amount",
        "paid_amount",
        "cvco_amount",
        "refunded_amount",
        "flags",
        "payment_key",
    )
    return tuple(event[key] for key in keys)


@hypothesis_settings(max_examples=300, deadline=None)
@given(deliveries())
def test_any_order_and_redelivery_gives_one_final_state_and_final_event(case: tuple[Life, Life]) -> None:
    life, arrival = case
    expected_state, expected_events = run(life)
    state, events = run(arrival)
    assert state is not None and expected_state is not None
    assert state.model_dump() == expected_state.model_dump()
    assert business(events[-1]) == business(expected_events[-1])


@hypothesis_settings(max_examples=300, deadline=None)
@given(deliveries())
def test_no_event_moves_a_payment_backwards_and_none_is_published_twice(case: tuple[Life, Life]) -> None:
    _, arrival = case
    state: PaymentState | None = None
    progress = []
    ids = []
    for fields in arrival:
        decision = decide(state, parse_notification(fields), RECEIVED_AT)
        state = decision.state or state
        if decision.event is not None and decision.state is not None:
            progress.append(outcome_of(decision.state).progress)
            ids.append(decision.event.event_id)
    assert progress == sorted(progress)
    assert len(ids) == len(set(ids))


@hypothesis_settings(max_examples=100, deadline=None)
@given(lives())
def test_an_exact_duplicate_changes_nothing_and_publishes_nothing(life: Life) -> None:
    state, _ = run(life)
    for fields in life:
        decision = decide(state, parse_notification(fields), RECEIVED_AT)
        assert decision.state is None and decision.event is None
        assert decision.result in ("duplicate", "stale")
