"""The simulator's scenario builders: realistic, signed, parseable field sets, deterministic per seed."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from core.signature import verify_signature
from schemas.notification import InvalidNotification, parse_notification
from schemas.settings import ShopConfig
from simulator.scenarios import ALL, REFUSAL_CODES, SCENARIOS, Delivery, Platform, build_scenario
from tests.conftest import SHOP_ID
from workers.decide import echoed_data

NOW = datetime(2026, 7, 14, 9, 30, 5, tzinfo=UTC)

CVCO_FIELDS = {
    "vads_action_mode", "vads_amount", "vads_auth_mode", "vads_auth_number", "vads_auth_result",
    "vads_capture_delay", "vads_card_brand", "vads_card_number", "vads_ctx_mode", "vads_currency",
    "vads_effective_amount", "vads_effective_currency", "vads_extra_result", "vads_hash", "vads_language",
    "vads_operation_type", "vads_order_id", "vads_page_action", "vads_payment_certificate",
    "vads_payment_config", "vads_payment_src", "vads_presentation_date", "vads_result",
    "vads_sequence_number", "vads_site_id", "vads_tid", "vads_trans_date", "vads_trans_id",
    "vads_trans_status", "vads_trans_uuid", "vads_url_check_src", "vads_validation_mode", "vads_version",
    "vads_warranty_result",
}  # fmt: skip


def _notifications(deliveries: list[Delivery]) -> list[dict[str, str]]:
    return [dict(d.fields) for d in deliveries if d.session is None]


def _unsigned(fields: dict[str, str]) -> tuple[dict[str, str], str]:
    rest = dict(fields)
    return rest, rest.pop("signature")


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(sorted(SCENARIOS)),
    mode=st.sampled_from(["TEST", "PRODUCTION"]),
    algorithm=st.sampled_from(["HMAC-SHA-256", "SHA-1"]),
)
def test_every_notification_passes_the_projects_own_signature_check_and_parser(
    seed: int, name: str, mode: str, algorithm: str
) -> None:
    """For any seed, scenario, mode and algorithm, the project's verifier says valid; all but the
    deliberately broken one parse, with the shop, mode and order they were built for."""
    shop = ShopConfig(
        test_key=SecretStr("1122334455667788"),
        production_key=SecretStr("8877665544332211"),
        algorithms=(algorithm,),  # type: ignore[arg-type]  # drawn from the two Algorithm literals
    )
    deliveries = build_scenario(name, SHOP_ID, shop, mode, random.Random(seed), NOW)
    assert deliveries
    for delivery in deliveries:
        if delivery.session is not None:
            continue
        fields, signature = _unsigned(dict(delivery.fields))
        assert verify_signature(fields, signature, shop) == "valid"
        if delivery.parks:
            with pytest.raises(InvalidNotification):
                parse_notification(fields)
            continue
        notification = parse_notification(fields)
        assert (notification.site_id, notification.ctx_mode) == (SHOP_ID, mode)
        assert notification.order_id == delivery.order_id


def test_a_single_cvco_payment_carries_every_platform_field_with_blanks_and_utf8_buyer(
    shop: ShopConfig,
) -> None:
    """The full-CVCO notification has all the platform's fields, blank ones kept, and accented names."""
    (delivery,) = build_scenario("cvco-full", SHOP_ID, shop, "TEST", random.Random(3), NOW)
    fields = dict(delivery.fields)
    assert set(fields) >= CVCO_FIELDS
    assert (
        fields["vads_extra_result"] == fields["vads_validation_mode"] == fields["vads_warranty_result"] == ""
    )
    assert fields["vads_card_brand"] == "CVCO" and "X" * 4 in fields["vads_card_number"]
    assert (fields["vads_trans_status"], fields["vads_url_check_src"]) == ("AUTHORISED", "PAY")
    assert not fields["vads_cust_first_name"].isascii() or not fields["vads_cust_last_name"].isascii()
    assert fields["vads_cust_address2"] == "" and fields["vads_ext_info_Nb_Child"] == ""
    notification = parse_notification(_unsigned(fields)[0])
    _, _, products, _ = echoed_data(notification.fields)
    assert len(products) == int(fields["vads_nb_products"])
    assert sum(int(line["amount"]) for line in products) == notification.amount
    assert notification.amount is not None and notification.amount >= 2000
    assert notification.trans_date == NOW


@pytest.mark.parametrize("name", ["cascade", "cascade-refused-complement"])
def test_a_cascade_is_multi_with_a_cvco_leg_then_a_cb_leg_sharing_the_trans_id(
    shop: ShopConfig, name: str
) -> None:
    """Cascades: MULTI, sequence number 0, legs CVCO (1) then CB (2) summing to the amount."""
    (delivery,) = build_scenario(name, SHOP_ID, shop, "TEST", random.Random(5), NOW)
    notification = parse_notification(_unsigned(dict(delivery.fields))[0])
    assert notification.is_cascade and notification.card_brand == "MULTI"
    assert notification.sequence_number == 0
    seq = notification.payment_seq
    assert seq is not None and seq.trans_id == notification.trans_id
    assert [(leg.sequence_number, leg.card_brand) for leg in seq.transactions] == [(1, "CVCO"), (2, "CB")]
    assert {leg.trans_id for leg in seq.transactions} == {notification.trans_id}
    assert sum(leg.amount for leg in seq.transactions) == notification.amount
    statuses = [leg.trans_status for leg in seq.transactions]
    if name == "cascade":
        assert statuses == ["AUTHORISED", "AUTHORISED"] and delivery.expected == ("payment.accepted",)
    else:
        assert statuses == ["AUTHORISED", "REFUSED"] and delivery.expected == ("payment.partial",)
        assert notification.effective_amount == seq.transactions[0].amount


