"""The §9 formats of the payment form's fields, one rule at a time, good and bad values."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forms.rules import (
    FIELD_FORMATS,
    PRODUCT_TYPES,
    FormRuleError,
    check_field,
    check_fields,
    parse_format,
)

VALID = {
    "vads_action_mode": "INTERACTIVE",
    "vads_amount": "2990",
    "vads_ctx_mode": "TEST",
    "vads_currency": "978",
    "vads_page_action": "PAYMENT",
    "vads_payment_cards": "CVCO",
    "vads_payment_config": "SINGLE",
    "vads_site_id": "12345678",
    "vads_trans_date": "20200326101407",
    "vads_trans_id": "362812",
    "vads_version": "V2",
}


def test_the_seed_example_form_of_section_10_passes_every_rule() -> None:
    """The §10.1 example (minus the shipping fields of another guide) is a valid CVCO form."""
    fields = VALID | {
        "vads_cust_id": "Client",
        "vads_cust_status": "PRIVATE",
        "vads_cust_phone": "0123456789",
        "vads_cust_cell_phone": "06 12 34 56 78",
        "vads_cust_email": "jg@sample.com",
        "vads_cust_address": "Av du Maréchal De Lattre de Tassigny",
        "vads_cust_city": "Labège",
        "vads_cust_country": "FR",
        "vads_ext_info_Arrival Date": "22/07/2020",
        "vads_ext_info_Nb_Child": "",
        "vads_order_id": "CDE-fr-04_2020",
        "vads_nb_products": "1",
        "vads_product_label0": "Séjour 3 jours datés",
        "vads_product_ref0": "ZJJ5520",
        "vads_product_qty0": "1",
        "vads_product_amount0": "68500",
        "vads_product_type0": "TRAVEL",
        "vads_ship_to_legal_name": "D. & Cie",
        "vads_ship_to_status": "COMPANY",
    }
    check_fields(fields)


@pytest.mark.parametrize(
    ("notation", "good", "bad"),
    [
        ("n..12", ["0", "123456789012"], ["", "1234567890123", "12a", "-1", "١٢"]),
        ("n3", ["978"], ["97", "9780", "EUR"]),
        ("n8", ["12345678"], ["1234567", "123456789", "1234567a"]),
        ("n14", ["20200101130025"], ["2020010113002", "2020-01-01 13:00"]),
        ("an6", ["xrT15p", "123456"], ["xrT15", "xrT15pp", "xrT-5p", "éèàçùô"]),
        ("an..63", ["C2383333540"], ["", "a" * 64, "C 2"]),
        ("ans..64", ["CDE-fr-04_2020", 'a & b; c\'d "e"', "é" * 64], ["", "a" * 65, "a<b", "a>b", "a\nb"]),
        ("a2", ["FR", "pf"], ["F", "FRA", "F1", "É1"]),
    ],
)
def test_each_notation_accepts_its_examples_and_refuses_the_rest(
    notation: str, good: list[str], bad: list[str]
) -> None:
    """`n` digits, `a` letters, `an` both, `ans` anything but < > and control characters; `..N` up to N, `N` exactly N."""
    field_format = parse_format(notation)
    for value in good:
        field_format.check("vads_x", value)
    for value in bad:
        with pytest.raises(FormRuleError, match=rf"^vads_x=.*: format {notation}"):
            field_format.check("vads_x", value)


@given(st.text(alphabet=string.digits, min_size=1, max_size=12))
def test_any_run_of_up_to_12_digits_is_an_amount(value: str) -> None:
    FIELD_FORMATS["vads_amount"].check("vads_amount", value)


@given(st.text(max_size=30), st.sampled_from("<>"), st.text(max_size=30))
def test_no_ans_value_may_hold_an_angle_bracket(before: str, bracket: str, after: str) -> None:
    with pytest.raises(FormRuleError):
        FIELD_FORMATS["vads_cust_address_number"].check("vads_cust_address_number", before + bracket + after)


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=["Cc", "Cs"], blacklist_characters="<>"),
        min_size=1,
        max_size=255,
    )
)
def test_any_printable_text_without_angle_brackets_is_ans(value: str) -> None:
    FIELD_FORMATS["vads_order_info"].check("vads_order_info", value)


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("vads_cust_status", "PRIVATE", "private"),
        ("vads_ship_to_status", "COMPANY", "BUSINESS"),
        ("vads_ctx_mode", "PRODUCTION", "LIVE"),
    ],
)
def test_enum_fields_take_only_their_listed_values(field: str, good: str, bad: str) -> None:
    check_field(field, good)
    with pytest.raises(FormRuleError, match=rf"^{field}='{bad}': must be one of"):
        check_field(field, bad)


@pytest.mark.parametrize("product_type", PRODUCT_TYPES)
def test_each_of_the_16_product_types_is_accepted(product_type: str) -> None:
    check_field("vads_product_type3", product_type)


def test_an_unlisted_product_type_is_refused() -> None:
    assert len(PRODUCT_TYPES) == 16
    with pytest.raises(FormRuleError, match="vads_product_type0='BOOKS': must be one of FOOD_AND_GROCERY"):
        check_field("vads_product_type0", "BOOKS")


@pytest.mark.parametrize("name", ["Arrival_Date", "Arrival Date", "Nb-Adults", "x"])
def test_ext_info_names_of_the_seed_are_accepted(name: str) -> None:
    check_field(f"vads_ext_info_{name}", "22/07/2020")


@pytest.mark.parametrize("name", ["", " lead", "trail ", "a=b", "é", "a" * 65, "a<b"])
def test_bad_ext_info_names_are_refused(name: str) -> None:
    with pytest.raises(FormRuleError, match=r"^vads_ext_info_.*: name: 1 to 64"):
        check_field(f"vads_ext_info_{name}", "v")


def test_unknown_and_validation_mode_fields_are_refused() -> None:
    with pytest.raises(FormRuleError, match="vads_validation_mode='0': .*no manual validation"):
        check_field("vads_validation_mode", "0")
    with pytest.raises(FormRuleError, match="vads_payment_src='EC': not a field"):
        check_field("vads_payment_src", "EC")


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("vads_payment_cards", "CB", "must be one of CVCO"),
        ("vads_currency", "840", "must be one of 978"),
        ("vads_payment_config", "MULTI", "must be one of SINGLE"),
        ("vads_action_mode", "SILENT", "must be one of INTERACTIVE"),
        ("vads_page_action", "REGISTER", "must be one of PAYMENT"),
        ("vads_version", "V1", "must be one of V2"),
        ("vads_amount", "1999", "at least 2000 cents"),
        ("vads_order_id", "CMD 12", r"only A-Z a-z 0-9 _ -"),
        ("vads_order_id", "CMD/12", r"only A-Z a-z 0-9 _ -"),
        ("vads_capture_delay", "4", "at most 3 days"),
        ("vads_trans_date", "20201301000000", "not a UTC YYYYMMDDHHMMSS time"),
    ],
)
def test_cvco_rules_refuse_with_field_value_and_rule_in_one_line(field: str, value: str, rule: str) -> None:
    with pytest.raises(FormRuleError, match=rule) as caught:
        check_fields(VALID | {field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}={value!r}: ")
    assert "\n" not in str(caught.value)


def test_the_cvco_minimum_amount_itself_is_accepted() -> None:
    check_fields(VALID | {"vads_amount": "2000", "vads_capture_delay": "3"})


@pytest.mark.parametrize("missing", ["vads_payment_cards", "vads_trans_id", "vads_site_id"])
def test_a_missing_required_field_is_refused(missing: str) -> None:
    fields = {name: value for name, value in VALID.items() if name != missing}
    with pytest.raises(FormRuleError, match=f"^{missing}=None: required"):
        check_fields(fields)


def test_cart_lines_need_a_count_covering_their_indices() -> None:
    line = {"vads_product_label1": "A", "vads_product_amount1": "2990"}
    with pytest.raises(FormRuleError, match="vads_nb_products=None: required"):
        check_fields(VALID | line)
    with pytest.raises(FormRuleError, match="vads_nb_products='1': cart lines go up to index 1"):
        check_fields(VALID | line | {"vads_nb_products": "1"})
    check_fields(VALID | line | {"vads_nb_products": "2"})


def test_a_long_value_is_shortened_in_the_message() -> None:
    with pytest.raises(FormRuleError) as caught:
        check_field("vads_order_info", "x" * 300)
    assert len(str(caught.value)) < 200
    assert caught.value.value == "x" * 300
