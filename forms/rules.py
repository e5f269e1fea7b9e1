"""The formats of the payment form's fields (seed guide §9–§10) and the Chèque-Vacances Connect rules.

Pure functions: `check_fields(fields)` refuses the first field that breaks a rule with a `FormRuleError`
naming the field, the value and the rule, in one line.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

#: §9.4: the 16 values of `vads_product_typeN`.
PRODUCT_TYPES = (
    "FOOD_AND_GROCERY",
    "AUTOMOTIVE",
    "ENTERTAINMENT",
    "HOME_AND_GARDEN",
    "HOME_APPLIANCE",
    "AUCTION_AND_GROUP_BUYING",
    "FLOWERS_AND_GIFTS",
    "COMPUTER_AND_SOFTWARE",
    "HEALTH_AND_BEAUTY",
    "SERVICE_FOR_INDIVIDUAL",
    "SERVICE_FOR_BUSINESS",
    "SPORTS",
    "CLOTHING_AND_ACCESSORIES",
    "TRAVEL",
    "HOME_AUDIO_PHOTO_VIDEO",
    "TELEPHONY",
)
PARTY_STATUSES = ("PRIVATE", "COMPANY")

#: §9.1 and form-api.md §3: what a Chèque-Vacances Connect form always carries.
CVCO_FIXED = {
    "vads_action_mode": "INTERACTIVE",
    "vads_currency": "978",
    "vads_page_action": "PAYMENT",
    "vads_payment_cards": "CVCO",
    "vads_payment_config": "SINGLE",
    "vads_version": "V2",
}
CVCO_MIN_AMOUNT = 2000
CVCO_MAX_CAPTURE_DELAY = 3
REQUIRED_FIELDS = (
    *CVCO_FIXED,
    "vads_amount",
    "vads_ctx_mode",
    "vads_site_id",
    "vads_trans_date",
    "vads_trans_id",
)


class FormRuleError(ValueError):
    """A payment request breaks a rule of the form; `str()` is one line: field, value, rule."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        super().__init__(f"{field}={shown}: {rule}")


@dataclass(frozen=True, slots=True)
class FieldFormat:
    """One format of the §9 notation: a character class, a length, or a list of enum values."""

    notation: str
    kind: str  # "a", "n", "an", "ans" or "enum"
    min_length: int = 0
    max_length: int = 0
    values: tuple[str, ...] = ()

    def check(self, field: str, value: str) -> None:
        """Raise `FormRuleError` when `value` is outside this format."""
        if self.kind == "enum":
            if value not in self.values:
                raise FormRuleError(field, value, f"must be one of {', '.join(self.values)}")
            return
        if not self.min_length <= len(value) <= self.max_length:
            size = (
                f"exactly {self.max_length}"
                if self.min_length == self.max_length
                else f"{self.min_length} to {self.max_length}"
            )
            raise FormRuleError(field, value, f"format {self.notation}: {size} characters, got {len(value)}")
        bad = next((char for char in value if not _CHARSETS[self.kind](char)), None)
        if bad is not None:
            raise FormRuleError(
                field, value, f"format {self.notation}: {_CHARSET_NAMES[self.kind]}, not {bad!r}"
            )


def _is_ans(char: str) -> bool:
    # `ans` excludes < and > (§9 notation); control characters are not printable text either
    return char not in "<>" and unicodedata.category(char) != "Cc"


_CHARSETS = {
    "a": lambda char: char.isascii() and char.isalpha(),
    "n": lambda char: char.isascii() and char.isdigit(),
    "an": lambda char: char.isascii() and char.isalnum(),
    "ans": _is_ans,
}
_CHARSET_NAMES = {
    "a": "letters A-Z a-z only",
    "n": "digits only",
    "an": "letters and digits only",
    "ans": "any character except < > and control characters",
}
_NOTATION = re.compile(r"(ans|an|a|n)(\.\.)?(\d+)")


def parse_format(notation: str) -> FieldFormat:
    """`n..12` (up to 12 digits), `n3` (exactly 3), `ans..64`, `a2`, ... as in the §9 notation table."""
    match = _NOTATION.fullmatch(notation)
    if match is None:
        raise ValueError(f"not a §9 format notation: {notation!r}")
    kind, variable, length = match.group(1), match.group(2), int(match.group(3))
    return FieldFormat(notation, kind, min_length=1 if variable else length, max_length=length)


