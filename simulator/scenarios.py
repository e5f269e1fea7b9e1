"""The payment platform's behaviour, scenario by scenario, as pure builders of signed notifications.

`build_scenario(name, shop_id, shop, mode, rng, now)` returns the `Delivery`s of one run of a scenario, in
the order the platform sends them, each with the event types it should give. No I/O: the simulator, the
demo and the reliability tests share these builders.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from schemas.session import PendingPayment
from schemas.settings import ShopConfig
from simulator.fields import Leg, cascade_fields
from simulator.platform import Delivery, Platform

__all__ = ["ALL", "REFUSAL_CODES", "SCENARIOS", "Delivery", "Platform", "build_scenario"]

REFUSAL_CODES = (
    "1010", "1011", "1016", "1017", "1018", "1019", "1100", "1213", "1214", "1215", "1216", "1218", "1220", "1300",
)  # fmt: skip
"""Seed §11.3 codes that end in a refusal; 0 is acceptance, 1012/1013/1020 abandonment, 1015 expiry,
1014 a refund (none of them a refusal)."""


def _cvco_full(p: Platform, name: str) -> list[Delivery]:
    pay = p.payment()
    return [p.send(name, "AUTHORISED (PAY)", pay, p.single(pay, "AUTHORISED", "PAY"), "payment.accepted")]


def _cascade(p: Platform, name: str) -> list[Delivery]:
    pay = p.payment(p.rng.randrange(3000, 60_000, 10))
    legs = p.cascade_legs(pay, "AUTHORISED", "00")
    fields = cascade_fields(pay, legs, p.rng, status="AUTHORISED", source="PAY")
    return [p.send(name, "MULTI CVCO+CB AUTHORISED (PAY)", pay, fields, "payment.accepted")]


def _cascade_refused_complement(p: Platform, name: str) -> list[Delivery]:
    pay = p.payment(p.rng.randrange(3000, 60_000, 10))
    legs = p.cascade_legs(pay, "REFUSED", "05")
    fields = cascade_fields(pay, legs, p.rng, status="REFUSED", source="PAY", auth_result="1011")
    return [p.send(name, "MULTI CVCO ok, CB REFUSED (PAY)", pay, fields, "payment.partial")]


def _refused(p: Platform, name: str) -> list[Delivery]:
    deliveries = []
    for code in REFUSAL_CODES:
        pay = p.payment()
        fields = p.single(pay, "REFUSED", "PAY", auth_result=code)
        deliveries.append(p.send(name, f"REFUSED {code} (PAY)", pay, fields, "payment.refused"))
    return deliveries


def _abandoned(p: Platform, name: str) -> list[Delivery]:
    deliveries = []
    for code in ("1012", "1020"):
        pay = p.payment()
        fields = p.single(pay, "ABANDONED", "PAY", auth_result=code, operation_type=None)
        deliveries.append(p.send(name, f"ABANDONED {code} (PAY)", pay, fields, "payment.abandoned"))
    return deliveries


def _abandoned_complement(p: Platform, name: str) -> list[Delivery]:
    """Seed §8.2: the buyer cancels (1013) or lets the session expire (1015) during the card complement."""
    deliveries = []
    for code, event in (("1013", "payment.abandoned"), ("1015", "payment.expired")):
        pay = p.payment(p.rng.randrange(3000, 60_000, 10))
        legs = p.cascade_legs(pay, "ABANDONED", "")
        # the CVCO part is cancelled, and its ANCV result code says why: the complement was not completed
        legs[0] = Leg("CVCO", legs[0].amount, "CANCELLED", code, legs[0].trans_uuid, legs[0].card_number)
        fields = cascade_fields(pay, legs, p.rng, status="ABANDONED", source="PAY", auth_result=code)
        deliveries.append(p.send(name, f"MULTI ABANDONED {code} (PAY)", pay, fields, event))
    return deliveries


def _silent(p: Platform, name: str) -> list[Delivery]:
    pay = p.payment()
    pending = PendingPayment(
        shop_id=pay.shop_id,
        mode=pay.mode,  # type: ignore[arg-type]  # a ShopConfig mode, so TEST or PRODUCTION
        trans_id=pay.trans_id,
        trans_date=pay.trans_date,
        order_id=pay.order_id,
        amount=pay.amount,
        # as the form builder watches it: the session length, then the grace before declaring it expired
        deadline=pay.trans_date + timedelta(seconds=p.session_timeout_s + p.session_grace_s),
        registered_by="form",
    )
    return [
        Delivery(
            name, "form issued, never notified", pay.order_id, expected=("payment.expired",), session=pending
        )
    ]


def _merch_bo_cancel(p: Platform, name: str) -> list[Delivery]:
    pay = p.payment()
    return [
        p.send(name, "AUTHORISED (PAY)", pay, p.single(pay, "AUTHORISED", "PAY"), "payment.accepted"),
        p.send(
            name, "CANCELLED (MERCH_BO)", pay, p.single(pay, "CANCELLED", "MERCH_BO"), "payment.cancelled"
        ),
    ]


def _capture(p: Platform, name: str) -> list[Delivery]:
    pay = p.payment()
    return [
        p.send(name, "AUTHORISED (PAY)", pay, p.single(pay, "AUTHORISED", "PAY"), "payment.accepted"),
        p.send(name, "CAPTURED (BATCH)", pay, p.single(pay, "CAPTURED", "BATCH"), "payment.captured"),
    ]


def _refund(p: Platform, name: str) -> list[Delivery]:
    """A refund is its own CREDIT transaction: new trans_uuid, same trans_id, date and order."""
    pay = p.payment()
    credit = p.single(pay, "CAPTURED", "MERCH_BO", operation_type="CREDIT", trans_uuid=p.uuid())
    return [
        p.send(name, "AUTHORISED (PAY)", pay, p.single(pay, "AUTHORISED", "PAY"), "payment.accepted"),
        p.send(name, "CAPTURED (BATCH)", pay, p.single(pay, "CAPTURED", "BATCH"), "payment.captured"),
        p.send(name, "CREDIT CAPTURED (MERCH_BO)", pay, credit, "payment.refunded"),
    ]


def _duplicates(p: Platform, name: str) -> list[Delivery]:
    pay = p.payment()
    fields = p.single(pay, "AUTHORISED", "PAY")
    resent = p.single(pay, "AUTHORISED", "BO")
    return [
        p.send(name, "AUTHORISED (PAY)", pay, fields, "payment.accepted"),
        p.send(name, "same again", pay, fields),
        p.send(name, "same again", pay, fields),
        p.send(name, "AUTHORISED resent (BO)", pay, resent),
    ]


def _retry(p: Platform, name: str) -> list[Delivery]:
    """One payment known only through the platform's retry; one whose retry follows a delivered original."""
    first, second = p.payment(), p.payment()
    return [
        p.send(name, "AUTHORISED (RETRY)", first, p.single(first, "AUTHORISED", "RETRY"), "payment.accepted"),
        p.send(name, "AUTHORISED (PAY)", second, p.single(second, "AUTHORISED", "PAY"), "payment.accepted"),
        p.send(name, "AUTHORISED (RETRY)", second, p.single(second, "AUTHORISED", "RETRY")),
    ]


