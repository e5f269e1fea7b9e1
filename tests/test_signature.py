"""The form API signature: the official vector, and properties that make forgery and encoding bugs visible."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.signature import (
    ModeNotAccepted,
    SignatureMismatch,
    UnknownShop,
    authenticate,
    compute_signature,
    sign_fields,
    signed_string,
    verify_signature,
)
from schemas.settings import Settings, ShopConfig

OFFICIAL_KEY = "1122334455667788"
OFFICIAL_FIELDS = {
    "vads_action_mode": "INTERACTIVE",
    "vads_amount": "5124",
    "vads_ctx_mode": "TEST",
    "vads_currency": "978",
    "vads_page_action": "PAYMENT",
    "vads_payment_config": "SINGLE",
    "vads_site_id": "12345678",
    "vads_trans_date": "20170129130025",
    "vads_trans_id": "123456",
    "vads_version": "V2",
}

field_names = st.from_regex(r"vads_[a-z0-9_]{1,20}", fullmatch=True)
# any text the platform might echo: +, =, &, blanks, accents, emoji; no surrogates (not valid UTF-8)
field_values = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
vads_fields = st.dictionaries(field_names, field_values, min_size=1, max_size=15)


def test_official_vector_string_and_both_algorithms() -> None:
    """The platform's worked example gives the published string, SHA-1 and HMAC-SHA-256."""
    assert signed_string(OFFICIAL_FIELDS, OFFICIAL_KEY) == (
        "INTERACTIVE+5124+TEST+978+PAYMENT+SINGLE+12345678+20170129130025+123456+V2+1122334455667788"
    )
    assert (
        compute_signature(OFFICIAL_FIELDS, OFFICIAL_KEY, "SHA-1")
        == "59c96b34c74b9375c332b0b6a32e6deeec87de2b"
    )
    assert compute_signature(OFFICIAL_FIELDS, OFFICIAL_KEY, "HMAC-SHA-256") == (
        "ycA5Do5tNvsnKdc/eP1bj2xa19z9q3iWPy9/rpesfS0="
    )


def test_names_sort_in_byte_order_not_natural_order() -> None:
    """`vads_product_label10` comes before `vads_product_label2`, as plain sorting gives."""
    fields = {"vads_product_label2": "b", "vads_product_label10": "a", "vads_a": ""}
    assert signed_string(fields, "k") == "+a+b+k"


def test_verify_accepts_each_configured_algorithm_and_picks_key_by_mode(shop: ShopConfig) -> None:
    """A shop migrating algorithms accepts both; the PRODUCTION key never verifies a TEST message."""
    fields = dict(OFFICIAL_FIELDS)
    for algorithm in ("SHA-1", "HMAC-SHA-256"):
        good = compute_signature(fields, OFFICIAL_KEY, algorithm)  # shop's TEST key is the official key
        assert verify_signature(fields, good, shop) == "valid"
    prod_signed = compute_signature(fields, "8877665544332211", "HMAC-SHA-256")
    assert verify_signature(fields, prod_signed, shop) == "mismatch"


def test_verify_refuses_an_algorithm_the_shop_does_not_accept() -> None:
    """A SHA-1 signature is refused by a shop configured for HMAC-SHA-256 only."""
    from pydantic import SecretStr

    hmac_only = ShopConfig(test_key=SecretStr(OFFICIAL_KEY), modes=("TEST",))
    sha1 = compute_signature(OFFICIAL_FIELDS, OFFICIAL_KEY, "SHA-1")
    assert verify_signature(OFFICIAL_FIELDS, sha1, hmac_only) == "mismatch"


def test_verify_says_no_key_for_a_mode_the_shop_has_no_key_for() -> None:
    from pydantic import SecretStr

    test_only = ShopConfig(test_key=SecretStr(OFFICIAL_KEY), modes=("TEST",))
    fields = dict(OFFICIAL_FIELDS, vads_ctx_mode="PRODUCTION")
    assert verify_signature(fields, "x" * 44, test_only) == "no_key"


@given(vads_fields, st.randoms())
def test_field_order_is_irrelevant(fields: dict[str, str], rnd: object) -> None:
    """Signing the same fields inserted in any order gives the same signature."""
    items = list(fields.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]  # hypothesis Random
    assert compute_signature(dict(items), "key", "HMAC-SHA-256") == compute_signature(
        fields, "key", "HMAC-SHA-256"
    )


@given(vads_fields, st.data())
def test_any_change_to_a_vads_value_breaks_it(fields: dict[str, str], data: st.DataObject) -> None:
    """Altering any one `vads_` value (amount, status, ...) makes the signature mismatch."""
    name = data.draw(st.sampled_from(sorted(fields)))
    new_value = data.draw(field_values.filter(lambda v: v != fields[name]))
    for algorithm in ("HMAC-SHA-256", "SHA-1"):
        original = compute_signature(fields, "key", algorithm)
        assert compute_signature({**fields, name: new_value}, "key", algorithm) != original


@given(vads_fields, st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_a_different_key_breaks_it(fields: dict[str, str], key: str, other: str) -> None:
    if key != other:
        assert compute_signature(fields, key, "HMAC-SHA-256") != compute_signature(
            fields, other, "HMAC-SHA-256"
        )


@given(vads_fields)
def test_values_survive_the_form_urlencoded_round_trip(fields: dict[str, str]) -> None:
    """`+`, `=`, `&`, blanks and non-ASCII come back intact, so the signature still verifies."""
    from pydantic import SecretStr

    shop = ShopConfig(test_key=SecretStr("k"), modes=("TEST",))
    fields = {**fields, "vads_ctx_mode": "TEST"}
    signature = sign_fields(fields, shop, "TEST")
    body = urlencode({**fields, "signature": signature})
    received = dict(parse_qsl(body, keep_blank_values=True, strict_parsing=False, encoding="utf-8"))
    assert received.pop("signature") == signature
    assert received == fields
    assert verify_signature(received, signature, shop) == "valid"


@given(vads_fields, st.dictionaries(st.from_regex(r"[a-uw-z][a-z_]{0,10}", fullmatch=True), field_values))
def test_non_vads_fields_are_ignored(fields: dict[str, str], others: dict[str, str]) -> None:
    """Fields not starting with `vads_` (the submit button, `signature`) are not signed."""
    assert compute_signature({**others, **fields}, "k", "SHA-1") == compute_signature(fields, "k", "SHA-1")


def test_authenticate_accepts_only_a_configured_shop_and_mode_with_a_valid_signature() -> None:
    """The one check the receiver and the worker share: each way to fail has its own class and reason."""
    from pydantic import SecretStr

    shop = ShopConfig(test_key=SecretStr(OFFICIAL_KEY), modes=("TEST",))
    settings = Settings(shops={"12345678": shop})
    signed = {**OFFICIAL_FIELDS, "signature": sign_fields(OFFICIAL_FIELDS, shop, "TEST")}
    authenticate(signed, settings)
    with pytest.raises(UnknownShop, match="vads_site_id '87654321' is not a configured shop"):
        authenticate({**signed, "vads_site_id": "87654321"}, settings)
    with pytest.raises(ModeNotAccepted, match="does not accept vads_ctx_mode 'PRODUCTION'"):
        authenticate({**signed, "vads_ctx_mode": "PRODUCTION"}, settings)
    with pytest.raises(SignatureMismatch):
        authenticate({**signed, "vads_amount": "5125"}, settings)
