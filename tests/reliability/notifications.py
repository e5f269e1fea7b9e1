"""Signed notifications for reliability, fuzz and security tests, built without the simulator.

Each `accepted_payment(i)` is a distinct single CVCO payment (its own trans_id and trans_uuid), so the
worker must turn each into exactly one event: counting events against notifications proves no loss and
no duplicate.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlencode

from core.signature import sign_fields
from schemas.settings import ShopConfig

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def trans_id_for(index: int) -> str:
    """A 6-character trans_id, distinct for every index below 36**6."""
    digits = []
    for _ in range(6):
        index, rest = divmod(index, 36)
        digits.append(_BASE36[rest])
    return "".join(reversed(digits))


def trans_uuid_for(index: int, salt: str = "") -> str:
    """A 32-hex trans_uuid, distinct per (index, salt)."""
    return hashlib.sha256(f"{salt}:{index}".encode()).hexdigest()[:32]


def accepted_payment(
    index: int,
    shop_id: str,
    shop: ShopConfig,
    *,
    mode: str = "TEST",
    trans_date: datetime | None = None,
    salt: str = "",
) -> dict[str, str]:
    """The signed fields of an AUTHORISED single CVCO payment, as the platform would notify it."""
    when = trans_date or datetime.now(UTC)
    fields = {
        "vads_action_mode": "INTERACTIVE",
        "vads_amount": str(2000 + index % 50_000),
        "vads_auth_mode": "FULL",
        "vads_auth_result": "00",
        "vads_capture_delay": "0",
        "vads_card_brand": "CVCO",
        "vads_card_number": "X" * 12 + "0001",
        "vads_ctx_mode": mode,
        "vads_currency": "978",
        "vads_effective_amount": str(2000 + index % 50_000),
        "vads_hash": hashlib.sha256(f"hash:{salt}:{index}".encode()).hexdigest(),
        "vads_operation_type": "DEBIT",
        "vads_order_id": f"order-{salt}{index}",
        "vads_page_action": "PAYMENT",
        "vads_payment_config": "SINGLE",
        "vads_result": "00",
        "vads_sequence_number": "1",
        "vads_site_id": shop_id,
        "vads_trans_date": when.strftime("%Y%m%d%H%M%S"),
        "vads_trans_id": trans_id_for(index),
        "vads_trans_status": "AUTHORISED",
        "vads_trans_uuid": trans_uuid_for(index, salt),
        "vads_url_check_src": "PAY",
        "vads_version": "V2",
    }
    fields["signature"] = sign_fields(fields, shop, mode)
    return fields


def form_body(fields: dict[str, str]) -> bytes:
    """The form-urlencoded body the platform posts."""
    return urlencode(fields).encode("utf-8")