def _out_of_order(p: Platform, name: str) -> list[Delivery]:
    """Later states first: the stale notification that follows must add nothing."""
    captured, cancelled = p.payment(), p.payment()
    return [
        p.send(
            name, "CAPTURED (BATCH)", captured, p.single(captured, "CAPTURED", "BATCH"), "payment.captured"
        ),
        p.send(name, "stale AUTHORISED (PAY)", captured, p.single(captured, "AUTHORISED", "PAY")),
        p.send(
            name,
            "CANCELLED (MERCH_BO)",
            cancelled,
            p.single(cancelled, "CANCELLED", "MERCH_BO"),
            "payment.cancelled",
        ),
        p.send(name, "stale AUTHORISED (PAY)", cancelled, p.single(cancelled, "AUTHORISED", "PAY")),
    ]


def _unparsable(p: Platform, name: str) -> list[Delivery]:
    """Correctly signed, but `vads_payment_seq` is not JSON: accepted with 200, then parked as failed."""
    pay = p.payment()
    fields = p.single(pay, "AUTHORISED", "PAY")
    fields.update(vads_card_brand="MULTI", vads_sequence_number="0", vads_payment_seq='{"trans_id": "')
    delivery = p.send(name, "MULTI with broken vads_payment_seq (PAY)", pay, fields)
    return [Delivery(delivery.scenario, delivery.step, delivery.order_id, delivery.fields, parks=True)]


SCENARIOS: dict[str, Callable[[Platform, str], list[Delivery]]] = {
    "cvco-full": _cvco_full,
    "cascade": _cascade,
    "cascade-refused-complement": _cascade_refused_complement,
    "refused": _refused,
    "abandoned": _abandoned,
    "abandoned-complement": _abandoned_complement,
    "silent": _silent,
    "merch-bo-cancel": _merch_bo_cancel,
    "capture": _capture,
    "refund": _refund,
    "duplicates": _duplicates,
    "retry": _retry,
    "out-of-order": _out_of_order,
    "unparsable": _unparsable,
}
"""Every scenario by its `--scenario` name."""

ALL = tuple(name for name in SCENARIOS if name != "unparsable")
"""What `--scenario all` plays: the platform's normal behaviour (the unparsable one is opt-in)."""


def build_scenario(
    name: str, shop_id: str, shop: ShopConfig, mode: str, rng: random.Random, now: datetime
) -> list[Delivery]:
    """The deliveries of one run of scenario `name`, in the order the platform sends them."""
    return SCENARIOS[name](Platform(shop_id, shop, mode, rng, now), name)
