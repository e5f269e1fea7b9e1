"""The pure form builder: the official signature vector, the CVCO rules, the cart, the field order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from core.signature import verify_signature
from forms.form import CartLine, Customer, PaymentRequest, Shipping, build_form, request_fields, sign_form
from forms.rules import FormRuleError
from schemas.settings import Algorithm, ShopConfig
from tests.conftest import SHOP_ID, TEST_KEY
from tests.test_signature import OFFICIAL_FIELDS

TRANS_DATE = datetime(2017, 1, 29, 13, 0, 25, tzinfo=UTC)


def request(**changes: Any) -> PaymentRequest:
    base: dict[str, Any] = {
        "shop_id": SHOP_ID,
        "amount": 5124,
        "order_id": "CMD012859",
        "mode": "TEST",
        "trans_id": "123456",
        "trans_date": TRANS_DATE,
    }
    return PaymentRequest.model_validate(base | changes)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-1", "59c96b34c74b9375c332b0b6a32e6deeec87de2b"),
        ("HMAC-SHA-256", "ycA5Do5tNvsnKdc/eP1bj2xa19z9q3iWPy9/rpesfS0="),
    ],
)
def test_the_signing_step_reproduces_the_official_vector(algorithm: Algorithm, expected: str) -> None:
    """form-api.md §1: exactly the official fields under key 1122334455667788 give the published signature."""
    shop = ShopConfig(test_key=SecretStr(TEST_KEY), algorithms=(algorithm,), modes=("TEST",))
    signed = sign_form(OFFICIAL_FIELDS, shop)
    assert signed["signature"] == expected
    assert list(signed) == [*sorted(OFFICIAL_FIELDS), "signature"]


@pytest.mark.parametrize("algorithm", ["SHA-1", "HMAC-SHA-256"])
def test_the_builder_gives_the_official_fields_plus_the_cvco_card_and_signs_them(
    algorithm: Algorithm,
) -> None:
    """Built from the vector's values, the form is the official one with vads_payment_cards=CVCO added."""
    shop = ShopConfig(test_key=SecretStr(TEST_KEY), algorithms=(algorithm,), modes=("TEST",))
    form = build_form(request(order_id=None), shop)
    expected = OFFICIAL_FIELDS | {"vads_payment_cards": "CVCO"}
    assert {name: value for name, value in form.fields.items() if name != "signature"} == expected
    assert form.signature == sign_form(expected, shop)["signature"]
    assert verify_signature(form.fields, form.signature, shop) == "valid"


def test_fields_come_sorted_by_name_with_the_signature_last(shop: ShopConfig) -> None:
    """The form's order is the signing order (byte order of names), so the page reads like the signed string."""
    lines = [CartLine(label=f"L{i}", amount=1000, qty=1, type="TRAVEL") for i in range(11)]
    form = build_form(request(amount=11000, products=lines), shop)
    names = list(form.fields)
    assert names[-1] == "signature"
    assert names[:-1] == sorted(names[:-1])
    assert names.index("vads_product_label10") < names.index("vads_product_label2")


def test_buyer_shipping_cart_and_extra_fields_are_sent_with_their_seed_names(shop: ShopConfig) -> None:
    form = build_form(
        request(
            amount=2990,
            customer=Customer(email="jg@sample.com", first_name="Jeanne", status="PRIVATE", country="FR"),
            shipping=Shipping(street="Av du Maréchal De Lattre de Tassigny", status="COMPANY", zip="75013"),
            products=[
                CartLine(label="Séjour", amount=1000, qty=2, type="TRAVEL", ref="ZJJ5520"),
                CartLine(label="Concert", amount=990, type="ENTERTAINMENT"),
            ],
            ext_info={"Arrival Date": "22/07/2020", "Nb_Child": ""},
            order_info="Code interphone 3125",
            capture_delay=2,
        ),
        shop,
    )
    assert form.fields["vads_cust_email"] == "jg@sample.com"
    assert form.fields["vads_cust_status"] == "PRIVATE"
    assert form.fields["vads_ship_to_street"] == "Av du Maréchal De Lattre de Tassigny"
    assert form.fields["vads_ship_to_status"] == "COMPANY"
    assert form.fields["vads_nb_products"] == "2"
    assert form.fields["vads_product_qty0"] == "2"
    assert form.fields["vads_product_ref0"] == "ZJJ5520"
    assert form.fields["vads_product_type1"] == "ENTERTAINMENT"
    assert "vads_product_ref1" not in form.fields
    assert form.fields["vads_ext_info_Arrival Date"] == "22/07/2020"
    assert form.fields["vads_ext_info_Nb_Child"] == ""
    assert form.fields["vads_order_info"] == "Code interphone 3125"
    assert form.fields["vads_capture_delay"] == "2"
    assert "vads_cust_last_name" not in form.fields
    assert form.warnings == ()


def test_the_cvco_constants_are_always_sent(shop: ShopConfig) -> None:
    fields = build_form(request(), shop).fields
    assert fields["vads_payment_cards"] == "CVCO"
    assert fields["vads_currency"] == "978"
    assert fields["vads_payment_config"] == "SINGLE"
    assert fields["vads_action_mode"] == "INTERACTIVE"
    assert fields["vads_page_action"] == "PAYMENT"
    assert fields["vads_version"] == "V2"


