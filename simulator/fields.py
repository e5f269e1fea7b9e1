"""Realistic notification field sets, as the platform sends them for a Chèque-Vacances Connect payment.

Pure functions of a `Payment` and a random generator: no I/O, no clock. The scenarios in
`simulator.scenarios` compose them into the notifications of a payment's life.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.signature import SIGNATURE_FIELD, sign_fields
from schemas.settings import ShopConfig

MASK = "X"
"""The platform masks card digits with X: six of them between the first six and the last four."""

CVCO_MIN_AMOUNT = 2000
"""The method is not offered under 20.00 EUR."""

RESULT_BY_STATUS = {"REFUSED": "05", "ABANDONED": "17", "CANCELLED": "00"}
"""`vads_result` (the payment page's result code) for the statuses that are not accepted."""

_PEOPLE = (
    ("Hélène", "Lefèvre", "Labège", "31670"),
    ("François", "Mâcon", "Besançon", "25000"),
    ("Zoé", "Dupré", "Orléans", "45000"),
    ("Jérôme", "Bœuf", "Nîmes", "30000"),
    ("Anaïs", "Noël", "Bordeaux", "33000"),
    ("Gaëlle", "Chassériau", "Épinal", "88000"),
)
_STREETS = ("Rue de l'Innovation", "Allée des Châtaigniers", "Place du Marché", "Quai Saint-Étienne")
_PRODUCTS = (
    ("Séjour 3 jours datés", "TRAVEL"),
    ("Concert privé", "ENTERTAINMENT"),
    ("Forfait ski « Grand Massif »", "SPORTS"),
    ("Nuitée en gîte", "TRAVEL"),
    ("Visite guidée du château", "ENTERTAINMENT"),
)


def platform_date(moment: datetime) -> str:
    """The platform's UTC timestamp format, `YYYYMMDDHHMMSS`."""
    return f"{moment:%Y%m%d%H%M%S}"


def hex_id(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(length))


@dataclass(frozen=True)
class Payment:
    """One payment as the platform knows it: its identity and the buyer data echoed in every notification."""

    shop_id: str
    mode: str
    trans_id: str
    trans_date: datetime
    order_id: str
    amount: int
    trans_uuid: str
    card_number: str
    capture_delay: int
    echoed: Mapping[str, str] = field(default_factory=dict)


def echoed_fields(rng: random.Random, order_id: str, amount: int) -> dict[str, str]:
    """Buyer, shipping, cart and `vads_ext_info_*` data, blank fields included, as the form sent them."""
    first, last, city, zip_code = rng.choice(_PEOPLE)
    street = rng.choice(_STREETS)
    fields = {
        "vads_cust_email": f"{first[0].lower()}.{rng.randrange(100, 999)}@example.fr",
        "vads_cust_id": f"C{rng.randrange(10**6, 10**7)}",
        "vads_cust_title": rng.choice(("Mme", "M.")),
        "vads_cust_status": "PRIVATE",
        "vads_cust_first_name": first,
        "vads_cust_last_name": last,
        "vads_cust_phone": f"04{rng.randrange(10**7, 10**8)}",
        "vads_cust_cell_phone": "",
        "vads_cust_address_number": str(rng.randrange(1, 120)),
        "vads_cust_address": street,
        "vads_cust_address2": "",
        "vads_cust_zip": zip_code,
        "vads_cust_city": city,
        "vads_cust_country": "FR",
        "vads_ship_to_first_name": first,
        "vads_ship_to_last_name": last,
        "vads_ship_to_street_number": str(rng.randrange(1, 120)),
        "vads_ship_to_street": street,
        "vads_ship_to_street2": "",
        "vads_ship_to_zip": zip_code,
        "vads_ship_to_city": city,
        "vads_ship_to_country": "FR",
        "vads_ship_to_status": "PRIVATE",
        "vads_order_info": f"Réservation {order_id}",
        "vads_order_info2": "",
        "vads_ext_info_Arrival_Date": f"{rng.randrange(1, 29):02d}/07/2027",
        "vads_ext_info_Nb_Adults": str(rng.randrange(1, 5)),
        "vads_ext_info_Nb_Child": "",
    }
    lines = rng.randrange(1, 4)
    cuts = sorted(rng.sample(range(1, amount), lines - 1)) if lines > 1 else []
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, amount], strict=True)]
    fields["vads_nb_products"] = str(lines)
    for index, share in enumerate(shares):
        label, kind = rng.choice(_PRODUCTS)
        fields[f"vads_product_label{index}"] = label
        fields[f"vads_product_type{index}"] = kind
        fields[f"vads_product_ref{index}"] = f"REF{rng.randrange(10**5, 10**6)}"
        fields[f"vads_product_amount{index}"] = str(share)
        fields[f"vads_product_qty{index}"] = "1"
    return fields


def masked_cvco_account(rng: random.Random) -> str:
    """An ANCV beneficiary account id as the platform shows it: first and last digits only."""
    return f"{rng.randrange(10, 99)}{MASK * 6}{rng.randrange(1000, 9999)}"


