"""A notification (IPN) as the platform sends it: every field kept, the known ones typed.

`parse_notification` turns the raw form fields into a `Notification`; any broken rule raises
`InvalidNotification` whose message names the field and the rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import PermanentError

TransStatus = str
OperationType = Literal["DEBIT", "CREDIT", "VERIFICATION"]

_DIGITS = re.compile(r"[0-9]+")
_TRANS_ID = re.compile(r"[0-9A-Za-z]{6}")
_UUID = re.compile(r"[0-9a-fA-F]{32}")


class InvalidNotification(PermanentError, ValueError):
    """A signed notification whose content breaks a rule; permanent: retrying will not help."""

    def __init__(self, field: str, rule: str, value: object = None) -> None:
        shown = "" if value is None else f", got {str(value)[:80]!r}"
        super().__init__(f"{field}: {rule}{shown}")
        self.field = field
        self.rule = rule


MAX_AMOUNT = 999_999_999_999
"""The platform's amounts are n..12: at most 12 digits."""


class CascadeLeg(BaseModel):
    """One transaction of a cascade, from `vads_payment_seq.transactions[]`; unknown keys are kept.

    Some platform versions omit `trans_uuid` (and `auth_result`): the leg is then known by its sequence number.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    amount: int = Field(ge=0, le=MAX_AMOUNT)
    operation_type: str = "DEBIT"
    auth_result: str | None = None
    capture_delay: int | None = None
    card_brand: str
    card_number: str | None = None
    sequence_number: int = Field(ge=1, le=MAX_AMOUNT)
    trans_id: str
    trans_uuid: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$")
    trans_status: str
    presentation_date: str | None = None
    extra_result: str | None = None


class PaymentSeq(BaseModel):
    """`vads_payment_seq`: the cascade's shared `trans_id` and its transactions."""

    model_config = ConfigDict(extra="allow", frozen=True)

    trans_id: str
    transactions: tuple[CascadeLeg, ...] = Field(min_length=1)


class Notification(BaseModel):
    """The typed view of one notification; `fields` holds every received field, unknown ones included."""

    model_config = ConfigDict(frozen=True)

    fields: dict[str, str]
    site_id: str
    ctx_mode: Literal["TEST", "PRODUCTION"]
    trans_id: str
    trans_date: datetime
    trans_uuid: str | None
    trans_status: TransStatus
    order_id: str | None
    amount: int | None
    currency: int | None
    effective_amount: int | None
    operation_type: OperationType | None
    sequence_number: int | None
    card_brand: str | None
    auth_result: str | None
    url_check_src: str | None
    capture_delay: int | None
    presentation_date: datetime | None
    payment_seq: PaymentSeq | None

    @property
    def is_cascade(self) -> bool:
        """A cascade (part CVCO, the rest by another means) is `MULTI` with sequence number 0."""
        return self.card_brand == "MULTI" or self.sequence_number == 0


def payment_key(site_id: str, mode: str, trans_date: datetime, trans_id: str) -> str:
    """The identity of a payment: the platform keeps `trans_id` unique per shop per UTC day, ignoring case."""
    day = trans_date.astimezone(UTC)  # by hand: strftime costs three times as much
    return f"{site_id}:{mode}:{day.year:04d}{day.month:02d}{day.day:02d}:{trans_id.lower()}"


def key_trans_id(key: str) -> str:
    """The trans_id part of a payment key: the payment's own trans_id, lower-cased."""
    return key.rsplit(":", 1)[-1]


def platform_reserved(trans_id: str) -> bool:
    """900000-999999: ids the platform issues itself (Back Office refunds, duplications, payment orders),
    which a shop's own forms never use."""
    return trans_id.isdigit() and int(trans_id) >= 900000


def _optional(fields: Mapping[str, str], name: str) -> str | None:
    value = fields.get(name)
    return value if value else None


def _required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise InvalidNotification(name, "is required")
    return value


def _int(fields: Mapping[str, str], name: str) -> int | None:
    value = _optional(fields, name)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value) or len(value) > 12:
        raise InvalidNotification(name, "must be a whole number of at most 12 digits", value)
    return int(value)


def _utc_timestamp(fields: Mapping[str, str], name: str) -> datetime | None:
    value = _optional(fields, name)
    if value is None:
        return None
    if len(value) != 14 or not _DIGITS.fullmatch(value):
        raise InvalidNotification(name, "must be a UTC date YYYYMMDDHHMMSS", value)
    try:
        # by hand: strptime would take more than half of the whole parse
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[8:10]),
            int(value[10:12]),
            int(value[12:14]),
            tzinfo=UTC,
        )
    except ValueError:
        raise InvalidNotification(name, "is not a real date", value) from None


def _payment_seq(fields: Mapping[str, str]) -> PaymentSeq | None:
    raw = _optional(fields, "vads_payment_seq")
    if raw is None:
        return None
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InvalidNotification("vads_payment_seq", f"is not valid JSON ({e.msg})", raw) from None
    try:
        return PaymentSeq.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise InvalidNotification(f"vads_payment_seq.{where}", first["msg"]) from None


def parse_notification(fields: Mapping[str, str]) -> Notification:
    """Validate and type the fields of a (signature-checked) notification."""
    site_id = _required(fields, "vads_site_id")
    if len(site_id) != 8 or not _DIGITS.fullmatch(site_id):
        raise InvalidNotification("vads_site_id", "must be 8 digits", site_id)
    mode = _required(fields, "vads_ctx_mode")
    if mode not in ("TEST", "PRODUCTION"):
        raise InvalidNotification("vads_ctx_mode", "must be TEST or PRODUCTION", mode)
    trans_id = _required(fields, "vads_trans_id")
    if not _TRANS_ID.fullmatch(trans_id):
        raise InvalidNotification("vads_trans_id", "must be 6 letters or digits", trans_id)
    trans_date = _utc_timestamp(fields, "vads_trans_date")
    if trans_date is None:
        raise InvalidNotification("vads_trans_date", "is required")
    trans_uuid = _optional(fields, "vads_trans_uuid")
    if trans_uuid is not None and not _UUID.fullmatch(trans_uuid):
        raise InvalidNotification("vads_trans_uuid", "must be 32 hexadecimal characters", trans_uuid)
    operation_type = _optional(fields, "vads_operation_type")
    if operation_type not in (None, "DEBIT", "CREDIT", "VERIFICATION"):
        raise InvalidNotification(
            "vads_operation_type", "must be DEBIT, CREDIT or VERIFICATION", operation_type
        )
    presentation = _optional(fields, "vads_presentation_date")
    return Notification(
        fields=dict(fields),
        site_id=site_id,
        ctx_mode=mode,  # type: ignore[arg-type]  # checked against the two literals just above
        trans_id=trans_id,
        trans_date=trans_date,
        trans_uuid=trans_uuid.lower() if trans_uuid else None,
        trans_status=_required(fields, "vads_trans_status"),
        order_id=_optional(fields, "vads_order_id"),
        amount=_int(fields, "vads_amount"),
        currency=_int(fields, "vads_currency"),
        effective_amount=_int(fields, "vads_effective_amount"),
        operation_type=operation_type,  # type: ignore[arg-type]  # checked against the literals just above
        sequence_number=_int(fields, "vads_sequence_number"),
        card_brand=_optional(fields, "vads_card_brand"),
        auth_result=_optional(fields, "vads_auth_result"),
        url_check_src=_optional(fields, "vads_url_check_src"),
        capture_delay=_int(fields, "vads_capture_delay"),
        presentation_date=_utc_timestamp(fields, "vads_presentation_date") if presentation else None,
        payment_seq=_payment_seq(fields),
    )