def enum(*values: str) -> FieldFormat:
    return FieldFormat("enum", "enum", values=values)


# Where the seed's own examples contradict a strict `an` (the phone remark of §9.2 accepts
# "(00.571) 638.14.00"; "Labège", "D. & Cie", "06 12 34 56 78" are its examples), the field takes `ans`
# at the same length, so a form the guide shows as valid is never refused here.
FIELD_FORMATS: dict[str, FieldFormat] = {
    # §9.1: the payment request
    "vads_payment_cards": enum("CVCO"),
    "vads_order_id": parse_format("ans..64"),
    "vads_page_action": enum("PAYMENT"),
    "vads_amount": parse_format("n..12"),
    "vads_ctx_mode": enum("TEST", "PRODUCTION"),
    "vads_currency": enum("978"),
    "vads_capture_delay": parse_format("n..3"),
    "vads_action_mode": enum("INTERACTIVE"),
    "vads_payment_config": enum("SINGLE"),
    "vads_site_id": parse_format("n8"),
    "vads_trans_date": parse_format("n14"),
    "vads_trans_id": parse_format("an6"),
    "vads_version": enum("V2"),
    # §9.2: the buyer (billing)
    "vads_cust_email": parse_format("ans..150"),
    "vads_cust_id": parse_format("an..63"),
    "vads_cust_national_id": parse_format("ans..255"),
    "vads_cust_title": parse_format("an..63"),
    "vads_cust_status": enum(*PARTY_STATUSES),
    "vads_cust_first_name": parse_format("ans..63"),
    "vads_cust_last_name": parse_format("ans..63"),
    "vads_cust_legal_name": parse_format("ans..100"),
    "vads_cust_phone": parse_format("ans..32"),  # an..32 in the table; see the §9.2 remark
    "vads_cust_cell_phone": parse_format("ans..32"),  # an..32 in the table; see the §9.2 remark
    "vads_cust_address_number": parse_format("ans..64"),
    "vads_cust_address": parse_format("ans..255"),
    "vads_cust_address2": parse_format("ans..255"),
    "vads_cust_district": parse_format("ans..127"),
    "vads_cust_zip": parse_format("ans..64"),  # an..64 in the table; postcodes abroad hold spaces
    "vads_cust_city": parse_format("ans..128"),  # an..128 in the table; its example is "Labège"
    "vads_cust_state": parse_format("ans..127"),
    "vads_cust_country": parse_format("a2"),
    # §9.3: shipping
    "vads_ship_to_city": parse_format("ans..128"),  # an..128, as vads_cust_city
    "vads_ship_to_country": parse_format("a2"),
    "vads_ship_to_district": parse_format("ans..127"),
    "vads_ship_to_first_name": parse_format("ans..63"),
    "vads_ship_to_last_name": parse_format("ans..63"),
    "vads_ship_to_legal_name": parse_format("ans..100"),  # an..100 in the table; its example is "D. & Cie"
    "vads_ship_to_phone_num": parse_format("ans..32"),
    "vads_ship_to_state": parse_format("ans..127"),
    "vads_ship_to_status": enum(*PARTY_STATUSES),
    "vads_ship_to_street_number": parse_format("ans..64"),
    "vads_ship_to_street": parse_format("ans..255"),
    "vads_ship_to_street2": parse_format("ans..255"),
    "vads_ship_to_zip": parse_format("ans..64"),  # an..64, as vads_cust_zip
    # §9.4: the order
    "vads_order_info": parse_format("ans..255"),
    "vads_order_info2": parse_format("ans..255"),
    "vads_order_info3": parse_format("ans..255"),
    "vads_nb_products": parse_format("n..12"),
}
PRODUCT_FORMATS: dict[str, FieldFormat] = {
    "ext_id": parse_format("ans..100"),  # the table gives no format: a bar code, bounded like a label
    "label": parse_format("ans..255"),
    "amount": parse_format("n..12"),
    "type": enum(*PRODUCT_TYPES),
    "ref": parse_format("an..64"),
    "qty": parse_format("n..12"),
}
_PRODUCT_FIELD = re.compile(r"vads_product_(ext_id|label|amount|type|ref|qty)(0|[1-9]\d{0,3})")
_ORDER_ID = re.compile(r"[A-Za-z0-9_-]+")
#: §9.5: `vads_ext_info_<name>`; the seed shows names with `_` and with spaces ("Arrival Date").
EXT_INFO_PREFIX = "vads_ext_info_"
EXT_INFO_NAME = re.compile(r"[A-Za-z0-9_-](?:[A-Za-z0-9_ -]{0,62}[A-Za-z0-9_-])?")
EXT_INFO_VALUE = parse_format("ans..255")