def single_fields(
    payment: Payment,
    rng: random.Random,
    *,
    status: str,
    source: str,
    auth_result: str = "0",
    operation_type: str | None = "DEBIT",
    trans_uuid: str | None = None,
) -> dict[str, str]:
    """Every field of a notification for a payment made wholly in Chèque-Vacances Connect.

    `operation_type=None` is the shape of an abandoned payment: no operation type, no sequence number.
    """
    accepted = status in ("AUTHORISED", "CAPTURED")
    presentation = payment.trans_date + timedelta(days=payment.capture_delay)
    fields = {
        "vads_action_mode": "INTERACTIVE",
        "vads_amount": str(payment.amount),
        "vads_auth_mode": "FULL",
        "vads_auth_number": f"{rng.randrange(10**5, 10**6)}" if accepted else "",
        "vads_auth_result": auth_result,
        "vads_capture_delay": str(payment.capture_delay),
        "vads_card_brand": "CVCO",
        "vads_card_number": payment.card_number if operation_type else "",
        "vads_ctx_mode": payment.mode,
        "vads_currency": "978",
        "vads_effective_amount": str(payment.amount),
        "vads_effective_currency": "978",
        "vads_extra_result": "",
        "vads_hash": hex_id(rng, 64),
        "vads_language": "fr",
        "vads_operation_type": operation_type or "",
        "vads_order_id": payment.order_id,
        "vads_page_action": "PAYMENT",
        "vads_payment_certificate": hex_id(rng, 40) if accepted else "",
        "vads_payment_config": "SINGLE",
        "vads_payment_src": "EC",
        "vads_presentation_date": platform_date(presentation),
        "vads_result": RESULT_BY_STATUS.get(status, "00"),
        "vads_sequence_number": "1" if operation_type else "",
        "vads_site_id": payment.shop_id,
        "vads_tid": "001",
        "vads_trans_date": platform_date(payment.trans_date),
        "vads_trans_id": payment.trans_id,
        "vads_trans_status": status,
        "vads_trans_uuid": trans_uuid or payment.trans_uuid,
        "vads_url_check_src": source,
        "vads_validation_mode": "",
        "vads_version": "V2",
        "vads_warranty_result": "",
    }
    if operation_type is None:
        del fields["vads_operation_type"], fields["vads_sequence_number"]
    fields.update(payment.echoed)
    return fields


@dataclass(frozen=True)
class Leg:
    """One transaction of a cascade, as listed in `vads_payment_seq`."""

    card_brand: str
    amount: int
    status: str
    auth_result: str
    trans_uuid: str
    card_number: str


def leg_json(payment: Payment, leg: Leg, sequence_number: int, rng: random.Random) -> dict[str, object]:
    accepted = leg.status in ("AUTHORISED", "CAPTURED")
    presentation = payment.trans_date + timedelta(days=payment.capture_delay)
    entry: dict[str, object] = {
        "amount": leg.amount,
        "operation_type": "DEBIT",
        "auth_number": f"{rng.randrange(10**5, 10**6)}" if accepted else "",
        "auth_result": leg.auth_result,
        "capture_delay": payment.capture_delay,
        "card_brand": leg.card_brand,
        "card_number": leg.card_number,
        "contract_used": f"{rng.randrange(10**6, 10**7)}",
        "payment_certificate": hex_id(rng, 40) if accepted else "",
        "presentation_date": f"{presentation:%Y-%m-%dT%H:%M:%SZ}",
        "sequence_number": sequence_number,
        "trans_id": payment.trans_id,
        "trans_uuid": leg.trans_uuid,
        "trans_status": leg.status,
        "extra_result": "",
    }
    if leg.card_brand != "CVCO":
        entry.update(expiry_month=str(rng.randrange(1, 13)), expiry_year=str(rng.randrange(2028, 2033)))
    return entry


def cascade_fields(
    payment: Payment,
    legs: Sequence[Leg],
    rng: random.Random,
    *,
    status: str,
    source: str,
    auth_result: str = "0",
) -> dict[str, str]:
    """A cascade notification: `MULTI`, sequence number 0, and one `vads_payment_seq` entry per leg."""
    fields = single_fields(payment, rng, status=status, source=source, auth_result=auth_result)
    effective = sum(leg.amount for leg in legs if leg.status in ("AUTHORISED", "CAPTURED"))
    seq = {
        "trans_id": payment.trans_id,
        "transactions": [leg_json(payment, leg, n, rng) for n, leg in enumerate(legs, start=1)],
    }
    fields.update(
        vads_card_brand="MULTI",
        vads_card_number="",
        vads_sequence_number="0",
        vads_trans_uuid=legs[0].trans_uuid,
        vads_effective_amount=str(effective),
        vads_payment_seq=json.dumps(seq, separators=(",", ":"), ensure_ascii=False),
    )
    if status == "ABANDONED":
        del fields["vads_operation_type"], fields["vads_sequence_number"]
    return fields


def signed(fields: Mapping[str, str], shop: ShopConfig, mode: str) -> dict[str, str]:
    """The fields plus the `signature` the platform computes with the shop's key for `mode`."""
    return {**fields, SIGNATURE_FIELD: sign_fields(fields, shop, mode)}
