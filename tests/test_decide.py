"""The pure payment state machine: event types, never backwards, duplicates, seed checks, expiry."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.event import PaymentEvent
from schemas.notification import parse_notification
from schemas.session import PendingPayment
from tests.notifications import RECEIVED_AT, TRANS_ID, UUID_PAY, UUID_REFUND, event_of, notification
from workers.auth_codes import AUTH_RESULTS, auth_message
from workers.cascade import UnknownStatus
from workers.decide import Decision, decide, decide_expiry, echoed_data
from workers.payment import ACCEPTED_AFTER_EXPIRY, NON_EUR_CVCO, PARTIAL_CANCEL, PARTIAL_REFUND, PaymentState
from workers.status import KNOWN_STATUSES


def step(state: PaymentState | None, fields: dict[str, str]) -> tuple[PaymentState | None, Decision]:
    """Apply one notification the way the worker does: keep the old state when nothing is written."""
    decision = decide(state, parse_notification(fields), RECEIVED_AT)
    return (decision.state or state), decision


def run(*notes: dict[str, str]) -> tuple[PaymentState | None, list[Decision]]:
    state: PaymentState | None = None
    decisions = []
    for fields in notes:
        state, decision = step(state, fields)
        decisions.append(decision)
    return state, decisions


@pytest.mark.parametrize(
    ("status", "auth", "expected"),
    [
        ("AUTHORISED", "0", "payment.accepted"),
        ("ACCEPTED", "0", "payment.accepted"),
        ("CAPTURED", "0", "payment.captured"),
        ("WAITING_AUTHORISATION", None, "payment.pending"),
        ("UNDER_VERIFICATION", None, "payment.pending"),
        ("REFUSED", "1216", "payment.refused"),
        ("CAPTURE_FAILED", "1300", "payment.refused"),
        ("EXPIRED", None, "payment.expired"),
        ("REFUSED", "1015", "payment.expired"),
        ("ABANDONED", None, "payment.abandoned"),
        ("NOT_CREATED", None, "payment.abandoned"),
        ("REFUSED", "1012", "payment.abandoned"),
        ("REFUSED", "1013", "payment.abandoned"),
        ("REFUSED", "1020", "payment.abandoned"),
        ("CANCELLED", None, "payment.cancelled"),
    ],
)
def test_first_notification_publishes_the_event_its_status_means(
    status: str, auth: str | None, expected: str
) -> None:
    """Each status class (and the expired/abandoned auth codes) maps to the contract's event type."""
    _, [decision] = run(notification(status, auth=auth))
    assert decision.result == "published"
    assert event_of(decision).type == expected


def test_every_seed_auth_code_has_its_french_message_and_unknown_codes_say_so() -> None:
    """§11.3's table is complete; a code outside it keeps the code and says `code inconnu`."""
    assert set(AUTH_RESULTS) == {
        "0",
        *map(str, range(1010, 1021)),
        "1100",
        "1213",
        "1214",
        "1215",
        "1216",
        "1218",
        "1220",
        "1300",
    }
    assert auth_message("1216") == "Le solde est insuffisant"
    assert auth_message("00") == "Paiement accepté"
    assert auth_message("4242") == "code inconnu"
    _, [decision] = run(notification("REFUSED", auth="4242"))
    assert event_of(decision) is not None
    assert event_of(decision).auth_result.model_dump() == {"code": "4242", "message": "code inconnu"}


def test_a_single_cvco_payment_goes_pending_accepted_captured_refunded() -> None:
    """The full life of a CVCO payment gives one event per step with amounts and legs filled."""
    state, decisions = run(
        notification("WAITING_AUTHORISATION", auth=None),
        notification("AUTHORISED"),
        notification("CAPTURED", source="BATCH"),
        notification("CAPTURED", uuid=UUID_REFUND, operation="CREDIT", source="MERCH_BO"),
    )
    types = [event_of(d).type for d in decisions if event_of(d)]
    assert types == ["payment.pending", "payment.accepted", "payment.captured", "payment.refunded"]
    assert state is not None and state.phase == "refunded"
    refunded = event_of(decisions[-1])
    assert (refunded.amount, refunded.paid_amount, refunded.cvco_amount, refunded.refunded_amount) == (
        5000,
        5000,
        5000,
        5000,
    )
    assert [leg.operation_type for leg in refunded.legs] == ["DEBIT", "CREDIT"]
    assert refunded.trans_uuid == UUID_REFUND and not refunded.flags