def test_the_trans_date_is_sent_in_utc(shop: ShopConfig) -> None:
    paris = timezone(timedelta(hours=1))
    form = build_form(request(trans_date=datetime(2017, 1, 29, 14, 0, 25, tzinfo=paris)), shop)
    assert form.fields["vads_trans_date"] == "20170129130025"


@pytest.mark.parametrize(("asked", "sent"), [(4, "3"), (30, "3"), (999, "3")])
def test_a_capture_delay_above_3_days_is_lowered_to_3_with_a_warning(
    shop: ShopConfig, asked: int, sent: str
) -> None:
    form = build_form(request(capture_delay=asked), shop)
    assert form.fields["vads_capture_delay"] == sent
    assert form.warnings == (
        f"vads_capture_delay={asked}: lowered to 3, the longest Chèque-Vacances Connect allows",
    )


@pytest.mark.parametrize("delay", [-1, 1000])
def test_a_capture_delay_outside_n3_is_refused(shop: ShopConfig, delay: int) -> None:
    with pytest.raises(FormRuleError, match=rf"^vads_capture_delay='{delay}': format n\.\.3"):
        build_form(request(capture_delay=delay), shop)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": 1999}, "vads_amount='1999': at least 2000 cents"),
        ({"amount": 10**12}, "vads_amount='1000000000000': format n..12"),
        ({"currency": "840"}, "vads_currency='840': must be one of 978"),
        (
            {"validation_mode": "1"},
            "vads_validation_mode='1': Chèque-Vacances Connect has no manual validation",
        ),
        ({"order_id": "CMD 1"}, "vads_order_id='CMD 1': only A-Z a-z 0-9 _ -"),
        ({"mode": "LIVE"}, "vads_ctx_mode='LIVE': must be one of TEST, PRODUCTION"),
        ({"trans_id": "12345"}, "vads_trans_id='12345': format an6"),
        ({"shop_id": "1234"}, "vads_site_id='1234': format n8"),
        ({"customer": {"country": "FRA"}}, "vads_cust_country='FRA': format a2"),
        ({"customer": {"status": "PERSON"}}, "vads_cust_status='PERSON': must be one of PRIVATE, COMPANY"),
        ({"shipping": {"status": "HOME"}}, "vads_ship_to_status='HOME': must be one of PRIVATE, COMPANY"),
        ({"ext_info": {"a=b": "x"}}, "vads_ext_info_a=b='a=b': name"),
        ({"order_info3": "a<b"}, "vads_order_info3='a<b': format ans..255"),
    ],
)
def test_a_request_breaking_a_rule_is_refused_naming_field_value_and_rule(
    shop: ShopConfig, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(FormRuleError) as caught:
        build_form(request(**changes), shop)
    assert str(caught.value).startswith(message)


def test_a_mode_the_shop_does_not_accept_is_refused() -> None:
    shop = ShopConfig(test_key=SecretStr(TEST_KEY), modes=("TEST",))
    with pytest.raises(
        FormRuleError, match="vads_ctx_mode='PRODUCTION': shop 12345678 does not accept this mode"
    ):
        build_form(request(mode="PRODUCTION"), shop)


def test_a_cart_that_does_not_sum_to_the_amount_is_refused(shop: ShopConfig) -> None:
    lines = [
        CartLine(label="A", amount=1000, qty=2, type="TRAVEL"),
        CartLine(label="B", amount=500, type="SPORTS"),
    ]
    with pytest.raises(FormRuleError, match=r"vads_amount='2600': cart lines \(amount x qty\) sum to 2500"):
        build_form(request(amount=2600, products=lines), shop)
    assert build_form(request(amount=2500, products=lines), shop).warnings == ()


def test_a_cart_mismatch_only_warns_when_allowed(shop: ShopConfig) -> None:
    lines = [CartLine(label="A", amount=1000, qty=2, type="TRAVEL")]
    form = build_form(request(amount=2600, products=lines, allow_cart_mismatch=True), shop)
    assert form.fields["vads_amount"] == "2600"
    assert form.warnings == ("vads_amount=2600: cart lines (amount x qty) sum to 2000, not to the amount",)


def test_blank_optional_values_are_left_out(shop: ShopConfig) -> None:
    fields, warnings = request_fields(request(order_id="", customer={"email": "", "city": "Paris"}))
    assert "vads_order_id" not in fields
    assert "vads_cust_email" not in fields
    assert fields["vads_cust_city"] == "Paris"
    assert warnings == []


ANS_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cc", "Cs"], blacklist_characters="<>"),
    min_size=1,
    max_size=63,
)


@given(first_name=ANS_TEXT, info=ANS_TEXT, amount=st.integers(2000, 10**12 - 1))
def test_any_valid_text_is_sent_unchanged_and_the_signature_verifies(
    first_name: str, info: str, amount: int
) -> None:
    """Never strip or trim (form-api.md §1): what the merchant gave is what is signed and sent."""
    shop = ShopConfig(test_key=SecretStr(TEST_KEY), modes=("TEST",))
    form = build_form(request(amount=amount, customer=Customer(first_name=first_name), order_info=info), shop)
    assert form.fields["vads_cust_first_name"] == first_name
    assert form.fields["vads_order_info"] == info
    assert form.fields["vads_amount"] == str(amount)
    assert verify_signature(form.fields, form.signature, shop) == "valid"