def check_ext_info_name(name: str) -> None:
    """A `vads_ext_info_` suffix: 1 to 64 of [A-Za-z0-9_-] and inner spaces."""
    if not EXT_INFO_NAME.fullmatch(name):
        raise FormRuleError(
            EXT_INFO_PREFIX + name, name, "name: 1 to 64 of A-Z a-z 0-9 _ - (inner spaces allowed)"
        )


def check_field(name: str, value: str) -> None:
    """One `vads_*` field against its format; a field the CVCO form does not know is refused."""
    if name == "vads_validation_mode":
        raise FormRuleError(name, value, "Chèque-Vacances Connect has no manual validation; leave it out")
    if name.startswith(EXT_INFO_PREFIX):
        check_ext_info_name(name.removeprefix(EXT_INFO_PREFIX))
        if value:  # §9.5 shows an empty extra field: it is sent as is
            EXT_INFO_VALUE.check(name, value)
        return
    product = _PRODUCT_FIELD.fullmatch(name)
    field_format = PRODUCT_FORMATS[product.group(1)] if product else FIELD_FORMATS.get(name)
    if field_format is None:
        raise FormRuleError(name, value, "not a field of the Chèque-Vacances Connect form")
    field_format.check(name, value)


def check_fields(fields: Mapping[str, str]) -> None:
    """Every field in its format, every required one present, and the Chèque-Vacances Connect rules."""
    for name in REQUIRED_FIELDS:
        if name not in fields:
            raise FormRuleError(name, None, "required")
    for name, value in fields.items():
        check_field(name, value)
    for name, expected in CVCO_FIXED.items():
        if fields[name] != expected:
            raise FormRuleError(name, fields[name], f"must be {expected} for Chèque-Vacances Connect")
    amount = int(fields["vads_amount"])
    if amount < CVCO_MIN_AMOUNT:
        raise FormRuleError(
            "vads_amount",
            fields["vads_amount"],
            f"at least {CVCO_MIN_AMOUNT} cents for Chèque-Vacances Connect",
        )
    order_id = fields.get("vads_order_id")
    if order_id is not None and not _ORDER_ID.fullmatch(order_id):
        raise FormRuleError("vads_order_id", order_id, "only A-Z a-z 0-9 _ - (§9.1)")
    try:
        datetime.strptime(fields["vads_trans_date"], "%Y%m%d%H%M%S")  # only the shape is checked
    except ValueError:
        raise FormRuleError(
            "vads_trans_date", fields["vads_trans_date"], "not a UTC YYYYMMDDHHMMSS time"
        ) from None
    _check_cart_indices(fields)
    capture_delay = fields.get("vads_capture_delay")
    if capture_delay is not None and int(capture_delay) > CVCO_MAX_CAPTURE_DELAY:
        raise FormRuleError(
            "vads_capture_delay",
            capture_delay,
            f"at most {CVCO_MAX_CAPTURE_DELAY} days for Chèque-Vacances Connect",
        )


def _check_cart_indices(fields: Mapping[str, str]) -> None:
    """Every `vads_product_*N` has N below `vads_nb_products` (indices start at 0, §9.4)."""
    indices = [int(m.group(2)) for name in fields if (m := _PRODUCT_FIELD.fullmatch(name))]
    if not indices:
        return
    count = fields.get("vads_nb_products")
    if count is None:
        raise FormRuleError("vads_nb_products", None, "required when vads_product_* fields are sent")
    if max(indices) >= int(count):
        raise FormRuleError("vads_nb_products", count, f"cart lines go up to index {max(indices)}")