def test_a_stale_authorised_after_cancelled_changes_nothing() -> None:
    """A retry of the old AUTHORISED after a merchant cancel is stale: no event, state stays cancelled."""
    state, decisions = run(
        notification("AUTHORISED"),
        notification("CANCELLED", source="MERCH_BO", auth=None),
        notification("AUTHORISED", source="RETRY"),
    )
    assert [d.result for d in decisions] == ["published", "published", "stale"]
    assert event_of(decisions[1]).type == "payment.cancelled"
    assert decisions[2].event is None
    assert state is not None and state.phase == "cancelled" and state.paid_amount == 0


@pytest.mark.parametrize("source", ["MERCH_BO", "RETRY", "BO"])
def test_a_cancel_cancels_an_accepted_payment_whichever_source_delivers_it(source: str) -> None:
    """The source is metadata: a RETRY or BO copy of a merchant's cancel carries the same fact."""
    state, decisions = run(notification("AUTHORISED"), notification("CANCELLED", source=source, auth=None))
    assert event_of(decisions[1]).type == "payment.cancelled"
    assert event_of(decisions[1]).source == source
    assert state is not None and state.phase == "cancelled"


def test_a_capture_is_never_undone_by_a_cancel() -> None:
    """CAPTURED is the end of a transaction's order: a cancel delivered after it changes nothing."""
    state, decisions = run(notification("CAPTURED"), notification("CANCELLED", source="MERCH_BO", auth=None))
    assert decisions[1].result == "stale" and decisions[1].state is None
    assert state is not None and state.phase == "captured"


def test_a_captured_payment_is_never_refused_or_made_pending_again() -> None:
    """Final states do not move backwards: a late pending or refusal is stale."""
    _, decisions = run(
        notification("CAPTURED"),
        notification("WAITING_AUTHORISATION", auth=None),
        notification("AUTHORISED", source="RETRY"),
    )
    assert [d.result for d in decisions] == ["published", "stale", "stale"]


def test_a_back_office_resend_of_the_same_state_is_a_duplicate() -> None:
    """Same trans_uuid and business content from another source: nothing new, no event."""
    state, decisions = run(notification("AUTHORISED"), notification("AUTHORISED", source="BO"))
    assert decisions[1].result == "duplicate" and decisions[1].state is None


def test_event_ids_are_deterministic_and_differ_between_states() -> None:
    """Same notification state, same id; a different state gets another id."""
    _, first = run(notification("AUTHORISED"))
    _, again = run(notification("AUTHORISED", source="BO"))
    _, captured = run(notification("CAPTURED"))
    assert event_of(first[0]).event_id == event_of(again[0]).event_id != event_of(captured[0]).event_id


def test_events_carry_the_echoed_data_and_never_a_signature_hash_or_key() -> None:
    """customer/shipping/products/ext_info are echoed; vads_hash, signature and the card number are not."""
    _, [decision] = run({**notification("AUTHORISED"), "signature": "S" * 44})
    assert event_of(decision) is not None
    event = event_of(decision)
    assert event.customer == {"email": "buyer@example.org", "last_name": "Durand"}
    assert event.shipping == {"city": "Lyon"}
    assert event.products == [{"label": "Séjour", "amount": "5000"}]
    assert event.ext_info == {"booking": "B-7"}
    assert (event.currency, event.trans_id, event.source) == ("EUR", TRANS_ID, "PAY")
    text = event.model_dump_json()
    assert "f" * 64 not in text
    assert "S" * 44 not in text
    assert "CVCO-****" not in text
    assert "1122334455667788" not in text


def test_seed_rules_flag_without_dropping() -> None:
    """Non-EUR CVCO, a partial refund and a partial cancel are published with flags."""
    _, [usd] = run(notification("AUTHORISED", currency="840"))
    assert usd.result == "published" and usd.flags == (NON_EUR_CVCO,)
    assert event_of(usd).currency == "USD" and event_of(usd).flags == [NON_EUR_CVCO]
    _, refund = run(
        notification("CAPTURED"), notification("CAPTURED", amount=2000, uuid=UUID_REFUND, operation="CREDIT")
    )
    assert refund[1].flags == (PARTIAL_REFUND,)
    _, cancel = run(notification("AUTHORISED"), notification("CANCELLED", amount=3000, source="MERCH_BO"))
    assert cancel[1].flags == (PARTIAL_CANCEL,)


