"""The notification model: every field kept, known ones typed, each broken rule named."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import PermanentError
from schemas.notification import InvalidNotification, parse_notification, payment_key
from workers.decide import echoed_data

BASE = {
    "vads_site_id": "12345678",
    "vads_ctx_mode": "TEST",
    "vads_trans_id": "a1B2c3",
    "vads_trans_date": "20261126143000",
    "vads_trans_uuid": "0123456789ABCDEF0123456789abcdef",
    "vads_trans_status": "AUTHORISED",
    "vads_amount": "4525",
    "vads_currency": "978",
    "vads_operation_type": "DEBIT",
    "vads_sequence_number": "1",
    "vads_card_brand": "CVCO",
    "vads_auth_result": "0",
    "vads_url_check_src": "PAY",
    "vads_extra_result": "",
}

LEG = {
    "amount": 2000,
    "operation_type": "DEBIT",
    "auth_result": "0",
    "capture_delay": 0,
    "card_brand": "CVCO",
    "card_number": "X" * 4 + "1234",
    "sequence_number": 1,
    "trans_id": "a1B2c3",
    "trans_uuid": "f" * 32,
    "trans_status": "AUTHORISED",
    "presentation_date": "2026-11-26T14:30:00Z",
}


def test_typed_access_to_known_fields() -> None:
    """Amounts are int cents, dates aware UTC datetimes, the uuid lowercase, blanks become None."""
    n = parse_notification(BASE)
    assert n.amount == 4525 and n.currency == 978
    assert n.trans_date == datetime(2026, 11, 26, 14, 30, tzinfo=UTC)
    assert n.trans_uuid == "0123456789abcdef0123456789abcdef"
    assert n.fields["vads_extra_result"] == ""
    assert n.operation_type == "DEBIT" and n.sequence_number == 1 and not n.is_cascade


def test_unknown_and_blank_fields_are_kept_verbatim() -> None:
    """New platform fields are kept, not rejected; nothing is stripped."""
    fields = {**BASE, "vads_brand_new_field": "  x  ", "vads_cust_first_name": "Hélène", "vads_cust_zip": ""}
    n = parse_notification(fields)
    assert n.fields == fields
    customer, _, _, _ = echoed_data(n.fields)
    assert customer == {"first_name": "Hélène", "zip": ""}


def test_products_and_ext_info_are_grouped() -> None:
    fields = {
        **BASE,
        "vads_nb_products": "2",
        "vads_product_label0": "Séjour",
        "vads_product_amount0": "4000",
        "vads_product_label1": "Concert",
        "vads_product_amount1": "525",
        "vads_ext_info_Nb Adults": "2",
    }
    _, _, products, ext_info = echoed_data(parse_notification(fields).fields)
    assert products == [{"label": "Séjour", "amount": "4000"}, {"label": "Concert", "amount": "525"}]
    assert ext_info == {"Nb Adults": "2"}


def test_cascade_payment_seq_is_parsed_into_legs() -> None:
    seq = {"trans_id": "a1B2c3", "transactions": [LEG, {**LEG, "sequence_number": 2, "card_brand": "CB"}]}
    n = parse_notification(
        {**BASE, "vads_card_brand": "MULTI", "vads_sequence_number": "0", "vads_payment_seq": json.dumps(seq)}
    )
    assert n.is_cascade
    assert n.payment_seq is not None
    assert [leg.card_brand for leg in n.payment_seq.transactions] == ["CVCO", "CB"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("vads_site_id", "1234", "vads_site_id: must be 8 digits"),
        ("vads_ctx_mode", "DEV", "vads_ctx_mode: must be TEST or PRODUCTION"),
        ("vads_trans_id", "12345", "vads_trans_id: must be 6 letters or digits"),
        ("vads_trans_date", "20261340000000", "vads_trans_date: is not a real date"),
        ("vads_trans_date", "2026-11-26", "vads_trans_date: must be a UTC date YYYYMMDDHHMMSS"),
        ("vads_trans_uuid", "xyz", "vads_trans_uuid: must be 32 hexadecimal characters"),
        ("vads_amount", "12.50", "vads_amount: must be a whole number"),
        ("vads_amount", "-1", "vads_amount: must be a whole number"),
        ("vads_operation_type", "REFUND", "vads_operation_type: must be DEBIT, CREDIT or VERIFICATION"),
        ("vads_payment_seq", "{not json", "vads_payment_seq: is not valid JSON"),
        ("vads_payment_seq", '{"trans_id": "a1B2c3", "transactions": []}', "vads_payment_seq.transactions"),
        ("vads_trans_status", "", "vads_trans_status: is required"),
    ],
)
def test_each_broken_rule_names_the_field(field: str, value: str, message: str) -> None:
    """The error says which field and which rule, and is permanent (parked, never retried)."""
    with pytest.raises(InvalidNotification) as caught:
        parse_notification({**BASE, field: value})
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, PermanentError)


def test_payment_key_ignores_trans_id_case_and_uses_the_utc_day() -> None:
    """The platform treats trans_id case-insensitively and keeps it unique per UTC day."""
    day = datetime(2026, 11, 26, 23, 59, tzinfo=UTC)
    assert payment_key("12345678", "TEST", day, "AbC123") == payment_key("12345678", "TEST", day, "abc123")
    assert payment_key("12345678", "TEST", day, "abc123") == "12345678:TEST:20261126:abc123"


text_values = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@given(st.dictionaries(st.from_regex(r"vads_[a-z_0-9]{1,20}", fullmatch=True), text_values, max_size=30))
def test_parser_keeps_any_extra_fields_or_names_the_broken_one(extra: dict[str, str]) -> None:
    """Whatever the platform adds or garbles, the parser returns a model holding every field, or
    raises InvalidNotification (never another exception)."""
    fields = {**BASE, **extra}
    try:
        n = parse_notification(fields)
    except InvalidNotification as e:
        assert e.field.startswith("vads_")
    else:
        assert n.fields == fields


@given(
    st.integers(min_value=0, max_value=10**12 - 1),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.from_regex(r"[0-9A-Za-z]{6}", fullmatch=True),
)
def test_amounts_dates_and_ids_round_trip(amount: int, when: datetime, trans_id: str) -> None:
    """What the platform formats (cents, YYYYMMDDHHMMSS, an6) parses back to the same values."""
    n = parse_notification(
        {
            **BASE,
            "vads_amount": str(amount),
            "vads_trans_date": f"{when:%Y%m%d%H%M%S}",
            "vads_trans_id": trans_id,
        }
    )
    assert n.amount == amount
    assert n.trans_date == when.replace(microsecond=0, tzinfo=UTC)
    assert n.trans_id == trans_id
