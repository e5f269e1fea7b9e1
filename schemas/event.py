"""The normalized event published on the stream (contract.md, "Normalized events").

`python -m schemas.event` writes `schemas/event.schema.json` from `PaymentEvent`; a test fails when the two
drift apart. No card number beyond the masked one, no key, no signature or `vads_hash` ever goes in here.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal[
    "payment.accepted",
    "payment.captured",
    "payment.pending",
    "payment.refused",
    "payment.abandoned",
    "payment.expired",
    "payment.cancelled",
    "payment.refunded",
    "payment.partial",
]
SCHEMA_PATH = Path(__file__).with_name("event.schema.json")


class AuthResult(BaseModel):
    """An authorisation result and the seed's French message for it (`code inconnu` when not in the table)."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={"additionalProperties": True})

    code: str | None
    message: str


class Leg(BaseModel):
    """One transaction of the payment: the single one, or one `vads_payment_seq` entry of a cascade."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={"additionalProperties": True})

    sequence_number: int
    card_brand: str | None
    amount: int
    status: str
    auth_result: AuthResult
    trans_uuid: str | None
    operation_type: str = "DEBIT"


class PaymentEvent(BaseModel):
    """One business event of one payment; `event_id` is the same whenever the payment state is the same."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={"additionalProperties": True})

    event_id: str
    type: EventType
    shop_id: str
    mode: Literal["TEST", "PRODUCTION"]
    order_id: str | None
    trans_id: str
    trans_uuid: str | None = Field(description="null only for a session expiry cvco-ipn detected itself")
    status: str = Field(description="vads_trans_status as received, or EXPIRED for a detected expiry")
    amount: int = Field(description="order amount in cents")
    currency: str = Field(description="ISO 4217 alpha code")
    paid_amount: int = Field(description="cents covered by accepted DEBIT transactions, all legs")
    cvco_amount: int = Field(description="cents of paid_amount paid by Cheque-Vacances Connect")
    refunded_amount: int = 0
    legs: list[Leg]
    auth_result: AuthResult
    source: str | None = Field(description="vads_url_check_src, or SESSION_TIMEOUT for a detected expiry")
    customer: dict[str, str]
    shipping: dict[str, str]
    products: list[dict[str, str]]
    ext_info: dict[str, str]
    received_at: datetime
    payment_key: str
    operation_type: str | None
    flags: list[str] = Field(
        default_factory=list,
        description=(
            "seed rules this payment breaks, kept not dropped (non_eur_cvco, partial_refund, partial_cancel), and"
            " states worth a look (cascade_partial, accepted_after_expiry, expired_authorised, refund_unattached)"
        ),
    )


def schema_text() -> str:
    """The JSON Schema of `PaymentEvent`, as written to `schemas/event.schema.json`."""
    return json.dumps(PaymentEvent.model_json_schema(mode="serialization"), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