def test_an_unknown_status_is_a_permanent_error() -> None:
    """A status outside the form API's list is parked rather than guessed."""
    assert "TELEPORTED" not in KNOWN_STATUSES
    with pytest.raises(UnknownStatus):
        run(notification("TELEPORTED"))


def _pending(**update: object) -> PendingPayment:
    trans_date = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    values: dict[str, object] = {
        "shop_id": "12345678",
        "mode": "TEST",
        "trans_id": TRANS_ID,
        "trans_date": trans_date,
        "order_id": "order-42",
        "amount": 5000,
        "deadline": trans_date + timedelta(minutes=10),
        "registered_by": "form",
    }
    return PendingPayment.model_validate({**values, **update})


def test_a_detected_session_expiry_publishes_expired_once() -> None:
    """No notification at all: payment.expired, status EXPIRED, source SESSION_TIMEOUT, no trans_uuid."""
    now = datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
    first = decide_expiry(None, _pending(), now)
    assert event_of(first) is not None and first.state is not None
    assert (event_of(first).type, event_of(first).status, event_of(first).source) == (
        "payment.expired",
        "EXPIRED",
        "SESSION_TIMEOUT",
    )
    assert event_of(first).trans_uuid is None and event_of(first).amount == 5000
    assert decide_expiry(first.state, _pending(), now).result == "duplicate"
    assert first.state.session_expired


def test_an_expiry_leaves_an_accepted_payment_alone_and_a_late_acceptance_is_flagged() -> None:
    """Expiry after acceptance is stale; acceptance after a detected expiry still applies, flagged."""
    now = datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
    accepted, _ = run(notification("AUTHORISED"))
    assert decide_expiry(accepted, _pending(), now).result == "stale"
    expired = decide_expiry(None, _pending(), now).state
    state, late = step(expired, notification("AUTHORISED"))
    assert late.result == "published" and late.flags == (ACCEPTED_AFTER_EXPIRY,)
    assert state is not None and state.phase == "accepted" and state.key.endswith(TRANS_ID.lower())
    assert UUID_PAY in state.legs


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_ECHO_NAMES = st.sampled_from(
    ["vads_cust_", "vads_ship_to_", "vads_ext_info_", "vads_product_label", "vads_product_amount", "vads_x_"]
)


@settings(max_examples=150, deadline=None)
@given(
    status=st.sampled_from(sorted(KNOWN_STATUSES)),
    echoed=st.dictionaries(
        st.tuples(_ECHO_NAMES, st.from_regex(r"\A[a-z0-9_]{0,6}\Z")).map("".join), _TEXT, max_size=8
    ),
    micros=st.integers(0, 999_999),
)
def test_a_consumer_reads_back_exactly_the_published_event(
    status: str, echoed: dict[str, str], micros: int
) -> None:
    """Any echoed text (non-ASCII, quotes, control characters) and any received_at: the JSON the worker
    publishes parses back, by the contract's model, into the very event it was made from."""
    fields = {**notification(status), **echoed}
    received_at = RECEIVED_AT.replace(microsecond=micros)
    for decision in (
        decide(None, parse_notification(fields), received_at),
        decide_expiry(None, _pending(), received_at),
    ):
        event = event_of(decision)
        assert PaymentEvent.model_validate_json(event.model_dump_json()) == event
        assert event.received_at == received_at


@settings(max_examples=150, deadline=None)
@given(
    echoed=st.dictionaries(
        st.tuples(_ECHO_NAMES, st.from_regex(r"\A[a-z0-9_]{0,6}\Z")).map("".join), _TEXT, max_size=10
    )
)
def test_echoed_data_in_one_pass_equals_the_notifications_own_groups(echoed: dict[str, str]) -> None:
    """customer, shipping, products and ext_info read in one pass are what a pass per group gives."""
    fields = parse_notification({**notification("AUTHORISED"), **echoed}).fields

    def group(prefix: str) -> dict[str, str]:
        return {name.removeprefix(prefix): v for name, v in fields.items() if name.startswith(prefix)}

    lines: dict[int, dict[str, str]] = {}
    for name, value in fields.items():
        if match := re.fullmatch(r"vads_product_([a-z_]+?)(\d+)", name):
            lines.setdefault(int(match.group(2)), {})[match.group(1)] = value
    products = [lines[index] for index in sorted(lines)]
    assert echoed_data(fields) == (
        group("vads_cust_"),
        group("vads_ship_to_"),
        products,
        group("vads_ext_info_"),
    )