def test_refused_plays_each_refusal_code_of_the_seed_once_and_no_other(shop: ShopConfig) -> None:
    """One refused payment per §11.3 refusal code; acceptance, abandonment, expiry, refund codes excluded."""
    deliveries = build_scenario("refused", SHOP_ID, shop, "TEST", random.Random(7), NOW)
    codes = [d.fields["vads_auth_result"] for d in deliveries]
    assert codes == list(REFUSAL_CODES)
    assert not {"0", "1012", "1013", "1014", "1015", "1020"} & set(codes)
    assert {d.fields["vads_trans_status"] for d in deliveries} == {"REFUSED"}
    assert len({d.order_id for d in deliveries}) == len(deliveries)


def test_a_refund_is_a_separate_credit_transaction_of_the_same_payment(shop: ShopConfig) -> None:
    """Refund: CREDIT from MERCH_BO, its own trans_uuid, the payment's trans_id, date and order."""
    payment, capture, refund = _notifications(
        build_scenario("refund", SHOP_ID, shop, "TEST", random.Random(9), NOW)
    )
    assert (capture["vads_trans_status"], capture["vads_url_check_src"]) == ("CAPTURED", "BATCH")
    assert (refund["vads_operation_type"], refund["vads_url_check_src"]) == ("CREDIT", "MERCH_BO")
    assert refund["vads_trans_uuid"] != payment["vads_trans_uuid"] == capture["vads_trans_uuid"]
    for name in ("vads_trans_id", "vads_trans_date", "vads_order_id", "vads_amount"):
        assert refund[name] == payment[name]


def test_abandonments_have_no_operation_type_nor_sequence_number(shop: ShopConfig) -> None:
    """Abandoned payments (1012, 1020) and abandoned complements (1013, 1015) look as the platform sends them."""
    for name, codes in (("abandoned", ["1012", "1020"]), ("abandoned-complement", ["1013", "1015"])):
        notifications = _notifications(build_scenario(name, SHOP_ID, shop, "TEST", random.Random(2), NOW))
        assert [n["vads_auth_result"] for n in notifications] == codes
        for fields in notifications:
            assert fields["vads_trans_status"] == "ABANDONED"
            assert "vads_operation_type" not in fields and "vads_sequence_number" not in fields
        if name == "abandoned-complement":
            for fields, code in zip(notifications, codes, strict=True):
                legs = json.loads(fields["vads_payment_seq"])["transactions"]
                assert [(leg["card_brand"], leg["trans_status"]) for leg in legs] == [
                    ("CVCO", "CANCELLED"),
                    ("CB", "ABANDONED"),
                ]
                assert legs[0]["auth_result"] == code


def test_duplicates_retry_and_out_of_order_expect_exactly_one_event_per_state(shop: ShopConfig) -> None:
    """Identical resends, RETRY and stale notifications are expected to add nothing to the stream."""
    duplicates = build_scenario("duplicates", SHOP_ID, shop, "TEST", random.Random(4), NOW)
    assert duplicates[0].fields == duplicates[1].fields == duplicates[2].fields
    assert duplicates[3].fields["vads_url_check_src"] == "BO"
    assert [d.expected for d in duplicates] == [("payment.accepted",), (), (), ()]
    retry = build_scenario("retry", SHOP_ID, shop, "TEST", random.Random(4), NOW)
    assert [d.fields["vads_url_check_src"] for d in retry] == ["RETRY", "PAY", "RETRY"]
    statuses = [
        d.fields["vads_trans_status"]
        for d in build_scenario("out-of-order", SHOP_ID, shop, "TEST", random.Random(4), NOW)
    ]
    assert statuses == ["CAPTURED", "AUTHORISED", "CANCELLED", "AUTHORISED"]


def test_silent_issues_a_session_to_watch_and_sends_nothing(shop: ShopConfig) -> None:
    """The silent scenario is a pending session due the session length plus the grace after the payment."""
    platform = Platform(SHOP_ID, shop, "TEST", random.Random(1), NOW, session_timeout_s=2, session_grace_s=1)
    (delivery,) = SCENARIOS["silent"](platform, "silent")
    assert delivery.fields == {} and delivery.session is not None
    assert delivery.session.deadline - delivery.session.trans_date == timedelta(seconds=3)
    assert delivery.expected == ("payment.expired",)


def test_same_seed_same_notifications_and_a_different_seed_differs(shop: ShopConfig) -> None:
    """`--seed` makes runs repeatable."""

    def run(seed: int) -> list[dict[str, str]]:
        return [
            dict(d.fields)
            for name in ALL
            for d in build_scenario(name, SHOP_ID, shop, "TEST", random.Random(seed), NOW)
        ]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_trans_ids_never_repeat_within_a_run_of_many_payments(shop: ShopConfig) -> None:
    """A load run keeps trans_id unique per shop and day (the platform's rule), even over thousands."""
    platform = Platform(SHOP_ID, shop, "TEST", random.Random(8), NOW)
    trans_ids = Counter(platform.payment().trans_id for _ in range(5000))
    assert max(trans_ids.values()) == 1
